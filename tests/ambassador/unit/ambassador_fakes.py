"""In-memory fakes of the ambassador ports (`ambassador.ports`), one per Protocol, in plain Python.

They keep the contract the MongoDB adapters keep: tenant-checked reads,
compare-and-set saves (StaleWrite when the version moved), AlreadyExists on a
taken id or userName, KeyReused on an Idempotency-Key with another body, and
events recorded with the write. Pages use an opaque offset as cursor.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from advocacy_common.repository import AlreadyExists, KeyReused, Page, StaleWrite, UnitOfWork

from ambassador.models import (
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
    lookup_key,
)
from ambassador.service import AmbassadorService

T = TypeVar("T", bound=Any)


def _page(items: list[T], cursor: str | None, limit: int) -> Page[T]:
    start = int(cursor or 0)
    chunk = items[start:start + limit]
    return Page(chunk, str(start + limit) if start + limit < len(items) else None)


@dataclass
class InMemory(Generic[T]):
    """Entities by id, with the events written alongside them."""

    entities: dict[str, T] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)
    pending: dict[str, list[str]] = field(default_factory=dict)  # id -> event types, as written
    interfere: int = 0  # the next saves find that someone else wrote first

    async def get(self, tenant: str, entity_id: str) -> T | None:
        entity = self.entities.get(entity_id)
        return entity if entity is not None and entity.tenant == tenant else None

    def _record(self, entity_id: str, uow: UnitOfWork | None) -> None:
        types = [envelope.type for _, envelope in uow.pending] if uow else []
        self.pending.setdefault(entity_id, []).extend(types)

    async def add(self, entity: T, uow: UnitOfWork | None = None) -> None:
        if entity.id in self.entities:
            raise AlreadyExists(entity.id)
        self.entities[entity.id] = entity
        self._record(entity.id, uow)

    async def add_idempotent(self, entity: T, fingerprint: str, uow: UnitOfWork | None = None) -> tuple[T, bool]:
        existing = self.entities.get(entity.id)
        if existing is not None:
            if existing.tenant != entity.tenant:
                raise AlreadyExists(entity.id)
            if self.fingerprints[entity.id] != fingerprint:
                raise KeyReused(entity.id)
            return existing, False
        await self.add(entity, uow)
        self.fingerprints[entity.id] = fingerprint
        return entity, True

    async def save(self, entity: T, uow: UnitOfWork | None = None) -> T:
        stored = self.entities.get(entity.id)
        if self.interfere and stored is not None:
            self.interfere -= 1
            stored = self.entities[entity.id] = stored.model_copy(update={"version": stored.version + 1})
        if stored is None or stored.tenant != entity.tenant or stored.version != entity.version:
            raise StaleWrite(entity.id)
        saved = entity.model_copy(update={"version": entity.version + 1})
        self.entities[entity.id] = saved
        self._record(entity.id, uow)
        return saved

    def of_tenant(self, tenant: str, keep: Callable[[T], bool] = lambda _: True) -> list[T]:
        return [e for e in self.entities.values() if e.tenant == tenant and keep(e)]

    def newest(self, tenant: str, keep: Callable[[T], bool] = lambda _: True) -> list[T]:
        return sorted(self.of_tenant(tenant, keep), key=lambda e: (e.created_at, e.id), reverse=True)


class FakePeople(InMemory[Person]):
    def _holder(self, tenant: str, attribute: str, value: str) -> Person | None:
        return next((p for p in self.of_tenant(tenant) if p.directory is not None
                     and lookup_key(getattr(p.directory, attribute)) == lookup_key(value)), None)

    async def find_by_key(self, tenant: str, attribute: str, value: str) -> Person | None:
        return self._holder(tenant, attribute, value)

    def _check_user_name(self, person: Person) -> None:
        if person.directory is not None:
            holder = self._holder(person.tenant, "user_name", person.directory.user_name)
            if holder is not None and holder.id != person.id:
                raise AlreadyExists(person.directory.user_name)

    async def add(self, entity: Person, uow: UnitOfWork | None = None) -> None:
        self._check_user_name(entity)
        await super().add(entity, uow)

    async def save(self, entity: Person, uow: UnitOfWork | None = None, *, previous: Person) -> Person:
        self._check_user_name(entity)
        return await super().save(entity, uow)

    async def list_by_status(self, tenant: str, status: Status | None, cursor: str | None,
                             limit: int) -> Page[Person]:
        return _page(self.newest(tenant, lambda p: status is None or p.status == status), cursor, limit)

    async def directory_page(self, tenant: str, start_index: int, count: int) -> tuple[int, list[Person]]:
        listed = sorted(self.of_tenant(tenant, lambda p: p.directory is not None), key=lambda p: (p.created_at, p.id))
        return len(listed), listed[start_index - 1:start_index - 1 + count]

    async def consents_after(self, tenant: str, after: tuple[str, int] | None = None) -> AsyncIterator[ConsentEntry]:
        for person in sorted(self.of_tenant(tenant), key=lambda p: p.id):
            for sequence, consent in enumerate(person.consents, start=1):
                if after is None or (person.id, sequence) > after:
                    yield ConsentEntry(person, sequence, consent)

    async def consent_page(self, tenant: str, cursor: str | None, limit: int,
                           charter_version: int | None) -> Page[ConsentEntry]:
        every = [entry async for entry in self.consents_after(tenant)
                 if charter_version is None or entry.consent.charter_version == charter_version]
        return _page(every, cursor, limit)

    async def consents_of(self, tenant: str, person_id: str, cursor: str | None, limit: int) -> Page[ConsentEntry]:
        person = await self.get(tenant, person_id)
        entries = [ConsentEntry(person, sequence, consent)
                   for sequence, consent in enumerate(person.consents if person else [], start=1)]
        return _page(entries, cursor, limit)

    async def erase_lookup_keys(self, tenant: str, person_id: str) -> None:
        return None  # the fake finds people by their entry: there are no keys to forget


class FakeCharters(InMemory[Charter]):
    async def current(self, tenant: str) -> Charter | None:
        return max(self.of_tenant(tenant), key=lambda c: c.version, default=None)

    async def get_version(self, tenant: str, version: int) -> Charter | None:
        return next((c for c in self.of_tenant(tenant) if c.version == version), None)

    async def add(self, entity: Charter, uow: UnitOfWork | None = None) -> None:
        if await self.get_version(entity.tenant, entity.version) is not None:
            raise AlreadyExists(entity.version)  # the unique (tenant, version)
        await super().add(entity, uow)

    async def newest_first(self, tenant: str, cursor: str | None, limit: int) -> Page[Charter]:
        return _page(self.newest(tenant), cursor, limit)


class FakeSignals(InMemory[Signal]):
    async def list_by_status(self, tenant: str, status: SignalStatus | None, cursor: str | None,
                             limit: int) -> Page[Signal]:
        return _page(self.newest(tenant, lambda s: status is None or s.status == status), cursor, limit)

    async def reported_by(self, tenant: str, person_id: str) -> list[Signal]:
        return self.of_tenant(tenant, lambda s: s.reporter_id == person_id)

    async def forget_reporter(self, tenant: str, person_id: str) -> None:
        for signal in await self.reported_by(tenant, person_id):
            self.entities[signal.id] = signal.model_copy(
                update={"note": None, "reporter_id": None, "version": signal.version + 1})


class FakeRecognitions(InMemory[Recognition]):
    async def page_received(self, tenant: str, recipient_id: str, cursor: str | None,
                            limit: int) -> Page[Recognition]:
        return _page(self.newest(tenant, lambda r: r.recipient_id == recipient_id), cursor, limit)

    async def received_by(self, tenant: str, person_id: str) -> list[Recognition]:
        return self.of_tenant(tenant, lambda r: r.recipient_id == person_id)

    async def given_by(self, tenant: str, person_id: str) -> list[Recognition]:
        return self.of_tenant(tenant, lambda r: r.giver_id == person_id)

    async def forget_person(self, tenant: str, person_id: str) -> None:
        for recognition in await self.received_by(tenant, person_id):
            del self.entities[recognition.id]
        for recognition in await self.given_by(tenant, person_id):
            self.entities[recognition.id] = recognition.model_copy(update={"giver_id": None})


class FakeModules(InMemory[TrainingModule]):
    async def newest_first(self, tenant: str, cursor: str | None, limit: int) -> Page[TrainingModule]:
        return _page(self.newest(tenant), cursor, limit)


class FakeCompletions(InMemory[TrainingCompletion]):
    async def of_person(self, tenant: str, person_id: str) -> list[TrainingCompletion]:
        return sorted(self.of_tenant(tenant, lambda c: c.person_id == person_id), key=lambda c: c.completed_at)

    async def page_of_person(self, tenant: str, person_id: str, cursor: str | None,
                             limit: int) -> Page[TrainingCompletion]:
        return _page(await self.of_person(tenant, person_id), cursor, limit)

    async def forget_person(self, tenant: str, person_id: str) -> None:
        for completion in await self.of_person(tenant, person_id):
            del self.entities[completion.id]


@dataclass
class Published:
    """The fake immediate publication: which people's events were published at once."""

    people: list[str] = field(default_factory=list)
    broken: bool = False

    async def __call__(self, person_id: str) -> None:
        if self.broken:
            raise ConnectionError("kafka down")
        self.people.append(person_id)


