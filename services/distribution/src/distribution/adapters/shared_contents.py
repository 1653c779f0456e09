"""What each person shared, as the feed reads it: entries in the person's own document, by `_id`.

The feed leaves out what I already shared. Asking `shares` for it is a filter on (tenant, ambassador,
status), a scan of every share of every tenant on FerretDB 1.x, growing for good. So a confirmation also
enters `{share_id, content_id}` in the person's document (`$addToSet`: a retried confirmation enters
nothing twice): the ambassador projection's `tenant/ambassador_id`, which the feed reads anyway
(`MongoAmbassadorProjection.person`), so that what I shared costs no read of its own: on FerretDB 1.x
each read by `_id` is a command and a scan of its bucket (see buckets.py). Its size is the person's
confirmed shares (a weekly limit bounds them). The projection's event writes `$set` their own fields
only, and an erasure drops the entries (`forget`, last in `handlers.on_erased`). The price: a replay of
the events into an empty projection does not bring the entries back; `Sharing.fill_shared` does, from
the shares, at the next start of the API (it enters every confirmed share not marked `in_person`).

Entries are per share, not per content: a person may share one content on two networks, and a
confirmation that fails after entering takes out its own entry only. On FerretDB 1.24 `$pull` removes
an array element only when it equals the given value (a condition such as `{share_id: x}` matches
nothing, silently), so entries are always written and pulled as the same two-field document, in this
field order.

The document also keeps when each share was confirmed (`shares_confirmed_at.<share id>`), so that the
weekly limit counts the person's recent confirmations from this same read (`recent_share_ids`) instead
of filtering `shares` (a decode of every stored share on FerretDB 1.x).

An earlier release kept the entries in collections of their own (`shared_contents`, in buckets on
FerretDB): `drop_earlier_shared_contents` drops them at start, `fill_shared` enters their shares again.
"""

from __future__ import annotations

from datetime import datetime

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from advocacy_common.repository import Storage

from ..models.projections import scoped_id
from .buckets import bucket_collections, field_under, holding
from .projections import SHARES, ambassador_buckets

EARLIER_COLLECTION = "shared_contents"
CONFIRMED_AT = "shares_confirmed_at"  # share id -> when it was confirmed, beside the entries


def _entry(share_id: str, content_id: str) -> dict[str, str]:
    return {"share_id": share_id, "content_id": content_id}  # this order, always (see the module docstring)


class MongoSharedContents:
    def __init__(self, storage: Storage):
        self.buckets = ambassador_buckets(storage.database, storage.capabilities.ferretdb)

    def _holding(self, tenant: str, ambassador_id: str) -> tuple[AsyncCollection, str]:
        document_id = scoped_id(tenant, ambassador_id)
        return holding(self.buckets, document_id), document_id

    async def of(self, tenant: str, ambassador_id: str) -> set[str]:
        collection, document_id = self._holding(tenant, ambassador_id)
        document = await collection.find_one({"_id": document_id}, projection={"tenant": 1, SHARES: 1})
        if document is None or document.get("tenant") != tenant:
            return set()
        return {entry["content_id"] for entry in document.get(SHARES, [])}

    async def add(self, tenant: str, ambassador_id: str, share_id: str, content_id: str,
                  confirmed_at: datetime | None = None) -> None:
        collection, document_id = self._holding(tenant, ambassador_id)
        fields: dict[str, object] = {"tenant": tenant, "ambassador_id": ambassador_id}
        # An id that cannot be a field name keeps no time: counted as one of unknown time (`recent_share_ids`).
        if confirmed_at is not None and (key := field_under(CONFIRMED_AT, share_id)) is not None:
            fields[key] = confirmed_at
        await collection.update_one({"_id": document_id},
                                    {"$set": fields, "$addToSet": {SHARES: _entry(share_id, content_id)}},
                                    upsert=True)

    async def remove(self, tenant: str, ambassador_id: str, share_id: str, content_id: str) -> None:
        collection, document_id = self._holding(tenant, ambassador_id)
        update: dict[str, object] = {"$pull": {SHARES: _entry(share_id, content_id)}}
        if (key := field_under(CONFIRMED_AT, share_id)) is not None:
            update["$unset"] = {key: ""}
        await collection.update_one({"_id": document_id, "tenant": tenant}, update)

    async def recent_share_ids(self, tenant: str, ambassador_id: str, since: datetime) -> list[str]:
        """Ids of the person's shares entered here as confirmed at or after `since`, and of those entered
        without a time (before times were kept): a superset of their confirmations since then, which the
        caller checks share by share. Entered before the share is saved, an entry may name a share whose
        confirmation did not go through (or went through a moment later: a concurrent retry's time)."""
        collection, document_id = self._holding(tenant, ambassador_id)
        document = await collection.find_one({"_id": document_id}, projection={"tenant": 1, SHARES: 1,
                                                                                CONFIRMED_AT: 1})
        if document is None or document.get("tenant") != tenant:
            return []
        times = document.get(CONFIRMED_AT, {})
        return [entry["share_id"] for entry in document.get(SHARES, [])
                if entry["share_id"] not in times or times[entry["share_id"]] >= since]

    async def forget(self, tenant: str, ambassador_id: str) -> None:
        collection, document_id = self._holding(tenant, ambassador_id)
        await collection.update_one({"_id": document_id, "tenant": tenant},
                                    {"$unset": {SHARES: "", CONFIRMED_AT: ""}})


async def drop_earlier_shared_contents(database: AsyncDatabase) -> int:
    """Drop the earlier release's `shared_contents` collections (their shares are entered again from
    `shares` by `fill_shared`); how many there were."""
    names = {c.name for c in bucket_collections(database, EARLIER_COLLECTION, ferretdb=True)} | {EARLIER_COLLECTION}
    earlier = names & set(await database.list_collection_names())
    for name in earlier:
        await database[name].drop()
    return len(earlier)
