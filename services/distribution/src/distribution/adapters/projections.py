"""Projections of content, ambassador and charter events, and the comment tallies, in MongoDB.

Every write goes through `apply_once`: the per-partition watermark rides in the same single-document update
as the effect, so a redelivered event changes nothing and a replay from the start rebuilds the same
documents. Version guards are filters (`version < new`), so an older event applied late loses.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from advocacy_common.consuming import Delivery
from advocacy_common.events import AmbassadorProfile, EngagementKind
from advocacy_common.repository import Page, Repository, apply_once

from ..models.projections import (
    AmbassadorStatus, AmbassadorView, CharterView, CommentTally, ContentView, scoped_id,
)
from .buckets import bucket_collections, holding
from .erasure import anonymise_until_settled
from .subjects import BucketedSubjectHolders, subject_buckets

NOT_ERASED = {"status": {"$ne": AmbassadorStatus.ERASED.value}}
AWAITING_SCOPE = "comments-awaiting-reply"
AMBASSADORS = "ambassadors"  # in buckets on FerretDB (see buckets.py): every feed reads one person by id
CONTENT_CHANGES = "content_changes"  # `_id` tenant: `changes`, a count of the tenant's content writes
COMMENT_COUNTERS = {EngagementKind.COMMENT: "comments", EngagementKind.COMMENT_REPLY: "replies"}


class MongoContentProjection(Repository[ContentView]):
    collection_name = "contents"

    def from_document(self, document: Mapping[str, Any]) -> ContentView:
        return ContentView.model_validate(document)

    async def get(self, tenant: str, content_id: str) -> ContentView | None:
        return await super().get(tenant, scoped_id(tenant, content_id))

    async def list_unretired(self, tenant: str) -> list[ContentView]:
        # Scans on FerretDB 1.x (only `_id` filters reach the backend); MongoDB uses the (tenant, retired,
        # publish_at) index. Once per change of the tenant's contents (see `changes`), not per feed.
        return await self.find({"tenant": tenant, "retired": False})

    async def changes(self, tenant: str) -> int:
        # One small document per tenant, by bare `_id`: what the feed snapshot checks every second or so.
        document = await self.storage.database[CONTENT_CHANGES].find_one({"_id": tenant})
        return int(document.get("changes", 0)) if document is not None else 0

    async def put_if_newer(self, content: ContentView, delivery: Delivery) -> None:
        fields = content.model_dump(mode="json")
        fields.update(publish_at=content.publish_at, expires_at=content.expires_at)  # dates stay dates (queries)
        await apply_once(self.collection, {"_id": scoped_id(content.tenant, content.content_id),
                                           "version": {"$lt": content.version}}, {"$set": fields}, delivery)
        await self._changed(content.tenant)

    async def retire(self, tenant: str, content_id: str, version: int, reason: str, delivery: Delivery) -> None:
        update = {"$set": {"retired": True, "version": version, "retired_reason": reason, "tenant": tenant,
                           "content_id": content_id}}
        await apply_once(self.collection, {"_id": scoped_id(tenant, content_id), "version": {"$lte": version}},
                         update, delivery)
        await self._changed(tenant)

    async def _changed(self, tenant: str) -> None:
        # After the content's write, and also when `apply_once` found it applied (a redelivery after a crash
        # between the two writes): a snapshot that read the count before a write reloads after it. An extra
        # count only costs one reload.
        await self.storage.database[CONTENT_CHANGES].update_one({"_id": tenant}, {"$inc": {"changes": 1}},
                                                                upsert=True)


def ambassador_buckets(database: AsyncDatabase, ferretdb: bool) -> list[AsyncCollection]:
    """The collections holding distribution's ambassador projection (one on MongoDB)."""
    return bucket_collections(database, AMBASSADORS, ferretdb)


