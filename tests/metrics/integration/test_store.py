"""The store's exactly-once primitives on the real database, in both write modes."""

import pytest

from advocacy_common.mongo import create_client
from metrics.aggregation import COUNTERS, Fragment, Position, plan_writes
from metrics.handlers import apply_exactly_once
from metrics.models import Dimension, Period
from metrics.store import Generations, MongoMetricsStore
from metrics_testkit import BASE_DAY

pytestmark = pytest.mark.integration


def fragment(offset: int, partition: str = "advocacy_share_0", shares: int = 1) -> Fragment:
    return Fragment(COUNTERS, "t|2026-03-02|tenant|all",
                    {"tenant": "t", "day": "2026-03-02", "dimension": "tenant", "value": "all"},
                    Position(partition, offset), inc={"c.shares": shares})


@pytest.mark.parametrize("guarded", [True, False])
async def test_redelivered_batch_with_other_boundaries_counts_each_event_once(infrastructure, unique_db_name, guarded):
    client = create_client(infrastructure.mongodb_uri, "metrics-store-test")
    store = MongoMetricsStore(client[unique_db_name("metrics")], 1, guarded=guarded)
    try:
        await apply_exactly_once(store, [fragment(n) for n in range(0, 5)])  # offsets 0-4 applied
        refused = await store.write_conditionally(plan_writes([fragment(n) for n in range(3, 8)]))
        assert len(refused) == 1  # 3 and 4 are already in: the whole write is refused...
        await apply_exactly_once(store, [fragment(n) for n in range(3, 8)]  # ...and only 5-7 are added
                                 + [fragment(0, "advocacy_engagement_1", shares=10)])
        rows = await store.list_counters("t", Dimension.TENANT, "all", Period(BASE_DAY.date(), BASE_DAY.date()))
        assert rows[0]["parts"]["shares"] == 8 + 10
    finally:
        await client.close()


async def test_claims_keep_the_first_position_of_a_fact(infrastructure, unique_db_name):
    client = create_client(infrastructure.mongodb_uri, "metrics-store-test")
    generations = Generations(client[unique_db_name("metrics")])
    await generations.detect_server()
    store = generations.store(await generations.current())
    try:
        first = await store.claim({"t|share:s1": Position("p0", 4), "t|share:s2": Position("p0", 5)})
        again = await store.claim({"t|share:s1": Position("p0", 9), "t|share:s3": Position("p0", 10)})
        assert first == {"t|share:s1": Position("p0", 4), "t|share:s2": Position("p0", 5)}
        assert again == {"t|share:s1": Position("p0", 4), "t|share:s3": Position("p0", 10)}
        assert await generations.allocate() == 2 and await generations.allocate() == 3
    finally:
        await client.close()
