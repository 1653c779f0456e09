"""Who a token names as an ambassador: the current holder of the caller's login.

A token carries a login (`sub`); every service turns it into the same pseudonym,
the subject key (`auth.ambassador_id_for`). The ambassador id of a login's first
holder is that key. After an erasure the ambassador service gives the next
person provisioned with the same login a NEW ambassador id, so that nothing of
the erased person's history (tombstones, tracked links, statistics) attaches to
them; its `ambassador.opted_in.v1` carries the subject key beside the new id.

Each service that answers a person's own requests keeps this small projection
of those events: subject key -> the ambassador id that claimed it last (by
opt-in time, so partitions may deliver the claims in any order and a replay
ends the same). A key nobody claimed names its first holder.

Storage: one document per (tenant, subject key) under a derived `_id`, inserted
once and then moved forward by a compare on `claimed_at` (FerretDB 1.x pushes
only `_id` filters down; the extra condition is checked on the one document
that `_id` finds). Works the same on MongoDB.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from .auth import Principal
from .repository import Storage

COLLECTION = "ambassador_subjects"


class SubjectHolders(Protocol):
    async def claim_subject(self, tenant: str, subject_key: str, ambassador_id: str, claimed_at: datetime) -> None:
        """`ambassador_id` holds the key from `claimed_at`, unless a later claim is stored (idempotent)."""

    async def subject_holder(self, tenant: str, subject_key: str) -> str | None:
        """The ambassador id that claimed the key last; None when nobody did."""


async def ambassador_id_of(holders: SubjectHolders, principal: Principal) -> str:
    """The caller's ambassador id: the current holder of their login, else its first holder's id."""
    return await holders.subject_holder(principal.tenant, principal.subject_key) or principal.subject_key


def _document_id(tenant: str, subject_key: str) -> str:
    return f"{tenant}\x1f{subject_key}"


@dataclass(frozen=True)
class MongoSubjectHolders:
    collection: AsyncCollection

    async def claim_subject(self, tenant: str, subject_key: str, ambassador_id: str, claimed_at: datetime) -> None:
        document_id = _document_id(tenant, subject_key)
        claim = {"tenant": tenant, "ambassador_id": ambassador_id, "claimed_at": claimed_at}
        try:
            await self.collection.insert_one({"_id": document_id, **claim})
        except DuplicateKeyError:
            # A later claim stored already leaves this one without effect (a replayed older opt-in).
            await self.collection.update_one({"_id": document_id, "claimed_at": {"$lte": claimed_at}},
                                             {"$set": claim})

    async def subject_holder(self, tenant: str, subject_key: str) -> str | None:
        document = await self.collection.find_one({"_id": _document_id(tenant, subject_key)})
        return document["ambassador_id"] if document is not None and document.get("tenant") == tenant else None


class StoredSubjectHolders:
    """Mixin for an adapter on the repository base: its service's subject claims, in the same database."""

    storage: Storage

    async def claim_subject(self, tenant: str, subject_key: str, ambassador_id: str, claimed_at: datetime) -> None:
        await self._subject_holders().claim_subject(tenant, subject_key, ambassador_id, claimed_at)

    async def subject_holder(self, tenant: str, subject_key: str) -> str | None:
        return await self._subject_holders().subject_holder(tenant, subject_key)

    def _subject_holders(self) -> MongoSubjectHolders:
        return MongoSubjectHolders(self.storage.database[COLLECTION])
