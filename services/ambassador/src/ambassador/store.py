"""The MongoDB adapters of the ambassador service: repositories on the base, one per collection.

This module is the only one that knows collections, documents, operators and
the FerretDB tactics; use cases see the Protocols of `ports.py`. Every query
carries the tenant. Versioned writes are the base's compare-and-set on
`{_id, tenant, version}`, atomic across processes on MongoDB and on our
FerretDB (its proxy serialises write commands; see infra/README.md).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from advocacy_common.cursors import CursorCodec
from advocacy_common.outbox import OUTBOX_FIELD, OutboxRelay
from advocacy_common.repository import (
    AlreadyExists, ModelRepository, Page, ServerCapabilities, SortKey, Storage, UnitOfWork,
    create_indexes_one_by_one, insert_once,
)

from .models import (
    EXPORT_SERVICES,
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
from .ports import LookupAttribute

M = TypeVar("M", bound=BaseModel)
NO_OUTBOX = {OUTBOX_FIELD: 0}
CONSENT_BATCH = 200
OLDEST_FIRST = SortKey("completed_at", descending=False)
OUTBOX_COLLECTIONS = ("people", "charters", "signals", "exports")


class _ModelRepository(ModelRepository[M]):
    """The base's pydantic mapping, with the by-status page several ambassador lists share."""

    async def _by_status(self, tenant: str, status: str | None, cursor: str | None, limit: int) -> Page[M]:
        """Newest first, of one status or all; a cursor serves only the list it came from."""
        query: dict[str, Any] = {"tenant": tenant}
        if status is not None:
            query["status"] = status
        return await self.page(query, cursor=cursor, limit=limit, scope=str(status))


# --- people ---------------------------------------------------------------------------------

def key_id(tenant: str, attribute: str, value: str) -> str:
    return f"{tenant}\x1f{attribute}\x1f{lookup_key(value)}"


def _holds(person: Person, attribute: str, value: str) -> bool:
    return person.directory is not None and lookup_key(getattr(person.directory, attribute)) == lookup_key(value)


def _lookup_values(person: Person) -> tuple[str | None, str | None]:
    directory = person.directory
    return (lookup_key(directory.user_name), lookup_key(directory.external_id)) if directory else (None, None)


