"""A database or broker that does not answer is a 503 with Retry-After (the client may retry), never a 500; and a
process's first database command waits for a database that restarts."""

import pytest
from aiokafka.errors import KafkaConnectionError
from httpx import ASGITransport, AsyncClient
from pymongo.errors import AutoReconnect, ServerSelectionTimeoutError

from advocacy_common.http import create_service_app
from advocacy_common.settings import ServiceSettings
from advocacy_common.startup_wait import while_database_unreachable

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("error", [ServerSelectionTimeoutError("27017: connection refused"), AutoReconnect("reset"),
                                   KafkaConnectionError("Unable to bootstrap")])
async def test_a_backing_service_away_is_a_503(auth_settings, error):
    app = create_service_app(ServiceSettings(service_name="away-test", **auth_settings), title="t", description="t")

    @app.get("/thing")
    async def thing():
        raise error

    async with AsyncClient(transport=ASGITransport(app), base_url="http://t") as http:
        response = await http.get("/thing")
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_first_database_command_waits_for_the_database():
    attempts = []

    async def command():
        attempts.append(1)
        if len(attempts) < 3:
            raise ServerSelectionTimeoutError("connection refused")
        return {"ok": 1}

    assert await while_database_unreachable(command, "test", wait_seconds=10) == {"ok": 1}
    assert len(attempts) == 3
