"""Projections of content, ambassador and charter events, and the comment tallies, in MongoDB.

Every write goes through `apply_once`: the per-partition watermark rides in the same single-document update
as the effect, so a redelivered event changes nothing and a replay from the start rebuilds the same
documents. Version guards are filters (`version < new`), so an older event applied late loses.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from advocacy_common.consuming import Delivery
from advocacy_common.events import AmbassadorProfile, EngagementKind
from advocacy_common.repository import Page, Repository, apply_once

from ..models.projections import (
    AmbassadorStatus, AmbassadorView, CharterView, CommentTally, ContentView, Person, scoped_id,
)
from .buckets import bucket_collections, holding
from .erasure import anonymise_until_settled

NOT_ERASED = {"status": {"$ne": AmbassadorStatus.ERASED.value}}
AWAITING_SCOPE = "comments-awaiting-reply"
AMBASSADORS = "ambassadors"  # in buckets on FerretDB (see buckets.py): every feed reads one person by id
LOGIN = "login"  # on a login's first holder's document: {ambassador_id, claimed_at} of its latest claim
SHARES = "shares"  # the person's `SharedContents` entries, written by the API (see shared_contents.py)
PROFILE = "profile_json"  # the person's `AmbassadorProfile` as one JSON string (see `profile_fields`)
EARLIER_PROFILE = "profile"  # the same profile as a nested document, as earlier releases wrote it
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
    """One document per person (`tenant/ambassador_id`, in buckets on FerretDB) holds what every request of
    theirs needs, so that a feed is one read by bare `_id` (FerretDB 1.x: each read scans its bucket and costs
    a command; three reads per feed took most of a core at 150 feeds/s): the projection of their events,
    their `SharedContents` entries (`shares`), and on the document of a login's first holder, whose id is the
    login's subject key, that login's latest claim (`login`: `advocacy_common.subjects`' rule, kept here
    instead of a collection of its own). MongoDB holds the same documents in one collection."""

    collection_name = AMBASSADORS

    def __post_init__(self) -> None:
        super().__post_init__()
        self.buckets = ambassador_buckets(self.storage.database, self.storage.capabilities.ferretdb)

    def _holding(self, tenant: str, ambassador_id: str) -> tuple[AsyncCollection, str]:
        """The collection and `_id` of one person's document."""
        document_id = scoped_id(tenant, ambassador_id)
        return holding(self.buckets, document_id), document_id

    async def _document(self, tenant: str, ambassador_id: str,
                        fields: dict[str, int] | None = None) -> dict[str, Any] | None:
        collection, document_id = self._holding(tenant, ambassador_id)
        document = await collection.find_one({"_id": document_id}, projection=fields)  # bare `_id`: see the buckets
        return document if document is not None and document.get("tenant") == tenant else None

    async def claim_subject(self, tenant: str, subject_key: str, ambassador_id: str, claimed_at: datetime) -> None:
        await claim_login(self.buckets, tenant, subject_key, ambassador_id, claimed_at)

    async def subject_holder(self, tenant: str, subject_key: str) -> str | None:
        return _holder(await self._document(tenant, subject_key, {"tenant": 1, LOGIN: 1}))

    async def person(self, tenant: str, subject_key: str) -> Person:
        document = await self._document(tenant, subject_key)
        holder = _holder(document) or subject_key
        if holder != subject_key:  # the login was provisioned again after its first holder's erasure
            document = await self._document(tenant, holder)
        if document is None:
            return Person(holder, None)
        return Person(holder, self._entity(document),
                      frozenset(entry["content_id"] for entry in document.get(SHARES, ())))

    def from_document(self, document: Mapping[str, Any]) -> AmbassadorView:
        return AmbassadorView.model_validate(readable(document))

    async def get(self, tenant: str, ambassador_id: str) -> AmbassadorView | None:
        document = await self._document(tenant, ambassador_id)
        return self._entity(document) if document is not None else None

    async def opt_in(self, tenant: str, ambassador_id: str, profile: AmbassadorProfile, charter_version: int,
                     delivery: Delivery) -> None:
        update = {"$set": {"status": AmbassadorStatus.OPTED_IN.value, **profile_fields(profile),
                           "tenant": tenant, "ambassador_id": ambassador_id},
                  "$unset": {EARLIER_PROFILE: ""},
                  # charter.accepted travels on the tenant's partition and may arrive before or after this.
                  "$max": {"accepted_charter_version": charter_version}}
        collection, document_id = self._holding(tenant, ambassador_id)
        await apply_once(collection, {"_id": document_id}, update, delivery)

    async def update_profile(self, tenant: str, ambassador_id: str, profile: AmbassadorProfile,
                             delivery: Delivery) -> None:
        await self._unless_erased(tenant, ambassador_id, {"$set": profile_fields(profile),
                                                          "$unset": {EARLIER_PROFILE: ""}}, delivery)

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
                                   "ambassador_id": ambassador_id}, "$unset": {PROFILE: "", EARLIER_PROFILE: ""}},
                         delivery)

    async def _unless_erased(self, tenant: str, ambassador_id: str, update: dict[str, Any],
                             delivery: Delivery) -> None:
        """Once erased, nothing but a new opt-in brings a person back into this projection."""
        update = {**update, "$set": {**update.get("$set", {}), "tenant": tenant, "ambassador_id": ambassador_id}}
        collection, document_id = self._holding(tenant, ambassador_id)
        await apply_once(collection, {"_id": document_id, **NOT_ERASED}, update, delivery)


