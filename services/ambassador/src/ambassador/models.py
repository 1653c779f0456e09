"""Domain types and the pure rules of volunteering, consent, profiles and erasure; no I/O.

A person is one document: their directory entry (personal data), their
ambassador state, profile and consent history. Every rule takes a person and
returns a `Change` (the new person and the events it causes), so the state and
its events are written together in one single-document update.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from advocacy_common.events import (
    AmbassadorErased,
    AmbassadorOptedIn,
    AmbassadorOptedOut,
    AmbassadorProfile,
    AmbassadorProfileUpdated,
    CharterAccepted,
    Event,
    Network,
    NetworkPresence,
    Persona,
    QuietHours,
    SharingPreferences,
)

HH_MM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class DomainModel(BaseModel):
    # Enum values are stored as plain strings so documents round-trip through BSON.
    model_config = ConfigDict(frozen=True, use_enum_values=True, extra="ignore")


class Status(StrEnum):
    NOT_ENROLLED = "not_enrolled"  # in the directory, never opted in: not an ambassador
    OPTED_IN = "opted_in"
    OPTED_OUT = "opted_out"
    ERASED = "erased"


class ConsentKind(StrEnum):
    OPT_IN = "opt_in"
    CHARTER_ACCEPTANCE = "charter_acceptance"
    WITHDRAWAL = "withdrawal"


class OptOutReason(StrEnum):
    SELF = "self"
    DEACTIVATED = "deactivated"
    ERASED = "erased"


# --- directory ----------------------------------------------------------------------

class Email(DomainModel):
    value: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    type: str = "work"
    primary: bool = False


class DirectoryEntry(DomainModel):
    """What HR/IT provisioning tells us about an employee. Personal data: stays in this service."""

    user_name: str = Field(min_length=1, max_length=256)
    external_id: str | None = Field(default=None, max_length=256)
    given_name: str | None = Field(default=None, max_length=200)
    family_name: str | None = Field(default=None, max_length=200)
    display_name: str | None = Field(default=None, max_length=400)
    title: str | None = Field(default=None, max_length=200)
    emails: list[Email] = Field(default_factory=list, max_length=10)
    team_id: str | None = Field(default=None, max_length=200)
    location: str | None = Field(default=None, max_length=200)
    active: bool = True

    @field_validator("user_name")
    @classmethod
    def _no_surrounding_space(cls, value: str) -> str:
        if value != value.strip():
            raise ValueError("must not start or end with spaces")
        return value


def lookup_key(value: str | None) -> str | None:
    """userName and externalId match case-insensitively, as SCIM clients expect."""
    return value.casefold() if value is not None else None


# --- profile ------------------------------------------------------------------------

class NetworkAccount(DomainModel):
    network: Network
    handle: str = Field(min_length=1, max_length=200, description="Public handle or profile URL; never sent in events")
    audience_size: int = Field(default=0, ge=0, le=1_000_000_000)


class QuietHoursPreference(DomainModel):
    start: str = Field(description="HH:MM local time")
    end: str = Field(description="HH:MM local time")

    @field_validator("start", "end")
    @classmethod
    def _hh_mm(cls, value: str) -> str:
        if not HH_MM.match(value):
            raise ValueError("must be HH:MM (24 h)")
        return value


class Preferences(DomainModel):
    max_shares_per_week: int = Field(default=3, ge=0, le=50)
    quiet_hours: QuietHoursPreference | None = None
    time_zone: str = Field(default="UTC", max_length=64)

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a key no file system takes
            raise ValueError("is not an IANA time zone") from None
        return value


class Profile(DomainModel):
    persona: Persona = Persona.SUPPORTER
    topics: list[str] = Field(default_factory=list, max_length=50)
    languages: list[str] = Field(default_factory=list, max_length=20)
    team_id: str | None = Field(default=None, max_length=200)
    location: str | None = Field(default=None, max_length=200)
    networks: list[NetworkAccount] = Field(default_factory=list, max_length=10)
    preferences: Preferences = Field(default_factory=Preferences)
    leaderboard_opt_in: bool = Field(default=False, description="Off unless the person chooses to appear")
    leaderboard_name: str | None = Field(
        default=None, min_length=1, max_length=80,
        description="The name shown beside your figures on the leaderboard, only while you appear on it "
                    "(default: your directory display name)")

    @field_validator("topics", "languages")
    @classmethod
    def _distinct_words(cls, values: list[str]) -> list[str]:
        cleaned = [value.strip() for value in values]
        if any(not value or len(value) > 100 for value in cleaned):
            raise ValueError("entries must be 1 to 100 characters")
        return list(dict.fromkeys(cleaned))

    @model_validator(mode="after")
    def _one_account_per_network(self) -> Profile:
        networks = [account.network for account in self.networks]
        if len(networks) != len(set(networks)):
            raise ValueError("networks: one account per network")
        return self


# --- the person -----------------------------------------------------------------------

class ConsentRecord(DomainModel):
    """An immutable record of a consent given or withdrawn: who (the person), which version, when, how."""

    consent_id: str
    kind: ConsentKind
    charter_version: int | None
    at: datetime
    channel: str


class Person(DomainModel):
    id: str
    tenant: str
    version: int = 0
    directory: DirectoryEntry | None = Field(description="None once erased")
    status: Status = Status.NOT_ENROLLED
    charter_version: int | None = Field(default=None, description="Latest charter version accepted")
    opted_in_at: datetime | None = None
    opted_out_at: datetime | None = None
    profile: Profile = Field(default_factory=Profile)
    consents: list[ConsentRecord] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime
    erased_at: datetime | None = None

    @property
    def is_ambassador(self) -> bool:
        return self.status == Status.OPTED_IN


@dataclass(frozen=True)
class Change:
    """The outcome of a rule: the person as it must be stored, and the events that says so."""

    person: Person
    events: list[Event] = field(default_factory=list)
    changed: bool = True

    @classmethod
    def none(cls, person: Person) -> Change:
        return cls(person, [], changed=False)

    def then(self, rule) -> Change:
        """Apply a further rule to the outcome, keeping the events of both."""
        following = rule(self.person)
        return Change(following.person, [*self.events, *following.events], self.changed or following.changed)


class DomainError(Exception):
    status = 409
    title = "Conflict"

    def __init__(self, detail: str, **extensions):
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions


class NotInDirectory(DomainError):
    status, title = 403, "Forbidden"


class Deactivated(DomainError):
    status, title = 403, "Forbidden"


class NotAPeer(DomainError):
    """Recognition from a peer needs a peer: someone in the directory who opted in."""
    status, title = 403, "Forbidden"


class NoCurrentCharter(DomainError):
    pass


class CharterVersionMismatch(DomainError):
    pass


class NotOptedIn(DomainError):
    pass


class InvalidTransition(DomainError):
    pass


class NotFound(LookupError):
    """No such thing in the caller's tenant (answered 404)."""

    def __init__(self, what: str, identifier: object = None):
        super().__init__(f"{what} {identifier}")
        self.what = what


