"""HTTP request and response models (the event contracts live in advocacy_common.events)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, ClassVar, Generic, Literal, Self, TypeVar

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from advocacy_common.bounded import BoundedInput, SaneDate, SaneDatetime
from advocacy_common.events import Network, Objective, Persona

from .models import Status, check_language, check_web_url, normalize_labels, to_stored_time

T = TypeVar("T")
TITLE_LENGTH = {"min_length": 1, "max_length": 200}


class StrictInput(BoundedInput):
    """A misspelt field is an error, not silently ignored input; strings and dates are bounded."""


class MediaIn(StrictInput):
    url: str = Field(description="Absolute http(s) URL of the image, video or document")
    kind: Literal["image", "video", "document"] = "image"
    alt: str | None = Field(default=None, max_length=500, description="Alternative text")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_web_url(value)


class AudienceIn(StrictInput):
    """Who the item is for; an empty list means anyone on that axis."""

    teams: list[str] = Field(default_factory=list, max_length=100)
    locations: list[str] = Field(default_factory=list, max_length=100)
    languages: list[str] = Field(default_factory=list, max_length=20)
    personas: list[Persona] = Field(default_factory=list)
    topics: list[str] = Field(default_factory=list, max_length=50, description=(
        "Only ambassadors who follow one of these topics (in their profile) see the item; the item's own "
        "`topics` describe it and rank it in feeds, they do not target"))

    @field_validator("teams", "locations", "topics")
    @classmethod
    def _labels(cls, values: list[str]) -> list[str]:
        return normalize_labels(values)

    @field_validator("languages")
    @classmethod
    def _languages(cls, values: list[str]) -> list[str]:
        return [check_language(value) for value in normalize_labels(values)]


class PartialUpdate(StrictInput):
    """A PATCH body: fields left out stay as they are; only `nullable` ones may be sent as null."""

    nullable: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name not in cls.nullable:
            raise ValueError("may not be null")
        return value


class ContentRules(StrictInput):
    """Field rules shared by creation, proposal and partial update."""

    @field_validator("link_url", check_fields=False)
    @classmethod
    def _link(cls, value: str | None) -> str | None:
        return None if value is None else check_web_url(value)

    @field_validator("language", check_fields=False)
    @classmethod
    def _language(cls, value: str | None) -> str | None:
        return None if value is None else check_language(value.lower())

    @field_validator("topics", check_fields=False)
    @classmethod
    def _topics(cls, values: list[str] | None) -> list[str] | None:
        return None if values is None else normalize_labels(values)

    @field_validator("networks", check_fields=False)
    @classmethod
    def _networks(cls, values: list[Network] | None) -> list[Network] | None:
        return None if values is None else list(dict.fromkeys(values))

    @field_validator("suggested_texts", check_fields=False)
    @classmethod
    def _texts(cls, texts: dict[Network, str] | None) -> dict[Network, str] | None:
        if texts is not None and any(not text.strip() for text in texts.values()):
            raise ValueError("a suggested text must not be empty")
        return texts

    @field_validator("publish_at", "expires_at", check_fields=False)
    @classmethod
    def _times(cls, value: datetime | None) -> datetime | None:
        return None if value is None else to_stored_time(value)


class ContentIn(ContentRules):
    campaign_id: str = Field(min_length=1, max_length=100)
    title: str = Field(**TITLE_LENGTH)
    link_url: str = Field(description="http or https only")
    media: list[MediaIn] = Field(default_factory=list, max_length=20)
    suggested_texts: dict[Network, str] = Field(default_factory=dict,
                                                description="Per network; within the network's length limit")
    topics: list[str] = Field(default_factory=list, max_length=20)
    language: str = Field(description="Language tag such as en or fr-CA")
    audience: AudienceIn = Field(default_factory=AudienceIn)
    networks: list[Network] = Field(min_length=1, description="Networks the item may be shared on")
    publish_at: SaneDatetime | None = Field(default=None, description="Required before review")
    expires_at: SaneDatetime | None = None


class ContentPatch(ContentRules, PartialUpdate):
    """Only the fields sent change; `null` clears publish_at or expires_at."""

    nullable: ClassVar[frozenset[str]] = frozenset({"publish_at", "expires_at"})

    title: str | None = Field(default=None, **TITLE_LENGTH)
    link_url: str | None = None
    media: list[MediaIn] | None = Field(default=None, max_length=20)
    suggested_texts: dict[Network, str] | None = None
    topics: list[str] | None = Field(default=None, max_length=20)
    language: str | None = None
    audience: AudienceIn | None = None
    networks: list[Network] | None = Field(default=None, min_length=1)
    publish_at: SaneDatetime | None = None
    expires_at: SaneDatetime | None = None


class Comment(StrictInput):
    comment: str | None = Field(default=None, max_length=2000)


class Rejection(StrictInput):
    comment: str = Field(min_length=1, max_length=2000, description="Why, for the author")


class HistoryEntry(BaseModel):
    action: str
    status: Status
    by: str
    at: datetime
    comment: str | None = None


class FromDomain(BaseModel):
    @classmethod
    def from_domain(cls, entity: BaseModel) -> Self:
        """The HTTP view of a domain value: the fields this model declares, by name."""
        return cls.model_validate(entity.model_dump())


class PublishedContentOut(FromDomain):
    """What an ambassador sees of a published item: no workflow, no names."""

    id: str
    campaign_id: str
    title: str
    link_url: str
    media: list[dict[str, Any]]
    suggested_texts: dict[str, str]
    topics: list[str]
    language: str
    networks: list[str]
    publish_at: datetime | None
    expires_at: datetime | None


class ContentOut(PublishedContentOut):
    """An item as editors and reviewers see it, with its workflow history."""

    audience: dict[str, list[str]]
    status: Status
    version: int
    created_by: str
    created_at: datetime
    updated_at: datetime
    proposed_by: str | None = None
    published_at: datetime | None = None
    retired_at: datetime | None = None
    retired_reason: str | None = None
    history: list[HistoryEntry]


class CampaignIn(StrictInput):
    name: str = Field(**TITLE_LENGTH)
    objective: Objective = Field(description="awareness, leads or talent (employer brand)")
    starts_on: SaneDate
    ends_on: SaneDate
    disclosure_line: str | None = Field(default=None, min_length=1, max_length=100,
                                        description="e.g. a hashtag every suggested and shared text must carry")


class CampaignPatch(PartialUpdate):
    nullable: ClassVar[frozenset[str]] = frozenset({"disclosure_line"})

    name: str | None = Field(default=None, **TITLE_LENGTH)
    objective: Objective | None = None
    starts_on: SaneDate | None = None
    ends_on: SaneDate | None = None
    disclosure_line: str | None = Field(default=None, min_length=1, max_length=100,
                                        description="null removes the disclosure line")


class CampaignOut(FromDomain):
    id: str
    name: str
    objective: Objective
    starts_on: date
    ends_on: date
    disclosure_line: str | None
    version: int
    created_by: str
    created_at: datetime
    updated_at: datetime


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


class CalendarEntry(FromDomain):
    id: str
    title: str
    status: Status
    campaign_id: str
    publish_at: datetime
    expires_at: datetime | None
    networks: list[str]


class CalendarDay(BaseModel):
    date: date
    items: list[CalendarEntry]


class Calendar(BaseModel):
    start: date
    end: date
    days: list[CalendarDay] = Field(description="Days that have scheduled items, in order")


class TenantSettingsIn(StrictInput):
    four_eyes: bool = Field(description="When true, nobody approves an item they wrote or edited")


class TenantSettingsOut(FromDomain):
    four_eyes: bool
    version: int
