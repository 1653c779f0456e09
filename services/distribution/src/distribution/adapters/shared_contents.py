"""What each person shared, as the feed reads it: one small document per person, by `_id`.

The feed leaves out what I already shared. Asking `shares` for it is a filter on (tenant, ambassador,
status), a scan of every share of every tenant on FerretDB 1.x, growing for good. So a confirmation also
enters `{share_id, content_id}` in the person's document `tenant/ambassador_id` (`$addToSet`: a retried
confirmation enters nothing twice), in buckets on FerretDB (see buckets.py): a feed reads one document
in a bucket of a few hundred. Its size is the person's confirmed shares (a weekly limit bounds them).

Entries are per share, not per content: a person may share one content on two networks, and a
confirmation that fails after entering takes out its own entry only. On FerretDB 1.24 `$pull` removes
an array element only when it equals the given value (a condition such as `{share_id: x}` matches
nothing, silently), so entries are always written and pulled as the same two-field document, in this
field order.
"""

from __future__ import annotations

from pymongo.asynchronous.collection import AsyncCollection

from advocacy_common.repository import Storage

from ..models.projections import scoped_id
from .buckets import bucket_collections, holding

COLLECTION = "shared_contents"


def shared_content_buckets(storage: Storage) -> list[AsyncCollection]:
    return bucket_collections(storage.database, COLLECTION, storage.capabilities.ferretdb)


def _entry(share_id: str, content_id: str) -> dict[str, str]:
    return {"share_id": share_id, "content_id": content_id}  # this order, always (see the module docstring)


class MongoSharedContents:
    def __init__(self, storage: Storage):
        self.buckets = shared_content_buckets(storage)

    def _holding(self, tenant: str, ambassador_id: str) -> tuple[AsyncCollection, str]:
        document_id = scoped_id(tenant, ambassador_id)
        return holding(self.buckets, document_id), document_id

    async def of(self, tenant: str, ambassador_id: str) -> set[str]:
        collection, document_id = self._holding(tenant, ambassador_id)
        document = await collection.find_one({"_id": document_id}, projection={"tenant": 1, "shares": 1})
        if document is None or document.get("tenant") != tenant:
            return set()
        return {entry["content_id"] for entry in document.get("shares", [])}

    async def add(self, tenant: str, ambassador_id: str, share_id: str, content_id: str) -> None:
        collection, document_id = self._holding(tenant, ambassador_id)
        await collection.update_one({"_id": document_id},
                                    {"$set": {"tenant": tenant, "ambassador_id": ambassador_id},
                                     "$addToSet": {"shares": _entry(share_id, content_id)}}, upsert=True)

    async def remove(self, tenant: str, ambassador_id: str, share_id: str, content_id: str) -> None:
        collection, document_id = self._holding(tenant, ambassador_id)
        await collection.update_one({"_id": document_id, "tenant": tenant},
                                    {"$pull": {"shares": _entry(share_id, content_id)}})

    async def forget(self, tenant: str, ambassador_id: str) -> None:
        collection, document_id = self._holding(tenant, ambassador_id)
        await collection.delete_one({"_id": document_id, "tenant": tenant})
