"""The event contracts between services (see shared/DESIGN.md).

Events are frozen pydantic models named in the past tense. Each class names its
CloudEvents type (`<entity>.<verb>.v<N>`) and its logical topic. A change of
contract adds optional fields or a new `vN+1` class published beside the old
one. Consumers ignore fields they don't know (`extra="ignore"`).

Events carry ids and non-identifying attributes, never names, e-mail addresses
or social-network handles: personal data stays in the ambassador service. One
exception, by the person's own choice: `AmbassadorProfile.leaderboard_name`, the
name they chose to show on the leaderboard, sent only while they appear on it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from . import topics as topic_names


class Network(StrEnum):
    LINKEDIN = "linkedin"
    X = "x"
    FACEBOOK = "facebook"
    INSTAGRAM = "instagram"
    TIKTOK = "tiktok"
    XING = "xing"


class Objective(StrEnum):
    AWARENESS = "awareness"
    LEADS = "leads"
    TALENT = "talent"


class Persona(StrEnum):
    EXPERT = "expert"
    REPORTER = "reporter"
    SUPPORTER = "supporter"
    TALENT = "talent"


class EngagementKind(StrEnum):
    IMPRESSION = "impression"
    # Unique members who saw the post (LinkedIn MEMBERS_REACHED): organic reach beside impressions.
    MEMBERS_REACHED = "members_reached"
    REACTION = "reaction"
    COMMENT = "comment"
    COMMENT_REPLY = "comment_reply"
    RESHARE = "reshare"
    CLICK = "click"
    CONVERSION = "conversion"


class ConversionType(StrEnum):
    APPLICATION = "application"
    DOWNLOAD = "download"
    LEAD = "lead"
    SIGN_UP = "sign_up"


class ContractModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", use_enum_values=False)


class Event(ContractModel):
    """Base of every integration event."""

    type_name: ClassVar[str]
    topic: ClassVar[str]
    # Charter events are keyed by tenant (DESIGN.md); others by their aggregate id.
    keyed_by_tenant: ClassVar[bool] = False

    def aggregate_id(self) -> str:
        raise NotImplementedError


# --- content -----------------------------------------------------------------

class MediaRef(ContractModel):
    url: str = Field(description="Where the media file is served")
    kind: str = Field(default="image", description="image, video or document")
    alt: str | None = Field(default=None, description="Alternative text")


class Audience(ContractModel):
    """Who a content item is for; an empty list means 'anyone' on that axis, otherwise the ambassador's
    value (team, location, one of their languages, persona, one of their topics) must be listed."""

    teams: list[str] = Field(default_factory=list)
    locations: list[str] = Field(default_factory=list)
    languages: list[str] = Field(default_factory=list)
    personas: list[Persona] = Field(default_factory=list)
    topics: list[str] = Field(default_factory=list, description="Topics of which the ambassador must follow one "
                              "(the item's own `topics` only rank it, they do not target)")


class ContentSnapshot(Event):
    """Everything distribution needs to suggest and check a share of one item."""

    content_id: str
    version: int = Field(description="Increases with every change; consumers keep the highest")
    campaign_id: str
    objective: Objective
    title: str
    link_url: str
    media: list[MediaRef] = Field(default_factory=list)
    suggested_texts: dict[Network, str] = Field(default_factory=dict)
    topics: list[str] = Field(default_factory=list)
    language: str
    audience: Audience = Field(default_factory=Audience)
    networks: list[Network]
    disclosure_line: str | None = Field(default=None, description="Campaign disclosure (e.g. a hashtag) that shared text must carry")
    publish_at: datetime
    expires_at: datetime | None = None

    topic: ClassVar[str] = topic_names.CONTENT

    def aggregate_id(self) -> str:
        return self.content_id


class ContentPublished(ContentSnapshot):
    type_name: ClassVar[str] = "content.published.v1"


class ContentUpdated(ContentSnapshot):
    type_name: ClassVar[str] = "content.updated.v1"


class ContentRetired(Event):
    type_name: ClassVar[str] = "content.retired.v1"
    topic: ClassVar[str] = topic_names.CONTENT

    content_id: str
    version: int
    campaign_id: str
    reason: str = Field(description="expired or withdrawn")
    retired_at: datetime

    def aggregate_id(self) -> str:
        return self.content_id


# --- ambassador ----------------------------------------------------------------

class NetworkPresence(ContractModel):
    network: Network
    audience_size: int = Field(ge=0, description="Followers or connections at the time of the event")


class QuietHours(ContractModel):
    start: str = Field(description="HH:MM local time")
    end: str = Field(description="HH:MM local time")


class SharingPreferences(ContractModel):
    max_shares_per_week: int = Field(default=3, ge=0, le=50)
    quiet_hours: QuietHours | None = None
    time_zone: str = "UTC"


class AmbassadorProfile(ContractModel):
    """Non-identifying attributes used for targeting and aggregation."""

    persona: Persona
    topics: list[str] = Field(default_factory=list)
    languages: list[str] = Field(default_factory=list)
    team_id: str | None = None
    location: str | None = None
    networks: list[NetworkPresence] = Field(default_factory=list)
    preferences: SharingPreferences = Field(default_factory=SharingPreferences)
    leaderboard_opt_in: bool = False
    leaderboard_name: str | None = Field(
        default=None, description="The name the person chose to show on the leaderboard; null unless "
                                  "leaderboard_opt_in (the only name an event carries, by the person's choice)")


class AmbassadorEvent(Event):
    topic: ClassVar[str] = topic_names.AMBASSADOR
    ambassador_id: str

    def aggregate_id(self) -> str:
        return self.ambassador_id


class AmbassadorOptedIn(AmbassadorEvent):
    type_name: ClassVar[str] = "ambassador.opted_in.v1"
    charter_version: int
    opted_in_at: datetime
    profile: AmbassadorProfile
    subject_key: str | None = Field(
        default=None,
        description="The pseudonym of the login the person's token carries (`ambassador_id_for(tenant, login)`), "
                    "so other services know whose token names this ambassador id. It equals `ambassador_id` for a "
                    "login's first holder; someone provisioned again after an erasure has a new ambassador id. "
                    "Absent: the ambassador id is the subject key.")


class AmbassadorProfileUpdated(AmbassadorEvent):
    type_name: ClassVar[str] = "ambassador.profile_updated.v1"
    updated_at: datetime
    profile: AmbassadorProfile


class AmbassadorOptedOut(AmbassadorEvent):
    type_name: ClassVar[str] = "ambassador.opted_out.v1"
    opted_out_at: datetime
    reason: str = Field(default="self", description="self or deactivated")


class AmbassadorErased(AmbassadorEvent):
    type_name: ClassVar[str] = "ambassador.erased.v1"
    erased_at: datetime


class CharterPublished(Event):
    type_name: ClassVar[str] = "charter.published.v1"
    topic: ClassVar[str] = topic_names.AMBASSADOR
    keyed_by_tenant: ClassVar[bool] = True

    charter_id: str
    version: int
    published_at: datetime
    disclosure_required: bool = False
    disclosure_line: str | None = None


class CharterAccepted(Event):
    type_name: ClassVar[str] = "charter.accepted.v1"
    topic: ClassVar[str] = topic_names.AMBASSADOR
    keyed_by_tenant: ClassVar[bool] = True

    ambassador_id: str
    charter_version: int
    accepted_at: datetime
    channel: str = "api"


class SignalReported(Event):
    type_name: ClassVar[str] = "signal.reported.v1"
    topic: ClassVar[str] = topic_names.AMBASSADOR

    signal_id: str
    ambassador_id: str
    url: str
    severity: str = Field(description="low, medium or high")
    reported_at: datetime

    def aggregate_id(self) -> str:
        return self.ambassador_id


class GdprExportRequested(Event):
    """A person (or an admin on their behalf) asked for everything held about them: each service answers
    with its part on the export topic. Carries ids only; requests older than a day are not answered."""

    type_name: ClassVar[str] = "gdpr.export_requested.v1"
    topic: ClassVar[str] = topic_names.AMBASSADOR

    export_id: str
    ambassador_id: str
    requested_at: datetime

    def aggregate_id(self) -> str:
        return self.ambassador_id


class GdprExportPartWritten(Event):
    """One page of one service's part of a GDPR export. PERSONAL DATA: it travels only on the export
    topic (`advocacy.gdpr-export`, short retention), which only the ambassador service consumes."""

    type_name: ClassVar[str] = "gdpr.export_part_written.v1"
    topic: ClassVar[str] = topic_names.GDPR_EXPORT

    export_id: str
    ambassador_id: str
    service: str = Field(description="content, distribution or metrics")
    page: int = Field(ge=1, description="1, 2, ... within this service's part")
    last: bool = Field(description="True on the service's last page: its part is complete")
    sections: dict[str, list[dict[str, Any]]] = Field(
        default_factory=dict, description="Records by kind (shares, tracked_links, ...); a page holds at most 100")
    written_at: datetime

    def aggregate_id(self) -> str:
        return self.export_id


# --- distribution ------------------------------------------------------------------

class PostShared(Event):
    type_name: ClassVar[str] = "post.shared.v1"
    topic: ClassVar[str] = topic_names.SHARE

    share_id: str
    content_id: str
    campaign_id: str
    ambassador_id: str
    team_id: str | None = None
    network: Network
    personalized: bool = Field(description="False when the text was a near-copy that was let through as flagged")
    similarity_to_suggested: float = Field(ge=0, le=1)
    similarity_to_colleagues: float = Field(ge=0, le=1)
    potential_reach: int = Field(ge=0, description="The ambassador's audience on that network at share time")
    tracked_link_code: str
    shared_at: datetime

    def aggregate_id(self) -> str:
        return self.ambassador_id


class EngagementReceived(Event):
    type_name: ClassVar[str] = "engagement.received.v1"
    topic: ClassVar[str] = topic_names.ENGAGEMENT

    engagement_id: str = Field(description="Stable id derived from source and source_event_id")
    kind: EngagementKind
    count: int = Field(ge=0)
    share_id: str | None = Field(default=None, description="None only for a click or conversion on a link whose share is not confirmed")
    content_id: str
    campaign_id: str | None = None
    ambassador_id: str
    team_id: str | None = None
    network: Network
    occurred_at: datetime
    source: str = Field(description="redirect, a connector name, or a postback")
    source_event_id: str
    conversion_type: ConversionType | None = None
    unique_visitor: bool = Field(default=False, description="For clicks: first visit of this visitor on this link")
    self_reported: bool = Field(default=False, description="Figures the employee or an admin entered from what "
                                "the network shows (networks without an API), not read from the network")

    def aggregate_id(self) -> str:
        return self.share_id or f"link:{self.content_id}:{self.ambassador_id}:{self.network}"


EVENT_CLASSES: tuple[type[Event], ...] = (
    ContentPublished, ContentUpdated, ContentRetired,
    AmbassadorOptedIn, AmbassadorProfileUpdated, AmbassadorOptedOut, AmbassadorErased,
    CharterPublished, CharterAccepted, SignalReported,
    PostShared, EngagementReceived, GdprExportRequested, GdprExportPartWritten,
)
REGISTRY: dict[str, type[Event]] = {cls.type_name: cls for cls in EVENT_CLASSES}


class UnknownEventType(LookupError):
    pass


def event_class(type_name: str) -> type[Event]:
    try:
        return REGISTRY[type_name]
    except KeyError:
        raise UnknownEventType(type_name) from None


def decode_data(type_name: str, data: dict[str, Any] | None) -> Event:
    return event_class(type_name).model_validate(data or {})
