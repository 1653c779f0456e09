"""Clicks, connectors and their reports in MongoDB."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import AutoReconnect, BulkWriteError, ServerSelectionTimeoutError

from advocacy_common.envelope import Envelope
from advocacy_common.outbox import COMPRESSED_OUTBOX_FIELD, compressed_outbox
from advocacy_common.repository import AlreadyExists, ModelRepository, Page, Repository, SortKey, UnitOfWork
from advocacy_common.secretbox import Sealed, SecretBox, SecretUnreadable

from ..models.engagement import Click, Connector, Report
from ..models.plausibility import ShareTotals
from ..models.projections import scoped_id


class MongoClicks(ModelRepository[Click]):
    """Clicks as two insert-only collections, so that no write on the redirect path grows with the data.

    `clicks` is the queue of click events: one document per tenant per batch of clicks (at most
    `CLICKS_PER_DOCUMENT`) carries the batch's events (the outbox), and the relay deletes it once Kafka has
    them (`outbox_queues`), so it holds only the backlog and needs no hint. One document per batch, not one
    per click: FerretDB 1.x ships every document a relay's read or `$in` delete matches to FerretDB and
    decodes it there, and deletes the matches one at a time, so its cost per click is that per document
    divided by the clicks each carries (on MongoDB both are by index, and the fewer documents cost less
    too). Nothing reads a click back: the document is its events and the tenant, nothing else, the events
    one compressed binary field (`compressed_outbox`: FerretDB converts each field and string it stores and
    returns, and the relay's read and delete each decode the document; 16 KB of JSON for 18 clicks become
    1.7 KB). `click_visitors` holds one `_id` = code/visitor-hash per visitor and link (with its `code`), read
    back only by a GDPR export: the insert itself says whether the visitor is new. On FerretDB 1.x an insert
    is checked against the unique `_id` index, whereas every lookup or update scans the collection; MongoDB
    does both by index. Both are written a batch of clicks at a time (the redirect's group commit): one
    unordered `insert_many` per collection, whose duplicate-key errors name the documents already there.
    """

    collection_name = "click_queue"
    # The queue of releases before the events were compressed: a relay of an earlier release would read
    # today's documents there, find no `_outbox` entries, and delete them unpublished. In a collection of
    # their own they wait for an upgraded relay instead, whichever process is upgraded first; the relay
    # still drains this one in its sweeps (`outbox_swept_queues`).
    earlier_collection_name = "clicks"
    visitors_collection = "click_visitors"
    hinted = False
    model = Click

    async def claim_visitors(self, claims: Sequence[tuple[str, str]]) -> set[str]:
        documents = [{"_id": key, "tenant": tenant, "code": key.split("/", 1)[0]} for tenant, key in claims]
        claimed = {document["_id"] for document in documents}
        if documents:
            claimed -= await _insert_all(self.storage.database[self.visitors_collection], documents)
        return claimed

    async def record_many(self, clicks: Sequence[tuple[Click, UnitOfWork]]) -> None:
        documents = batch_documents(clicks)
        if not documents:
            return
        try:
            await _insert_all(self.collection, documents)
        except ServerSelectionTimeoutError:
            raise  # no server was reached: nothing was written, the callers get the error
        except AutoReconnect:
            # The connection broke (or timed out) under the write: whether the server applied it is unknown.
            # One more try of the same documents settles it, a document already there being a duplicate key
            # (click ids are random: only our own first try can have taken one). Answering an error instead
            # would leave clicks counted that their callers retry.
            await _insert_all(self.collection, documents)

    async def unique_visitors_by_code(self, tenant: str, codes: list[str]) -> dict[str, int]:
        """Distinct visitors per link (clicks themselves leave `clicks` once relayed; their daily counts are
        metrics' figures). `$group` with `$sum` is what FerretDB 1.x offers; the match scans there (rare:
        GDPR exports)."""
        pipeline = [{"$match": {"tenant": tenant, "code": {"$in": codes}}},
                    {"$group": {"_id": "$code", "visitors": {"$sum": 1}}}]
        visitors = self.storage.database[self.visitors_collection]
        return {row["_id"]: row["visitors"] async for row in await visitors.aggregate(pipeline)}


DUPLICATE_KEY = 11000
# Most click events one queue document carries: a relay pass (up to its batch size of documents) then
# publishes a bounded number of events, and a document stays far below MongoDB's 16 MB.
CLICKS_PER_DOCUMENT = 100


def batch_documents(clicks: Sequence[tuple[Click, UnitOfWork]]) -> list[dict[str, Any]]:
    """The queue documents of a batch of clicks: per tenant, in order, up to `CLICKS_PER_DOCUMENT` clicks'
    events each, keyed by the first click's id (random, never taken: a retry of the same batch inserts
    the same documents, which are then duplicates)."""
    by_tenant: dict[str, list[tuple[Click, UnitOfWork]]] = {}
    for click, uow in clicks:
        by_tenant.setdefault(click.tenant, []).append((click, uow))
    documents = []
    for tenant, of_tenant in by_tenant.items():
        for start in range(0, len(of_tenant), CLICKS_PER_DOCUMENT):
            chunk = of_tenant[start:start + CLICKS_PER_DOCUMENT]
            documents.append({"_id": chunk[0][0].id, "tenant": tenant, "at": chunk[0][0].at, "clicks": len(chunk),
                              COMPRESSED_OUTBOX_FIELD: compressed_outbox(entry for _, uow in chunk
                                                                         for entry in uow.pending)})
    return documents


async def _insert_all(collection: AsyncCollection, documents: list[dict[str, Any]]) -> set[Any]:
    """Insert every document not there yet, in one unordered `insert_many`: the `_id`s that were already there.

    Any other error raises; what went in before it stays.
    """
    try:
        await collection.insert_many(documents, ordered=False)
        return set()
    except BulkWriteError as error:
        problems = error.details.get("writeErrors", [])
        if error.details.get("writeConcernErrors") or any(p.get("code") != DUPLICATE_KEY for p in problems):
            raise
        return {documents[problem["index"]]["_id"] for problem in problems}


OLDEST_FIRST = SortKey("created_at", descending=False)
SEALED_SECRET = "sealed_secret"
PLAIN_SECRET = "secret"  # documents written before secrets were sealed; upgraded on first use or by reseal_all


@dataclass(frozen=True)
class ResealCount:
    """What `MongoConnectors.reseal_all` did: moved under the current key, or left because unreadable."""

    resealed: int
    unreadable: int


@dataclass
class MongoConnectors(ModelRepository[Connector]):
    """Connectors with their signing secret sealed at rest (AES-GCM, bound to tenant and connector id).

    Sealing lives here, not in the use case: it is how this store keeps the value, the use case needs the
    plain secret to verify signatures, and the binding to the document's tenant and `_id` is the adapter's
    knowledge. The network connectors' tokens are stored the same way (connectors/store.py).
    """

    secret_box: SecretBox
    collection_name = "connectors"  # unique (tenant, name)
    model = Connector

    def to_document(self, connector: Connector) -> dict[str, Any]:
        document = super().to_document(connector)
        document[SEALED_SECRET] = self.secret_box.seal(document.pop(PLAIN_SECRET),
                                                       *_context(connector.tenant, connector.id)).to_document()
        return document

    def from_document(self, document: Mapping[str, Any]) -> Connector:
        document = dict(document)
        if PLAIN_SECRET not in document:
            sealed = Sealed.from_document(document.pop(SEALED_SECRET, {}))
            document[PLAIN_SECRET] = self.secret_box.open(sealed, *_context(document["tenant"], document["_id"]))
        document.pop(SEALED_SECRET, None)
        return super().from_document(document)

    async def register(self, connector: Connector, fingerprint: str) -> Connector:
        stored, _ = await self.add_idempotent(connector, fingerprint)
        return stored

    async def get(self, tenant: str, connector_id: str) -> Connector | None:
        """The connector; a secret still in plain form or under an older key is resealed on the way."""
        document = await self.get_document(tenant, connector_id)
        if document is None:
            return None
        connector = self._entity(document)
        if self._stale(document):
            await self._reseal(document, connector)
        return connector

    async def list(self, tenant: str) -> list[Connector]:
        return await self.find({"tenant": tenant}, sort=[("created_at", 1)])

    async def page_of(self, tenant: str, cursor: str | None, limit: int) -> Page[Connector]:
        return await self.page({"tenant": tenant}, cursor=cursor, limit=limit, order=OLDEST_FIRST, scope="connectors")

    async def reseal_all(self) -> ResealCount:
        """Every secret in plain form or under another key than the current one, moved under the current key.

        Idempotent (a second run finds nothing) and safe beside running APIs (each write is a compare-and-set
        on the value read). Cross-tenant maintenance: on FerretDB 1.x this filter scans the collection, which
        is fine for a command run at each rotation; MongoDB scans too (no index on the key id is worth it).
        """
        resealed = unreadable = 0
        stale = {"$or": [{PLAIN_SECRET: {"$exists": True}},
                         {f"{SEALED_SECRET}.key_id": {"$ne": self.secret_box.keyring.current}}]}
        async for document in self.collection.find(stale, projection={"_id": 1}):
            current = await self.collection.find_one({"_id": document["_id"]})
            if current is None or not self._stale(current):
                continue
            try:
                connector = self._entity(current)
            except SecretUnreadable:
                unreadable += 1  # its key left the keyring already: put it back, run again
                continue
            resealed += await self._reseal(current, connector)
        return ResealCount(resealed, unreadable)

    def _stale(self, document: Mapping[str, Any]) -> bool:
        return PLAIN_SECRET in document or not self.secret_box.is_current(Sealed.from_document(document[SEALED_SECRET]))

    async def _reseal(self, document: Mapping[str, Any], connector: Connector) -> int:
        # Compare-and-set on what was read (a filter with `_id`, pushed down by FerretDB 1.x): of two
        # processes resealing the same secret, one writes; the other's read value is still valid either way.
        if PLAIN_SECRET in document:
            was = {PLAIN_SECRET: document[PLAIN_SECRET]}
        else:
            was = {f"{SEALED_SECRET}.ciphertext": document[SEALED_SECRET]["ciphertext"]}
        sealed = self.to_document(connector)[SEALED_SECRET]
        result = await self.collection.update_one({"_id": document["_id"], "tenant": connector.tenant, **was},
                                                  {"$set": {SEALED_SECRET: sealed}, "$unset": {PLAIN_SECRET: ""}})
        return result.modified_count


def _context(tenant: str, connector_id: str) -> tuple[str, str, str]:
    """The associated data of a connector's secret: a ciphertext copied to another connector does not open."""
    return ("connector-secret", tenant, connector_id)


