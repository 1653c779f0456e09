"""A database or broker that does not answer is a 503 with Retry-After (the client may retry), never a 500."""

import pytest
from aiokafka.errors import KafkaConnectionError
from httpx import ASGITransport, AsyncClient
from pymongo.errors import AutoReconnect, ServerSelectionTimeoutError

from advocacy_common.http import create_service_app
from advocacy_common.settings import ServiceSettings

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
