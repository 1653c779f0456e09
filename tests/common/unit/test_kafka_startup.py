"""A process (re)started while the broker is away waits for it (found by the chaos run: a worker restarted
during a broker restart exited on its first admin request), and a producer that a broker restart broke is replaced."""

import asyncio

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, OutOfOrderSequenceNumber
from pymongo.errors import ServerSelectionTimeoutError

from advocacy_common.envelope import KafkaRecord
from advocacy_common.publishing import EventPublisher, while_kafka_unreachable
from advocacy_common.startup_wait import while_database_unreachable
from advocacy_common.topics import TopicNames

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("wait", "outage"), [(while_kafka_unreachable, KafkaConnectionError("Unable to bootstrap")),
                                              (while_database_unreachable, ServerSelectionTimeoutError("refused"))])
async def test_a_first_contact_is_tried_again_until_the_server_answers(wait, outage):
    attempts = []

    async def contact():
        attempts.append(1)
        if len(attempts) < 3:
            raise outage
        return "connected"

    assert await wait(contact, "test", wait_seconds=10) == "connected"
    assert len(attempts) == 3


async def test_the_wait_is_bounded_and_other_errors_are_not_retried():
    async def never():
        raise KafkaConnectionError("Unable to bootstrap")

    with pytest.raises(KafkaConnectionError):
        await while_kafka_unreachable(never, "test", wait_seconds=1)

    calls = []

    async def broken():
        calls.append(1)
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError):
        await while_kafka_unreachable(broken, "test")
    assert calls == [1]


class FakeSender:
    def __init__(self, task):
        self.sender_task = task


class FakeProducer:
    """Stands in for AIOKafkaProducer: `dead` ones behave as aiokafka's after a fatal idempotence error (the
    sender task ended, a send is buffered and never acknowledged)."""

    def __init__(self, dead: bool):
        self.dead, self.sent, self.stopped = dead, [], False
        self.client = None
        self._sender = None

    async def start(self):
        async def routine():
            if self.dead:
                raise OutOfOrderSequenceNumber()
            await asyncio.Event().wait()

        self._sender = FakeSender(asyncio.create_task(routine()))
        await asyncio.sleep(0)

    async def send(self, topic, key, value, headers, partition=None):
        self.sent.append(topic)
        future = asyncio.get_running_loop().create_future()
        if not self.dead:
            future.set_result("ack")
        return future

    async def stop(self):
        self.stopped = True
        self._sender.sender_task.cancel()


async def test_a_producer_whose_sender_died_is_replaced_and_an_ack_wait_is_bounded(monkeypatch):
    producers = [FakeProducer(dead=True), FakeProducer(dead=False)]
    monkeypatch.setattr(EventPublisher, "_new_producer", lambda self: producers.pop(0))
    publisher = EventPublisher("unused:9092", TopicNames("t."), ack_timeout_seconds=0.3)
    await publisher.start()
    first = publisher._producer
    record = KafkaRecord(key=b"k", value=b"{}", headers=[])
    await asyncio.sleep(0.01)  # the dead producer's sender task has ended
    await publisher.send_record("t.topic", record)  # replaced before the send: acknowledged by the new one
    assert first.stopped and first.sent == [] and publisher._producer.sent == ["t.topic"]
    hanging = FakeProducer(dead=False)
    hanging.send = lambda *a, **k: _never()
    publisher._producer = hanging
    with pytest.raises(KafkaTimeoutError):
        await publisher.send_record("t.topic", record)
    for task in asyncio.all_tasks() - {asyncio.current_task()}:
        task.cancel()


async def _never():
    return asyncio.get_running_loop().create_future()
