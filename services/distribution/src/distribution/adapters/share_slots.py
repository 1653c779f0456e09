"""Which recommended slots a content's shares hold, in one small document per content, by `_id`.

A preparation recommends a time that spreads the content's shares: it needs the slots held by the
content's confirmed shares and by its recent preparations. Asked of `shares`, that is a filter on
(tenant, content, recommended_at), which FerretDB 1.x answers by shipping every stored share to its Go
code and decoding it there (measured 30 ms at 600 stored shares, 230 ms at 3,000): it grew with every
share ever prepared. Here each share holds its slot under its id in its content's document
`tenant/content_id` (`held.<share id>`, one `$set` per change: a retry writes the same thing again), in
buckets on FerretDB (buckets.py). Slots are recommendations: a share whose slot was not written (the
process died between the share's insert and this write, or it was prepared before this document
existed) leaves its slot free for another share, nothing more.
"""

from __future__ import annotations

from datetime import datetime

from pymongo.asynchronous.collection import AsyncCollection

from advocacy_common.repository import Storage

from ..models.projections import scoped_id
from .buckets import bucket_collections, field_under, holding

COLLECTION = "share_slots"


class ShareSlots:
    def __init__(self, storage: Storage):
        self.buckets = bucket_collections(storage.database, COLLECTION, storage.capabilities.ferretdb)

    def _holding(self, tenant: str, content_id: str) -> tuple[AsyncCollection, str]:
        document_id = scoped_id(tenant, content_id)
        return holding(self.buckets, document_id), document_id

    async def hold(self, tenant: str, content_id: str, share_id: str, slot: datetime, created_at: datetime,
                   confirmed: bool) -> None:
        key = field_under("held", share_id)
        if key is None:  # an id that cannot be a field name holds no slot
            return
        collection, document_id = self._holding(tenant, content_id)
        await collection.update_one({"_id": document_id}, {"$set": {
            "tenant": tenant, key: {"at": slot, "created_at": created_at, "confirmed": confirmed}}}, upsert=True)

    async def held_from(self, tenant: str, content_id: str, moment: datetime, held_since: datetime) -> set[datetime]:
        collection, document_id = self._holding(tenant, content_id)
        document = await collection.find_one({"_id": document_id})
        if document is None or document.get("tenant") != tenant:
            return set()
        return {slot["at"] for slot in document.get("held", {}).values()
                if slot["at"] >= moment and (slot["confirmed"] or slot["created_at"] >= held_since)}
