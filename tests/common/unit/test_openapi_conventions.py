"""The OpenAPI states the conventions the shared code enforces: If-Match where 412 is declared, the challenge
of every 401 and the Retry-After of every 429; and every 401 carries a WWW-Authenticate challenge."""

import pytest
from fastapi import Depends, Request
from httpx import ASGITransport, AsyncClient

from advocacy_common.api_support import require_if_match
from advocacy_common.auth import Principal, authenticate, signature_unauthorized
from advocacy_common.errors import Problem, problem_responses
from advocacy_common.http import create_service_app
from advocacy_common.settings import ServiceSettings

pytestmark = pytest.mark.unit


def make_app(auth_settings):
    app = create_service_app(ServiceSettings(service_name="openapi-test", **auth_settings), title="t", description="t")

    @app.put("/things/{thing_id}", responses=problem_responses(412))
    async def replace(thing_id: str, request: Request, principal: Principal = Depends(authenticate)):
        require_if_match(request, 3)
        return {"ok": True}

    # Required, checked by require_if_match (428), declared by hand: FastAPI's Header() would answer 422 itself.
    @app.put("/strict/{thing_id}", responses=problem_responses(412), openapi_extra={"parameters": [
        {"name": "If-Match", "in": "header", "required": True, "schema": {"type": "string"}}]})
    async def strict(thing_id: str, request: Request, principal: Principal = Depends(authenticate)):
        require_if_match(request, 3, required=True)
        return {"ok": True}

    @app.get("/plain")
    async def plain(principal: Principal = Depends(authenticate)):
        raise Problem(401, "Unauthorized", "raised without a challenge")

    @app.post("/hook")
    async def hook():
        raise signature_unauthorized("The signature does not match.")

    return app


def test_if_match_is_declared_where_412_is_and_428_where_it_is_required(auth_settings):
    schema = make_app(auth_settings).openapi()
    replace = schema["paths"]["/things/{thing_id}"]["put"]
    header = [p for p in replace["parameters"] if p["in"] == "header"]
    assert header == [{"name": "If-Match", "in": "header", "required": False, "description": header[0]["description"],
                       "schema": {"type": "string", "maxLength": 1024}}]
    assert "412" in replace["responses"] and "428" not in replace["responses"]
    strict = schema["paths"]["/strict/{thing_id}"]["put"]
    assert {"412", "428"} <= set(strict["responses"])
    assert [p["name"] for p in strict["parameters"] if p["in"] == "header"] == ["If-Match"]
    plain = schema["paths"]["/plain"]["get"]
    assert "If-Match" not in str(plain.get("parameters")) and "412" not in plain["responses"]
    for operation in (replace, strict, plain):
        assert operation["responses"]["401"]["headers"]["WWW-Authenticate"]["required"] is True
        assert operation["responses"]["429"]["headers"]["Retry-After"]["required"] is True


async def test_every_401_names_a_scheme(auth_settings, bearer):
    app = make_app(auth_settings)
    async with AsyncClient(transport=ASGITransport(app), base_url="http://t") as http:
        no_token = await http.put("/things/a")
        raised_bare = await http.get("/plain", headers=bearer("t1", "u1", "editor"))
        signature = await http.post("/hook")
        stale = await http.put("/things/a", headers={**bearer("t1", "u1", "editor"), "If-Match": '"2"'})
        missing = await http.put("/strict/a", headers=bearer("t1", "u1", "editor"))
        too_long = await http.put("/things/a", headers={**bearer("t1", "u1", "editor"), "If-Match": '"3"' * 400})
    assert no_token.status_code == 401 and no_token.headers["www-authenticate"].startswith("Bearer")
    assert raised_bare.status_code == 401 and raised_bare.headers["www-authenticate"].startswith("Bearer")
    assert signature.status_code == 401
    assert signature.headers["www-authenticate"].startswith('Advocacy-Signature realm="webhooks"')
    assert stale.status_code == 412
    assert missing.status_code == 428
    assert too_long.status_code == 400  # longer than the declared maxLength