class PersonNotFound(NotFound):
    def __init__(self, person_id: str):
        super().__init__("ambassador", person_id)


class SelfRecognition(Exception):
    """Recognition comes from someone else."""


def new_person(person_id: str, tenant: str, entry: DirectoryEntry, now: datetime) -> Person:
    return Person(id=person_id, tenant=tenant, directory=entry, created_at=now, updated_at=now)


@dataclass(frozen=True)
class Placement:
    """Where a person works, as targeting and team figures see it: what they set in their profile, else what
    the directory (SCIM, import) says."""

    team_id: str | None
    location: str | None


def placement(person: Person) -> Placement:
    profile, directory = person.profile, person.directory
    return Placement(team_id=profile.team_id or (directory.team_id if directory else None),
                     location=profile.location or (directory.location if directory else None))


def event_profile(person: Person) -> AmbassadorProfile:
    """The profile as other services see it: targeting attributes, no handles, and no name but the
    leaderboard's, which the person chose to show by appearing on it."""
    profile = person.profile
    preferences = profile.preferences
    quiet = preferences.quiet_hours
    where = placement(person)
    return AmbassadorProfile(
        persona=profile.persona,
        topics=profile.topics,
        languages=profile.languages,
        team_id=where.team_id,
        location=where.location,
        networks=[NetworkPresence(network=a.network, audience_size=a.audience_size) for a in profile.networks],
        preferences=SharingPreferences(
            max_shares_per_week=preferences.max_shares_per_week,
            quiet_hours=QuietHours(start=quiet.start, end=quiet.end) if quiet else None,
            time_zone=preferences.time_zone),
        leaderboard_opt_in=profile.leaderboard_opt_in,
        leaderboard_name=leaderboard_name(person) if profile.leaderboard_opt_in else None,
    )


def leaderboard_name(person: Person) -> str | None:
    """The one name an event may carry: chosen by the person, and sent only while they appear."""
    directory = person.directory
    return person.profile.leaderboard_name or (directory.display_name if directory else None)


def _require_active(person: Person) -> DirectoryEntry:
    if person.directory is None:
        raise NotInDirectory("You are not in this tenant's employee directory.")
    if not person.directory.active:
        raise Deactivated("Your directory entry is deactivated.")
    return person.directory


def _require_current(current_charter: int | None, accepted_version: int) -> None:
    if current_charter is None:
        raise NoCurrentCharter("This programme has no published charter yet.")
    if accepted_version != current_charter:
        raise CharterVersionMismatch(
            f"Only the current charter (version {current_charter}) can be accepted.",
            current_version=current_charter)


