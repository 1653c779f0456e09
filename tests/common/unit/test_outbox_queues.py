"""The relay's queues: documents that only carry events, compressed or as pending entries, published in order
then deleted; over in-memory collections (the relay against a real server: tests/common/integration)."""

import asyncio
import zlib
from datetime import UTC, datetime

import pytest
from bson import BSON, Binary

from advocacy_common import topics
from advocacy_common.events import AmbassadorOptedOut
from advocacy_common.outbox import (
    COMPRESSED_OUTBOX_FIELD, HINTS_COLLECTION, OUTBOX_FIELD, OutboxRelay, compressed_outbox, packed_outbox_entries,
    queued_events,
)
from advocacy_common.publishing import envelope_for
from advocacy_testkit import until_turns

pytestmark = pytest.mark.unit


def opted_out(ambassador_id: str):
    event = AmbassadorOptedOut(ambassador_id=ambassador_id, opted_out_at=datetime(2026, 12, 1, 12, tzinfo=UTC))
    return topics.AMBASSADOR, envelope_for(event, tenant_id="acme", source="/tests")


class Cursor:
    def __init__(self, documents):
        self.documents = documents

    def limit(self, n):
        return Cursor(self.documents[:n] if n else self.documents)

    async def to_list(self):
        return [dict(document) for document in self.documents]

    def __aiter__(self):
        async def documents():
            for document in self.documents:
                yield dict(document)
        return documents()


class Database:
    def __init__(self, name="db"):
        self.name = name
        self.collections = {}
        self.built = 0  # collection objects asked for: what the relay builds per pass

    def __getitem__(self, name):
        self.built += 1
        return self.collections.setdefault(name, Collection(self, name))


class Collection:
    """What the relay asks of a collection: find, delete by `$in` of ids, and the commands seen."""

    def __init__(self, database, name):
        self.database, self.name = database, name
        self.documents: list[dict] = []
        self.commands: list[str] = []

    def find(self, query=None, projection=None):
        self.commands.append("find")
        assert not query, "queues and hints are read whole"
        return Cursor([{k: v for k, v in d.items() if k == "_id" or not projection or projection.get(k)}
                       for d in self.documents])

    async def delete_many(self, query):
        self.commands.append("delete")
        ids = set(query["_id"]["$in"])
        self.documents = [d for d in self.documents if d["_id"] not in ids]


class Publisher:
    def __init__(self):
        self.sent: list[tuple[str, str]] = []
        self.calls = 0

    async def publish_batched(self, items):
        self.calls += 1
        self.sent += [(topic, envelope.data["ambassador_id"]) for topic, envelope in items]


def test_compressed_events_come_back_in_order_and_whole_and_are_a_fraction_of_their_json():
    events = [opted_out(f"amb-{n}") for n in range(18)]
    packed = compressed_outbox(events)
    assert isinstance(packed, Binary)
    back = queued_events({"_id": "q1", COMPRESSED_OUTBOX_FIELD: packed})
    assert back == events  # topic and every envelope attribute (time, trace, data) as written
    as_entries = len(BSON.encode({OUTBOX_FIELD: packed_outbox_entries(events)}))
    assert len(packed) * 3 < as_entries  # what FerretDB converts, stores, returns and decodes
    assert zlib.decompress(packed).startswith(f'[["{topics.AMBASSADOR}",{{'.encode())  # pairs, no escaped JSON


def test_a_queue_document_of_an_earlier_release_or_with_both_forms_gives_every_event_entries_first():
    first, second, third = (opted_out(f"amb-{n}") for n in range(3))
    assert queued_events({"_id": "q", OUTBOX_FIELD: packed_outbox_entries([first])}) == [first]
    both = {"_id": "q", OUTBOX_FIELD: packed_outbox_entries([first]),
            COMPRESSED_OUTBOX_FIELD: compressed_outbox([second, third])}
    assert queued_events(both) == [first, second, third]
    assert queued_events({"_id": "q"}) == []


async def test_the_relay_publishes_a_batch_of_queue_documents_in_one_send_then_deletes_exactly_them():
    database = Database()
    queue = database["clicks"]
    queue.documents = [{"_id": f"q{n}", "tenant": "acme", COMPRESSED_OUTBOX_FIELD: compressed_outbox(
        [opted_out(f"amb-{n}-{i}") for i in range(3)])} for n in range(3)]
    queue.documents.append({"_id": "old", "tenant": "acme",  # written by an earlier release
                            OUTBOX_FIELD: packed_outbox_entries([opted_out("amb-old")])})
    publisher = Publisher()
    relay = OutboxRelay([], publisher, batch_size=2, queues=[queue])

    assert await relay.run_queues() == 6
    sent = [ambassador for _, ambassador in publisher.sent]
    assert publisher.calls == 1 and sent == [f"amb-{n}-{i}" for n in range(2) for i in range(3)]
    assert [d["_id"] for d in queue.documents] == ["q2", "old"]  # the two published, nothing else
    assert await relay.run_queues() == 4 and await relay.run_queues() == 0
    sent = [ambassador for _, ambassador in publisher.sent]
    assert queue.documents == [] and sent[6:] == [*(f"amb-2-{i}" for i in range(3)), "amb-old"]
    assert queue.commands == ["find", "delete", "find", "delete", "find"]  # an empty queue: one read, no delete


