"""Collections, indexes and queries of the ambassador service. Every query carries the tenant.

Query shapes stay within what FerretDB 1.x and MongoDB 7/8 both run: finds
with filters, sort and limit; single-document updates guarded by a version.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from advocacy_common.api_support import decode_cursor, encode_cursor
from advocacy_common.consuming import insert_once
from advocacy_common.envelope import Envelope, parse_time
from advocacy_common.errors import invalid
from advocacy_common.outbox import OUTBOX_FIELD, new_document_with_outbox, notify_outbox, with_outbox

from .models import Person, Status, lookup_key

OutboxItems = Iterable[tuple[str, Envelope]]
NO_OUTBOX = {OUTBOX_FIELD: 0}


class StaleWrite(Exception):
    """The document changed since it was read; read again and retry."""


class KeyReused(Exception):
    """An Idempotency-Key came back with another request body."""


def key_id(tenant: str, attribute: str, value: str) -> str:
    return f"{tenant}\x1f{attribute}\x1f{lookup_key(value)}"


def _holds(person: Person, attribute: str, value: str) -> bool:
    return person.directory is not None and lookup_key(getattr(person.directory, attribute)) == lookup_key(value)


def _lookup_values(person: Person) -> tuple[str | None, str | None]:
    directory = person.directory
    return (lookup_key(directory.user_name), lookup_key(directory.external_id)) if directory else (None, None)


def person_document(person: Person) -> dict[str, Any]:
    document = person.model_dump(mode="python")
    document["_id"] = document.pop("id")
    directory = person.directory
    # Erased people keep a placeholder key: the unique index must not see two of them as equal.
    document["user_name_key"] = lookup_key(directory.user_name) if directory else f"~erased~{person.id}"
    document["external_id_key"] = lookup_key(directory.external_id) if directory else None
    return document


def person_from_document(document: dict[str, Any]) -> Person:
    return Person.model_validate({**document, "id": document["_id"]})


def _after_cursor(query: dict[str, Any], cursor: str | None, sort_field: str) -> dict[str, Any]:
    after = decode_cursor(cursor)
    if after is None:
        return query
    try:
        at, last_id = parse_time(str(after[0])), str(after[1])
    except (ValueError, IndexError):
        raise invalid("cursor", "is not a cursor this API returned") from None
    return {"$and": [query, {"$or": [{sort_field: {"$lt": at}}, {sort_field: at, "_id": {"$lt": last_id}}]}]}


async def newest_first_page(collection: AsyncCollection, query: dict[str, Any], cursor: str | None, limit: int,
                            sort_field: str = "created_at") -> tuple[list[dict[str, Any]], str | None]:
    """One page, newest first, and the cursor of the next page (None on the last one)."""
    documents = await collection.find(_after_cursor(query, cursor, sort_field), projection=NO_OUTBOX) \
        .sort([(sort_field, DESCENDING), ("_id", DESCENDING)]).limit(limit + 1).to_list()
    if len(documents) <= limit:
        return documents, None
    last = documents[limit - 1]
    at: datetime = last[sort_field]
    return documents[:limit], encode_cursor([at.isoformat(), last["_id"]])


async def updates_are_atomic(database: AsyncDatabase) -> bool:
    """False on FerretDB 1.x (see `AmbassadorStore.guarded`)."""
    info = await database.client["admin"].command("buildInfo")
    return "ferretdbVersion" not in info


class AmbassadorStore:
    def __init__(self, database: AsyncDatabase, atomic_updates: bool = True):
        self.atomic_updates = atomic_updates
        self.people = database["people"]
        self.directory_keys = database["directory_keys"]
        self.charters = database["charters"]
        self.signals = database["signals"]
        self.recognitions = database["recognitions"]
        self.training_modules = database["training_modules"]
        self.training_completions = database["training_completions"]

    @property
    def outbox_collections(self) -> list[AsyncCollection]:
        return [self.people, self.charters, self.signals]

    async def create_indexes(self) -> None:
        await self.people.create_indexes([
            IndexModel([("tenant", ASCENDING), ("user_name_key", ASCENDING)], unique=True, name="tenant_user_name"),
            IndexModel([("tenant", ASCENDING), ("external_id_key", ASCENDING)], name="tenant_external_id"),
            IndexModel([("tenant", ASCENDING), ("status", ASCENDING), ("created_at", DESCENDING)],
                       name="tenant_status_created"),
        ])
        await self.charters.create_indexes([
            IndexModel([("tenant", ASCENDING), ("version", DESCENDING)], unique=True, name="tenant_version")])
        await self.signals.create_indexes([
            IndexModel([("tenant", ASCENDING), ("status", ASCENDING), ("created_at", DESCENDING)],
                       name="tenant_status_created")])
        await self.recognitions.create_indexes([
            IndexModel([("tenant", ASCENDING), ("recipient_id", ASCENDING), ("created_at", DESCENDING)],
                       name="tenant_recipient_created")])
        await self.training_completions.create_indexes([
            IndexModel([("tenant", ASCENDING), ("person_id", ASCENDING)], name="tenant_person")])

    # --- people -------------------------------------------------------------------------

    def guarded(self, tenant: str, document_id: str, version: int) -> dict[str, Any]:
        """The filter of a conditional write: the document, if still at `version`.

        On MongoDB this is a compare-and-set. FerretDB 1.x (SQLite) scans the whole
        collection for any filter but a bare `_id` (measured: 20 ms against 140 ms at
        2,000 documents, growing with the collection) and does not apply an update
        atomically anyway, so there the filter is the bare `_id`: the version and tenant
        were checked on the read just before, and `Context.person_lock` serialises
        a person's writes within the process.
        """
        if self.atomic_updates:
            return {"_id": document_id, "tenant": tenant, "version": version}
        return {"_id": document_id}

    async def get_person(self, tenant: str, person_id: str) -> Person | None:
        document = await self.get_by_id(self.people, tenant, person_id)
        return person_from_document(document) if document else None

    async def get_person_by_key(self, tenant: str, attribute: str, value: str) -> Person | None:
        """By `user_name` or `external_id`, case-insensitively, through the key index (see `_claim`)."""
        holder = await self.directory_keys.find_one({"_id": key_id(tenant, attribute, value)})
        if holder is None:
            return None
        person = await self.get_person(tenant, holder["person_id"])
        return person if person is not None and _holds(person, attribute, value) else None

    async def insert_person(self, person: Person, items: OutboxItems) -> None:
        """Raises DuplicateKeyError when the userName is taken."""
        await self._claim_keys(person)
        try:
            await self.people.insert_one(new_document_with_outbox(person_document(person), items))
        except DuplicateKeyError:
            await self._repair_user_name_key(person)
            raise

    async def archive_erased(self, tenant: str, person_id: str, archive_id: str) -> bool:
        """Free the id of an erased person whose login is provisioned again (ids derive from logins).

        The anonymised record and its consent trail stay, under `archive_id`; pending events go with it.
        """
        document = await self.people.find_one({"_id": person_id})
        if document is None or document.get("tenant") != tenant or document.get("status") != Status.ERASED:
            return False
        archived = {**document, "_id": archive_id, "user_name_key": f"~erased~{archive_id}",
                    "archived_from": person_id}
        await insert_once(self.people, archived)
        await self.people.delete_one({"_id": person_id})
        return True

    async def _repair_user_name_key(self, person: Person) -> None:
        # Two concurrent creations of one userName: the loser may have taken the key over
        # before the unique index refused its person. Point the key back at the winner.
        assert person.directory is not None
        winner = await self.people.find_one({"tenant": person.tenant,
                                             "user_name_key": lookup_key(person.directory.user_name)},
                                            projection={"_id": 1})
        if winner is not None:
            await self.directory_keys.update_one(
                {"_id": key_id(person.tenant, "user_name", person.directory.user_name)},
                {"$set": {"person_id": winner["_id"]}})

    async def update_person(self, person: Person, previous: Person, items: OutboxItems) -> None:
        """Write the whole person and its events in one update, if nobody wrote since `previous` was read."""
        if _lookup_values(person) != _lookup_values(previous):
            await self._claim_keys(person)
        document = person_document(person)
        document.pop("_id")
        result = await self.people.update_one(self.guarded(person.tenant, person.id, previous.version),
                                              with_outbox({"$set": document}, items))
        if result.matched_count == 0:
            raise StaleWrite(person.id)

    async def _claim_keys(self, person: Person) -> None:
        """Point the person's userName and externalId keys at them before the person is written.

        FerretDB 1.x scans a collection for any filter but `_id`, so lookups go through
        `directory_keys`, whose `_id` is (tenant, attribute, value). The person document
        stays the truth: a key is trusted only if its person still holds that value, so
        a key left behind by a rename, an erasure or a crash is simply taken over.
        """
        if person.directory is None:
            return
        await self._claim(person, "user_name", person.directory.user_name, unique=True)
        if person.directory.external_id is not None:
            await self._claim(person, "external_id", person.directory.external_id, unique=False)

    async def _claim(self, person: Person, attribute: str, value: str, unique: bool) -> None:
        key = key_id(person.tenant, attribute, value)
        try:
            await self.directory_keys.insert_one({"_id": key, "tenant": person.tenant, "person_id": person.id})
            return
        except DuplicateKeyError:
            holder = await self.directory_keys.find_one({"_id": key})
        if holder is None or holder["person_id"] == person.id:
            return
        if unique:
            current = await self.get_person(person.tenant, holder["person_id"])
            if current is not None and _holds(current, attribute, value):
                raise DuplicateKeyError(f"{attribute} is taken")
        await self.directory_keys.update_one({"_id": key}, {"$set": {"person_id": person.id}})

    async def list_people(self, tenant: str, status: str | None, cursor: str | None,
                          limit: int) -> tuple[list[Person], str | None]:
        query: dict[str, Any] = {"tenant": tenant}
        if status is not None:
            query["status"] = status
        documents, next_cursor = await newest_first_page(self.people, query, cursor, limit)
        return [person_from_document(d) for d in documents], next_cursor

    async def directory_page(self, tenant: str, match: dict[str, str], start_index: int,
                             count: int) -> tuple[int, list[Person]]:
        """SCIM's index-based pages, in creation order; erased people are no longer in the directory.

        A filter (`user_name` or `external_id`) is answered from the key index.
        """
        if match:
            (attribute, value), = match.items()
            person = await self.get_person_by_key(tenant, attribute, value)
            found = [person] if person is not None else []
            return len(found), found[start_index - 1:start_index - 1 + count]
        query: dict[str, Any] = {"tenant": tenant, "directory": {"$ne": None}}
        total = await self.people.count_documents(query)
        if count == 0:
            return total, []
        documents = await self.people.find(query, projection=NO_OUTBOX) \
            .sort([("created_at", ASCENDING), ("_id", ASCENDING)]).skip(start_index - 1).limit(count).to_list()
        return total, [person_from_document(d) for d in documents]

    async def list_people_with_consents(self, tenant: str, from_person_id: str | None, batch: int,
                                        inclusive: bool = True) -> list[Person]:
        """People holding consent records, by id, from `from_person_id` on."""
        query: dict[str, Any] = {"tenant": tenant, "consents.0": {"$exists": True}}
        if from_person_id is not None:
            query["_id"] = {"$gte" if inclusive else "$gt": from_person_id}
        documents = await self.people.find(query, projection=NO_OUTBOX).sort("_id", ASCENDING) \
            .limit(batch).to_list()
        return [person_from_document(d) for d in documents]

    # --- charters -------------------------------------------------------------------------

    async def get_current_charter(self, tenant: str) -> dict[str, Any] | None:
        return await self.charters.find_one({"tenant": tenant}, projection=NO_OUTBOX,
                                            sort=[("version", DESCENDING)])

    async def get_charter(self, tenant: str, version: int) -> dict[str, Any] | None:
        return await self.charters.find_one({"tenant": tenant, "version": version}, projection=NO_OUTBOX)

    async def list_charters(self, tenant: str, cursor: str | None, limit: int):
        return await newest_first_page(self.charters, {"tenant": tenant}, cursor, limit)

    # --- generic ---------------------------------------------------------------------------

    async def get_by_id(self, collection: AsyncCollection, tenant: str, document_id: str) -> dict[str, Any] | None:
        """By a bare `_id` (the one filter FerretDB does not scan for); another tenant's is None."""
        document = await collection.find_one({"_id": document_id}, projection=NO_OUTBOX)
        return document if document is not None and document.get("tenant") == tenant else None

    async def insert_idempotent(self, collection: AsyncCollection, document: dict[str, Any],
                                items: OutboxItems = ()) -> tuple[dict[str, Any], bool]:
        """Insert a document whose `_id` comes from the Idempotency-Key; a replay returns the first one.

        The document carries `request_fingerprint`; the same key with another body raises KeyReused.
        Other unique-index clashes propagate as DuplicateKeyError.
        """
        items = list(items)
        try:
            await collection.insert_one(new_document_with_outbox(document, items))
        except DuplicateKeyError:
            existing = await self.get_by_id(collection, document["tenant"], document["_id"])
            if existing is None:
                raise
            if existing.get("request_fingerprint") != document.get("request_fingerprint"):
                raise KeyReused(document["_id"]) from None
            return existing, False
        if items:
            await notify_outbox(collection, document["_id"])
        return document, True

    async def update_versioned(self, collection: AsyncCollection, tenant: str, document_id: str,
                               expected_version: int, changes: dict[str, Any]) -> bool:
        result = await collection.update_one(self.guarded(tenant, document_id, expected_version),
                                             {"$set": changes, "$inc": {"version": 1}})
        return result.matched_count == 1

    async def hint_person(self, person_id: str) -> None:
        """Ask the worker's relay to publish this person's pending events at its next poll."""
        await notify_outbox(self.people, person_id)

    async def list_recognitions(self, tenant: str, recipient_id: str, cursor: str | None, limit: int):
        return await newest_first_page(self.recognitions, {"tenant": tenant, "recipient_id": recipient_id},
                                       cursor, limit)

    async def list_signals(self, tenant: str, status: str | None, cursor: str | None, limit: int):
        query: dict[str, Any] = {"tenant": tenant}
        if status is not None:
            query["status"] = status
        return await newest_first_page(self.signals, query, cursor, limit)

    async def list_training_modules(self, tenant: str, cursor: str | None, limit: int):
        return await newest_first_page(self.training_modules, {"tenant": tenant}, cursor, limit)

    async def list_completions(self, tenant: str, person_id: str) -> list[dict[str, Any]]:
        return await self.training_completions.find({"tenant": tenant, "person_id": person_id}) \
            .sort("completed_at", ASCENDING).to_list()

    async def list_for_export(self, tenant: str, person_id: str) -> dict[str, list[dict[str, Any]]]:
        """Everything but the person document that is about this person."""
        by_person = {"tenant": tenant, "reporter_id": person_id}
        return {
            "recognitions_received": await self.recognitions.find(
                {"tenant": tenant, "recipient_id": person_id}).to_list(),
            "recognitions_given": await self.recognitions.find(
                {"tenant": tenant, "giver_id": person_id}).to_list(),
            "training_completions": await self.list_completions(tenant, person_id),
            "signals_reported": await self.signals.find(by_person, projection=NO_OUTBOX).to_list(),
        }

    async def erase_related(self, tenant: str, person_id: str) -> None:
        """Delete or anonymise what other collections hold about a person (before the person itself)."""
        # Lookup keys spell the userName and externalId.
        await self.directory_keys.delete_many({"tenant": tenant, "person_id": person_id})
        await self.recognitions.delete_many({"tenant": tenant, "recipient_id": person_id})
        await self.recognitions.update_many({"tenant": tenant, "giver_id": person_id}, {"$set": {"giver_id": None}})
        await self.training_completions.delete_many({"tenant": tenant, "person_id": person_id})
        # The signal (what was seen, where) stays for the comms team; the reporter's words and link go.
        await self.signals.update_many({"tenant": tenant, "reporter_id": person_id},
                                       {"$set": {"note": None, "reporter_id": None}})
