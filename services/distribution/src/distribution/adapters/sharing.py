"""Shares (in buckets on FerretDB), signature books and the tenants' authenticity policies in MongoDB
(tracked links: links.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from bson import Binary
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from advocacy_common.outbox import OUTBOX_FIELD
from advocacy_common.repository import (
    FINGERPRINT_FIELD, NEWEST_FIRST, AlreadyExists, KeyReused, Page, Repository, StaleWrite, UnitOfWork,
)

from ..models.authenticity import SIGNATURE_BYTES, AuthenticityPolicy, BookEntry, SignatureBook, TenantPolicy
from ..models.sharing import Share, ShareStatus
from .buckets import bucket_collections, find_in_buckets, holding, move_once_into_buckets
from .erasure import anonymise_until_settled
from .share_slots import ShareSlots
from .shared_contents import MongoSharedContents

log = logging.getLogger(__name__)

BOOK_CHUNK_ENTRIES = 200  # entries per book document: about 110 kB each, far below the 16 MB limit
BOOK_ATTEMPTS = 20  # compare-and-set rounds of one removal
IN_BOOK = "in_book"  # storage's note that a confirmed share is in its content's signature book
# Storage's note that a confirmed share is in its person's shared contents. Named anew when the entries moved
# into the person's document (an earlier release's `in_shared` marked them in collections dropped since):
# `Sharing.fill_shared` enters every confirmed share again, once.
IN_SHARED = "in_person"


SHARES = "shares"
MOVE_BATCH = 200
# A confirmation's time in the person's `shared_contents` entry may trail its share's `confirmed_at` by a
# concurrent retry's moments; the weekly count looks this much further back and checks each share.
RECENT_MARGIN = timedelta(hours=1)


def share_buckets(database: AsyncDatabase, ferretdb: bool) -> list[AsyncCollection]:
    """The collections holding the shares: `shares` on MongoDB, `shares_00` ... `shares_ff` on FerretDB."""
    return bucket_collections(database, SHARES, ferretdb)


class MongoShares(Repository[Share]):
    """Shares by id, each with its events in `_outbox` (the outbox: the confirmation and its
    `post.shared.v1` are one single-document write).

    FerretDB 1.x finds even a bare `_id` by a sequential scan of the collection, and a share document is
    large (text, intent URL, signature, events): measured 15 ms per read by `_id` at 600 stored shares and
    47 ms at 3,000, so every prepare, confirmation and relay pass grew with every share ever stored. On
    FerretDB the shares therefore live in `shares_00` ... `shares_ff` by a hash of their id (buckets.py),
    and what prepare asked of the whole collection by filter comes from small documents by `_id`: the
    weekly count from the person's `shared_contents` document, the held slots from the content's
    `share_slots` document. The rare reads by other fields (my shares, a post URL, erasure, start-up
    fills) visit every bucket side by side. MongoDB keeps one `shares` collection with its indexes.
    """

    collection_name = SHARES  # `_id` derives from the Idempotency-Key; events ride in `_outbox`

    def __post_init__(self) -> None:
        super().__post_init__()
        self.buckets = share_buckets(self.storage.database, self.storage.capabilities.ferretdb)
        self.slots = ShareSlots(self.storage)
        self.people = MongoSharedContents(self.storage)

    def _holding(self, document_id: Any) -> AsyncCollection:
        return holding(self.buckets, document_id)

    def to_document(self, share: Share) -> dict[str, Any]:
        document = share.model_dump(exclude={"id"})
        document.update(_id=share.id, status=share.status.value, network=share.network.value)
        if share.status is ShareStatus.CONFIRMED:
            document[IN_BOOK] = True  # a confirmation enters the book before it saves the share
            document[IN_SHARED] = True  # and the person's shared contents (`MongoSharedContents`)
        return document

    def from_document(self, document: Mapping[str, Any]) -> Share:
        return Share.model_validate({**document, "id": document["_id"]})

    async def _find_all(self, query: Mapping[str, Any], limit: int = 0) -> list[Share]:
        """Shares matching `query` from every bucket side by side (reads are not serialised by the proxy)."""
        documents = await find_in_buckets(self.buckets, query, {OUTBOX_FIELD: 0}, limit)
        return [self._entity(document) for document in documents]  # type: ignore[misc]

    async def get_retry(self, tenant: str, share_id: str, fingerprint: str) -> Share | None:
        document = await self.get_document(tenant, share_id)
        if document is None:
            return None
        if document.get(FINGERPRINT_FIELD) != fingerprint:
            raise KeyReused(share_id)
        return self._entity(document)

    async def add_prepared(self, share: Share, fingerprint: str) -> Share:
        stored, created = await self.add_idempotent(share, fingerprint)
        if created:  # after the insert: only a share that exists holds a slot
            await self.slots.hold(share.tenant, share.content_id, share.id, share.recommended_at, share.created_at,
                                  confirmed=share.status is ShareStatus.CONFIRMED)
        # Read back: the database's copy (times in milliseconds) is what any retry will be answered with.
        return await self.get(share.tenant, share.id) or stored

    async def confirm(self, share: Share, uow: UnitOfWork) -> Share:
        saved = await self.save(share, uow, guard={"status": ShareStatus.PREPARED.value})
        await self.slots.hold(share.tenant, share.content_id, share.id, share.recommended_at, share.created_at,
                              confirmed=True)
        return saved

    async def page_of(self, tenant: str, ambassador_id: str, cursor: str | None, limit: int) -> Page[Share]:
        return await self.page({"tenant": tenant, "ambassador_id": ambassador_id}, cursor=cursor, limit=limit,
                               order=NEWEST_FIRST, scope=f"ambassador={ambassador_id}", collections=self.buckets)

    async def find_by_post_url(self, tenant: str, post_url: str) -> Share | None:
        found = await self._find_all({"tenant": tenant, "post_url": post_url}, limit=1)
        return found[0] if found else None

    async def count_confirmed_since(self, tenant: str, ambassador_id: str, since: datetime) -> int:
        # Every confirmed share of the person is entered in their `shared_contents` document before it is
        # saved (or by `fill_shared`): its recent entries name every candidate, each checked by `_id`.
        candidates = await self.people.recent_share_ids(tenant, ambassador_id, since - RECENT_MARGIN)
        shares = await asyncio.gather(*(self.get(tenant, share_id) for share_id in candidates))
        return sum(1 for share in shares if share is not None and share.ambassador_id == ambassador_id
                   and share.status is ShareStatus.CONFIRMED and share.confirmed_at is not None
                   and share.confirmed_at >= since)

    async def slots_held_from(self, tenant: str, content_id: str, moment: datetime,
                              held_since: datetime) -> set[datetime]:
        return await self.slots.held_from(tenant, content_id, moment, held_since)

    async def confirmed_outside_books(self, limit: int) -> list[Share]:
        # Cross-tenant, run at start-up: a scan on FerretDB 1.x (and on MongoDB: no index is worth it for a
        # filter that matches nothing once the books are filled).
        return await self._find_all({"status": ShareStatus.CONFIRMED.value, IN_BOOK: {"$exists": False}}, limit)

    async def mark_in_book(self, tenant: str, share_id: str) -> None:
        await self._holding(share_id).update_one({"_id": share_id, "tenant": tenant}, {"$set": {IN_BOOK: True}})

    async def confirmed_outside_shared(self, limit: int) -> list[Share]:
        # As `confirmed_outside_books`: a scan at start-up that matches nothing once filled.
        return await self._find_all({"status": ShareStatus.CONFIRMED.value, IN_SHARED: {"$exists": False}}, limit)

    async def mark_in_shared(self, tenant: str, share_id: str) -> None:
        await self._holding(share_id).update_one({"_id": share_id, "tenant": tenant}, {"$set": {IN_SHARED: True}})

    async def anonymise(self, tenant: str, ambassador_id: str, erased: str) -> None:
        # The version moves on, so a confirmation read before the erasure cannot write the person back.
        await anonymise_until_settled(self.buckets, tenant, ambassador_id, {
            "$set": {"ambassador_id": erased, "text": None, "post_url": None}, "$inc": {"version": 1}})


async def move_shares(database: AsyncDatabase, ferretdb: bool) -> int:
    """On FerretDB, the shares of the single `shares` collection (written before the buckets) into their
    buckets, then that collection dropped; how many were moved. Idempotent: a share already in its bucket
    stays as it is there (it may have changed since), and a start interrupted before the drop moves the rest
    again. A moved share keeps its pending events: the relay's sweep of its bucket publishes them. Nothing
    to do on MongoDB or once moved."""
    moved = await move_once_into_buckets(database, SHARES, share_buckets(database, ferretdb), MOVE_BATCH)
    if moved:
        log.info("moved %d shares into their buckets", moved)
    return moved


class MongoSignatureBooks(Repository[SignatureBook]):
    """A content's signature book in chunk documents `tenant/content_id/<n>` (n = 0, 1, ...), each with a
    `version`: parallel arrays of share ids and colleague keys, and the chunk's packed signatures as one
    binary value (FerretDB 1.x stores documents as JSON: one field of 100 kB reads and writes far faster
    than 200 sub-documents).

    FerretDB 1.x pushes down only bare `_id` filters and has no transactions: the book is read chunk by
    chunk by `_id` (cost grows with the content's confirmed shares, not with the collection), and an entry
    is added by a compare-and-set on the last chunk's `{_id, tenant, version}` (or the insert of the next
    chunk, a duplicate key for the second of two racers): one single-document write, atomic on MongoDB
    and on FerretDB behind the write-serialising proxy.
    """

    collection_name = "signature_books"

    @staticmethod
    def _id(tenant: str, content_id: str, chunk: int) -> str:
        return f"{tenant}/{content_id}/{chunk}"

    @staticmethod
    def _fields(entries: list[BookEntry], version: int) -> dict[str, Any]:
        return {"share_ids": [e.share_id for e in entries], "colleagues": [e.colleague for e in entries],
                "signatures": Binary(b"".join(e.signature for e in entries)), "version": version}

    @staticmethod
    def _entries(document: Mapping[str, Any]) -> list[BookEntry]:
        signatures, size = bytes(document.get("signatures", b"")), SIGNATURE_BYTES
        return [BookEntry(share_id=share_id, colleague=colleague, signature=signatures[i * size:(i + 1) * size])
                for i, (share_id, colleague) in enumerate(zip(document.get("share_ids", []),
                                                              document.get("colleagues", []), strict=True))]

    async def read(self, tenant: str, content_id: str) -> SignatureBook:
        book = SignatureBook(tenant=tenant, content_id=content_id)
        entries: list[BookEntry] = []
        chunk = 0
        while (document := await self.get_document(tenant, self._id(tenant, content_id, chunk))) is not None:
            chunk_entries = self._entries(document)
            entries += chunk_entries
            book = book.model_copy(update={"last_chunk": chunk, "last_chunk_size": len(chunk_entries),
                                           "last_version": document["version"]})
            chunk += 1
        return book.model_copy(update={"entries": entries})

    async def add(self, book: SignatureBook, entry: BookEntry) -> None:
        tenant, content_id = book.tenant, book.content_id
        if book.last_version == 0 or book.last_chunk_size >= BOOK_CHUNK_ENTRIES:
            chunk = book.last_chunk + 1 if book.last_version else 0
            try:
                await self.collection.insert_one({"_id": self._id(tenant, content_id, chunk), "tenant": tenant,
                                                  "content_id": content_id, "chunk": chunk,
                                                  **self._fields([entry], 1)})
            except DuplicateKeyError:
                raise AlreadyExists(self._id(tenant, content_id, chunk)) from None
            return
        # The whole last chunk is rewritten from what was read: the compare-and-set makes that read current.
        last = [*book.entries[len(book.entries) - book.last_chunk_size:], entry]
        await self._compare_and_set(tenant, self._id(tenant, content_id, book.last_chunk), book.last_version,
                                    {"$set": self._fields(last, book.last_version + 1)}, None)

    async def remove(self, tenant: str, content_id: str, share_id: str) -> None:
        chunk, attempts = 0, 0
        while (document := await self.get_document(tenant, self._id(tenant, content_id, chunk))) is not None:
            entries = self._entries(document)
            kept = [e for e in entries if e.share_id != share_id]
            if len(kept) != len(entries):
                try:
                    await self._compare_and_set(tenant, document["_id"], document["version"],
                                                {"$set": self._fields(kept, document["version"] + 1)}, None)
                except StaleWrite:
                    attempts += 1
                    if attempts < BOOK_ATTEMPTS:
                        continue  # an addition got in between: read this chunk again
                    raise
            chunk += 1


class MongoPolicies(Repository[TenantPolicy]):
    collection_name = "policies"  # `_id` is the tenant; `version` is the ETag

    def to_document(self, stored: TenantPolicy) -> dict[str, Any]:
        return {"_id": stored.tenant, "tenant": stored.tenant, "policy": stored.policy.model_dump(),
                "version": stored.version}

    def from_document(self, document: Mapping[str, Any]) -> TenantPolicy:
        return TenantPolicy.model_validate(document)

    async def current(self, tenant: str) -> TenantPolicy:
        return await self.get(tenant, tenant) or TenantPolicy(tenant=tenant)

    async def replace(self, tenant: str, policy: AuthenticityPolicy, expected_version: int) -> TenantPolicy:
        if expected_version == 0:  # never stored: the first writer inserts, a racing one gets AlreadyExists
            first = TenantPolicy(tenant=tenant, policy=policy, version=1)
            await self.add(first)
            return first
        return await self.save(TenantPolicy(tenant=tenant, policy=policy, version=expected_version))
