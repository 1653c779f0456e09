"""A process (re)started while the broker is away waits for it (found by the chaos run: a worker restarted
during a broker restart exited on its first admin request)."""

import pytest
from aiokafka.errors import KafkaConnectionError

from advocacy_common.publishing import while_kafka_unreachable

pytestmark = pytest.mark.unit


async def test_a_first_contact_is_tried_again_until_the_broker_answers():
    attempts = []

    async def contact():
        attempts.append(1)
        if len(attempts) < 3:
            raise KafkaConnectionError("Unable to bootstrap")
        return "connected"

    assert await while_kafka_unreachable(contact, "test", wait_seconds=10) == "connected"
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