@dataclass
class PeopleStore(_ModelRepository[Person]):
    """People, found by id or by userName / externalId.

    FerretDB 1.x pushes down to SQLite only filters on `_id`; a lookup by
    `user_name_key` scans the collection (measured at 2,000 documents: 20 ms
    against 140 ms, growing with it). Lookups by userName or externalId
    therefore go through the `directory_keys` collection, whose `_id` is
    (tenant, attribute, value). The person document stays the truth: a key is
    trusted only if its person still holds that value, so a key left behind by
    a rename, an erasure or a crash is simply taken over. On MongoDB the
    `(tenant, user_name_key)` and `(tenant, external_id_key)` indexes would
    answer these lookups directly and the key collection would not be needed.
    """

    collection_name = "people"
    model = Person
    keys: AsyncCollection = field(init=False)
    consent_batch: int = CONSENT_BATCH  # people read at a time when walking consent records

    def __post_init__(self) -> None:
        super().__post_init__()
        self.keys = self.storage.database["directory_keys"]

    def to_document(self, entity: Person) -> dict[str, Any]:
        document = super().to_document(entity)
        directory = entity.directory
        # Erased people keep a placeholder key: the unique index must not see two of them as equal.
        document["user_name_key"] = lookup_key(directory.user_name) if directory else f"~erased~{entity.id}"
        document["external_id_key"] = lookup_key(directory.external_id) if directory else None
        return document

    async def find_by_key(self, tenant: str, attribute: LookupAttribute, value: str) -> Person | None:
        holder = await self.keys.find_one({"_id": key_id(tenant, attribute, value)})
        if holder is None:
            return None
        person = await self.get(tenant, holder["person_id"])
        return person if person is not None and _holds(person, attribute, value) else None

    async def add(self, entity: Person, uow: UnitOfWork | None = None) -> None:
        await self._claim_keys(entity)
        try:
            await super().add(entity, uow)
        except AlreadyExists:
            await self._repair_user_name_key(entity)
            raise

    async def save(self, entity: Person, uow: UnitOfWork | None = None, guard: Mapping[str, Any] | None = None,
                   *, previous: Person | None = None) -> Person:
        if previous is None or _lookup_values(entity) != _lookup_values(previous):
            await self._claim_keys(entity)
        return await super().save(entity, uow, guard)

    async def _repair_user_name_key(self, person: Person) -> None:
        # Two concurrent creations of one userName: the loser may have taken the key over
        # before the unique index refused its person. Point the key back at the winner.
        assert person.directory is not None
        winner = await self.collection.find_one({"tenant": person.tenant,
                                                 "user_name_key": lookup_key(person.directory.user_name)},
                                                projection={"_id": 1})
        if winner is not None:
            await self.keys.update_one({"_id": key_id(person.tenant, "user_name", person.directory.user_name)},
                                       {"$set": {"person_id": winner["_id"]}})

    async def _claim_keys(self, person: Person) -> None:
        """Point the person's userName and externalId keys at them before the person is written."""
        if person.directory is None:
            return
        await self._claim(person, "user_name", person.directory.user_name, unique=True)
        if person.directory.external_id is not None:
            await self._claim(person, "external_id", person.directory.external_id, unique=False)

    async def _claim(self, person: Person, attribute: str, value: str, unique: bool) -> None:
        key = key_id(person.tenant, attribute, value)
        try:
            await self.keys.insert_one({"_id": key, "tenant": person.tenant, "person_id": person.id})
            return
        except DuplicateKeyError:
            holder = await self.keys.find_one({"_id": key})
        if holder is None or holder["person_id"] == person.id:
            return
        if unique:
            current = await self.get(person.tenant, holder["person_id"])
            if current is not None and _holds(current, attribute, value):
                raise AlreadyExists(f"{attribute} is taken")
        await self.keys.update_one({"_id": key}, {"$set": {"person_id": person.id}})

    async def erase_lookup_keys(self, tenant: str, person_id: str) -> None:
        # Lookup keys spell the userName and externalId.
        await self.keys.delete_many({"tenant": tenant, "person_id": person_id})

    async def list_by_status(self, tenant: str, status: Status | None, cursor: str | None,
                             limit: int) -> Page[Person]:
        return await self._by_status(tenant, status, cursor, limit)

    async def directory_page(self, tenant: str, start_index: int, count: int) -> tuple[int, list[Person]]:
        # SCIM pages by index; erased people are no longer in the directory. (A scan on FerretDB 1.x.)
        query: dict[str, Any] = {"tenant": tenant, "directory": {"$ne": None}}
        total = await self.collection.count_documents(query)
        if count == 0:
            return total, []
        documents = await self.collection.find(query, projection=NO_OUTBOX) \
            .sort([("created_at", ASCENDING), ("_id", ASCENDING)]).skip(start_index - 1).limit(count).to_list()
        return total, [self._entity(d) for d in documents]  # type: ignore[misc]

    async def _with_consents(self, tenant: str, from_id: str | None, inclusive: bool) -> list[Person]:
        query: dict[str, Any] = {"tenant": tenant, "consents.0": {"$exists": True}}
        if from_id is not None:
            query["_id"] = {"$gte" if inclusive else "$gt": from_id}
        return await self.find(query, sort=[("_id", ASCENDING)], limit=self.consent_batch)

    async def consents_after(self, tenant: str, after: tuple[str, int] | None = None) -> AsyncIterator[ConsentEntry]:
        # Consents live inside the person document (written with the change they record),
        # so this walks people by id, a batch at a time, and flattens their records.
        from_id, inclusive = (after[0] if after else None), True
        while True:
            people = await self._with_consents(tenant, from_id, inclusive)
            for person in people:
                for sequence, consent in enumerate(person.consents, start=1):
                    if after is None or (person.id, sequence) > after:
                        yield ConsentEntry(person, sequence, consent)
            if len(people) < self.consent_batch:
                return
            from_id, inclusive = people[-1].id, False

    async def consent_page(self, tenant: str, cursor: str | None, limit: int,
                           charter_version: int | None) -> Page[ConsentEntry]:
        scope = f"consents\x1f{charter_version}"
        after = self.storage.cursors.decode(scope, cursor, (str, int))
        found: list[ConsentEntry] = []
        async for entry in self.consents_after(tenant, after):  # type: ignore[arg-type]
            if charter_version is not None and entry.consent.charter_version != charter_version:
                continue
            if len(found) == limit:
                last = found[-1]
                return Page(found, self.storage.cursors.encode(scope, (last.person.id, last.sequence)))
            found.append(entry)
        return Page(found, None)

    async def consents_of(self, tenant: str, person_id: str, cursor: str | None, limit: int) -> Page[ConsentEntry]:
        # A person's records live in their document (a bounded list): one `_id` read, paged by sequence.
        scope = f"person-consents\x1f{person_id}"
        after = self.storage.cursors.decode(scope, cursor, (int,))
        person = await self.get(tenant, person_id)
        entries = [ConsentEntry(person, sequence, consent) for sequence, consent
                   in enumerate(person.consents if person else [], start=1) if after is None or sequence > after[0]]
        if len(entries) <= limit:
            return Page(entries, None)
        return Page(entries[:limit], self.storage.cursors.encode(scope, (entries[limit - 1].sequence,)))


