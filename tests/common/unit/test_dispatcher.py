from datetime import UTC, datetime

import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from pymongo.errors import AutoReconnect

from advocacy_common.consuming import Dispatcher, RawRecord
from advocacy_common.dlq import DeadLetterFailed
from advocacy_common.envelope import KafkaRecord, to_kafka
from advocacy_common.events import AmbassadorErased, AmbassadorOptedOut
from advocacy_common.publishing import envelope_for
from advocacy_common.topics import TopicNames

pytestmark = pytest.mark.unit
NAMES = TopicNames("p.")


class FakePublisher:
    def __init__(self, failures: int = 0, too_large_above: int | None = None):
        self.sent: list[tuple[str, KafkaRecord]] = []
        self.partitions: list[int | None] = []
        self.failures = failures
        self.too_large_above = too_large_above

    async def send_record(self, topic, record, partition=None):
        if self.failures:
            self.failures -= 1
            raise KafkaTimeoutError()
        if self.too_large_above is not None and len(record.value or b"") > self.too_large_above:
            raise MessageSizeTooLargeError()
        self.sent.append((topic, record))
        self.partitions.append(partition)


def raw(event, offset=0) -> RawRecord:
    record = to_kafka(envelope_for(event, tenant_id="acme", source="/test"))
    return RawRecord("p.advocacy.ambassador", 0, offset, record.key, record.value, record.headers)


OPTED_OUT = AmbassadorOptedOut(ambassador_id="a1", opted_out_at=datetime(2026, 1, 1, tzinfo=UTC))


async def test_handler_receives_decoded_delivery():
    seen = []

    async def handle(delivery):
        seen.append(delivery)

    dispatcher = Dispatcher(NAMES, FakePublisher(), {AmbassadorOptedOut: handle})
    await dispatcher.dispatch(raw(OPTED_OUT, offset=7))
    assert len(seen) == 1
    assert (seen[0].event, seen[0].tenant_id, seen[0].topic, seen[0].offset) == \
        (OPTED_OUT, "acme", "advocacy.ambassador", 7)


async def test_types_without_handler_are_skipped():
    publisher = FakePublisher()
    await Dispatcher(NAMES, publisher, {}).dispatch(raw(OPTED_OUT))
    assert publisher.sent == []


async def test_failing_handler_is_retried_then_dead_lettered():
    calls = []

    async def handle(delivery):
        calls.append(1)
        raise ValueError("bad data in event")

    publisher = FakePublisher()
    dispatcher = Dispatcher(NAMES, publisher, {AmbassadorOptedOut: handle}, max_attempts=3, retry_backoff=0)
    await dispatcher.dispatch(raw(OPTED_OUT, offset=4))
    assert len(calls) == 3
    topic, record = publisher.sent[0]
    assert topic == "p.advocacy.ambassador.dlq"
    assert "bad data in event" in record.header("x-dlq-reason")
    assert record.header("x-dlq-original-offset") == "4"
    assert record.header("ce_type") == "ambassador.opted_out.v1"  # original headers kept


async def test_malformed_record_goes_to_dlq_without_retry():
    publisher = FakePublisher()
    dispatcher = Dispatcher(NAMES, publisher, {AmbassadorOptedOut: None})
    await dispatcher.dispatch(RawRecord("p.advocacy.ambassador", 1, 9, b"k", b"garbage", []))
    assert len(publisher.sent) == 1 and publisher.sent[0][1].header("x-dlq-attempts") == "0"


async def test_transient_errors_propagate_for_redelivery():
    async def handle(delivery):
        raise AutoReconnect("db down")

    publisher = FakePublisher()
    with pytest.raises(AutoReconnect):
        await Dispatcher(NAMES, publisher, {AmbassadorOptedOut: handle}).dispatch(raw(OPTED_OUT))
    assert publisher.sent == []


async def test_batch_failure_isolates_the_poison_event():
    applied = []

    async def batch(deliveries):
        if any(isinstance(d.event, AmbassadorErased) for d in deliveries):
            raise ValueError("poison")
        applied.extend(d.offset for d in deliveries)

    publisher = FakePublisher()
    dispatcher = Dispatcher(NAMES, publisher, {AmbassadorOptedOut: None, AmbassadorErased: None},
                            max_attempts=2, retry_backoff=0)
    erased = AmbassadorErased(ambassador_id="a2", erased_at=datetime(2026, 1, 1, tzinfo=UTC))
    await dispatcher.dispatch_batch([raw(OPTED_OUT, 1), raw(erased, 2), raw(OPTED_OUT, 3)], batch)
    assert applied == [1, 3]
    assert [r.header("x-dlq-original-offset") for _, r in publisher.sent] == ["2"]


