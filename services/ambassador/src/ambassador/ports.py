"""The storage boundary of the ambassador service: one Protocol per repository, domain types in and out.

Writes follow the repository base (`advocacy_common.repository`): `save` is a
compare-and-set on the version the entity was read at and raises `StaleWrite`
(nothing written) when another writer got there first; `add` raises
`AlreadyExists` when the id or a unique key (a person's userName) is taken;
`add_idempotent` returns (entity, created) and raises `KeyReused` when an
Idempotency-Key comes back with another body. Events ride in the same write
through the `UnitOfWork`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal, Protocol

from advocacy_common.repository import AlreadyExists, KeyReused, Page, StaleWrite, UnitOfWork

from .models import (
    Charter,
    ConsentEntry,
    ExportPart,
    ExportRequest,
    Person,
    Recognition,
    Signal,
    SignalStatus,
    Status,
    TrainingCompletion,
    TrainingModule,
)

# The refusals of the storage boundary, part of every port's contract (nothing was written).
__all__ = ["AlreadyExists", "KeyReused", "StaleWrite"]
LookupAttribute = Literal["user_name", "external_id"]


class PersonRepository(Protocol):
    async def get(self, tenant: str, person_id: str) -> Person | None: ...

    async def find_by_key(self, tenant: str, attribute: LookupAttribute, value: str) -> Person | None:
        """The person holding this userName or externalId, matched case-insensitively."""

    async def add(self, person: Person, uow: UnitOfWork | None = None) -> None:
        """AlreadyExists when the id or the userName is taken."""

    async def save(self, person: Person, uow: UnitOfWork | None = None, *, previous: Person) -> Person:
        """Store `person` if still at `previous.version` (StaleWrite otherwise); AlreadyExists when a
        new userName belongs to someone else. Returns the person at its new version."""

    async def list_by_status(self, tenant: str, status: Status | None, cursor: str | None,
                             limit: int) -> Page[Person]:
        """People, newest first."""

    async def directory_page(self, tenant: str, start_index: int, count: int) -> tuple[int, list[Person]]:
        """SCIM's index-based page (1-based) of people still in the directory, in creation order; and the total."""

    def consents_after(self, tenant: str, after: tuple[str, int] | None = None) -> AsyncIterator[ConsentEntry]:
        """Every consent record of the tenant in (person id, sequence) order, after that position."""

    async def consent_page(self, tenant: str, cursor: str | None, limit: int,
                           charter_version: int | None) -> Page[ConsentEntry]:
        """One page of the consent audit trail (optionally of one charter version)."""

    async def consents_of(self, tenant: str, person_id: str, cursor: str | None, limit: int) -> Page[ConsentEntry]:
        """One page of one person's consent records, oldest first (empty for another tenant's person)."""

    async def erase_lookup_keys(self, tenant: str, person_id: str) -> None:
        """Forget whatever lookup structure spells the person's userName and externalId."""


class ExportRepository(Protocol):
    async def add(self, request: ExportRequest, uow: UnitOfWork) -> None:
        """Store the request with its `gdpr.export_requested.v1` (published by the relay)."""

    async def get(self, tenant: str, export_id: str) -> ExportRequest | None: ...

    async def add_part(self, tenant: str, part: ExportPart) -> bool:
        """Keep a page once (a redelivered page changes nothing); False when it was there already."""

    async def parts(self, tenant: str, export_id: str) -> list[ExportPart]:
        """Every page received, by service and page."""

    async def forget_person(self, tenant: str, person_id: str) -> None:
        """Delete the person's exports and every part received for them (erasure)."""


class PublishNow(Protocol):
    async def __call__(self, person_id: str) -> None:
        """Publish a person's pending events now; on failure they stay pending for the relay."""


class CharterRepository(Protocol):
    async def current(self, tenant: str) -> Charter | None: ...

    async def get_version(self, tenant: str, version: int) -> Charter | None: ...

    async def add_idempotent(self, charter: Charter, fingerprint: str,
                             uow: UnitOfWork | None = None) -> tuple[Charter, bool]:
        """AlreadyExists when that version number was published meanwhile."""

    async def newest_first(self, tenant: str, cursor: str | None, limit: int) -> Page[Charter]:
        """Newest first."""


class SignalRepository(Protocol):
    async def get(self, tenant: str, signal_id: str) -> Signal | None: ...

    async def add_idempotent(self, signal: Signal, fingerprint: str,
                             uow: UnitOfWork | None = None) -> tuple[Signal, bool]: ...

    async def save(self, signal: Signal, uow: UnitOfWork | None = None) -> Signal: ...

    async def list_by_status(self, tenant: str, status: SignalStatus | None, cursor: str | None,
                             limit: int) -> Page[Signal]:
        """Newest first."""

    async def reported_by(self, tenant: str, person_id: str) -> list[Signal]: ...

    async def forget_reporter(self, tenant: str, person_id: str) -> None:
        """Remove the reporter and their note from their signals (the URL and status stay)."""


class RecognitionRepository(Protocol):
    async def add_idempotent(self, recognition: Recognition, fingerprint: str,
                             uow: UnitOfWork | None = None) -> tuple[Recognition, bool]: ...

    async def page_received(self, tenant: str, recipient_id: str, cursor: str | None,
                            limit: int) -> Page[Recognition]: ...

    async def received_by(self, tenant: str, person_id: str) -> list[Recognition]: ...

    async def given_by(self, tenant: str, person_id: str) -> list[Recognition]: ...

    async def forget_person(self, tenant: str, person_id: str) -> None:
        """Delete what they received; remove them as giver of what they gave."""


class TrainingModuleRepository(Protocol):
    async def get(self, tenant: str, module_id: str) -> TrainingModule | None: ...

    async def add_idempotent(self, module: TrainingModule, fingerprint: str,
                             uow: UnitOfWork | None = None) -> tuple[TrainingModule, bool]: ...

    async def save(self, module: TrainingModule, uow: UnitOfWork | None = None) -> TrainingModule: ...

    async def newest_first(self, tenant: str, cursor: str | None, limit: int) -> Page[TrainingModule]: ...


class TrainingCompletionRepository(Protocol):
    async def get(self, tenant: str, completion_id: str) -> TrainingCompletion | None: ...

    async def add(self, completion: TrainingCompletion, uow: UnitOfWork | None = None) -> None:
        """AlreadyExists when this person completed this module before."""

    async def of_person(self, tenant: str, person_id: str) -> list[TrainingCompletion]:
        """Oldest first."""

    async def page_of_person(self, tenant: str, person_id: str, cursor: str | None,
                             limit: int) -> Page[TrainingCompletion]:
        """One page of `of_person`, oldest first."""

    async def forget_person(self, tenant: str, person_id: str) -> None: ...