async def claim_login(buckets: list[AsyncCollection], tenant: str, subject_key: str, ambassador_id: str,
                      claimed_at: datetime) -> None:
    """`ambassador_id` holds the login from `claimed_at` unless a later claim is stored (idempotent), on the
    document of the login's first holder (whose id is the subject key)."""
    document_id = scoped_id(tenant, subject_key)
    claim = {"ambassador_id": ambassador_id, "claimed_at": claimed_at}
    try:
        # Matches unless a later claim is stored (a missing one is not later); on no match the upsert inserts
        # the same `_id`, whose duplicate key means exactly that: this claim changes nothing. FerretDB 1.x
        # finds the document by `_id` and checks the condition on it.
        await holding(buckets, document_id).update_one(
            {"_id": document_id, f"{LOGIN}.claimed_at": {"$not": {"$gt": claimed_at}}},
            {"$set": {"tenant": tenant, "ambassador_id": subject_key, LOGIN: claim}}, upsert=True)
    except DuplicateKeyError:
        pass


def profile_fields(profile: AmbassadorProfile) -> dict[str, str]:
    """The profile as the person's document stores it: one JSON string, not a nested document.

    Every feed reads the person's document by `_id`, and FerretDB 1.x on PostgreSQL finds it by scanning its
    bucket (~400 documents), each stored as jsonb carrying a type schema (`$s`) for every field. With the
    profile nested (lists of topics, languages and networks, preferences), a document was ~2.2 KB of jsonb:
    above PostgreSQL's 2 KB threshold, so stored compressed, and every row of every scan was decompressed;
    FerretDB then decoded the found one field by field. As one string the document is ~1.3 KB and stored as
    it is: measured on 381 such documents, 0.9-1.1 ms of database CPU per read instead of 2.4-2.5 ms
    (bench/README.md). MongoDB stores and reads the same document; nothing queries a profile field."""
    return {PROFILE: profile.model_dump_json()}


def readable(document: Mapping[str, Any]) -> Mapping[str, Any]:
    """`document` with its profile as a nested document again (`profile`), whichever way it was stored: an
    earlier release's document keeps its nested profile until the person's next profile event rewrites it."""
    text = document.get(PROFILE)
    if text is None:
        return document
    return {**{k: v for k, v in document.items() if k != PROFILE},
            EARLIER_PROFILE: json.loads(text)}


async def flatten_earlier_profiles(database: AsyncDatabase, ferretdb: bool) -> int:
    """Every document of an earlier release with its profile nested rewritten with the profile as one string
    (`profile_fields`); how many were. Each rewrite is a compare-and-set on the nested profile as read: a
    profile event applied meanwhile (which drops the nested one, or an earlier release's worker writing a
    new nested one) makes it match nothing, and that document stays as it is, readable (`readable`).
    Idempotent. One update at a time: on FerretDB 1.x each is a scan of its bucket (~6-13 ms measured),
    and a 50-statement update of these stayed stuck holding the write lock for minutes, so this is an
    operator's command (`distribution-flatten-profiles`, minutes per 100,000 people), not part of the start."""
    existing = set(await database.list_collection_names())
    converted = 0
    for collection in ambassador_buckets(database, ferretdb):
        if collection.name not in existing:
            continue
        async for document in collection.find({EARLIER_PROFILE: {"$exists": True}}, {EARLIER_PROFILE: 1}):
            nested = document[EARLIER_PROFILE]
            if not isinstance(nested, Mapping):
                continue  # not a profile of ours: left as it is
            result = await collection.update_one({"_id": document["_id"], EARLIER_PROFILE: nested},
                                                 {"$set": profile_fields(AmbassadorProfile.model_validate(nested)),
                                                  "$unset": {EARLIER_PROFILE: ""}})
            converted += result.modified_count
    return converted


def _holder(document: Mapping[str, Any] | None) -> str | None:
    claim = document.get(LOGIN) if document is not None else None
    return claim["ambassador_id"] if claim else None


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