# --- charters, signals, recognition, training ----------------------------------------------------

@dataclass
class CharterStore(_ModelRepository[Charter]):
    # The charter's `version` field is its version number (charters are never saved again).
    collection_name = "charters"
    model = Charter

    async def current(self, tenant: str) -> Charter | None:
        found = await self.find({"tenant": tenant}, sort=[("version", DESCENDING)], limit=1)
        return found[0] if found else None

    async def get_version(self, tenant: str, version: int) -> Charter | None:
        found = await self.find({"tenant": tenant, "version": version}, limit=1)
        return found[0] if found else None

    async def newest_first(self, tenant: str, cursor: str | None, limit: int) -> Page[Charter]:
        return await self.page({"tenant": tenant}, cursor=cursor, limit=limit)


@dataclass
class SignalStore(_ModelRepository[Signal]):
    collection_name = "signals"
    model = Signal

    async def list_by_status(self, tenant: str, status: SignalStatus | None, cursor: str | None,
                             limit: int) -> Page[Signal]:
        return await self._by_status(tenant, status, cursor, limit)

    async def reported_by(self, tenant: str, person_id: str) -> list[Signal]:
        return await self.find({"tenant": tenant, "reporter_id": person_id})

    async def forget_reporter(self, tenant: str, person_id: str) -> None:
        # The version moves too, so that a triage read before the erasure cannot write the note back.
        await self.collection.update_many({"tenant": tenant, "reporter_id": person_id},
                                          {"$set": {"note": None, "reporter_id": None}, "$inc": {"version": 1}})


@dataclass
class RecognitionStore(_ModelRepository[Recognition]):
    collection_name = "recognitions"
    model = Recognition

    async def page_received(self, tenant: str, recipient_id: str, cursor: str | None,
                            limit: int) -> Page[Recognition]:
        return await self.page({"tenant": tenant, "recipient_id": recipient_id}, cursor=cursor, limit=limit,
                               scope=recipient_id)

    async def received_by(self, tenant: str, person_id: str) -> list[Recognition]:
        return await self.find({"tenant": tenant, "recipient_id": person_id})

    async def given_by(self, tenant: str, person_id: str) -> list[Recognition]:
        return await self.find({"tenant": tenant, "giver_id": person_id})

    async def forget_person(self, tenant: str, person_id: str) -> None:
        await self.collection.delete_many({"tenant": tenant, "recipient_id": person_id})
        await self.collection.update_many({"tenant": tenant, "giver_id": person_id}, {"$set": {"giver_id": None}})


@dataclass
class TrainingModuleStore(_ModelRepository[TrainingModule]):
    collection_name = "training_modules"
    model = TrainingModule

    async def newest_first(self, tenant: str, cursor: str | None, limit: int) -> Page[TrainingModule]:
        return await self.page({"tenant": tenant}, cursor=cursor, limit=limit)


@dataclass
class TrainingCompletionStore(_ModelRepository[TrainingCompletion]):
    collection_name = "training_completions"
    model = TrainingCompletion

    async def of_person(self, tenant: str, person_id: str) -> list[TrainingCompletion]:
        return await self.find({"tenant": tenant, "person_id": person_id}, sort=[("completed_at", ASCENDING)])

    async def page_of_person(self, tenant: str, person_id: str, cursor: str | None,
                             limit: int) -> Page[TrainingCompletion]:
        return await self.page({"tenant": tenant, "person_id": person_id}, cursor=cursor, limit=limit,
                               order=OLDEST_FIRST, scope=f"person={person_id}")

    async def forget_person(self, tenant: str, person_id: str) -> None:
        await self.collection.delete_many({"tenant": tenant, "person_id": person_id})


