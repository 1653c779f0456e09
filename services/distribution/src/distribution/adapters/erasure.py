"""Anonymising a person's documents on erasure, made to stick on FerretDB 1.x."""

from __future__ import annotations

import asyncio
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

ERASURE_ATTEMPTS = 20
ERASURE_RECHECK_SECONDS = 0.2


async def anonymise_until_settled(collection: AsyncCollection, tenant: str, ambassador_id: str,
                                  update: dict[str, Any]) -> None:
    """Apply `update` to every document of the person until two checks a moment apart find none left.

    FerretDB 1.x rewrites whole documents on update, so a concurrent writer that read the document before
    us (the outbox relay clearing a share's events) can write the old person back; MongoDB updates fields
    in place and settles on the first pass. The filter has no `_id`: it scans on FerretDB, once per erasure.
    """
    who = {"tenant": tenant, "ambassador_id": ambassador_id}
    clean_checks = 0
    for _ in range(ERASURE_ATTEMPTS):
        remaining = (await collection.update_many(who, update)).matched_count
        clean_checks = clean_checks + 1 if remaining == 0 else 0
        if clean_checks == 2:
            return
        await asyncio.sleep(ERASURE_RECHECK_SECONDS)
    raise RuntimeError(f"erasure in {collection.name} did not settle; the event will be retried")
