"""One of two independent processes incrementing the same counter through versioned saves."""

import asyncio
import sys

from advocacy_common.mongo import create_client
from advocacy_common.repository import StaleWrite, Storage

from repository_subjects import CounterRepository


async def main(uri: str, database: str, increments: int) -> None:
    client = create_client(uri, "racing-child")
    repository = CounterRepository(await Storage.open(client[database], "k"))
    done = stale = 0
    while done < increments:
        counter = await repository.get("acme", "shared")
        try:
            await repository.save(counter.model_copy(update={"value": counter.value + 1}))
            done += 1
        except StaleWrite:
            stale += 1  # another process won this version: read again and retry
    print(done, stale)
    await client.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
