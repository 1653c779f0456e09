"""HTTP request and response bodies (never the event classes)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from advocacy_common.bounded import MAX_FIELD_CHARS, BoundedInput, NonNegativeInt64

from .models import CharterText, DirectoryEntry, Profile, RecognitionKind, Severity, SignalStatus, Status


Item = TypeVar("Item")


class Request(BoundedInput):
    """A misspelt field is an error; every string is bounded (advocacy_common.bounded)."""


class OptInRequest(Request):
    charter_version: NonNegativeInt64 = Field(
        description="The version of the charter the employee read and accepts; must be the current one")
    channel: str = Field(default="web", max_length=50, description="Where consent was given: web, mobile, teams...")
    profile: Profile | None = Field(default=None, description="Profile to start with; the stored one otherwise")


class CharterAcceptanceRequest(Request):
    charter_version: NonNegativeInt64
    channel: str = Field(default="web", max_length=50)


class OptOutRequest(Request):
    channel: str = Field(default="web", max_length=50)


class AmbassadorView(BaseModel):
    """A person as seen by themselves or by a programme admin."""

    id: str = Field(description="Stable id; the `ambassador_id` in events")
    user_name: str | None
    display_name: str | None
    active: bool
    status: Status
    charter_version: int | None = Field(description="Latest charter version accepted")
    current_charter_version: int | None = None
    needs_charter_acceptance: bool = Field(
        default=False, description="An ambassador gets no new suggestions until they accept the current charter")
    opted_in_at: datetime | None
    opted_out_at: datetime | None


class ProfileView(BaseModel):
    ambassador_id: str
    profile: Profile = Field(description="What you set; `team_id` and `location` here override the directory's")
    team_id: str | None = Field(description="Your team as targeting and team figures see it: the profile's, "
                                "else the directory's")
    location: str | None = Field(description="Your location, the same way: the profile's, else the directory's")
    directory_team_id: str | None = Field(description="The team the employee directory (SCIM, import) gives")
    directory_location: str | None = Field(description="The location the employee directory gives")


class Page(BaseModel, Generic[Item]):
    items: list[Item]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last one")


class ConsentView(BaseModel):
    consent_id: str
    ambassador_id: str
    user_name: str | None = Field(description="Null once the person's data was erased")
    kind: str
    charter_version: int | None
    at: datetime
    channel: str


class CharterView(CharterText):
    model_config = ConfigDict(frozen=True, extra="ignore")
    charter_id: str
    version: int
    published_at: datetime


class CharterRequest(CharterText):
    model_config = ConfigDict(extra="forbid", str_max_length=MAX_FIELD_CHARS * 2)  # a charter's body: 100,000


class RecognitionRequest(Request):
    kind: RecognitionKind = RecognitionKind.KUDOS
    badge: str | None = Field(default=None, max_length=100, description="Required for a badge, e.g. 'Crisis spotter'")
    reason: str = Field(min_length=3, max_length=2000,
                        description="Why: recognition is for something done, never for volume")


class RecognitionView(BaseModel):
    recognition_id: str
    recipient_id: str
    giver_id: str | None
    giver_role: str
    kind: str
    badge: str | None
    reason: str
    created_at: datetime


class TrainingModuleRequest(Request):
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=10_000)
    url: HttpUrl | None = None
    duration_minutes: int | None = Field(default=None, ge=1, le=10_000)
    topics: list[str] = Field(default_factory=list, max_length=50)
    language: str | None = Field(default=None, max_length=20)


class TrainingModuleView(BaseModel):
    module_id: str
    title: str
    description: str
    url: str | None
    duration_minutes: int | None
    topics: list[str]
    language: str | None
    created_at: datetime


class CompletionRequest(Request):
    module_id: str


class CompletionView(BaseModel):
    module_id: str
    ambassador_id: str
    completed_at: datetime


class SignalRequest(Request):
    url: HttpUrl = Field(description="Where the sensitive conversation is")
    note: str | None = Field(default=None, max_length=5000, description="What the ambassador saw")
    severity: Severity = Severity.MEDIUM


class SignalTriageRequest(Request):
    status: SignalStatus


class SignalView(BaseModel):
    signal_id: str
    reporter_id: str | None = Field(description="Null once the reporter's data was erased")
    url: str
    note: str | None
    severity: str
    status: str
    created_at: datetime
    updated_at: datetime


class ImportRequest(Request):
    # Items are not constrained: a row that is not a directory entry is reported in `errors` (the others
    # are applied), so the document must not promise a refusal the endpoint does not make.
    employees: list[Any] = Field(description="Rows with the fields of a directory entry; a row that is not "
                                             "one is reported in `errors` and the others are applied")


class ImportRowError(BaseModel):
    row: int = Field(description="1-based row number (CSV: data row, after the header)")
    user_name: str | None
    field: str
    message: str


class ImportReport(BaseModel):
    created: int
    updated: int
    unchanged: int
    errors: list[ImportRowError]


class ErasureView(BaseModel):
    ambassador_id: str
    erased_at: datetime


IMPORT_COLUMNS: tuple[str, ...] = tuple(DirectoryEntry.model_fields)
ExportFormat = Literal["json", "csv"]
