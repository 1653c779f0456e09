"""Nothing a client sends makes the distribution API answer 5xx (issue 11), against the app factory.

Written against distribution's `create_app` as it is; see SECURITY.md for what was found.
"""

import json
import time
import uuid

import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient

from advocacy_testkit import ALL_ROLES, server_errors_on_hostile_input
from distribution.bootstrap import create_app
from distribution.settings import DistributionSettings

pytestmark = pytest.mark.integration
REPORT = {"id": "r-1", "kind": "impression", "count": 1, "share_id": "s-1", "occurred_at": "2026-01-01T00:00:00Z"}


@pytest.fixture(scope="module")
async def distribution_api(infrastructure, kafka_topics, auth_settings, run_id):
    settings = DistributionSettings(kafka_bootstrap_servers=infrastructure.kafka_bootstrap_servers,
                                    mongodb_uri=infrastructure.mongodb_uri,
                                    database=f"distribution_hostile_{run_id}_{uuid.uuid4().hex[:6]}",
                                    topic_prefix=kafka_topics.prefix, topic_partitions=3,
                                    public_base_url="https://go.example.com", **auth_settings)
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=60), \
            AsyncClient(transport=ASGITransport(app), base_url="http://distribution") as client:
        client.app = app
        yield client


@pytest.fixture
async def connector(distribution_api, bearer):
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    integrator = bearer(tenant, "connector-app", "integrator")
    response = await distribution_api.post("/v1/connectors", json={"name": "hostile"}, headers=integrator)
    assert response.status_code == 201, response.text
    return tenant, integrator, response.json()["connector_id"]


async def test_no_route_answers_hostile_input_with_a_5xx(distribution_api, bearer, connector):
    tenant, _, connector_id = connector
    mallory = bearer(tenant, "mallory", *ALL_ROLES)
    assert await server_errors_on_hostile_input(distribution_api, distribution_api.app, mallory,
                                                {"connector_id": connector_id, "code": "abcdefghij"}) == []


@pytest.mark.parametrize("signature", [
    "t=" + "9" * 400 + ",v1=" + "0" * 64,  # a timestamp no float holds
    "t=" + "9" * 5000 + ",v1=" + "0" * 64,  # beyond Python's int parsing limit
    "t=-" + "9" * 400 + ",v1=x", "t=soon,v1=x", "t=1e400,v1=x", "t=nan,v1=x", "v1=x", ",,,", "t=,v1=",
    "t=" + str(int(time.time())) + ",v1=" + "g" * 10_000,
])
async def test_malformed_signatures_are_401(distribution_api, connector, signature):
    _, integrator, connector_id = connector
    response = await distribution_api.post(f"/v1/connectors/{connector_id}/engagements",
                                           content=json.dumps(REPORT),
                                           headers={**integrator, "Content-Type": "application/json",
                                                    "X-Advocacy-Signature": signature})
    assert response.status_code in (401, 431), response.text  # 431: longer than max_header_bytes
    assert response.headers["content-type"] == "application/problem+json"
