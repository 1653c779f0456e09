"""A first contact with Kafka or the database that waits for it instead of failing: a process (re)started
while the broker or the database restarts (found by the chaos run: an API restarted during a broker restart
exited in its lifespan on its first admin request; a worker restarted during a database restart exited on
its first command)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from pymongo.errors import ConnectionFailure

log = logging.getLogger(__name__)
T = TypeVar("T")
STARTUP_WAIT_SECONDS = 180.0


async def while_unreachable(step: Callable[[], Awaitable[T]], what: str, who: str,
                            errors: tuple[type[BaseException], ...],
                            wait_seconds: float = STARTUP_WAIT_SECONDS) -> T:
    """Run `step`, again while it fails with one of `errors` (the server does not answer), for up to
    `wait_seconds`; any other error is raised at once."""
    deadline = time.monotonic() + wait_seconds
    pause = 0.5
    while True:
        try:
            return await step()
        except errors as error:
            if time.monotonic() + pause > deadline:
                raise
            log.warning("%s: %s does not answer (%s); trying again in %.1f s", what, who, error, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)


async def while_kafka_unreachable(step: Callable[[], Awaitable[T]], what: str,
                                  wait_seconds: float = STARTUP_WAIT_SECONDS) -> T:
    return await while_unreachable(step, what, "Kafka", (KafkaConnectionError, KafkaTimeoutError), wait_seconds)


async def while_database_unreachable(step: Callable[[], Awaitable[T]], what: str,
                                     wait_seconds: float = STARTUP_WAIT_SECONDS) -> T:
    # ConnectionFailure covers AutoReconnect, ServerSelectionTimeoutError and NetworkTimeout.
    return await while_unreachable(step, what, "the database", (ConnectionFailure,), wait_seconds)
