import pytest
from asgi_lifespan import LifespanManager
from fastapi import Depends
from httpx import ASGITransport, AsyncClient
from pydantic import BaseModel

from advocacy_common.auth import Principal, authenticate
from advocacy_common.http import create_service_app
from advocacy_common.mongo import create_client, ping
from advocacy_common.settings import ServiceSettings

pytestmark = pytest.mark.integration


class Body(BaseModel):
    count: int


@pytest.fixture
async def app(infrastructure, auth_settings):
    settings = ServiceSettings(mongodb_uri=infrastructure.mongodb_uri, service_name="http-test", **auth_settings)
    app = create_service_app(settings, title="t", description="d")
    client = create_client(settings.mongodb_uri, "http-test")
    app.state.readiness["mongodb"] = lambda: ping(client["admin"])

    @app.post("/things")
    async def create(body: Body, principal: Principal = Depends(authenticate)):
        return {"count": body.count, "tenant": principal.tenant}

    @app.get("/boom")
    async def boom(principal: Principal = Depends(authenticate)):
        raise RuntimeError("secret internals")

    async with LifespanManager(app):
        yield app
    await client.close()


async def test_health_metrics_and_problems(app, bearer):
    async with AsyncClient(transport=ASGITransport(app, raise_app_exceptions=False), base_url="http://t") as http:
        assert (await http.get("/livez")).json() == {"status": "ok"}
        ready = await http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"] == {"mongodb": True}
        headers = bearer("acme", "alice", "editor")
        assert (await http.post("/things", json={"count": 2}, headers=headers)).json() == {"count": 2, "tenant": "acme"}
        bad = await http.post("/things", json={"count": "many"}, headers=headers)
        assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
        assert bad.json()["errors"][0]["field"] == "count"
        unauthenticated = await http.post("/things", json={"count": 2})
        assert unauthenticated.status_code == 401
        boom = await http.get("/boom", headers=headers)
        assert boom.status_code == 500 and "secret internals" not in boom.text and "Traceback" not in boom.text
        unknown = await http.get("/nowhere")
        assert unknown.status_code == 404 and unknown.headers["content-type"] == "application/problem+json"
        metrics = await http.get("/metrics")
        # labelled by the route template, never the raw path; health endpoints are not counted
        assert 'http_requests_total{handler="/things",method="POST",status="200"}' in metrics.text
        assert 'handler="/nowhere"' not in metrics.text and 'handler="none",method="GET",status="404"' in metrics.text
        assert 'handler="/livez"' not in metrics.text and 'handler="/readyz"' not in metrics.text
