"""HTTP bodies of the connector endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from ..schemas import Body


class ConnectionStarted(BaseModel):
    authorization_url: str = Field(description="Open it in the browser: LinkedIn's consent page (read-only scopes)")
    state: str = Field(description="Comes back on the redirect; send it to the callback with the code")
    expires_at: datetime = Field(description="Complete the callback before this")


class ConnectionCallback(Body):
    code: str = Field(min_length=1, max_length=2000, description="The `code` LinkedIn put on the redirect URL")
    state: str = Field(min_length=1, max_length=200, description="The `state` LinkedIn put on the redirect URL")


class ConnectionOut(BaseModel):
    network: str
    status: Literal["active", "expired", "revoked"]
    scopes: list[str]
    connected_at: datetime
    expires_at: datetime = Field(description="When the network's token lapses (LinkedIn: 60 days after consent)")
    expires_soon: bool = Field(description="Within the warning period (7 days by default), or lapsed: reconnect")
    reconnect_url: str = Field(description="POST here (with your token) to get a new authorization URL")


class ConnectionList(BaseModel):
    items: list[ConnectionOut]
    next_cursor: str | None = None


class LinkPost(Body):
    post_url: str = Field(min_length=1, max_length=2000, description="The address of your post on the network")


class SelfReported(Body):
    """The totals the network shows for your post (not increases): what it displays today."""

    impressions: int | None = Field(default=None, ge=0, le=1_000_000_000)
    members_reached: int | None = Field(default=None, ge=0, le=1_000_000_000)
    reactions: int | None = Field(default=None, ge=0, le=1_000_000_000)
    comments: int | None = Field(default=None, ge=0, le=1_000_000_000)
    reshares: int | None = Field(default=None, ge=0, le=1_000_000_000)


class TrackedPostOut(BaseModel):
    share_id: str
    source: str = Field(description="linkedin, x or self-reported: the `source` of its engagement events")
    post_ref: str = Field(description="The post's URN (LinkedIn) or id (X); empty for self-reported figures")
    status: Literal["active", "paused", "finished"]
    next_poll_at: datetime | None
    last_change_at: datetime
    polls: int
    totals: dict[str, int] = Field(description="The last totals seen (a total may have gone down)")
    counted: dict[str, int] = Field(description="The highest totals counted: what the metrics add up to")


class LinkedInAppIn(Body):
    client_id: str = Field(min_length=1, max_length=200)
    client_secret: str = Field(min_length=1, max_length=500)
    redirect_uri: str = Field(min_length=8, max_length=2000, pattern=r"^https?://",
                              description="Exactly as registered in the LinkedIn app's Auth settings")


class XAppIn(Body):
    bearer_token: str = Field(min_length=1, max_length=2000, description="The X app's app-only bearer token")
    daily_request_budget: int = Field(default=500, ge=0, le=1_000_000, description="Requests per UTC day, at most")


class NetworkAppsOut(BaseModel):
    linkedin: dict | None = Field(description="client_id, redirect_uri, updated_at (never the secret)")
    x: dict | None = Field(description="daily_request_budget, updated_at (never the token)")
