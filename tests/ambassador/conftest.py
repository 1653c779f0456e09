"""Fixtures for the ambassador service's tests: the API in-process on the real Kafka and FerretDB."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient
from pymongo import AsyncMongoClient

from advocacy_common import topics
from advocacy_common.envelope import Envelope
from advocacy_testkit import read_envelopes

from ambassador.bootstrap import create_app
from ambassador.settings import AmbassadorSettings

CHARTER = {"title": "Our social media charter", "body": "Be yourself; never share confidential figures.",
           "red_lines": ["No confidential figures", "No attacks on competitors"], "tone": "Personal, factual",
           "disclosure_required": True, "disclosure_line": "#EmployeeOfAcme"}


@pytest.fixture(scope="module")
def settings(infrastructure, kafka_topics, run_id, auth_settings) -> AmbassadorSettings:
    return AmbassadorSettings(kafka_bootstrap_servers=infrastructure.kafka_bootstrap_servers,
                              mongodb_uri=infrastructure.mongodb_uri,
                              database=f"ambassador_{run_id}_{uuid.uuid4().hex[:6]}",
                              topic_prefix=kafka_topics.prefix, topic_partitions=3,
                              outbox_sweep_seconds=1.0, **auth_settings)


@pytest.fixture(scope="module")
async def app(settings) -> AsyncIterator[FastAPI]:
    """One API per test module; tests keep apart by using their own tenant."""
    application = create_app(settings)
    async with LifespanManager(application, startup_timeout=60, shutdown_timeout=30):
        yield application
    mongo = AsyncMongoClient(settings.mongodb_uri)
    await mongo.drop_database(settings.database)
    await mongo.close()


@pytest.fixture(scope="module")
async def client(app) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(transport=ASGITransport(app), base_url="http://ambassador.test") as http:
        yield http


@pytest.fixture
def tenant() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def as_admin(bearer, tenant):
    return bearer(tenant, "admin@corp.example", "admin")


@pytest.fixture
def as_integrator(bearer, tenant):
    return bearer(tenant, "scim-okta", "integrator")


@pytest.fixture
def as_employee(bearer, tenant):
    """`as_employee(user_name)` -> headers of that employee's own token."""
    return lambda user_name: bearer(tenant, user_name, "ambassador")


@pytest.fixture
def provision(client, as_integrator):
    """`await provision(user_name, **fields)` -> the SCIM User created."""

    async def create(user_name: str, **fields: Any) -> dict[str, Any]:
        resource = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": user_name,
                    "name": {"givenName": "Ada", "familyName": "Lovelace"}, "active": True,
                    "emails": [{"value": user_name, "type": "work", "primary": True}], **fields}
        response = await client.post("/scim/v2/Users", json=resource, headers=as_integrator)
        assert response.status_code == 201, response.text
        return response.json()

    return create


@pytest.fixture
def charter() -> dict[str, Any]:
    """A valid charter text, to vary per test."""
    return dict(CHARTER)


@pytest.fixture
def publish_charter(client, as_admin):
    async def publish(**changes: Any) -> dict[str, Any]:
        response = await client.post("/v1/charters", json={**CHARTER, **changes}, headers=as_admin)
        assert response.status_code == 201, response.text
        return response.json()

    return publish


@pytest.fixture
def volunteer(client, as_employee, publish_charter):
    """`await volunteer(user_name)`: opts in to the current charter (publishing one if there is none)."""

    async def opt_in(user_name: str, **body: Any) -> dict[str, Any]:
        current = await client.get("/v1/charters/current", headers=as_employee(user_name))
        version = current.json()["version"] if current.status_code == 200 else (await publish_charter())["version"]
        response = await client.post("/v1/me/opt-in", json={"charter_version": version, **body},
                                     headers=as_employee(user_name))
        assert response.status_code == 200, response.text
        return response.json()

    return opt_in


@pytest.fixture
def tenant_events(settings, tenant):
    """`await tenant_events(min_count, predicate)`: this tenant's envelopes on the ambassador topic."""

    async def read(min_count: int = 1, predicate=None, timeout: float = 15.0) -> list[Envelope]:
        def wanted(envelope: Envelope) -> bool:
            return envelope.tenantid == tenant and (predicate is None or predicate(envelope))

        return await read_envelopes(settings.kafka_bootstrap_servers, settings.topics.physical(topics.AMBASSADOR),
                                    min_count=min_count, predicate=wanted, timeout=timeout)

    return read
