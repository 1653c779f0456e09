"""The crash test's subject: the content worker, built from CONTENT_* variables, run until killed."""

from __future__ import annotations

import asyncio
import random

from content.bootstrap import build_worker, settings_from_environment


async def main() -> None:
    worker = build_worker(settings_from_environment())

    clear_published = worker.relay.clear_published

    async def linger_then_clear(*args) -> None:
        # Widen the window between "Kafka acknowledged" and "cleared from the outbox",
        # so that some kills land exactly there and the relay must publish again.
        await asyncio.sleep(random.uniform(0, 0.05))
        await clear_published(*args)

    worker.relay.clear_published = linger_then_clear
    await worker.run()


if __name__ == "__main__":
    asyncio.run(main())
