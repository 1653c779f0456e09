"""The storage calls of a prepare, a confirmation and a relay pass, each timed alone against N stored shares.

    MONGODB_URI=mongodb://127.0.0.1:27017/ uv run python bench/outbox_calls.py 0 600 3000

Through the service's own adapter (`MongoShares`), per N in a fresh database `outbox_calls_<N>_<random>`
dropped at the end: inserts N confirmed shares of realistic size (text, intent URL, signature) where the
adapter keeps them (buckets on FerretDB), then 10 times: the retry check of a new share, the weekly count,
the held slots, the prepared insert (with its read-back), a read by id, the confirmation with its event,
the relay's read and clear of that share; then the relay's sweep of up to 16 of the collections holding
shares (a periodic sweep's turn), twice. Prints the median and max of each in ms: what grows with N is what a
prepare, a confirmation or a relay pass pays for every share ever stored.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import AsyncMongoClient

from advocacy_common.events import Network, PostShared
from advocacy_common.outbox import OUTBOX_FIELD
from advocacy_common.repository import FINGERPRINT_FIELD, Storage, UnitOfWork
from distribution.adapters.sharing import MongoShares
from distribution.models.sharing import Share

ROUNDS = 10
TENANT = "t1"


def a_share(n: int, now: datetime) -> Share:
    return Share(id=f"s{n:06d}-{uuid.uuid4().hex}", tenant=TENANT, ambassador_id=f"a{n}", content_id=f"c{n % 20}",
                 campaign_id="camp", network=Network.LINKEDIN, text="Personal note " + "word " * 40,
                 tracked_link_code=f"code{n:06d}", tracked_link=f"https://l.example/r/code{n:06d}",
                 share_intent_url="https://www.linkedin.com/sharing/share-offsite/?url=" + "x" * 80,
                 recommended_at=now, similarity_to_suggested=0.2, similarity_to_colleagues=0.1, personalized=True,
                 signature=list(range(64)), created_at=now)


async def timed(label: str, call: Awaitable[Any], times: dict[str, list[float]]) -> Any:
    started = time.perf_counter()
    result = await call
    times.setdefault(label, []).append((time.perf_counter() - started) * 1000)
    return result


async def measure(client: AsyncMongoClient, stored: int) -> dict[str, list[float]]:
    database = client[f"outbox_calls_{stored}_{uuid.uuid4().hex[:6]}"]
    try:
        shares = MongoShares(await Storage.open(database, "k" * 32))
        now = datetime.now(UTC)
        by_collection: dict[str, list[dict[str, Any]]] = {}
        for n in range(stored):
            document = {**shares.to_document(a_share(n, now).confirmed(None, now)), FINGERPRINT_FIELD: "f" * 64,
                        OUTBOX_FIELD: []}  # relayed long ago: an empty outbox stays
            by_collection.setdefault(shares._holding(document["_id"]).name, []).append(document)
        for name, documents in by_collection.items():
            for start in range(0, len(documents), 500):
                await database[name].insert_many(documents[start:start + 500])
        times: dict[str, list[float]] = {}
        for n in range(ROUNDS):
            share = a_share(100_000 + n, now)
            await timed("retry check (get_retry, a miss)", shares.get_retry(TENANT, share.id, "f"), times)
            await timed("weekly count", shares.count_confirmed_since(TENANT, "a1", now - timedelta(days=7)), times)
            await timed("held slots", shares.slots_held_from(TENANT, "c1", now, now - timedelta(minutes=10)), times)
            await timed("prepared insert + read-back", shares.add_prepared(share, "f"), times)
            await timed("read by id (get)", shares.get(TENANT, share.id), times)
            uow = UnitOfWork(TENANT, "/bench")
            uow.record(PostShared(share_id=share.id, content_id=share.content_id, campaign_id="camp",
                                  ambassador_id=share.ambassador_id, network=share.network, personalized=True,
                                  similarity_to_suggested=0.2, similarity_to_colleagues=0.1, potential_reach=0,
                                  tracked_link_code=share.tracked_link_code, shared_at=now))
            await timed("confirmation with its event", shares.confirm(share.confirmed(None, now), uow), times)
            holding = shares._holding(share.id)
            document = await timed("relay: read", holding.find_one({"_id": share.id}, {OUTBOX_FIELD: 1}), times)
            await timed("relay: clear", holding.update_one({"_id": share.id},
                                                           {"$pullAll": {OUTBOX_FIELD: document[OUTBOX_FIELD]}}), times)
        for label in ("sweep, per collection visited", "the same sweep again"):
            for collection in shares.buckets[:16]:
                await timed(label, collection.find({f"{OUTBOX_FIELD}.0": {"$exists": True}}, {OUTBOX_FIELD: 1})
                            .limit(200).to_list(), times)
        return times
    finally:
        await client.drop_database(database.name)


async def main(sizes: list[int]) -> None:
    client = AsyncMongoClient(os.environ.get("MONGODB_URI", "mongodb://127.0.0.1:27017/"), tz_aware=True)
    try:
        for stored in sizes:
            print(f"{stored} stored shares (load average {os.getloadavg()[0]:.1f})")
            for label, values in (await measure(client, stored)).items():
                values.sort()
                print(f"  {label:34s} median {values[len(values) // 2]:8.2f} ms, max {values[-1]:8.2f} ms")
    finally:
        await client.close()


if __name__ == "__main__":
    asyncio.run(main([int(n) for n in sys.argv[1:]] or [0, 600, 3000]))