@pytest.mark.parametrize("value,reason", [
    (None, "null value (tombstone)"), (b"", "empty value"), (b"{" + b" " * 2000 + b"}", "exceeds the limit"),
])
async def test_tombstone_empty_and_oversized_values_are_dead_lettered_unread(value, reason):
    publisher = FakePublisher()
    record = raw(OPTED_OUT, offset=5)
    dispatcher = Dispatcher(NAMES, publisher, {AmbassadorOptedOut: None}, group_id="g1", max_value_bytes=1000)
    await dispatcher.dispatch(RawRecord(record.topic, 0, 5, record.key, value, record.headers))
    (topic, letter), = publisher.sent
    assert reason in letter.header("x-dlq-reason")
    assert (letter.header("x-dlq-error-type"), letter.header("x-dlq-group")) == ("UnacceptableRecord", "g1")
    assert letter.value == value and publisher.partitions == [0]


async def test_events_the_handlers_ignore_are_skipped_before_the_ledger():
    """A comment tally's consumer reads every click of the engagement topic: those neither look the ledger
    up nor enter it (one lookup per click, and a ledger growing by one document per click)."""
    looked_up, recorded, applied = [], [], []

    class Ledger:
        async def already_processed(self, ids):
            looked_up.extend(ids)
            return set()

        async def record(self, ids):
            recorded.extend(ids)

    async def batch(deliveries):
        applied.extend(d.offset for d in deliveries)

    erased = AmbassadorErased(ambassador_id="a2", erased_at=datetime(2026, 1, 1, tzinfo=UTC))
    dispatcher = Dispatcher(NAMES, FakePublisher(), {AmbassadorOptedOut: None, AmbassadorErased: None},
                            ledger=Ledger(), relevant=lambda event: isinstance(event, AmbassadorErased))
    records = [raw(OPTED_OUT, 1), raw(erased, 2), raw(OPTED_OUT, 3)]
    await dispatcher.dispatch_batch(records, batch)
    assert applied == [2] and len(looked_up) == len(recorded) == 1
    await dispatcher.dispatch(records[0])
    assert applied == [2] and len(looked_up) == len(recorded) == 1


async def test_dead_lettered_event_is_not_recorded_as_processed():
    recorded = []

    class Ledger:
        async def already_processed(self, ids):
            return set()

        async def record(self, ids):
            recorded.extend(ids)

    async def handle(delivery):
        raise ValueError("never works")

    dispatcher = Dispatcher(NAMES, FakePublisher(), {AmbassadorOptedOut: handle}, retry_backoff=0, ledger=Ledger())
    await dispatcher.dispatch(raw(OPTED_OUT))
    assert recorded == []  # a replay of it after a fix must still apply


async def test_a_dlq_that_cannot_be_written_is_a_transient_failure_and_is_written_once_later():
    publisher = FakePublisher(failures=1)
    dispatcher = Dispatcher(NAMES, publisher, {AmbassadorOptedOut: None})
    poison = RawRecord("p.advocacy.ambassador", 2, 11, b"k", b"garbage", [])
    with pytest.raises(DeadLetterFailed):
        await dispatcher.dispatch(poison)
    await dispatcher.dispatch(poison)  # redelivered
    await dispatcher.dispatch(poison)  # redelivered again (e.g. its batch failed later): not written twice
    assert len(publisher.sent) == 1


async def test_a_dead_letter_too_large_for_the_dlq_keeps_its_position_without_the_value():
    publisher = FakePublisher(too_large_above=100)
    await Dispatcher(NAMES, publisher, {}).dispatch(RawRecord("p.advocacy.ambassador", 0, 3, b"k", b"x" * 500, []))
    (_, letter), = publisher.sent
    assert letter.value is None
    assert (letter.header("x-dlq-value-dropped"), letter.header("x-dlq-original-offset")) == ("500", "3")
