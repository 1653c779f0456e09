"""Group commit of clicks: concurrent redirects share their writes, each answered once its batch is durable."""

import asyncio
import time

import pytest
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import REGISTRY
from pydantic import ValidationError
from pymongo.errors import AutoReconnect

from advocacy_common.events import EngagementKind
from advocacy_common.outbox import COMPRESSED_OUTBOX_FIELD, queued_events
from advocacy_common.repository import UnitOfWork
from distribution.adapters.engagement import CLICKS_PER_DOCUMENT, batch_documents
from distribution.models.engagement import Click, engagement_received
from distribution.options import Options
from distribution.service import Tracking
from distribution.service.group_commit import GroupCommit
from distribution.settings import DistributionSettings

from distribution_world import BROWSER, NOW, OPTIONS, World

pytestmark = pytest.mark.unit


@pytest.fixture
def world() -> World:
    return World()


def batches(outcome: str) -> float:
    return REGISTRY.get_sample_value("distribution_click_batches_total", {"outcome": outcome}) or 0.0


def tracking(world, **options) -> Tracking:
    return Tracking(world.repositories, Options(**{**vars(OPTIONS), **options}))


async def test_concurrent_clicks_count_each_visitor_once_per_link_and_every_click_once(world):
    codes = [(await world.prepare(login)).tracked_link_code for login in ("amb-1", "amb-2")]
    assert codes[0] != codes[1]
    clicks = tracking(world, click_batch_max=40, click_batch_wait_seconds=0.05)
    written_before = batches("written")
    visits = [(code, f"203.0.113.{visitor}") for _ in range(3) for code in codes for visitor in range(25)]
    targets = await asyncio.gather(*(clicks.follow(code, ip, BROWSER, NOW) for code, ip in visits))

    assert all(target.startswith("https://acme.com/green?") for target in targets)
    events = world.repositories.clicks.all_events
    assert len(events) == len(visits) == 150 and len({e.id for e in events}) == 150  # every click, once
    uniques = [e for e in events if e.data["unique_visitor"]]
    assert len(uniques) == 50  # 25 visitors on each of the 2 links
    assert len(world.repositories.clicks.visitors) == 50
    # Written in batches of at most 40: two inserts per batch, not per click.
    writes = world.repositories.clicks.writes
    assert clicks.clicks.items == 150 and 4 <= clicks.clicks.batches < 10
    assert writes == ["claims", "clicks"] * clicks.clicks.batches
    assert batches("written") - written_before == clicks.clicks.batches  # on /metrics


async def test_two_clicks_of_one_visitor_in_one_batch_make_one_unique(world):
    code = (await world.prepare()).tracked_link_code
    clicks = tracking(world, click_batch_max=2, click_batch_wait_seconds=5)  # sent when full: one batch, however slow
    first, second = await asyncio.gather(*(clicks.follow(code, "203.0.113.7", BROWSER, NOW) for _ in range(2)))
    assert first == second and clicks.clicks.batches == 1
    assert sorted(e.data["unique_visitor"] for e in world.repositories.clicks.all_events) == [False, True]


async def test_each_clicks_event_joins_the_trace_of_its_own_request(world):
    code = (await world.prepare()).tracked_link_code
    clicks = tracking(world, click_batch_max=3, click_batch_wait_seconds=5)  # sent when full: one batch, however slow
    tracer = TracerProvider().get_tracer("test")

    async def request(n: int) -> str:
        with tracer.start_as_current_span(f"request {n}") as span:
            await clicks.follow(code, f"203.0.113.{n}", BROWSER, NOW)
            return format(span.get_span_context().trace_id, "032x")
    traces = await asyncio.gather(*(request(n) for n in range(3)))
    assert clicks.clicks.batches == 1 and len(set(traces)) == 3
    events = world.repositories.clicks.all_events
    assert sorted(e.traceparent.split("-")[1] for e in events) == sorted(traces)


