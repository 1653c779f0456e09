"""HTTP request and response bodies (never the event classes)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from advocacy_common.bounded import MAX_FIELD_CHARS, BoundedInput, SaneDatetime
from advocacy_common.events import ConversionType, Network


class Body(BoundedInput):
    """Request bodies: unknown fields refused, every string bounded (see advocacy_common.bounded)."""


class FeedItem(BaseModel):
    content_id: str
    campaign_id: str
    title: str
    link_url: str
    topics: list[str]
    language: str
    networks: list[str] = Field(description="Networks of this content that you use")
    suggested_texts: dict[str, str]
    disclosure_line: str | None = Field(description="The campaign's disclosure line (see `disclosure_lines`)")
    disclosure_lines: list[str] = Field(description="Every line your text must carry to be accepted: the "
                                        "campaign's and, when the charter requires one, the charter's")
    publish_at: datetime | None
    expires_at: datetime | None
    score: float = Field(description="Topic affinity blended with freshness; the feed is sorted by it")


class Feed(BaseModel):
    items: list[FeedItem]
    next_cursor: str | None = None
    reason: str | None = Field(default=None, description="Why the feed is empty on purpose: opted_out, "
                               "charter_pending, not_opted_in or erased")
    message: str | None = None


class PrepareShare(Body):
    content_id: str = Field(min_length=1, max_length=200)
    network: Network
    text: str = Field(min_length=1, max_length=70000, description="Your own words; the disclosure line if required")
    planned_at: SaneDatetime | None = Field(default=None, description="When you intend to post (default: now); "
                                        "must be outside your quiet hours")


class ConfirmShare(Body):
    post_url: str | None = Field(default=None, max_length=2000, description="The URL of your post, if you have it")


class Share(BaseModel):
    share_id: str
    status: Literal["prepared", "confirmed"]
    content_id: str
    campaign_id: str
    ambassador_id: str
    network: Network
    text: str | None
    tracked_link: str
    tracked_link_code: str
    share_intent_url: str | None = Field(description="Open it to post yourself (LinkedIn: share-offsite with the "
                                         "tracked link); null where the network has no web intent")
    share_composer_url: str | None = Field(default=None, description="LinkedIn only: the composer prefilled with "
                                           "your text and the tracked link (an undocumented LinkedIn address)")
    share_text: str | None = Field(default=None, description="Your text and the tracked link, to copy and paste")
    recommended_at: datetime = Field(description="A slot that spreads this content's shares over time")
    similarity_to_suggested: float
    similarity_to_colleagues: float
    personalized: bool
    post_url: str | None = None
    created_at: datetime
    confirmed_at: datetime | None = None


class SharePage(BaseModel):
    items: list[Share]
    next_cursor: str | None = None


class CommentsAwaitingReply(BaseModel):
    share_id: str
    content_id: str
    network: str
    post_url: str | None
    comments: int
    replies: int
    awaiting: int


class CommentsAwaitingReplyPage(BaseModel):
    items: list[CommentsAwaitingReply]
    next_cursor: str | None = None


class NewConnector(Body):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$",
                      description="Unique in your tenant; also the `source` of the engagement it reports")


class Connector(BaseModel):
    connector_id: str
    name: str
    created_at: datetime
    engagement_webhook: str
    conversion_postback: str
    secret: str | None = Field(default=None, description="Shown only in the creation response: keep it safe")


class ConnectorPage(BaseModel):
    items: list[Connector]
    next_cursor: str | None = None


class EngagementReport(Body):
    """One report of a connector about one post; `id` is the connector's own id of the report."""

    # Connectors may send more than we read: ignored, but still bounded.
    model_config = ConfigDict(extra="ignore", str_max_length=MAX_FIELD_CHARS)

    id: str = Field(min_length=1, max_length=200)
    kind: Literal["impression", "members_reached", "reaction", "comment", "comment_reply", "reshare"]
    count: int = Field(default=1, ge=0, le=1_000_000_000, description="The increase since your last report, "
                       "1 to the bound of its kind (impressions, members reached 10,000,000; reactions, reshares 1,000,000; comments, "
                       "replies 100,000)")
    occurred_at: SaneDatetime = Field(description="With a time zone; not before the post was confirmed, not in "
                                      "the future (5 minutes of clock skew)")
    share_id: str | None = Field(default=None, max_length=200)
    post_url: str | None = Field(default=None, max_length=2000)
    tracked_link_code: str | None = Field(default=None, max_length=50)


class ConversionReport(Body):
    model_config = ConfigDict(extra="ignore", str_max_length=MAX_FIELD_CHARS)

    id: str = Field(min_length=1, max_length=200)
    tracked_link_code: str = Field(min_length=1, max_length=50)
    conversion_type: ConversionType
    count: int = Field(default=1, ge=0, le=1_000_000, description="1 to 10,000")
    occurred_at: SaneDatetime = Field(description="With a time zone; not before the post was confirmed, not in "
                                      "the future (5 minutes of clock skew)")


class ReportAccepted(BaseModel):
    engagement_id: str
    status: Literal["accepted"] = "accepted"