def _consent(person: Person, kind: ConsentKind, version: int | None, channel: str, now: datetime) -> ConsentRecord:
    # Sequence numbers per person: consents are only ever appended.
    return ConsentRecord(consent_id=f"{person.id}:{len(person.consents) + 1}", kind=kind,
                         charter_version=version, at=now, channel=channel)


def _evolve(person: Person, now: datetime, **changes) -> Person:
    return person.model_copy(update={**changes, "updated_at": now})


def opt_in(person: Person, current_charter: int | None, accepted_version: int, channel: str,
           now: datetime, subject_key: str | None = None) -> Change:
    """The employee volunteers, accepting the current charter. Only ever called with their own token.

    `subject_key` (the pseudonym of their login) rides in the event, so that other services know whose
    token names this ambassador id (see `advocacy_common.subjects`)."""
    _require_active(person)
    _require_current(current_charter, accepted_version)
    if person.is_ambassador:
        return accept_charter(person, current_charter, accepted_version, channel, now)
    consent = _consent(person, ConsentKind.OPT_IN, accepted_version, channel, now)
    updated = _evolve(person, now, status=Status.OPTED_IN, charter_version=accepted_version, opted_in_at=now,
                      opted_out_at=None, consents=[*person.consents, consent])
    return Change(updated, [
        AmbassadorOptedIn(ambassador_id=person.id, charter_version=accepted_version, opted_in_at=now,
                          profile=event_profile(updated), subject_key=subject_key),
        CharterAccepted(ambassador_id=person.id, charter_version=accepted_version, accepted_at=now,
                        channel=channel),
    ])


def accept_charter(person: Person, current_charter: int | None, accepted_version: int, channel: str,
                   now: datetime) -> Change:
    """An ambassador accepts a new charter version; until then they get no new suggestions."""
    _require_active(person)
    _require_current(current_charter, accepted_version)
    if not person.is_ambassador:
        raise NotOptedIn("Opt in to accept the charter.")
    if person.charter_version == accepted_version:
        return Change.none(person)
    consent = _consent(person, ConsentKind.CHARTER_ACCEPTANCE, accepted_version, channel, now)
    updated = _evolve(person, now, charter_version=accepted_version, consents=[*person.consents, consent])
    return Change(updated, [CharterAccepted(ambassador_id=person.id, charter_version=accepted_version,
                                            accepted_at=now, channel=channel)])


def opt_out(person: Person, reason: OptOutReason, channel: str, now: datetime) -> Change:
    """Leave the programme at once; nothing changes for someone who is not opted in."""
    if not person.is_ambassador:
        return Change.none(person)
    consent = _consent(person, ConsentKind.WITHDRAWAL, person.charter_version, channel, now)
    updated = _evolve(person, now, status=Status.OPTED_OUT, opted_out_at=now,
                      consents=[*person.consents, consent])
    return Change(updated, [AmbassadorOptedOut(ambassador_id=person.id, opted_out_at=now, reason=reason)])


def _with_profile_event(before: Person, after: Person, now: datetime) -> Change:
    # Only ambassadors appear in events, and only when what others see changed.
    if after.is_ambassador and event_profile(before) != event_profile(after):
        return Change(after, [AmbassadorProfileUpdated(ambassador_id=after.id, updated_at=now,
                                                       profile=event_profile(after))])
    return Change(after, [])


def update_profile(person: Person, profile: Profile, now: datetime) -> Change:
    if person.directory is None:
        raise NotInDirectory("You are not in this tenant's employee directory.")
    if profile == person.profile:
        return Change.none(person)
    return _with_profile_event(person, _evolve(person, now, profile=profile), now)


def apply_directory_entry(person: Person, entry: DirectoryEntry, now: datetime) -> Change:
    """Provisioning changed the entry; a deactivated ambassador is opted out in the same write."""
    if person.directory == entry:
        return Change.none(person)
    change = _with_profile_event(person, _evolve(person, now, directory=entry), now)
    if not entry.active:
        change = change.then(lambda p: opt_out(p, OptOutReason.DEACTIVATED, "directory", now))
    return change


def erase(person: Person, now: datetime) -> Change:
    """GDPR erasure: personal data goes; the pseudonymous consent trail stays as proof (see README)."""
    if person.status == Status.ERASED:
        return Change.none(person)
    change = opt_out(person, OptOutReason.ERASED, "erasure", now)
    erased = _evolve(change.person, now, directory=None, profile=Profile(), status=Status.ERASED,
                     erased_at=now)
    if person.status == Status.NOT_ENROLLED:
        # Never an ambassador: no other service ever heard of them, and no event may name them now.
        return Change(erased, [])
    return Change(erased, [*change.events, AmbassadorErased(ambassador_id=person.id, erased_at=now)])