async def test_a_failing_batch_fails_all_its_clicks_and_counts_none(world):
    code = (await world.prepare()).tracked_link_code
    # Sent when full, so the ten share one batch however slow the machine; the lone click below waits 0.5 s.
    clicks = tracking(world, click_batch_max=10, click_batch_wait_seconds=0.5)
    world.repositories.clicks.failing = AutoReconnect("connection closed")
    failed_before = batches("failed")
    answers = await asyncio.gather(*(clicks.follow(code, f"203.0.113.{n}", BROWSER, NOW) for n in range(10)),
                                   return_exceptions=True)
    assert all(isinstance(answer, AutoReconnect) for answer in answers)
    assert world.repositories.clicks.items == {} and world.repositories.clicks.all_events == []
    assert batches("failed") - failed_before == clicks.clicks.batches == 1
    # The next batch is written as usual; the failed one's visitors were claimed (their clicks repeat ones).
    assert await clicks.follow(code, "203.0.113.1", BROWSER, NOW)
    assert [e.data["unique_visitor"] for e in world.repositories.clicks.all_events] == [False]


async def test_a_lone_click_is_written_after_the_short_wait_not_when_a_batch_fills(world):
    code = (await world.prepare()).tracked_link_code
    clicks = tracking(world, click_batch_max=1000, click_batch_wait_seconds=0.002)
    started = time.monotonic()
    assert await clicks.follow(code, "203.0.113.7", BROWSER, NOW)
    assert time.monotonic() - started < 0.5 and clicks.clicks.batches == 1
    assert len(world.repositories.clicks.items) == 1


async def test_no_wait_writes_at_once_and_later_clicks_gather_behind_the_running_write():
    batches: list[list[int]] = []
    release = asyncio.Event()

    async def write(items: list[int]) -> list[int]:
        batches.append(items)
        await release.wait()
        return [item * 10 for item in items]

    group = GroupCommit(write, max_items=3, max_wait=0)
    first = asyncio.create_task(group.submit(1))
    await asyncio.sleep(0.01)
    assert batches == [[1]]  # no wait: the write started with the first item
    rest = [asyncio.create_task(group.submit(n)) for n in range(2, 7)]
    await asyncio.sleep(0.01)
    assert batches == [[1]]  # one write at a time: the others wait for it
    release.set()
    assert await first == 10 and await asyncio.gather(*rest) == [20, 30, 40, 50, 60]
    assert batches == [[1], [2, 3, 4], [5, 6]]  # never more than max_items in a batch


async def test_with_two_writes_in_flight_the_next_batch_goes_while_the_first_waits_and_each_answers_on_its_own():
    batches: list[list[int]] = []
    releases: list[asyncio.Event] = []

    async def write(items: list[int]) -> list[int]:
        batches.append(items)
        releases.append(done := asyncio.Event())
        await done.wait()
        return [item * 10 for item in items]

    group = GroupCommit(write, max_items=3, max_wait=0, max_in_flight=2)
    first = asyncio.create_task(group.submit(1))
    await asyncio.sleep(0.01)
    second = [asyncio.create_task(group.submit(n)) for n in (2, 3)]
    await asyncio.sleep(0.01)
    assert batches == [[1], [2]]  # the second write started while the first is at the database
    third = asyncio.create_task(group.submit(4))
    await asyncio.sleep(0.01)
    assert batches == [[1], [2]]  # never more than two: 3 and 4 wait for one of them
    releases[1].set()  # the second finishes first: its caller is answered, the first's is not
    assert await second[0] == 20 and not first.done()
    await asyncio.sleep(0.01)
    assert batches == [[1], [2], [3, 4]]
    releases[0].set()
    releases[2].set()
    assert await first == 10 and await second[1] == 30 and await third == 40


