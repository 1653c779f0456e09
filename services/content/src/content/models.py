"""The content domain: its types, the editorial workflow, validation rules, targeting, event snapshots.

Pure rules on domain values; no I/O. The adapters store these types and the
service layer calls these rules, so that one function holds each rule.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

# An item's audience and media are the very values its snapshot events carry.
from advocacy_common.events import (
    AmbassadorProfile, Audience, ContentPublished, ContentRetired, ContentSnapshot, ContentUpdated, MediaRef,
    Network, Objective, Persona,
)

# Each network's limit on a post's text, in characters (what the network's composer accepts).
NETWORK_TEXT_LIMITS: dict[Network, int] = {
    Network.LINKEDIN: 3000,
    Network.X: 280,
    Network.FACEBOOK: 63206,
    Network.INSTAGRAM: 2200,
    Network.TIKTOK: 2200,
    Network.XING: 3000,
}
MAX_URL_LENGTH = 2048
LANGUAGE_TAG = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
# The proposer's name is personal data: after an erasure only this stays.
ERASED = "erased"
EVENT_SOURCE = "/advocacy/content"  # the CloudEvents source of everything content publishes
# In the stored targeting keys, an axis left empty by the editor matches everybody.
ANYONE = "*"
AUDIENCE_AXES = ("teams", "locations", "languages", "personas", "topics")
# Who the history names for the moves the worker makes on its own.
SCHEDULER = "scheduler"


class Status(StrEnum):
    DRAFT = "draft"
    IN_REVIEW = "in_review"
    APPROVED = "approved"
    PUBLISHED = "published"
    RETIRED = "retired"


class Action(StrEnum):
    CREATE = "create"
    PROPOSE = "propose"
    EDIT = "edit"
    SUBMIT = "submit"
    APPROVE = "approve"
    REJECT = "reject"
    WITHDRAW = "withdraw"
    PUBLISH = "publish"
    EXPIRE = "expire"
    CAMPAIGN_CHANGE = "campaign_change"


class RetireReason(StrEnum):
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"


# action -> (statuses it may start from, status it leads to)
TRANSITIONS: dict[Action, tuple[frozenset[Status], Status]] = {
    Action.SUBMIT: (frozenset({Status.DRAFT}), Status.IN_REVIEW),
    Action.APPROVE: (frozenset({Status.IN_REVIEW}), Status.APPROVED),
    Action.REJECT: (frozenset({Status.IN_REVIEW}), Status.DRAFT),
    Action.WITHDRAW: (frozenset({Status.DRAFT, Status.IN_REVIEW, Status.APPROVED, Status.PUBLISHED}),
                      Status.RETIRED),
    Action.PUBLISH: (frozenset({Status.APPROVED}), Status.PUBLISHED),
    Action.EXPIRE: (frozenset({Status.APPROVED, Status.PUBLISHED}), Status.RETIRED),
}
# Campaign fields that travel in every snapshot: a change re-announces the published items.
SNAPSHOT_CAMPAIGN_FIELDS = ("objective", "disclosure_line")
EDITABLE = frozenset({Status.DRAFT, Status.IN_REVIEW, Status.APPROVED, Status.PUBLISHED})


class RuleViolation(ValueError):
    """Input that breaks a rule; `field` names the offending field for the 422."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class InvalidTransition(Exception):
    def __init__(self, action: Action, status: Status):
        super().__init__(f"Cannot {action} an item that is {status}.")
        self.action = action
        self.status = status


class KeyUsedForAnotherAction(Exception):
    """A workflow step came with an Idempotency-Key that an earlier, different step used."""


class FourEyesViolation(Exception):
    """A reviewer tried to approve an item they wrote while the tenant requires a second person."""


def next_status(action: Action, current: Status) -> Status:
    allowed_from, target = TRANSITIONS[action]
    if current not in allowed_from:
        raise InvalidTransition(action, current)
    return target


