"""Runs one outbox relay pass in a child process; with CRASH=1 it SIGKILLs itself
right after Kafka acknowledged and before the pending events are cleared."""

import asyncio
import os
import signal
import sys

from advocacy_common.mongo import create_client
from advocacy_common.outbox import OutboxRelay
from advocacy_common.publishing import EventPublisher
from advocacy_common.topics import TopicNames


class DyingRelay(OutboxRelay):
    """Dies the moment Kafka acknowledged, before clearing: the outbox still holds the events."""

    async def clear_published(self, *args) -> None:
        os.kill(os.getpid(), signal.SIGKILL)


async def main(bootstrap: str, mongo_uri: str, database: str, prefix: str, crash: bool) -> None:
    client = create_client(mongo_uri, "relay-child")
    publisher = EventPublisher(bootstrap, TopicNames(prefix))
    await publisher.start()

    relay = (DyingRelay if crash else OutboxRelay)([client[database]["things"]], publisher)
    print("published", await relay.run_once(), flush=True)
    await publisher.stop()
    await client.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5], crash=sys.argv[5] == "1"))