class FakeExports:
    def __init__(self) -> None:
        self.requests: dict[str, tuple[ExportRequest, list]] = {}
        self.received: dict[tuple[str, str, str, int], ExportPart] = {}

    async def add(self, request: ExportRequest, uow: UnitOfWork) -> None:
        self.requests[request.id] = (request, [envelope for _, envelope in uow.pending])

    async def get(self, tenant: str, export_id: str) -> ExportRequest | None:
        found = self.requests.get(export_id)
        return found[0] if found and found[0].tenant == tenant else None

    async def add_part(self, tenant: str, part: ExportPart) -> bool:
        key = (tenant, part.export_id, part.service, part.page)
        if key in self.received:
            return False
        self.received[key] = part
        return True

    async def parts(self, tenant: str, export_id: str) -> list[ExportPart]:
        return [part for (t, x, _, _), part in sorted(self.received.items(), key=lambda item: item[0])
                if (t, x) == (tenant, export_id)]

    async def forget_person(self, tenant: str, person_id: str) -> None:
        gone = {x for x, (request, _) in self.requests.items() if (request.tenant, request.person_id) == (tenant, person_id)}
        self.requests = {x: found for x, found in self.requests.items() if x not in gone}
        self.received = {key: part for key, part in self.received.items() if key[1] not in gone}


def fake_service(**overrides: Any) -> AmbassadorService:
    return AmbassadorService(people=FakePeople(), charters=FakeCharters(), signals=FakeSignals(),
                             recognitions=FakeRecognitions(), modules=FakeModules(), completions=FakeCompletions(),
                             exports=FakeExports(), publish_now=Published(), **overrides)