def status_after_edit(current: Status) -> Status:
    """An edit keeps the status, except that approved content goes back to review:
    nothing a second person has not seen may publish itself."""
    if current not in EDITABLE:
        raise InvalidTransition(Action.EDIT, current)
    return Status.IN_REVIEW if current is Status.APPROVED else current


def check_approver(approver: str, authors: Iterable[str], four_eyes: bool) -> None:
    if four_eyes and approver in set(authors):
        raise FourEyesViolation("Four-eyes rule: you cannot approve an item you wrote or edited.")


# --- domain types -------------------------------------------------------------------

class DomainModel(BaseModel):
    # Immutable values: a change is a new value (`model_copy(update=...)`), saved by a repository.
    model_config = ConfigDict(frozen=True, extra="ignore")


class Campaign(DomainModel):
    id: str
    tenant: str
    name: str
    objective: Objective
    starts_on: date
    ends_on: date
    disclosure_line: str | None = None
    version: int = 1
    created_by: str
    created_at: datetime
    updated_at: datetime
    updated_by: str | None = None
    # Set by a change of a snapshot field until the published items are re-announced (survives a crash).
    refresh_published: bool = False


class HistoryEntry(DomainModel):
    action: Action
    status: Status
    by: str
    at: datetime
    comment: str | None = None
    idempotency_key: str | None = None


class ContentItem(DomainModel):
    id: str
    tenant: str
    campaign_id: str
    title: str
    link_url: str
    media: list[MediaRef] = Field(default_factory=list)
    suggested_texts: dict[Network, str] = Field(default_factory=dict)
    topics: list[str] = Field(default_factory=list)
    language: str
    audience: Audience = Field(default_factory=Audience)
    networks: list[Network]
    publish_at: datetime | None = None
    expires_at: datetime | None = None
    status: Status
    version: int = 1
    created_by: str
    created_at: datetime
    updated_at: datetime
    updated_by: str | None = None
    authors: list[str]
    proposed_by: str | None = None
    history: list[HistoryEntry]
    published_at: datetime | None = None
    retired_at: datetime | None = None
    retired_reason: RetireReason | None = None
    # The campaign version its last snapshot carried (to re-announce after a campaign change).
    campaign_version: int | None = None

    def moved(self, action: Action, status: Status, by: str, at: datetime, *, comment: str | None = None,
              key: str | None = None, **changes: object) -> ContentItem:
        """The item after a workflow step: new status, the step in its history, and `changes`."""
        entry = HistoryEntry(action=action, status=status, by=by, at=at, comment=comment or None,
                             idempotency_key=key)
        return self.model_copy(update={**changes, "status": status, "updated_at": at,
                                       "history": [*self.history, entry]})

    def step_done_with_key(self, action: Action, key: str) -> bool:
        """True when this Idempotency-Key already did this action; KeyUsedForAnotherAction when it did another."""
        for entry in self.history:
            if entry.idempotency_key == key:
                if entry.action is not action:
                    raise KeyUsedForAnotherAction(key)
                return True
        return False

    def anonymised(self, person: str) -> ContentItem:
        """The item with an erased person's id replaced everywhere it was recorded."""
        def swap(value: str | None) -> str | None:
            return ERASED if value == person else value

        return self.model_copy(update={
            "created_by": swap(self.created_by),
            "proposed_by": swap(self.proposed_by),
            "updated_by": swap(self.updated_by),
            "authors": list(dict.fromkeys(ERASED if author == person else author for author in self.authors)),
            "history": [entry.model_copy(update={"by": swap(entry.by)}) for entry in self.history],
        })


class TenantSettings(DomainModel):
    tenant: str
    four_eyes: bool = True
    version: int = 0  # 0: never saved, the defaults


