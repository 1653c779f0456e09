from datetime import UTC, datetime

import pytest

from advocacy_common.consuming import Delivery
from advocacy_common.repository import apply_once, insert_once
from advocacy_common.events import AmbassadorOptedOut
from advocacy_common.publishing import envelope_for

pytestmark = pytest.mark.integration


def delivery(offset: int, partition: int = 0) -> Delivery:
    event = AmbassadorOptedOut(ambassador_id="a", opted_out_at=datetime.now(UTC))
    return Delivery(envelope_for(event, tenant_id="acme", source="/t"), event, "advocacy.ambassador",
                    partition, offset)


async def test_apply_once_counts_each_offset_once(database):
    counters = database["counters"]
    key = {"_id": "acme|total"}
    update = {"$inc": {"n": 1}, "$setOnInsert": {"tenant": "acme"}}
    assert await apply_once(counters, key, update, delivery(5)) is True  # upsert
    assert await apply_once(counters, key, update, delivery(5)) is False  # redelivered
    assert await apply_once(counters, key, update, delivery(3)) is False  # older offset, already covered
    assert await apply_once(counters, key, update, delivery(6)) is True
    assert await apply_once(counters, key, update, delivery(1, partition=1)) is True  # other partition
    assert await apply_once(counters, key, update, delivery(1, partition=1)) is False
    document = await counters.find_one(key)
    assert document["n"] == 3 and document["tenant"] == "acme"


async def test_insert_once(database):
    things = database["inserted"]
    assert await insert_once(things, {"_id": "event-1", "v": 1}) is True
    assert await insert_once(things, {"_id": "event-1", "v": 2}) is False
    assert (await things.find_one({"_id": "event-1"}))["v"] == 1


async def test_ledger_remembers_and_prunes(database):
    import asyncio
    from datetime import timedelta

    from advocacy_common.consuming import ProcessedEvents

    ledger = ProcessedEvents(database["processed_events"])
    await ledger.record(["e1", "e2", "e1"])
    assert await ledger.already_processed(["e1", "e3"]) == {"e1"}
    await ledger.record(["e2", "e3", "e4"])  # a batch with an id already there: the others still go in
    assert await ledger.already_processed(["e1", "e2", "e3", "e4", "e5"]) == {"e1", "e2", "e3", "e4"}
    stop = asyncio.Event()
    stop.set()  # one pass, then return
    await ledger.prune(stop, keep=timedelta(seconds=-1))
    assert await ledger.already_processed(["e1", "e2", "e3", "e4"]) == set()
