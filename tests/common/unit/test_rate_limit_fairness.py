"""Rate limits that protect other tenants: a write over quota is refused before its body is read and before its
token is verified (and a forged token spends nothing), and one tenant's writes in progress are capped."""

import asyncio
import functools

import pytest
from fastapi import Depends
from httpx import ASGITransport, AsyncClient

from advocacy_common.auth import Principal, authenticate
from advocacy_common.dev_issuer import DevIssuer
from advocacy_common.http import create_service_app
from advocacy_common.settings import ServiceSettings

pytestmark = pytest.mark.unit


def make_app(auth_settings, **overrides):
    app = create_service_app(ServiceSettings(service_name="fairness-test", **{**auth_settings, **overrides}),
                             title="t", description="t")
    app.state.writes, app.state.gate, app.state.running = [], asyncio.Event(), []

    @app.post("/notes")
    async def create(body: dict, principal: Principal = Depends(authenticate)):
        app.state.writes.append((principal.tenant, body.get("text")))
        return {"ok": True}

    @app.post("/slow")
    async def slow(principal: Principal = Depends(authenticate)):
        app.state.running.append(principal.tenant)
        await app.state.gate.wait()
        return {"ok": True}

    return app


def client(app):
    return AsyncClient(transport=ASGITransport(app), base_url="http://t")


@functools.cache
def impostor(issuer: str, audience: str) -> DevIssuer:
    return DevIssuer.generate(issuer=issuer, audience=audience)


def forged(auth_settings, tenant: str, subject: str) -> dict[str, str]:
    """A token that claims `tenant` and `subject`, signed by a key the issuer never published."""
    impostor_ = impostor(auth_settings["auth_issuer"], auth_settings["auth_audience"])
    return {"Authorization": f"Bearer {impostor_.mint(tenant=tenant, subject=subject, roles=['editor'])}"}


async def test_a_write_over_quota_is_refused_before_its_body_is_read(auth_settings, bearer):
    app = make_app(auth_settings, rate_limit_subject_writes="2/minute", max_body_bytes=1000)
    alice = bearer("t1", "alice", "editor")
    async with client(app) as http:
        admitted = [(await http.post("/notes", json={"text": str(i)}, headers=alice)).status_code for i in range(2)]
        # Larger than the body limit: a 413 would mean the body was read before the quota was looked at.
        oversized = await http.post("/notes", content=b"x" * 5000, headers={**alice, "Content-Type": "text/plain"})
        # Over quota and forged: refused by the quota, with no signature check (a 401 would mean one ran).
        forged_answer = await http.post("/notes", json={"text": "f"}, headers=forged(auth_settings, "t1", "alice"))
    assert admitted == [200, 200]
    assert oversized.status_code == 429 and oversized.headers["content-type"] == "application/problem+json"
    assert 1 <= int(oversized.headers["retry-after"]) <= 60
    assert forged_answer.status_code == 429
    assert app.state.writes == [("t1", "0"), ("t1", "1")]


async def test_a_forged_token_spends_nobody_s_quota(auth_settings, bearer):
    app = make_app(auth_settings, rate_limit_subject_writes="2/minute", rate_limit_tenant_writes="3/minute")
    async with client(app) as http:
        forgeries = [(await http.post("/notes", json={"text": "f"}, headers=forged(auth_settings, "t1", "bob")))
                     .status_code for _ in range(5)]
        genuine = [(await http.post("/notes", json={"text": "b"}, headers=bearer("t1", "bob", "editor")))
                   .status_code for _ in range(3)]
    assert forgeries == [401] * 5
    assert genuine == [200, 200, 429]  # bob's own quota of 2, untouched by the forgeries


async def test_a_tenant_s_writes_in_progress_are_capped_and_others_pass(auth_settings, bearer):
    app = make_app(auth_settings, rate_limit_tenant_concurrent_writes=1, rate_limit_slot_wait_seconds=0.5)
    t1, t2 = bearer("t1", "u1", "editor"), bearer("t2", "u1", "editor")
    async with client(app) as http:
        first = asyncio.create_task(http.post("/slow", headers=t1))
        while not app.state.running:
            await asyncio.sleep(0.01)
        second = asyncio.create_task(http.post("/slow", headers=t1))  # waits for t1's only slot
        other = asyncio.create_task(http.post("/slow", headers=t2))  # its own slot: runs at once
        while len(app.state.running) < 2:
            await asyncio.sleep(0.01)
        assert app.state.running == ["t1", "t2"]
        refused = await second  # waited longer than rate_limit_slot_wait_seconds
        app.state.gate.set()
        answers = [(await first).status_code, (await other).status_code]
        after = await http.post("/notes", json={"text": "later"}, headers=t1)  # the slot was given back
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    assert answers == [200, 200] and after.status_code == 200
    limiter = app.state.rate_limiter
    assert not limiter._slots and not limiter._holders  # no tenant's gate is kept once idle


async def test_a_write_waiting_for_its_slot_runs_when_one_is_given_back(auth_settings, bearer):
    app = make_app(auth_settings, rate_limit_tenant_concurrent_writes=1, rate_limit_slot_wait_seconds=5)
    t1 = bearer("t1", "u1", "editor")
    async with client(app) as http:
        first = asyncio.create_task(http.post("/slow", headers=t1))
        while not app.state.running:
            await asyncio.sleep(0.01)
        second = asyncio.create_task(http.post("/slow", headers=t1))
        await asyncio.sleep(0.2)
        assert app.state.running == ["t1"]  # the second waits
        app.state.gate.set()
        assert [(await first).status_code, (await second).status_code] == [200, 200]
    assert app.state.running == ["t1", "t1"]
