import asyncio
import sys
import time
from pathlib import Path

import pytest

from advocacy_common.mongo import create_client
from advocacy_common.settings import ServiceSettings

# Test subjects shared with the child processes are imported by name from this folder.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
async def database(infrastructure, unique_db_name):
    client = create_client(infrastructure.mongodb_uri, "common-tests")
    name = unique_db_name("common")
    yield client[name]
    await client.drop_database(name)
    await client.close()


@pytest.fixture(scope="session")
def wait_until():
    """`await wait_until(async_predicate, timeout)`: True as soon as it holds, False at the timeout."""

    async def wait(predicate, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await predicate():
                return True
            await asyncio.sleep(0.05)
        return False

    return wait


@pytest.fixture(scope="session")
def worker_settings(infrastructure, kafka_topics):
    """`worker_settings(**overrides)`: settings of a worker on this session's topics, with 3 partitions."""

    def settings(**overrides) -> ServiceSettings:
        return ServiceSettings(kafka_bootstrap_servers=infrastructure.kafka_bootstrap_servers,
                               mongodb_uri=infrastructure.mongodb_uri, topic_prefix=kafka_topics.prefix,
                               topic_partitions=3, **overrides)

    return settings