@dataclass
class ExportStore(_ModelRepository[ExportRequest]):
    """GDPR export requests (`exports`, with their event in `_outbox`) and the parts received
    (`export_parts`, `_id` = tenant, export, service and page, so a redelivered page is one insert refused).
    Parts are read back by `_id`, page after page (FerretDB 1.x pushes only `_id` filters down)."""

    collection_name = "exports"
    model = ExportRequest
    parts_collection: AsyncCollection = field(init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.parts_collection = self.storage.database["export_parts"]

    @staticmethod
    def _part_id(tenant: str, export_id: str, service: str, page: int) -> str:
        return f"{tenant}\x1f{export_id}\x1f{service}\x1f{page}"

    async def add_part(self, tenant: str, part: ExportPart) -> bool:
        document = {"_id": self._part_id(tenant, part.export_id, part.service, part.page), "tenant": tenant,
                    **part.model_dump()}
        return await insert_once(self.parts_collection, document)

    async def parts(self, tenant: str, export_id: str) -> list[ExportPart]:
        found = []
        for service in EXPORT_SERVICES:
            page = 1
            while (document := await self.parts_collection.find_one(
                    {"_id": self._part_id(tenant, export_id, service, page)})) is not None:
                found.append(ExportPart.model_validate(document))
                page += 1
        return found

    async def forget_person(self, tenant: str, person_id: str) -> None:
        # A scan on FerretDB 1.x; erasure is rare and repeatable.
        async for request in self.collection.find({"tenant": tenant, "person_id": person_id}, {"_id": 1}):
            await self.parts_collection.delete_many({"tenant": tenant, "export_id": request["_id"]})
        await self.collection.delete_many({"tenant": tenant, "person_id": person_id})


# --- the whole storage ---------------------------------------------------------------------------

@dataclass(frozen=True)
class AmbassadorStores:
    people: PeopleStore
    charters: CharterStore
    signals: SignalStore
    recognitions: RecognitionStore
    modules: TrainingModuleStore
    completions: TrainingCompletionStore
    exports: ExportStore

    @classmethod
    async def open(cls, database: AsyncDatabase, cursor_key: str) -> AmbassadorStores:
        return cls.on(await Storage.open(database, cursor_key))

    @classmethod
    def without_detection(cls, database: AsyncDatabase, cursor_key: str) -> AmbassadorStores:
        """For a process built outside an event loop (the worker): FerretDB 1.x's limits are assumed."""
        return cls.on(Storage(database, ServerCapabilities(ferretdb=True, version="not detected"),
                              CursorCodec(cursor_key.encode())))

    @classmethod
    def on(cls, storage: Storage) -> AmbassadorStores:
        return cls(PeopleStore(storage), CharterStore(storage), SignalStore(storage), RecognitionStore(storage),
                   TrainingModuleStore(storage), TrainingCompletionStore(storage), ExportStore(storage))

    async def create_indexes(self) -> None:
        indexes = {
            self.people.collection: [
                IndexModel([("tenant", ASCENDING), ("user_name_key", ASCENDING)], unique=True,
                           name="tenant_user_name"),
                IndexModel([("tenant", ASCENDING), ("external_id_key", ASCENDING)], name="tenant_external_id"),
                IndexModel([("tenant", ASCENDING), ("status", ASCENDING), ("created_at", DESCENDING)],
                           name="tenant_status_created")],
            self.charters.collection: [
                IndexModel([("tenant", ASCENDING), ("version", DESCENDING)], unique=True, name="tenant_version")],
            self.signals.collection: [
                IndexModel([("tenant", ASCENDING), ("status", ASCENDING), ("created_at", DESCENDING)],
                           name="tenant_status_created")],
            self.recognitions.collection: [
                IndexModel([("tenant", ASCENDING), ("recipient_id", ASCENDING), ("created_at", DESCENDING)],
                           name="tenant_recipient_created")],
            self.completions.collection: [
                IndexModel([("tenant", ASCENDING), ("person_id", ASCENDING)], name="tenant_person")],
        }
        for collection, models in indexes.items():
            await create_indexes_one_by_one(collection, models)  # FerretDB 1.24: see the base


def outbox_collections(database: AsyncDatabase) -> list[AsyncCollection]:
    """The collections whose documents carry pending events (for the relay)."""
    return [database[name] for name in OUTBOX_COLLECTIONS]


@dataclass
class ImmediatePublication:
    """Publishes a person's pending events right after the write (see `PublishNow`).

    One publication per person at a time within this process: two requests that
    both find the same pending events would otherwise both publish them. This is
    not a write guard (writes are compare-and-set); across replicas the relay is
    at-least-once anyway, and consumers drop repeated event ids.
    """

    relay: OutboxRelay
    people: AsyncCollection
    _publishing: weakref.WeakValueDictionary[str, asyncio.Lock] = field(default_factory=weakref.WeakValueDictionary)

    async def __call__(self, person_id: str) -> None:
        lock = self._publishing.get(person_id)
        if lock is None:
            lock = self._publishing[person_id] = asyncio.Lock()
        async with lock:
            await self.relay.flush(self.people, person_id)