async def test_a_failed_send_deletes_nothing():
    database = Database()
    queue = database["clicks"]
    queue.documents = [{"_id": "q1", COMPRESSED_OUTBOX_FIELD: compressed_outbox([opted_out("amb-1")])}]

    class Failing(Publisher):
        async def publish_batched(self, items):
            raise TimeoutError("no acknowledgement")

    with pytest.raises(TimeoutError):
        await OutboxRelay([], Failing(), queues=[queue]).run_queues()
    assert [d["_id"] for d in queue.documents] == ["q1"]


async def test_the_hints_collections_are_found_once_not_on_every_pass():
    database = Database()
    buckets = [database[f"shares_{n:02x}"] for n in range(256)]
    relay = OutboxRelay(buckets, Publisher())
    built = database.built
    for _ in range(5):
        assert await relay.run_hinted() == 0
    assert database.built == built  # no collection object built per pass
    assert database.collections[HINTS_COLLECTION].commands == ["find"] * 5  # one read of the hints per pass


async def test_a_queue_of_an_earlier_release_is_read_by_the_sweeps_only():
    database = Database()
    queue, earlier = database["click_queue"], database["clicks"]
    queue.documents = [{"_id": "new", COMPRESSED_OUTBOX_FIELD: compressed_outbox([opted_out("amb-new")])}]
    earlier.documents = [{"_id": "old", OUTBOX_FIELD: packed_outbox_entries([opted_out("amb-old")])}]
    publisher = Publisher()
    relay = OutboxRelay([], publisher, queues=[queue], swept_queues=[earlier])

    assert await relay.run_queues() == 1 and earlier.commands == []  # a pass: today's queue only
    assert await relay.run_once() == 1  # a sweep (at start, then every turn): the earlier one too
    assert earlier.documents == [] and [a for _, a in publisher.sent] == ["amb-new", "amb-old"]
    queue.documents = [{"_id": f"n{n}", COMPRESSED_OUTBOX_FIELD: compressed_outbox([opted_out(f"amb-{n}")])}
                       for n in range(3)]
    relay.batch_size = 1
    earlier.commands.clear()
    assert await relay.run_once() == 3 and queue.documents == []
    assert earlier.commands == ["find"]  # however long today's queue takes to drain, one read of the earlier


class HintedDatabase(Database):
    def __getitem__(self, name):
        self.built += 1
        return self.collections.setdefault(name, HintedCollection(self, name))


class HintedCollection(Collection):
    """A collection of hints or of documents with pending events: every read and write the relay makes."""

    def find(self, query=None, projection=None):
        self.commands.append("find")
        if query:  # the sweep: documents with pending events
            return Cursor([d for d in self.documents if d.get(OUTBOX_FIELD)])
        return Cursor(list(self.documents))

    async def find_one(self, query, projection=None):
        self.commands.append("find_one")
        return next((dict(d) for d in self.documents if d["_id"] == query["_id"]), None)

    async def update_one(self, query, update, upsert=False):
        self.commands.append("update")
        document = next((d for d in self.documents if d["_id"] == query["_id"]), None)
        if document is None:
            document = {"_id": query["_id"]}
            self.documents.append(document)
        document.update(update.get("$set", {}))
        for field, entries in update.get("$pullAll", {}).items():
            document[field] = [e for e in document.get(field, []) if e not in entries]


class SentMany(Publisher):
    async def publish_many(self, items):
        self.calls += 1
        self.sent += [(topic, envelope.get("data", {}).get("ambassador_id")) for topic, envelope in items]


async def test_a_relay_of_hints_written_in_its_own_process_reads_them_when_woken_not_every_poll(monkeypatch):
    from advocacy_common import outbox

    database = HintedDatabase("woken")
    parts, hints = database["parts"], database[HINTS_COLLECTION]
    publisher = SentMany()
    # poll_interval 0: a polling relay would read the hints on every turn of the loop.
    relay = OutboxRelay([parts], publisher, poll_interval=0, sweep_interval=3600, hints_from_this_process=True)
    stop = asyncio.Event()
    entry = {"topic": topics.AMBASSADOR, "envelope": {"data": {"ambassador_id": "amb-1"}}}
    monkeypatch.setattr(outbox, "entry_envelope", lambda pending: pending["envelope"])  # plain dicts here
    running = asyncio.create_task(relay.run(stop))
    try:
        await until_turns(lambda: hints.commands.count("find") == 1)
        for _ in range(200):
            await asyncio.sleep(0)
        assert hints.commands.count("find") == 1  # asleep: no poll of an empty hints collection

        parts.documents.append({"_id": "p1", OUTBOX_FIELD: [entry]})
        await outbox.notify_outbox(parts, "p1")  # the writer's hint wakes the relay at once
        await until_turns(lambda: publisher.sent)
        assert publisher.sent == [(topics.AMBASSADOR, "amb-1")]
        await until_turns(lambda: parts.documents[0][OUTBOX_FIELD] == [])
        assert hints.documents == []
    finally:
        stop.set()
        await running
    assert not outbox._LOCAL_RELAYS.get("woken")  # a stopped relay is no longer woken

