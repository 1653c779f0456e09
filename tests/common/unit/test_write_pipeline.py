"""The batch subscriber's write pipeline (`WritePipeline`): batch N+1 is decoded while batch N is written, each
batch is applied only after the previous one is committed, offsets are committed per batch in order, and a
failed batch rewinds everything from itself on. A fake consumer stands for aiokafka's."""

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaTimeoutError
from pymongo.errors import AutoReconnect

from advocacy_common import worker
from advocacy_common.consuming import Dispatcher
from advocacy_common.envelope import to_kafka
from advocacy_common.events import AmbassadorOptedOut
from advocacy_common.publishing import envelope_for
from advocacy_common.topics import TopicNames
from advocacy_common.worker import HandOver, Redelivery, WritePipeline
from advocacy_testkit import until_turns

pytestmark = pytest.mark.unit
NAMES = TopicNames("p.")
TOPIC = "p.advocacy.ambassador"


@dataclass(frozen=True)
class Record:  # the fields of aiokafka's ConsumerRecord that the pipeline reads
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list


def record(partition: int, offset: int) -> Record:
    event = AmbassadorOptedOut(ambassador_id=f"a{partition}-{offset}", opted_out_at=datetime(2026, 1, 1, tzinfo=UTC))
    kafka = to_kafka(envelope_for(event, tenant_id="acme", source="/test"))
    return Record(TOPIC, partition, offset, kafka.key, kafka.value, kafka.headers)


class Consumer:
    def __init__(self):
        self.log: list[tuple] = []

    async def commit(self, offsets):
        self.log.append(("commit", sorted((tp.partition, offset) for tp, offset in offsets.items())))

    def seek(self, partition, offset):
        self.log.append(("seek", partition.partition, offset))


class Message:
    def __init__(self, consumer, *records):
        self.consumer, self.raw_message = consumer, tuple(records)

    def clear_cache(self):
        pass


class Writes:
    """The batch handler: records what it applied; a batch can be held, or fail once."""

    def __init__(self, consumer: Consumer):
        self.consumer = consumer
        self.gates: dict[str, asyncio.Event] = {}
        self.fail: set[str] = set()

    async def __call__(self, deliveries):
        first = deliveries[0].event.ambassador_id
        if first in self.gates:
            await self.gates[first].wait()
        if first in self.fail:
            self.fail.discard(first)
            raise AutoReconnect("database away")
        self.consumer.log.append(("applied", [d.event.ambassador_id for d in deliveries]))


def pipeline_over(consumer: Consumer, writes: Writes) -> tuple[WritePipeline, Dispatcher]:
    dispatcher = Dispatcher(NAMES, publisher=None, handlers={AmbassadorOptedOut: writes})
    return WritePipeline(dispatcher, writes, HandOver(), Redelivery()), dispatcher



async def test_the_next_batch_is_decoded_while_one_is_written_and_each_is_committed_after_its_effects_in_order():
    consumer = Consumer()
    writes = Writes(consumer)
    pipeline, dispatcher = pipeline_over(consumer, writes)
    decoded: list[int] = []
    decode = dispatcher.decode_batch

    async def counting(records):
        decoded.append(records[0].offset)
        return await decode(records)

    dispatcher.decode_batch = counting
    writes.gates["a0-10"] = asyncio.Event()
    await pipeline.handle(Message(consumer, record(0, 10), record(1, 4)))  # returns while its writes wait
    second = asyncio.create_task(pipeline.handle(Message(consumer, record(0, 11), record(2, 7))))
    await until_turns(lambda: decoded == [10, 11])  # the second batch decoded before the first is written
    for _ in range(50):
        await asyncio.sleep(0)
    assert consumer.log == [] and not second.done()  # nothing applied or committed out of order
    writes.gates["a0-10"].set()
    await second
    await pipeline.drain()
    assert consumer.log == [("applied", ["a0-10", "a1-4"]), ("commit", [(0, 11), (1, 5)]),
                            ("applied", ["a0-11", "a2-7"]), ("commit", [(0, 12), (2, 8)])]