class MongoReports(Repository[Report]):
    collection_name = "reports"  # `_id` is tenant/connector/report id

    def to_document(self, report: Report) -> dict[str, Any]:
        document = {"_id": report.id, **report.model_dump(exclude={"id", "envelope"})}
        if report.envelope is not None:
            document["envelope"] = report.envelope.to_document()
        return document

    def from_document(self, document: Mapping[str, Any]) -> Report:
        envelope = document.get("envelope")
        return Report.model_validate({**document, "id": document["_id"],
                                      "envelope": Envelope.from_document(envelope) if envelope else None})

    async def record(self, report: Report) -> bool:
        try:
            await self.add(report)
        except AlreadyExists:
            return False
        return True

    async def acknowledge(self, tenant: str, report_id: str) -> None:
        # The envelope is only needed until Kafka has it; dropping it keeps no ambassador id here.
        await self.collection.update_one({"_id": report_id, "tenant": tenant},
                                         {"$set": {"acknowledged": True}, "$unset": {"envelope": ""}})


class MongoEngagementTotals(Repository[ShareTotals]):
    """One document per share (`_id` tenant/share id): a compare-and-set on `{_id, tenant, version}`, which
    FerretDB 1.x resolves through the `_id` lookup and applies atomically behind the write-serialising proxy
    (no transactions there: the check and the new totals are one single-document write)."""

    collection_name = "engagement_totals"

    def to_document(self, totals: ShareTotals) -> dict[str, Any]:
        return {"_id": scoped_id(totals.tenant, totals.share_id), **totals.model_dump()}

    def from_document(self, document: Mapping[str, Any]) -> ShareTotals:
        return ShareTotals.model_validate(document)

    async def get(self, tenant: str, share_id: str) -> ShareTotals:
        return await super().get(tenant, scoped_id(tenant, share_id)) or ShareTotals(tenant=tenant, share_id=share_id)

    async def save(self, totals: ShareTotals) -> ShareTotals:  # type: ignore[override]
        if totals.version == 0:  # nothing stored yet: the first writer inserts, a racing one gets AlreadyExists
            first = totals.model_copy(update={"version": 1})
            await self.add(first)
            return first
        return await super().save(totals)
