"""Anonymising a person's documents on erasure, made to stick on FerretDB 1.x."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

ERASURE_ATTEMPTS = 20
ERASURE_RECHECK_SECONDS = 0.2


async def anonymise_until_settled(collections: AsyncCollection | Sequence[AsyncCollection], tenant: str,
                                  ambassador_id: str, update: dict[str, Any]) -> None:
    """Apply `update` to every document of the person until two checks a moment apart find none left.

    FerretDB 1.x rewrites whole documents on update, so a concurrent writer that read the document before
    us (the outbox relay clearing a share's events) can write the old person back; MongoDB updates fields
    in place and settles on the first pass. The filter has no `_id`: it scans on FerretDB, once per erasure.
    `collections` may be the buckets of one collection (adapters/buckets.py): see `_anonymise_pass`.
    """
    every = [collections] if isinstance(collections, AsyncCollection) else list(collections)
    who = {"tenant": tenant, "ambassador_id": ambassador_id}
    clean_checks = 0
    for _ in range(ERASURE_ATTEMPTS):
        remaining = await _anonymise_pass(every, who, update)
        clean_checks = clean_checks + 1 if remaining == 0 else 0
        if clean_checks == 2:
            return
        await asyncio.sleep(ERASURE_RECHECK_SECONDS)
    raise RuntimeError(f"erasure in {every[0].name} did not settle; the event will be retried")


async def _anonymise_pass(collections: list[AsyncCollection], who: dict[str, Any], update: dict[str, Any]) -> int:
    """One pass: how many collections (one) or documents still held the person. Over buckets, the person is
    looked for in every bucket side by side (reads, not serialised by the proxy) and written to only in the
    few that hold one of theirs: an update per bucket would be 256 serialised writes per pass."""
    if len(collections) == 1:
        return (await collections[0].update_many(who, update)).matched_count
    found = await asyncio.gather(*(bucket.find_one(who, {"_id": 1}) for bucket in collections))
    theirs = [bucket for bucket, document in zip(collections, found) if document is not None]
    for bucket in theirs:
        await bucket.update_many(who, update)
    return len(theirs)