class TargetingProfile(DomainModel):
    """The non-identifying attributes of an ambassador that targeting uses."""

    persona: Persona | None = None
    team_id: str | None = None
    location: str | None = None
    languages: list[str] = Field(default_factory=list)
    topics: list[str] = Field(default_factory=list)
    # None: a projection written before networks were kept (no constraint until the next profile event).
    networks: list[Network] | None = None

    @classmethod
    def of(cls, profile: AmbassadorProfile) -> TargetingProfile:
        return cls(persona=profile.persona, team_id=profile.team_id, location=profile.location,
                   languages=list(profile.languages), topics=list(profile.topics),
                   networks=[presence.network for presence in profile.networks])


class AmbassadorProjection(DomainModel):
    """What content knows of an ambassador, from their events: may they propose and see, and for what."""

    tenant: str
    ambassador_id: str
    opted_in: bool = False
    profile: TargetingProfile | None = None
    erased: bool = False


@dataclass(frozen=True)
class ItemFilter:
    """The filters of the content list; None means 'any'."""

    status: Status | None = None
    campaign_id: str | None = None
    topic: str | None = None
    language: str | None = None
    publish_from: datetime | None = None
    publish_to: datetime | None = None


# --- validation of single values ----------------------------------------------------

def check_web_url(value: str) -> str:
    """Only absolute http(s) links with a host: no javascript:, data:, file: or relative links."""
    value = value.strip()
    if len(value) > MAX_URL_LENGTH:
        raise ValueError(f"must be at most {MAX_URL_LENGTH} characters")
    if any(ch.isspace() for ch in value):
        raise ValueError("must not contain spaces")
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http or https URL")
    return value


def check_language(value: str) -> str:
    if not LANGUAGE_TAG.match(value):
        raise ValueError("must be a language tag such as 'en' or 'fr-CA'")
    return value


def normalize_labels(values: Iterable[str]) -> list[str]:
    """Topics, teams and locations compare case-insensitively; keep one of each, in order."""
    seen: dict[str, None] = {}
    for value in values:
        label = value.strip().lower()
        if not label:
            raise ValueError("must not contain empty values")
        seen.setdefault(label, None)
    return list(seen)


def to_stored_time(value: datetime) -> datetime:
    """UTC at millisecond precision: what BSON keeps, so a value reads back equal."""
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


# --- rules across fields ------------------------------------------------------------

def check_content(item: ContentItem, campaign: Campaign) -> None:
    """Rules that involve several fields of an item and its campaign."""
    networks = set(item.networks)
    if not networks:
        raise RuleViolation("networks", "at least one network is required")
    for network, text in item.suggested_texts.items():
        field = f"suggested_texts.{network}"
        if network not in networks:
            raise RuleViolation(field, "this network is not among the allowed networks")
        limit = NETWORK_TEXT_LIMITS[network]
        if len(text) > limit:
            raise RuleViolation(field, f"is {len(text)} characters; {network} allows {limit}")
        disclosure = campaign.disclosure_line
        if disclosure and disclosure.lower() not in text.lower():
            raise RuleViolation(field, f"must carry the campaign's disclosure line {disclosure!r}")
    if item.publish_at is not None and not campaign.starts_on <= item.publish_at.date() <= campaign.ends_on:
        raise RuleViolation("publish_at", f"must fall within the campaign ({campaign.starts_on} to "
                                          f"{campaign.ends_on})")
    if item.expires_at is not None and item.publish_at is not None and item.expires_at <= item.publish_at:
        raise RuleViolation("expires_at", "must be after publish_at")


def check_campaign_period(starts_on: date, ends_on: date) -> None:
    if ends_on < starts_on:
        raise RuleViolation("ends_on", "must not be before starts_on")


def check_ready_for_review(item: ContentItem) -> None:
    """What a reviewer needs to see before an item can be scheduled."""
    if item.publish_at is None:
        raise RuleViolation("publish_at", "is required before the item goes to review")
    if not item.suggested_texts:
        raise RuleViolation("suggested_texts", "at least one suggested text is required before review")


