"""`authenticate` is the `bearer` security scheme itself: the OpenAPI says the same, and a request solves one
dependency less (the scheme authenticates, no function depends on a declaration-only scheme)."""

import pytest
from fastapi import Depends, Request
from fastapi.security.base import SecurityBase
from httpx import ASGITransport, AsyncClient

from advocacy_common.auth import Principal, authenticate, require_roles
from advocacy_common.http import create_service_app
from advocacy_common.settings import ServiceSettings

pytestmark = pytest.mark.unit


def make_app(auth_settings):
    app = create_service_app(ServiceSettings(service_name="authn-test", **auth_settings), title="t", description="t")

    @app.get("/mine")
    async def mine(principal: Principal = Depends(require_roles("ambassador", "admin"))):
        return {"subject": principal.subject, "tenant": principal.tenant}

    @app.get("/anyone")
    async def anyone(principal: Principal = Depends(authenticate)):
        return {"subject": principal.subject}

    @app.get("/by-hand")
    async def by_hand(request: Request):
        return {"subject": (await authenticate(request)).subject}

    return app


def depth(dependant) -> int:
    return 1 + max((depth(d) for d in dependant.dependencies), default=0)


async def test_roles_are_the_scopes_of_the_bearer_requirement_and_the_tree_is_two_deep(auth_settings, bearer):
    app = make_app(auth_settings)
    paths = app.openapi()["paths"]
    assert paths["/mine"]["get"]["security"] == [{"bearer": ["ambassador", "admin"]}]
    assert paths["/anyone"]["get"]["security"] == [{"bearer": []}]
    assert app.openapi()["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "An OIDC access token of the tenant's identity provider"}
    assert isinstance(authenticate, SecurityBase)
    route = next(r for r in app.routes if getattr(r, "path", "") == "/mine")
    assert depth(route.dependant) == 3  # the endpoint, the role check, the scheme that authenticates

    async with AsyncClient(transport=ASGITransport(app), base_url="http://t") as http:
        ok = await http.get("/mine", headers=bearer("acme", "amb-1", "ambassador"))
        wrong_role = await http.get("/mine", headers=bearer("acme", "amb-1", "analyst"))
        anyone = await http.get("/anyone", headers=bearer("acme", "amb-2", "analyst"))
        by_hand = await http.get("/by-hand", headers=bearer("acme", "amb-3"))
        missing = await http.get("/mine")
        forged = await http.get("/anyone", headers={"Authorization": "Bearer not.a.token"})
        by_hand_missing = await http.get("/by-hand")
    assert ok.status_code == 200 and ok.json() == {"subject": "amb-1", "tenant": "acme"}
    assert wrong_role.status_code == 403 and wrong_role.headers["content-type"] == "application/problem+json"
    assert anyone.json() == {"subject": "amb-2"} and by_hand.json() == {"subject": "amb-3"}
    for refused in (missing, forged, by_hand_missing):
        assert refused.status_code == 401 and refused.headers["content-type"] == "application/problem+json"
        assert refused.headers["www-authenticate"].startswith("Bearer")
