"""Two independent API instances (each its own database client) on one database, writing one person at once.

What must hold across replicas, with no lock shared between them: no update is
lost, and no write is answered 2xx unless it happened. A write that named the
version it read (If-Match) is refused with 412 when the other replica wrote first.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient
from pymongo import AsyncMongoClient

from ambassador.bootstrap import create_app

pytestmark = pytest.mark.integration
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


@pytest.fixture(scope="module")
async def replicas(settings) -> AsyncIterator[tuple[AsyncClient, AsyncClient]]:
    first, second = create_app(settings), create_app(settings)
    async with LifespanManager(first, startup_timeout=60, shutdown_timeout=30), \
            LifespanManager(second, startup_timeout=60, shutdown_timeout=30):
        assert first.state.service.people.collection.database.client is not \
            second.state.service.people.collection.database.client
        async with AsyncClient(transport=ASGITransport(first), base_url="http://replica-1.test") as a, \
                AsyncClient(transport=ASGITransport(second), base_url="http://replica-2.test") as b:
            yield a, b
    mongo = AsyncMongoClient(settings.mongodb_uri)
    await mongo.drop_database(settings.database)
    await mongo.close()


@pytest.fixture
async def ambassador(replicas, as_integrator, as_admin, as_employee, charter):
    """An opted-in ambassador, provisioned through one replica and opted in through the other."""
    a, b = replicas
    created = await a.post("/scim/v2/Users", headers=as_integrator, json={
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "twin.writer@corp.example",
        "emails": [{"value": "twin.writer@corp.example", "type": "work", "primary": True}]})
    assert created.status_code == 201, created.text
    charter = await a.post("/v1/charters", json=charter, headers=as_admin)
    opted_in = await b.post("/v1/me/opt-in", json={"charter_version": charter.json()["version"]},
                            headers=as_employee("twin.writer@corp.example"))
    assert opted_in.status_code == 200, opted_in.text
    return created.json()["id"], as_employee("twin.writer@corp.example")


def replace(path: str, value: str) -> dict:
    return {"schemas": [PATCH], "Operations": [{"op": "replace", "path": path, "value": value}]}


async def test_concurrent_patches_and_profile_updates_from_two_replicas_are_all_kept(
        replicas, ambassador, as_integrator, tenant_events):
    a, b = replicas
    person_id, employee = ambassador
    before = int((await a.get("/v1/me", headers=employee)).headers["ETag"].strip('"'))
    patches = {"title": "Engineer", "displayName": "Twin W.", "name.givenName": "Twin", "name.familyName": "Writer",
               f"{ENTERPRISE}:department": "platform", 'addresses[type eq "work"].locality': "Lyon",
               "externalId": "00u-twin", 'emails[type eq "work"].value': "twin.new@corp.example"}
    profiles = [{"persona": "expert", "topics": [f"topic-{i}"]} for i in range(4)]

    writes = [(a if i % 2 else b).patch(f"/scim/v2/Users/{person_id}", json=replace(path, value),
                                        headers=as_integrator)
              for i, (path, value) in enumerate(patches.items())]
    writes += [(a if i % 2 else b).put("/v1/me/profile", json=profile, headers=employee)
               for i, profile in enumerate(profiles)]
    responses = await asyncio.gather(*writes)

    assert [r.status_code for r in responses] == [200] * len(writes), [r.text for r in responses if r.is_error]
    for reader in (a, b):
        user = (await reader.get(f"/scim/v2/Users/{person_id}", headers=as_integrator)).json()
        assert (user["title"], user["displayName"], user["externalId"]) == ("Engineer", "Twin W.", "00u-twin")
        assert user["name"] == {"givenName": "Twin", "familyName": "Writer"}
        assert user[ENTERPRISE] == {"department": "platform"}
        assert user["addresses"] == [{"type": "work", "locality": "Lyon"}]
        assert [e["value"] for e in user["emails"]] == ["twin.new@corp.example"]
        me = await reader.get("/v1/me/profile", headers=employee)
        # Every answered write is one version: none lost, none answered without having happened.
        assert me.headers["ETag"] == f'"{before + len(writes)}"'
        assert me.json()["profile"]["topics"] in [p["topics"] for p in profiles]
    # Four profile changes, the team and the location: six visible changes, each published once.
    updates = await tenant_events(6, lambda e: e.type == "ambassador.profile_updated.v1" and e.subject == person_id)
    assert len({e.id for e in updates}) == 6
    assert updates[-1].data["profile"]["team_id"] == "platform"
    assert updates[-1].data["profile"]["location"] == "Lyon"


async def test_the_same_if_match_from_two_replicas_lets_exactly_one_write_through(replicas, ambassador):
    a, b = replicas
    _, employee = ambassador
    read = await a.get("/v1/me/profile", headers=employee)
    bodies = [{"persona": "reporter", "topics": ["from-a"]}, {"persona": "talent", "topics": ["from-b"]}]

    responses = await asyncio.gather(*(
        replica.put("/v1/me/profile", json=body, headers={**employee, "If-Match": read.headers["ETag"]})
        for replica, body in zip((a, b), bodies, strict=True)))

    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 412], [r.text for r in responses]
    winner = next(body for body, r in zip(bodies, responses, strict=True) if r.status_code == 200)
    loser = next(r for r in responses if r.status_code == 412)
    assert loser.headers["content-type"].startswith("application/problem+json")
    after = await b.get("/v1/me/profile", headers=employee)
    assert after.json()["profile"]["topics"] == winner["topics"]
    assert after.headers["ETag"] == f'"{int(read.headers["ETag"].strip(chr(34))) + 1}"'
