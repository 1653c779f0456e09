import sys
from pathlib import Path

import pytest

from advocacy_common.mongo import create_client

# Test subjects shared with the child processes are imported by name from this folder.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
async def database(infrastructure, unique_db_name):
    client = create_client(infrastructure.mongodb_uri, "common-tests")
    name = unique_db_name("common")
    yield client[name]
    await client.drop_database(name)
    await client.close()