async def test_a_committed_batch_keeps_only_its_first_position():
    """The write task's context holds the message after the commit (aiokafka's cancelled request timer): its
    records' keys, values and headers must be let go then, not 40 s later (`release_records`)."""
    consumer = Consumer()
    pipeline, _ = pipeline_over(consumer, Writes(consumer))
    message = Message(consumer, record(0, 10), record(0, 11))
    await pipeline.handle(message)
    await pipeline.drain()
    assert consumer.log[-1] == ("commit", [(0, 12)])
    assert message.raw_message == (Record(TOPIC, 0, 10, None, None, []),)


async def test_a_failed_batch_rewinds_itself_and_the_batch_decoded_meanwhile_is_dropped_and_rewound(monkeypatch):
    monkeypatch.setattr(worker, "TRANSIENT_PAUSE_SECONDS", 0)
    consumer = Consumer()
    writes = Writes(consumer)
    pipeline, _ = pipeline_over(consumer, writes)
    writes.fail.add("a0-10")
    await pipeline.handle(Message(consumer, record(0, 10), record(0, 11), record(1, 4)))
    await pipeline.handle(Message(consumer, record(0, 12), record(2, 7)))  # sees the failure: not applied
    assert sorted(consumer.log[:2]) == [("seek", 0, 10), ("seek", 1, 4)]  # the failed batch, from its start
    assert sorted(consumer.log[2:]) == [("seek", 0, 10), ("seek", 2, 7)]  # partition 0 at 10, not the dropped 12
    # A record fetched before the seek, after the failed batch, is dropped as well.
    await pipeline.handle(Message(consumer, record(0, 13)))
    assert consumer.log[4:] == [("seek", 0, 10)]
    # Delivered again from there, it goes through.
    await pipeline.handle(Message(consumer, record(0, 10), record(0, 11), record(1, 4)))
    await pipeline.drain()
    assert consumer.log[5:] == [("applied", ["a0-10", "a0-11", "a1-4"]), ("commit", [(0, 12), (1, 5)])]


async def test_a_failed_batch_alone_is_delivered_again_and_goes_through(monkeypatch):
    monkeypatch.setattr(worker, "TRANSIENT_PAUSE_SECONDS", 0)
    consumer = Consumer()
    writes = Writes(consumer)
    pipeline, _ = pipeline_over(consumer, writes)
    writes.fail.add("a0-10")
    await pipeline.handle(Message(consumer, record(0, 10)))
    await until_turns(lambda: consumer.log)
    assert consumer.log == [("seek", 0, 10)]  # nothing else in flight: the failed batch rewinds itself
    await pipeline.handle(Message(consumer, record(0, 10), record(0, 11)))  # fetched again from there
    await pipeline.handle(Message(consumer, record(0, 12)))
    await pipeline.drain()
    assert consumer.log[1:] == [("applied", ["a0-10", "a0-11"]), ("commit", [(0, 12)]),
                                ("applied", ["a0-12"]), ("commit", [(0, 13)])]


async def test_a_rebalance_waits_for_the_batch_written_and_the_one_decoded_meanwhile():
    consumer = Consumer()
    writes = Writes(consumer)
    pipeline, _ = pipeline_over(consumer, writes)
    writes.gates["a0-10"] = asyncio.Event()
    await pipeline.handle(Message(consumer, record(0, 10)))
    second = asyncio.create_task(pipeline.handle(Message(consumer, record(0, 11))))
    revoke = asyncio.create_task(pipeline.handover.on_partitions_revoked(set()))
    await until_turns(pipeline.handover.revoking.is_set)
    writes.gates["a0-10"].set()
    await until_turns(lambda: len([entry for entry in consumer.log if entry[0] == "applied"]) == 1)
    assert not revoke.done()  # the second batch, decoded meanwhile, is still to be written and committed
    await revoke
    assert consumer.log[-1] == ("commit", [(0, 12)])
    await second


