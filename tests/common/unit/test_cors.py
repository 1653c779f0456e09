"""CORS from the settings' allow-list: preflights answered for listed origins only, nothing by default."""

import pytest
from fastapi import Depends
from httpx import ASGITransport, AsyncClient

from advocacy_common.auth import Principal, authenticate
from advocacy_common.cors import WildcardWithCredentials
from advocacy_common.http import create_service_app
from advocacy_common.settings import ServiceSettings

pytestmark = pytest.mark.unit
DASHBOARD = "http://127.0.0.1:8104"
PREFLIGHT = {"Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization, content-type, idempotency-key"}


def client_for(**settings) -> AsyncClient:
    app = create_service_app(ServiceSettings(service_name="cors-test", **settings), title="t", description="d")

    @app.post("/things", status_code=201)
    async def create(principal: Principal = Depends(authenticate)):
        return {}

    @app.get("/things/1")
    async def read():
        return {"id": 1}

    return AsyncClient(transport=ASGITransport(app), base_url="http://api")


async def test_no_origin_is_allowed_by_default():
    async with client_for() as http:
        preflight = await http.options("/things", headers={"Origin": DASHBOARD, **PREFLIGHT})
        assert preflight.status_code == 405 and "access-control-allow-origin" not in preflight.headers
        read = await http.get("/things/1", headers={"Origin": DASHBOARD})
        assert "access-control-allow-origin" not in read.headers


async def test_a_listed_origin_gets_preflights_and_exposed_headers():
    async with client_for(cors_allowed_origins=[DASHBOARD]) as http:
        preflight = await http.options("/things", headers={"Origin": DASHBOARD, **PREFLIGHT})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == DASHBOARD
        allowed = {h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")}
        assert {"authorization", "content-type", "idempotency-key", "if-match"} <= allowed
        assert "POST" in preflight.headers["access-control-allow-methods"]
        assert "access-control-allow-credentials" not in preflight.headers  # bearer tokens, no cookies
        read = await http.get("/things/1", headers={"Origin": DASHBOARD})
        assert read.headers["access-control-allow-origin"] == DASHBOARD
        assert set(read.headers["access-control-expose-headers"].split(", ")) == {"ETag", "Location", "Retry-After"}
        # The request itself is still authenticated: CORS opens the door to the browser, not to anonymity.
        unauthenticated = await http.post("/things", headers={"Origin": DASHBOARD})
        assert unauthenticated.status_code == 401
        assert unauthenticated.headers["access-control-allow-origin"] == DASHBOARD  # so the page can read why


async def test_an_unlisted_origin_is_refused():
    async with client_for(cors_allowed_origins=[DASHBOARD]) as http:
        preflight = await http.options("/things", headers={"Origin": "https://evil.example", **PREFLIGHT})
        assert preflight.status_code == 400 and "access-control-allow-origin" not in preflight.headers
        read = await http.get("/things/1", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in read.headers


def test_credentials_require_named_origins():
    with pytest.raises(WildcardWithCredentials):
        client_for(cors_allowed_origins=["*"], cors_allow_credentials=True)
