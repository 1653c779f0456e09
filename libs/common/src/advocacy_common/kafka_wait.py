"""A first contact with Kafka that waits for the broker instead of failing: a process (re)started while the
broker restarts (found by the chaos run: an API restarted during a broker restart exited in its lifespan, on
its first admin request)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError

log = logging.getLogger(__name__)
T = TypeVar("T")
STARTUP_WAIT_SECONDS = 180.0


async def while_kafka_unreachable(step: Callable[[], Awaitable[T]], what: str,
                                  wait_seconds: float = STARTUP_WAIT_SECONDS) -> T:
    """Run `step` (a first contact with Kafka), again while the broker does not answer, for up to
    `wait_seconds`: a process (re)started during a broker restart waits for it instead of exiting."""
    deadline = time.monotonic() + wait_seconds
    pause = 0.5
    while True:
        try:
            return await step()
        except (KafkaConnectionError, KafkaTimeoutError) as error:
            if time.monotonic() + pause > deadline:
                raise
            log.warning("%s: Kafka does not answer (%s); trying again in %.1f s", what, error, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)
