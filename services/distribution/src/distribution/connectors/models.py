"""Domain types of the network connectors: connections (grants), pending authorizations, tracked posts,
the tenant's network apps and request budgets. Plain values: the store seals tokens and secrets."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from advocacy_common.events import EngagementKind


class ConnectionStatus(StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"  # the token's lifetime ran out (LinkedIn: 60 days, no refresh for most apps)
    REVOKED = "revoked"  # the network answered 401: the member revoked the app, or the token was cancelled


class Connection(BaseModel):
    """One person's read-only grant on one network. `access_token` is plain in memory, sealed at rest."""

    id: str  # tenant/ambassador/network
    tenant: str
    ambassador_id: str
    network: str
    member_id: str = Field(description="The network's id of the member (LinkedIn OpenID `sub`)")
    access_token: str
    scopes: list[str]
    connected_at: datetime
    expires_at: datetime
    status: ConnectionStatus = ConnectionStatus.ACTIVE
    version: int = 1


class Authorization(BaseModel):
    """A started authorization: the `state` we sent and the PKCE verifier, until the callback (10 minutes)."""

    id: str  # the state itself: random, 256 bits
    tenant: str
    ambassador_id: str
    network: str
    code_verifier: str
    redirect_uri: str
    created_at: datetime
    expires_at: datetime


class PostStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"  # its connection lapsed: resumes when the person reconnects
    FINISHED = "finished"  # no change for the whole tail of the schedule


class Delta(BaseModel):
    """An increase of one metric's total, to be reported exactly once.

    `id` is deterministic from share, metric and the observed total (`<share>:<metric>:<total>`), so a
    re-poll, a crash after publishing, or a replay yields the same engagement id and counts once.
    """

    id: str
    metric: str
    kind: EngagementKind
    count: int = Field(gt=0)
    total: int
    observed_at: datetime


class TrackedPost(BaseModel):
    """A share's post on a network, polled on a schedule; `high_water` is the highest total reported per metric."""

    id: str  # tenant/share_id/source
    tenant: str
    share_id: str
    ambassador_id: str
    network: str
    source: str  # linkedin, x or self-reported: also the `source` of its engagement events
    post_ref: str  # urn:li:share:..., urn:li:ugcPost:... or an X post id; empty for self-reported
    linked_at: datetime
    last_change_at: datetime
    next_poll_at: datetime | None  # None when finished (or self-reported)
    status: PostStatus = PostStatus.ACTIVE
    high_water: dict[str, int] = Field(default_factory=dict)
    last_seen: dict[str, int] = Field(default_factory=dict)
    pending: list[Delta] = Field(default_factory=list)  # written before they are reported (see poller)
    failures: int = 0  # consecutive 429s or network errors: the backoff grows with it
    polls: int = 0
    version: int = 1


class LinkedInApp(BaseModel):
    """The tenant's LinkedIn app (Developer Portal): client id and secret, and our registered redirect URL."""

    tenant: str
    client_id: str
    client_secret: str
    redirect_uri: str
    updated_at: datetime


class XApp(BaseModel):
    """The tenant's X app credential (app-only bearer token) and its daily request budget (X bills per request)."""

    tenant: str
    bearer_token: str
    daily_request_budget: int
    updated_at: datetime