async def test_a_drained_pipeline_starts_no_batch_and_rewinds_the_one_handed_to_it():
    consumer = Consumer()
    writes = Writes(consumer)
    pipeline, _ = pipeline_over(consumer, writes)
    await pipeline.drain()
    await pipeline.handle(Message(consumer, record(3, 5)))
    assert consumer.log == [("seek", 3, 5)]


def test_offsets_of_a_batch_per_partition():
    spans = worker.batch_offsets([record(0, 9), record(0, 3), record(1, 4)])
    assert spans == {TopicPartition(TOPIC, 0): (3, 9), TopicPartition(TOPIC, 1): (4, 4)}


async def test_a_stop_cancels_the_handler_waiting_for_the_writes_not_the_writes():
    consumer = Consumer()
    writes = Writes(consumer)
    pipeline, _ = pipeline_over(consumer, writes)
    writes.gates["a0-10"] = asyncio.Event()
    await pipeline.handle(Message(consumer, record(0, 10)))
    waiting = asyncio.create_task(pipeline.handle(Message(consumer, record(0, 11))))
    for _ in range(20):
        await asyncio.sleep(0)
    waiting.cancel()  # FastStream's consume loop, stopped
    with pytest.raises(asyncio.CancelledError):
        await waiting
    drained = asyncio.create_task(pipeline.drain())
    writes.gates["a0-10"].set()
    await drained
    assert consumer.log == [("applied", ["a0-10"]), ("commit", [(0, 11)])]  # the batch in flight, committed


async def test_a_batch_whose_poison_record_cannot_be_dead_lettered_is_rewound_not_skipped(monkeypatch):
    monkeypatch.setattr(worker, "TRANSIENT_PAUSE_SECONDS", 0)

    class KafkaAway:
        async def send_record(self, topic, record, partition=None):
            raise KafkaTimeoutError()

    consumer = Consumer()
    writes = Writes(consumer)
    dispatcher = Dispatcher(NAMES, KafkaAway(), {AmbassadorOptedOut: writes})
    pipeline = WritePipeline(dispatcher, writes, HandOver(), Redelivery())
    poison = Record(TOPIC, 1, 8, b"k", b"not a cloudevent", [])
    await pipeline.handle(Message(consumer, record(0, 10), poison))
    assert sorted(consumer.log) == [("seek", 0, 10), ("seek", 1, 8)]  # delivered again, nothing applied
    await pipeline.handle(Message(consumer, record(0, 10)))
    await pipeline.drain()
    assert consumer.log[2:] == [("applied", ["a0-10"]), ("commit", [(0, 11)])]


async def test_a_pipeline_stopped_and_started_again_writes_again():
    consumer = Consumer()
    writes = Writes(consumer)
    pipeline, _ = pipeline_over(consumer, writes)
    await pipeline.drain()
    pipeline.reopen()
    await pipeline.handle(Message(consumer, record(0, 1)))
    await pipeline.drain()
    assert consumer.log == [("applied", ["a0-1"]), ("commit", [(0, 2)])]


async def test_a_stop_waits_for_a_write_that_never_ends_only_so_long():
    consumer = Consumer()
    writes = Writes(consumer)
    pipeline, _ = pipeline_over(consumer, writes)
    writes.gates["a0-1"] = asyncio.Event()  # never set: a database that does not answer
    await pipeline.handle(Message(consumer, record(0, 1)))
    await pipeline.drain(timeout=0)
    assert consumer.log == []  # stopped without applying or committing: delivered again to the next owner
    writes.gates["a0-1"].set()
    await pipeline.drain()
    assert consumer.log == [("applied", ["a0-1"]), ("commit", [(0, 2)])]