async def test_a_cancelled_caller_leaves_its_batch_before_the_write():
    written: list[list[str]] = []

    async def write(items: list[str]) -> list[str]:
        written.append(items)
        return items

    group = GroupCommit(write, max_items=10, max_wait=0.01)
    gone = asyncio.create_task(group.submit("gone"))
    kept = asyncio.create_task(group.submit("kept"))
    await asyncio.sleep(0)
    gone.cancel()
    assert await kept == "kept" and written == [["kept"]]


def test_batch_settings_are_bounded_and_reach_the_use_case():
    with pytest.raises(ValueError):
        GroupCommit(lambda items: items, max_items=0, max_wait=0.001)
    with pytest.raises(ValueError):
        GroupCommit(lambda items: items, max_items=1, max_wait=0.001, max_in_flight=0)
    with pytest.raises(ValidationError):  # FerretDB: insert commands stay modest
        DistributionSettings(click_batch_max=1001)
    options = Options.from_settings(DistributionSettings(click_batch_max=200, click_batch_wait_ms=5))
    assert (options.click_batch_max, options.click_batch_wait_seconds) == (200, 0.005)
    defaults = Options.from_settings(DistributionSettings())
    assert (defaults.click_batch_max, defaults.click_batch_wait_seconds, defaults.click_writes_in_flight) == (
        500, 0.002, 2)
    assert Options.from_settings(DistributionSettings(click_writes_in_flight=1)).click_writes_in_flight == 1


def test_a_batch_of_clicks_is_one_queue_document_per_tenant_and_hundred_clicks():
    """What the relay reads and deletes: documents of many clicks (FerretDB 1.x decodes and deletes per
    document), each of one tenant, in order, keyed by its first click's (random) id, the events compressed."""
    def click(tenant: str, n: int) -> tuple[Click, UnitOfWork]:
        uow = UnitOfWork(tenant, "/tests")
        uow.record(engagement_received(tenant, {"share_id": None, "content_id": "c1", "campaign_id": None,
                                                "ambassador_id": "a1", "team_id": None, "network": "linkedin"},
                                       kind=EngagementKind.CLICK, count=1, source="redirect",
                                       source_event_id=f"{tenant}-{n}", occurred_at=NOW))
        return Click(id=f"code/{tenant}-{n}", tenant=tenant, code="code", at=NOW), uow

    clicks = [click("acme" if n % 3 else "globex", n) for n in range(CLICKS_PER_DOCUMENT * 2 + 30)]
    documents = batch_documents(clicks)
    assert [(d["tenant"], d["clicks"]) for d in documents] == [("globex", 77), ("acme", 100), ("acme", 53)]
    for document in documents:
        mine = [(c, uow) for c, uow in clicks if c.tenant == document["tenant"]]
        start = [c.id for c, _ in mine].index(document["_id"])
        events = queued_events(document)
        assert events == [entry for _, uow in mine[start:start + document["clicks"]] for entry in uow.pending]
        assert {envelope.tenantid for _, envelope in events} == {document["tenant"]}
        # One compressed field, no list of entries: what FerretDB converts and the relay's reads decode.
        assert set(document) == {"_id", "tenant", "at", "clicks", COMPRESSED_OUTBOX_FIELD}  # no OUTBOX_FIELD
    assert sum(d["clicks"] for d in documents) == len(clicks) and batch_documents([]) == []


def test_clicks_queue_in_a_collection_of_their_own_and_the_earlier_queue_is_swept():
    """An earlier release's relay reads `clicks` and deletes what it finds there: today's compressed documents
    go to `click_queue`, which it never reads (they wait for an upgraded relay), and an upgraded relay still
    drains what an earlier API wrote to `clicks`, in its sweeps."""
    from pymongo import AsyncMongoClient

    from distribution.adapters import outbox_queues, outbox_swept_queues
    from distribution.adapters.engagement import MongoClicks

    database = AsyncMongoClient("mongodb://127.0.0.1:1/", connect=False)["distribution"]
    assert [c.name for c in outbox_queues(database)] == [MongoClicks.collection_name] == ["click_queue"]
    assert [c.name for c in outbox_swept_queues(database)] == ["clicks"]
