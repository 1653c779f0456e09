import pytest

from advocacy_common.mongo import create_client


@pytest.fixture
async def database(infrastructure, unique_db_name):
    client = create_client(infrastructure.mongodb_uri, "common-tests")
    name = unique_db_name("common")
    yield client[name]
    await client.drop_database(name)
    await client.close()