# --- charters, signals, recognition, training ---------------------------------------------

class CharterText(DomainModel):
    title: str = Field(min_length=1, max_length=200)
    body: str = Field(min_length=1, max_length=100_000)
    red_lines: list[str] = Field(default_factory=list, max_length=100)
    tone: str | None = Field(default=None, max_length=5000)
    disclosure_required: bool = False
    disclosure_line: str | None = Field(default=None, max_length=200,
                                        description="What shared text must carry, e.g. a hashtag")

    @model_validator(mode="after")
    def _disclosure_line_when_required(self) -> CharterText:
        if self.disclosure_required and not (self.disclosure_line or "").strip():
            raise ValueError("disclosure_line is required when disclosure_required is true")
        return self


class SignalStatus(StrEnum):
    NEW = "new"
    ACKNOWLEDGED = "acknowledged"
    CLOSED = "closed"


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


SIGNAL_TRANSITIONS: dict[str, set[str]] = {
    SignalStatus.NEW: {SignalStatus.ACKNOWLEDGED, SignalStatus.CLOSED},
    SignalStatus.ACKNOWLEDGED: {SignalStatus.CLOSED},
    SignalStatus.CLOSED: set(),
}


def check_signal_transition(current: str, wanted: str) -> None:
    if wanted not in SIGNAL_TRANSITIONS[current]:
        raise InvalidTransition(f"A signal cannot go from {current} to {wanted}.")


class RecognitionKind(StrEnum):
    KUDOS = "kudos"
    BADGE = "badge"


# --- the stored records of charters, signals, recognition and training ---------------------

class Charter(CharterText):
    """A published charter version; immutable once published."""

    id: str
    tenant: str
    version: int = Field(description="The charter's version number, 1, 2, ... per tenant")
    published_at: datetime
    created_at: datetime
    published_by: str


class Signal(DomainModel):
    """A sensitive conversation an ambassador reported, and its triage state."""

    id: str
    tenant: str
    version: int = 1
    reporter_id: str | None
    url: str
    note: str | None
    severity: Severity
    status: SignalStatus = SignalStatus.NEW
    created_at: datetime
    updated_at: datetime
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    closed_at: datetime | None = None
    closed_by: str | None = None


def triage(signal: Signal, status: SignalStatus, triaged_by: str, now: datetime) -> Signal | None:
    """The signal moved along new -> acknowledged -> closed; None when it is already there."""
    if status == signal.status:
        return None
    check_signal_transition(signal.status, status)
    return signal.model_copy(update={"status": status, "updated_at": now, f"{status}_at": now,
                                     f"{status}_by": triaged_by})


class Recognition(DomainModel):
    id: str
    tenant: str
    recipient_id: str
    giver_id: str | None
    giver_role: str
    kind: RecognitionKind
    badge: str | None
    reason: str
    created_at: datetime


class TrainingModuleText(DomainModel):
    title: str
    description: str = ""
    url: str | None = None
    duration_minutes: int | None = None
    topics: list[str] = Field(default_factory=list)
    language: str | None = None


class TrainingModule(TrainingModuleText):
    id: str
    tenant: str
    version: int = 1
    created_at: datetime


class TrainingCompletion(DomainModel):
    id: str
    tenant: str
    person_id: str
    module_id: str
    completed_at: datetime


@dataclass(frozen=True)
class ConsentEntry:
    """One consent record with the person it belongs to, as the audit trail lists them."""

    person: Person
    sequence: int
    consent: ConsentRecord


EXPORT_SERVICES = ("content", "distribution", "metrics")  # the services that answer an export request


class ExportRequest(DomainModel):
    """A GDPR export asked for by event; the other services' parts arrive as events too."""

    id: str
    tenant: str
    person_id: str
    requested_at: datetime


class ExportPart(DomainModel):
    """One page of one service's part, as its event carried it."""

    export_id: str
    service: str
    page: int
    last: bool
    sections: dict[str, list[dict]]
    written_at: datetime


def export_status(parts: list[ExportPart]) -> dict[str, bool]:
    """Per service, whether its part is complete: its last page arrived, and every page before it."""
    complete = {}
    for service in EXPORT_SERVICES:
        pages = {part.page: part for part in parts if part.service == service}
        last = next((part.page for part in pages.values() if part.last), None)
        complete[service] = last is not None and all(number in pages for number in range(1, last + 1))
    return complete


@dataclass(frozen=True)
class PersonRecords:
    """Everything but the person document that is about a person (GDPR access)."""

    recognitions_received: list[Recognition]
    recognitions_given: list[Recognition]
    training_completions: list[TrainingCompletion]
    signals_reported: list[Signal]