class MongoAmbassadorProjection(Repository[AmbassadorView]):
    collection_name = AMBASSADORS

    def __post_init__(self) -> None:
        super().__post_init__()
        ferretdb = self.storage.capabilities.ferretdb
        self.buckets = ambassador_buckets(self.storage.database, ferretdb)
        self.subjects = BucketedSubjectHolders(subject_buckets(self.storage.database, ferretdb))

    def _holding(self, tenant: str, ambassador_id: str) -> tuple[AsyncCollection, str]:
        """The collection and `_id` of one person's document."""
        document_id = scoped_id(tenant, ambassador_id)
        return holding(self.buckets, document_id), document_id

    async def claim_subject(self, tenant: str, subject_key: str, ambassador_id: str, claimed_at: datetime) -> None:
        await self.subjects.claim_subject(tenant, subject_key, ambassador_id, claimed_at)

    async def subject_holder(self, tenant: str, subject_key: str) -> str | None:
        return await self.subjects.subject_holder(tenant, subject_key)

    def from_document(self, document: Mapping[str, Any]) -> AmbassadorView:
        return AmbassadorView.model_validate(document)

    async def get(self, tenant: str, ambassador_id: str) -> AmbassadorView | None:
        collection, document_id = self._holding(tenant, ambassador_id)
        document = await collection.find_one({"_id": document_id})  # bare `_id`: see the buckets
        if document is None or document.get("tenant") != tenant:
            return None
        return self._entity(document)

    async def opt_in(self, tenant: str, ambassador_id: str, profile: AmbassadorProfile, charter_version: int,
                     delivery: Delivery) -> None:
        update = {"$set": {"status": AmbassadorStatus.OPTED_IN.value, "profile": profile.model_dump(mode="json"),
                           "tenant": tenant, "ambassador_id": ambassador_id},
                  # charter.accepted travels on the tenant's partition and may arrive before or after this.
                  "$max": {"accepted_charter_version": charter_version}}
        collection, document_id = self._holding(tenant, ambassador_id)
        await apply_once(collection, {"_id": document_id}, update, delivery)

    async def update_profile(self, tenant: str, ambassador_id: str, profile: AmbassadorProfile,
                             delivery: Delivery) -> None:
        await self._unless_erased(tenant, ambassador_id, {"$set": {"profile": profile.model_dump(mode="json")}},
                                  delivery)

    async def opt_out(self, tenant: str, ambassador_id: str, delivery: Delivery) -> None:
        await self._unless_erased(tenant, ambassador_id, {"$set": {"status": AmbassadorStatus.OPTED_OUT.value}},
                                  delivery)

    async def accept_charter(self, tenant: str, ambassador_id: str, charter_version: int,
                             delivery: Delivery) -> None:
        await self._unless_erased(tenant, ambassador_id, {"$max": {"accepted_charter_version": charter_version}},
                                  delivery)

    async def erase(self, tenant: str, ambassador_id: str, delivery: Delivery) -> None:
        collection, document_id = self._holding(tenant, ambassador_id)
        await apply_once(collection, {"_id": document_id},
                         {"$set": {"status": AmbassadorStatus.ERASED.value, "tenant": tenant,
                                   "ambassador_id": ambassador_id}, "$unset": {"profile": ""}}, delivery)

    async def _unless_erased(self, tenant: str, ambassador_id: str, update: dict[str, Any],
                             delivery: Delivery) -> None:
        """Once erased, nothing but a new opt-in brings a person back into this projection."""
        update = {**update, "$set": {**update.get("$set", {}), "tenant": tenant, "ambassador_id": ambassador_id}}
        collection, document_id = self._holding(tenant, ambassador_id)
        await apply_once(collection, {"_id": document_id, **NOT_ERASED}, update, delivery)


class MongoCharterProjection(Repository[CharterView]):
    collection_name = "charters"  # `_id` is the tenant

    def from_document(self, document: Mapping[str, Any]) -> CharterView:
        return CharterView.model_validate(document)

    async def current(self, tenant: str) -> CharterView:
        return await super().get(tenant, tenant) or CharterView()

    async def publish(self, tenant: str, charter: CharterView, delivery: Delivery) -> None:
        update = {"$set": {"tenant": tenant, **charter.model_dump()}}
        await apply_once(self.collection, {"_id": tenant, "current_version": {"$lt": charter.current_version}},
                         update, delivery)


class MongoCommentTallies(Repository[CommentTally]):
    collection_name = "comments"  # `_id` is tenant/share_id

    def from_document(self, document: Mapping[str, Any]) -> CommentTally:
        return CommentTally.model_validate(document)

    async def count(self, tally: CommentTally, kind: EngagementKind, count: int, delivery: Delivery) -> None:
        update = {"$inc": {COMMENT_COUNTERS[kind]: count},
                  "$set": tally.model_dump(include={"tenant", "share_id", "ambassador_id", "content_id", "network"})}
        await apply_once(self.collection, {"_id": scoped_id(tally.tenant, tally.share_id)}, update, delivery)

    async def awaiting_reply(self, tenant: str, ambassador_id: str, cursor: str | None,
                             limit: int) -> Page[CommentTally]:
        # Keyset on share id; "more comments than replies" is checked here, not in the query (FerretDB 1.x has
        # no `$expr` comparing two fields), reading on until the page is full.
        scope = f"{AWAITING_SCOPE}\x1f{tenant}\x1f{ambassador_id}"
        after = self.storage.cursors.decode(scope, cursor, (str,))
        query: dict[str, Any] = {"tenant": tenant, "ambassador_id": ambassador_id}
        if after is not None:
            query["share_id"] = {"$gt": after[0]}
        found: list[CommentTally] = []
        async for document in self.collection.find(query).sort([("share_id", 1)]):
            tally = self._entity(document)
            if tally is None or tally.awaiting <= 0:
                continue
            if len(found) == limit:
                return Page(found, self.storage.cursors.encode(scope, (found[-1].share_id,)))
            found.append(tally)
        return Page(found, None)

    async def anonymise(self, tenant: str, ambassador_id: str, erased: str) -> None:
        await anonymise_until_settled(self.collection, tenant, ambassador_id, {"$set": {"ambassador_id": erased}})
