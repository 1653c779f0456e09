"""Engagement: clicks on tracked links and connectors' reports; UTM, bots, visitor hashes, signatures."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from crawlerdetect import CrawlerDetect
from pydantic import BaseModel

from advocacy_common.envelope import Envelope
from advocacy_common.events import ConversionType, EngagementKind, EngagementReceived

from .sharing import Share, TrackedLink

ENGAGEMENT_NAMESPACE = uuid.UUID("0b7e4a52-31c6-4f0e-9a55-6a4d2f1c9e30")


def with_utm(url: str, *, network: str, campaign_id: str, code: str) -> str:
    """The content's link with UTM parameters, keeping any query it already has."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not k.startswith("utm_")]
    query += [("utm_source", network), ("utm_medium", "employee_advocacy"), ("utm_campaign", campaign_id),
              ("utm_content", code)]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


# Link-preview fetchers crawlerdetect does not know (checked against its 0.4 patterns). XING's is kept even
# though crawlerdetect knows it today: it is the preview fetcher we met first, and it must never count.
_OUR_PREVIEW_BOTS = re.compile(r"xing-contenttabreceiver|microsoft preview|microsoftpreview|teamsbot|"
                               r"msteams preview", re.IGNORECASE)
_CRAWLERS = CrawlerDetect()


def is_link_preview_bot(user_agent: str | None) -> bool:
    """Link-preview fetchers and crawlers: redirected like anyone, but not counted as clicks.

    A request without a user agent is no person's browser either.
    """
    if not user_agent or not user_agent.strip():
        return True
    return bool(_OUR_PREVIEW_BOTS.search(user_agent)) or _CRAWLERS.isCrawler(user_agent)


def visitor_hash(salt: str, code: str, client_ip: str, user_agent: str) -> str:
    """Who clicked, as a salted hash scoped to one link: counts unique visitors, never stores an IP."""
    return hashlib.sha256(f"{salt}\x1f{code}\x1f{client_ip}\x1f{user_agent}".encode()).hexdigest()


def engagement_id(tenant: str, source: str, source_event_id: str) -> str:
    """Deterministic: the same report from the same source is always the same engagement."""
    return str(uuid.uuid5(ENGAGEMENT_NAMESPACE, f"{tenant}\x1f{source}\x1f{source_event_id}"))


def new_connector_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int, raw_body: bytes) -> str:
    """The `X-Advocacy-Signature` value a connector sends: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + raw_body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


class SignatureRejected(Exception):
    pass


def verify_signature(secret: str, header: str | None, raw_body: bytes, now: datetime, tolerance_seconds: int) -> None:
    """Raise SignatureRejected unless the header signs this body within the time window."""
    if not header:
        raise SignatureRejected("The X-Advocacy-Signature header is missing.")
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        fields.setdefault(name, []).append(value)
    raw_timestamp = fields.get("t", [""])[0]
    # At most 12 digits (until the year 33658): a longer number cannot be near now, and a huge one would
    # overflow the float arithmetic below.
    if not (raw_timestamp.isascii() and raw_timestamp.isdigit() and len(raw_timestamp) <= 12):
        raise SignatureRejected("The signature has no valid timestamp t=<unix seconds>.")
    timestamp = int(raw_timestamp)
    if abs(now.timestamp() - timestamp) > tolerance_seconds:
        raise SignatureRejected(f"The signature timestamp is more than {tolerance_seconds} seconds away from now.")
    expected = sign(secret, timestamp, raw_body).split("v1=", 1)[1]
    # Several v1 values are accepted, so a connector can sign with an old and a new secret while rotating.
    if not any(hmac.compare_digest(expected, candidate) for candidate in fields.get("v1", [])):
        raise SignatureRejected("The signature does not match the body.")


# --- domain types ------------------------------------------------------------------------------

class Click(BaseModel):
    """One counted click on a tracked link (its event rides with it); never the visitor's IP."""

    id: str
    tenant: str
    code: str
    at: datetime


class Connector(BaseModel):
    """A tool that reports engagement, signing each report with its secret."""

    id: str
    tenant: str
    name: str
    secret: str
    created_at: datetime


class ReportSource(BaseModel):
    """Who reports: `key` scopes the report ids (a webhook connector's id), `name` is the events' `source`."""

    key: str
    name: str


class Observation(BaseModel):
    """What a connector saw about one post, in the form every connector hands it to ingestion.

    `id` is the connector's own id of the observation (replays of it are refused); the post is named by
    one of `share_id`, `post_url` or `tracked_link_code`; a conversion names its `conversion_type` and its
    tracked link.
    """

    id: str
    kind: EngagementKind
    count: int
    occurred_at: datetime
    share_id: str | None = None
    post_url: str | None = None
    tracked_link_code: str | None = None
    conversion_type: ConversionType | None = None


class Report(BaseModel):
    """A connector's report as received: its event is kept only until Kafka acknowledged it."""

    id: str
    tenant: str
    connector_id: str
    source_event_id: str
    fingerprint: str
    engagement_id: str
    acknowledged: bool = False
    envelope: Envelope | None = None
    received_at: datetime


def attribution_of_link(link: TrackedLink) -> dict[str, Any]:
    """Who and what a tracked link stands for, so consumers need no join."""
    return {"share_id": link.confirmed_share_id, "content_id": link.content_id, "campaign_id": link.campaign_id,
            "ambassador_id": link.ambassador_id, "team_id": link.team_id, "network": link.network}


def attribution_of_share(share: Share) -> dict[str, Any]:
    return {"share_id": share.id, "content_id": share.content_id, "campaign_id": share.campaign_id,
            "ambassador_id": share.ambassador_id, "team_id": share.team_id, "network": share.network.value}


def engagement_received(tenant: str, attribution: dict[str, Any], *, kind: EngagementKind, count: int, source: str,
                        source_event_id: str, occurred_at: datetime, conversion_type: ConversionType | None = None,
                        unique_visitor: bool = False, self_reported: bool = False) -> EngagementReceived:
    return EngagementReceived(engagement_id=engagement_id(tenant, source, source_event_id), kind=kind, count=count,
                              occurred_at=occurred_at, source=source, source_event_id=source_event_id,
                              conversion_type=conversion_type, unique_visitor=unique_visitor,
                              self_reported=self_reported, **attribution)
