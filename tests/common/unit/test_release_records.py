"""A handled message stops keeping its records alive (advocacy_common.worker.release_records).

FastStream keeps the message in the handling's context; a timer started in that context (aiokafka's
40 s request timeout around the offset commit) holds the context until its deadline even when it
was cancelled at once. These tests build the message with FastStream's own parsers, exactly as the
subscribers get it, and check with weak references that the records are freed.
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref

from aiokafka.structs import ConsumerRecord
from faststream.kafka.message import KafkaAckableMessage
from faststream.kafka.parser import AioKafkaBatchParser, AioKafkaParser

from advocacy_common.worker import parse_keeping_raw_records, raw_records, release_records

HANDLING = contextvars.ContextVar("handling")  # stands for FastStream's context variable of the message


def record(partition: int, offset: int) -> ConsumerRecord:
    return ConsumerRecord(topic="t.engagement", partition=partition, offset=offset, timestamp=1, timestamp_type=0,
                          key=b"key", value=b'{"x": %d}' % offset, checksum=None, serialized_key_size=3,
                          serialized_value_size=10, headers=[("ce_id", b"id-%d" % offset), ("ce_type", b"t")])


async def batch_message(records: tuple[ConsumerRecord, ...]) -> KafkaAckableMessage:
    parser = AioKafkaBatchParser(msg_class=KafkaAckableMessage, regex=None)
    message = await parse_keeping_raw_records(records, parser.parse_batch)
    message.set_decoder(raw_records)
    assert await message.decode() is records  # what the subscriber hands on, now cached by the message
    return message


async def test_a_handled_batch_keeps_only_its_first_position():
    records = tuple(record(partition, offset) for partition in (0, 1) for offset in range(3))
    message = await batch_message(records)

    release_records(message)

    (kept,) = message.raw_message
    assert isinstance(kept, ConsumerRecord)  # FastStream's code after the handler may read it
    assert (kept.topic, kept.partition, kept.offset) == ("t.engagement", 0, 0)
    assert (kept.key, kept.value, kept.headers) == (None, None, [])
    assert await message.decode() == (kept,)  # the cached body went too


async def _handled_under_a_cancelled_timer():
    """A batch of 100 records handled in a context that a cancelled 40 s timer holds, as the commit leaves it
    (cancelled at once, in the loop's heap until its deadline): weak references to the records, the context,
    and the message (the only other holder of the records)."""
    records = tuple(record(0, offset) for offset in range(100))
    alive = [weakref.ref(r) for r in records]
    message = await batch_message(records)
    handling = contextvars.copy_context()
    handling.run(HANDLING.set, message)
    handling.run(asyncio.get_running_loop().call_later, 40, lambda: None).cancel()
    return alive, handling, message


async def test_a_cancelled_timer_of_the_handling_context_no_longer_keeps_the_records():
    alive, handling, message = await _handled_under_a_cancelled_timer()

    release_records(message)
    del message

    assert handling[HANDLING].raw_message[0].offset == 0  # the message itself is still held
    assert [r for r in alive if r() is not None] == []


async def test_without_release_the_timer_keeps_every_record():
    """The condition the fix is for, shown: otherwise the test above would prove nothing."""
    alive, handling, message = await _handled_under_a_cancelled_timer()

    del message

    assert len([r for r in alive if r() is not None]) == 100


async def test_a_handled_single_record_keeps_only_its_position():
    original = record(3, 17)
    alive = weakref.ref(original)
    parser = AioKafkaParser(msg_class=KafkaAckableMessage, regex=None)
    message = await parse_keeping_raw_records(original, parser.parse_message)

    release_records(message)
    del original

    assert alive() is None
    kept = message.raw_message
    assert (kept.partition, kept.offset, kept.value, kept.headers) == (3, 17, None, [])
