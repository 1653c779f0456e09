"""The connectors' MongoDB stores. Tokens and app secrets are sealed here (AES-256-GCM, `SecretBox`),
bound to the tenant and the document id, like the webhook connectors' secrets.

FerretDB 1.x: only bare `_id` filters are pushed down; reads and compare-and-sets go by `_id`. The
poller's `due` query, and the per-person pause / resume / delete, filter on other fields and scan the
collection on FerretDB (MongoDB uses the indexes in `INDEXES`): `due` once per round, the others on rare
events (lapse, reconnection, opt-out, erasure).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, ReturnDocument, IndexModel
from pymongo.errors import DuplicateKeyError

from advocacy_common.repository import AlreadyExists, ModelRepository, Storage, create_indexes_one_by_one, storable
from advocacy_common.secretbox import Sealed, SecretBox, SecretUnreadable

from ..models.projections import scoped_id
from .models import Authorization, Connection, ConnectionStatus, LinkedInApp, PostStatus, TrackedPost, XApp
from .ports import ConnectorStores

SEALED = "sealed"


def _seal(box: SecretBox, document: dict[str, Any], field: str, purpose: str) -> dict[str, Any]:
    document[f"{SEALED}_{field}"] = box.seal(document.pop(field), purpose, document["tenant"],
                                             document["_id"]).to_document()
    return document


def _open(box: SecretBox, document: Mapping[str, Any], field: str, purpose: str) -> dict[str, Any]:
    opened = dict(document)
    sealed = Sealed.from_document(opened.pop(f"{SEALED}_{field}", {}))
    opened[field] = box.open(sealed, purpose, opened["tenant"], opened["_id"])
    return opened


@dataclass
class MongoConnections(ModelRepository[Connection]):
    secret_box: SecretBox
    collection_name = "network_connections"  # `_id` tenant/ambassador/network
    model = Connection

    def to_document(self, connection: Connection) -> dict[str, Any]:
        return _seal(self.secret_box, super().to_document(connection), "access_token", "network-token")

    def from_document(self, document: Mapping[str, Any]) -> Connection:
        return super().from_document(_open(self.secret_box, document, "access_token", "network-token"))

    async def get(self, tenant: str, ambassador_id: str, network: str) -> Connection | None:  # type: ignore[override]
        return await super().get(tenant, scoped_id(tenant, ambassador_id, network))

    async def put(self, connection: Connection) -> None:
        await self.collection.replace_one({"_id": connection.id}, self.to_document(connection), upsert=True)

    async def mark(self, connection: Connection, status: ConnectionStatus) -> None:
        # Only the grant that was read: a reconnection meanwhile (a new `connected_at`) is not marked.
        await self.collection.update_one({"_id": connection.id, "tenant": connection.tenant,
                                          "connected_at": connection.connected_at}, {"$set": {"status": status.value}})

    async def of_ambassador(self, tenant: str, ambassador_id: str) -> list[Connection]:
        return await self.find({"tenant": tenant, "ambassador_id": ambassador_id}, sort=[("network", 1)])

    async def delete(self, tenant: str, ambassador_id: str, network: str | None = None,
                     before: datetime | None = None) -> int:
        query: dict[str, Any] = {"tenant": tenant, "ambassador_id": ambassador_id}
        if network:
            query = {"_id": scoped_id(tenant, ambassador_id, network), "tenant": tenant}
        if before is not None:
            query["connected_at"] = {"$lte": before}
        return (await self.collection.delete_many(query)).deleted_count


@dataclass
class MongoAuthorizations(ModelRepository[Authorization]):
    secret_box: SecretBox
    collection_name = "network_authorizations"  # `_id` is the state
    model = Authorization

    def to_document(self, authorization: Authorization) -> dict[str, Any]:
        return _seal(self.secret_box, super().to_document(authorization), "code_verifier", "pkce-verifier")

    def from_document(self, document: Mapping[str, Any]) -> Authorization:
        return super().from_document(_open(self.secret_box, document, "code_verifier", "pkce-verifier"))

    async def take(self, tenant: str, ambassador_id: str, state: str) -> Authorization | None:
        document = await self.collection.find_one_and_delete({"_id": state, "tenant": tenant,
                                                              "ambassador_id": ambassador_id})
        return self._entity(document)

    async def delete_of(self, tenant: str, ambassador_id: str) -> None:
        await self.collection.delete_many({"tenant": tenant, "ambassador_id": ambassador_id})


class MongoTrackedPosts(ModelRepository[TrackedPost]):
    collection_name = "tracked_posts"  # `_id` tenant/share/source
    model = TrackedPost

    async def add(self, post: TrackedPost) -> TrackedPost:  # type: ignore[override]
        try:
            await super().add(post)
        except AlreadyExists:
            return await self.get(post.tenant, post.id) or post
        return post

    async def due(self, now: datetime, limit: int, tenant: str | None = None) -> list[TrackedPost]:
        query: dict[str, Any] = {"status": PostStatus.ACTIVE.value, "next_poll_at": {"$lte": now}}
        if tenant is not None:
            query["tenant"] = tenant
        return await self.find(query, sort=[("next_poll_at", 1)], limit=limit)

    async def pause(self, tenant: str, ambassador_id: str, network: str) -> None:
        await self.collection.update_many(
            {"tenant": tenant, "ambassador_id": ambassador_id, "network": network, "status": PostStatus.ACTIVE.value},
            {"$set": {"status": PostStatus.PAUSED.value}, "$inc": {"version": 1}})

    async def resume(self, tenant: str, ambassador_id: str, network: str, now: datetime) -> None:
        await self.collection.update_many(
            {"tenant": tenant, "ambassador_id": ambassador_id, "network": network, "status": PostStatus.PAUSED.value},
            {"$set": {"status": PostStatus.ACTIVE.value, "next_poll_at": now}, "$inc": {"version": 1}})

    async def of_share(self, tenant: str, share_id: str) -> list[TrackedPost]:
        return await self.find({"tenant": tenant, "share_id": share_id}, sort=[("source", 1)])

    async def delete_of(self, tenant: str, ambassador_id: str, before: datetime | None = None) -> None:
        query: dict[str, Any] = {"tenant": tenant, "ambassador_id": ambassador_id}
        if before is not None:
            query["linked_at"] = {"$lte": before}
        await self.collection.delete_many(query)


@dataclass
class MongoNetworkApps:
    storage: Storage
    secret_box: SecretBox
    collection_name = "network_apps"  # `_id` tenant/network

    def __post_init__(self) -> None:
        self.collection = self.storage.database[self.collection_name]

    async def _get(self, tenant: str, network: str, secret: str) -> dict[str, Any] | None:
        document = await self.collection.find_one({"_id": scoped_id(tenant, network)})
        if document is None or document.get("tenant") != tenant:
            return None
        return _open(self.secret_box, document, secret, f"{network}-app")

    async def _put(self, network: str, values: dict[str, Any], secret: str) -> None:
        document = {"_id": scoped_id(values["tenant"], network), **storable(values)}
        await self.collection.replace_one({"_id": document["_id"]},
                                          _seal(self.secret_box, document, secret, f"{network}-app"), upsert=True)

    async def linkedin(self, tenant: str) -> LinkedInApp | None:
        document = await self._get(tenant, "linkedin", "client_secret")
        return LinkedInApp.model_validate(document) if document else None

    async def x(self, tenant: str) -> XApp | None:
        document = await self._get(tenant, "x", "bearer_token")
        return XApp.model_validate(document) if document else None

    async def put_linkedin(self, app: LinkedInApp) -> None:
        await self._put("linkedin", app.model_dump(), "client_secret")

    async def put_x(self, app: XApp) -> None:
        await self._put("x", app.model_dump(), "bearer_token")


@dataclass
class MongoBudgets:
    storage: Storage
    collection_name = "network_budgets"  # `_id` tenant/network/day: one small document per day

    def __post_init__(self) -> None:
        self.collection = self.storage.database[self.collection_name]

    async def spend(self, tenant: str, network: str, day: str, limit: int) -> bool:
        if limit <= 0:
            return False
        key = scoped_id(tenant, network, day)
        try:
            await self.collection.insert_one({"_id": key, "tenant": tenant, "used": 1})
            return True
        except DuplicateKeyError:
            pass
        # One document, updated only while below the limit: atomic on MongoDB and, behind the
        # write-serialising proxy, on FerretDB (the filter leads with `_id`).
        updated = await self.collection.find_one_and_update({"_id": key, "used": {"$lt": limit}},
                                                            {"$inc": {"used": 1}}, return_document=ReturnDocument.AFTER)
        return updated is not None


def connector_stores(storage: Storage, secret_box: SecretBox) -> ConnectorStores:
    return ConnectorStores(connections=MongoConnections(storage, secret_box),
                           authorizations=MongoAuthorizations(storage, secret_box),
                           posts=MongoTrackedPosts(storage), apps=MongoNetworkApps(storage, secret_box),
                           budgets=MongoBudgets(storage))


INDEXES: dict[str, list[IndexModel]] = {
    MongoTrackedPosts.collection_name: [
        IndexModel([("status", ASCENDING), ("next_poll_at", ASCENDING)]),
        IndexModel([("tenant", ASCENDING), ("ambassador_id", ASCENDING), ("network", ASCENDING)]),
        IndexModel([("tenant", ASCENDING), ("share_id", ASCENDING)]),
    ],
    MongoConnections.collection_name: [IndexModel([("tenant", ASCENDING), ("ambassador_id", ASCENDING)])],
    MongoAuthorizations.collection_name: [IndexModel([("tenant", ASCENDING), ("ambassador_id", ASCENDING)])],
}


async def create_connector_indexes(database) -> None:
    for collection, indexes in INDEXES.items():
        await create_indexes_one_by_one(database[collection], indexes)  # FerretDB 1.24: one per command


# What is sealed where: (collection, field, purpose). Rotation re-encrypts all of them (see reseal_tokens).
SEALED_FIELDS = ((MongoConnections.collection_name, "access_token", "network-token"),
                 (MongoAuthorizations.collection_name, "code_verifier", "pkce-verifier"),
                 (MongoNetworkApps.collection_name, "client_secret", "linkedin-app"),
                 (MongoNetworkApps.collection_name, "bearer_token", "x-app"))


async def reseal_tokens(database, box: SecretBox) -> tuple[int, int]:
    """Network tokens, PKCE verifiers and app secrets sealed under another key than the current one,
    moved under it: (resealed, unreadable). Idempotent; each write is a compare-and-set on the ciphertext
    read, so it is safe beside running replicas. A maintenance scan (any server), run at each rotation."""
    resealed = unreadable = 0
    for collection_name, field_name, purpose in SEALED_FIELDS:
        collection = database[collection_name]
        sealed_field = f"{SEALED}_{field_name}"
        stale = {f"{sealed_field}.key_id": {"$exists": True, "$ne": box.keyring.current}}
        async for document in collection.find(stale):
            try:
                fresh = box.reseal(Sealed.from_document(document[sealed_field]), purpose, document["tenant"],
                                   document["_id"])
            except SecretUnreadable:
                unreadable += 1
                continue
            result = await collection.update_one(
                {"_id": document["_id"], f"{sealed_field}.ciphertext": document[sealed_field]["ciphertext"]},
                {"$set": {sealed_field: fresh.to_document()}})
            resealed += result.modified_count
    return resealed, unreadable