def with_author(people: list[str], person: str) -> list[str]:
    return people if person in people else [*people, person]


# --- targeting ----------------------------------------------------------------------

# The rule distribution's feed applies too (its `targeting_misses`), so that an item is seen by the same
# people here and there:
# - on every audience axis (teams, locations, languages, personas, topics) an empty list is "anyone";
#   otherwise the ambassador's value, or one of their values, must be listed (case-insensitive);
# - an ambassador who lists languages only gets items in one of them;
# - the item allows at least one network of the ambassador's profile.
# The item's own `topics` describe it (list filter, the feed's ranking): they do not target.

def targeting_keys(audience: Audience) -> dict[str, list[str]]:
    """The stored form the feed query matches: an empty axis becomes 'anyone'."""
    return {axis: [str(value) for value in getattr(audience, axis)] or [ANYONE] for axis in AUDIENCE_AXES}


def profile_values(profile: TargetingProfile | None) -> dict[str, list[str]]:
    """An ambassador's value on each axis, lower-cased like the audience labels."""
    profile = profile or TargetingProfile()
    return {
        "teams": [profile.team_id.strip().lower()] if profile.team_id else [],
        "locations": [profile.location.strip().lower()] if profile.location else [],
        "languages": [language.strip().lower() for language in profile.languages],
        "personas": [str(profile.persona)] if profile.persona else [],
        "topics": [topic.strip().lower() for topic in profile.topics],
    }


def is_targeted(item: ContentItem, profile: TargetingProfile | None) -> bool:
    """The audience admits the ambassador on every axis, the item is in a language they read, on a network
    they use (see the rule above)."""
    keys, values = targeting_keys(item.audience), profile_values(profile)
    if not all(ANYONE in keys[axis] or set(keys[axis]) & set(values[axis]) for axis in AUDIENCE_AXES):
        return False
    if values["languages"] and item.language not in values["languages"]:
        return False
    networks = profile.networks if profile else None
    return networks is None or bool(set(networks) & set(item.networks))


# --- events ---------------------------------------------------------------------------

EVENT_ID_NAMESPACE = uuid.UUID("0f5b8a52-3c1e-4d7a-9a57-5c2e8f1d6b40")


def event_id(tenant: str, event: ContentSnapshot | ContentRetired) -> str:
    """The same transition of the same item at the same version always has the same event id.

    Two writers that both believe they made a transition (a retried write, or two
    schedulers on a server whose conditional updates are not atomic, as FerretDB 1.x)
    then produce one event as far as consumers, who dedupe by id, can tell.
    """
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{tenant}/{event.content_id}/{event.version}/{event.type_name}"))


def snapshot_fields(item: ContentItem, campaign: Campaign, version: int) -> dict[str, object]:
    return {
        "content_id": item.id,
        "version": version,
        "campaign_id": item.campaign_id,
        "objective": campaign.objective,
        "title": item.title,
        "link_url": item.link_url,
        "media": list(item.media),
        "suggested_texts": dict(item.suggested_texts),
        "topics": list(item.topics),
        "language": item.language,
        "audience": item.audience,
        "networks": list(item.networks),
        "disclosure_line": campaign.disclosure_line,
        "publish_at": item.publish_at,
        "expires_at": item.expires_at,
    }


def published_event(item: ContentItem, campaign: Campaign, version: int) -> ContentSnapshot:
    return ContentPublished(**snapshot_fields(item, campaign, version))


def updated_event(item: ContentItem, campaign: Campaign, version: int) -> ContentSnapshot:
    return ContentUpdated(**snapshot_fields(item, campaign, version))


def retired_event(item: ContentItem, version: int, reason: RetireReason, at: datetime) -> ContentRetired:
    return ContentRetired(content_id=item.id, version=version, campaign_id=item.campaign_id,
                          reason=reason.value, retired_at=at)
