"""The four services' APIs and workers in one process, on the real Kafka and database, with their OpenAPI.

Tenant A owns one object of every kind (made through the public API, as a user would); tenant B
probes them. The documents come from the running apps, so what is tested is what the code declares.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient

import ambassador.bootstrap
import content.bootstrap
import distribution.bootstrap
import metrics.bootstrap
from ambassador.settings import AmbassadorSettings
from content.settings import ContentSettings
from distribution.settings import DistributionSettings
from metrics.settings import MetricsSettings

SERVICES = {
    "content": (ContentSettings, content.bootstrap),
    "ambassador": (AmbassadorSettings, ambassador.bootstrap),
    "distribution": (DistributionSettings, distribution.bootstrap),
    "metrics": (MetricsSettings, metrics.bootstrap),
}
AMBASSADOR_LOGIN = "amber@tenant-a.example"


@dataclass
class Service:
    name: str
    client: AsyncClient
    openapi: dict[str, Any]


@dataclass
class Objects:
    """Tenant A's objects, by the path parameter that names them."""

    tenant: str
    other_tenant: str
    by_parameter: dict[str, str] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)  # path parameters that name no object (an enum)
    connector_secret: str = ""
    ambassador_login: str = AMBASSADOR_LOGIN


@pytest.fixture(scope="package")
async def services(infrastructure, kafka_topics, run_id, auth_settings) -> AsyncIterator[dict[str, Service]]:
    running: dict[str, Service] = {}
    async with AsyncExitStack() as exits:
        for name, (settings_class, bootstrap) in SERVICES.items():
            settings = settings_class(kafka_bootstrap_servers=infrastructure.kafka_bootstrap_servers,
                                      mongodb_uri=infrastructure.mongodb_uri,
                                      database=f"contract_{name}_{run_id}_{uuid.uuid4().hex[:4]}",
                                      topic_prefix=kafka_topics.prefix, topic_partitions=3, **auth_settings)
            app = bootstrap.create_app(settings)
            await exits.enter_async_context(LifespanManager(app, startup_timeout=60, shutdown_timeout=30))
            worker = bootstrap.build_worker(settings)
            await worker.start()
            exits.push_async_callback(worker.stop)
            client = await exits.enter_async_context(
                # An unhandled error must reach the checks as the 500 a client would get, not as an exception.
                AsyncClient(transport=ASGITransport(app, raise_app_exceptions=False), base_url=f"http://{name}.test",
                            timeout=30))
            running[name] = Service(name, client, app.openapi())
        yield running


async def eventually(probe, timeout: float = 45.0, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := await probe():
            return found
        await asyncio.sleep(interval)
    raise AssertionError(f"not reached within {timeout} s")


def created(response, status: int = 201) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return response.json()


@pytest.fixture(scope="package")
async def tenant_a_objects(services, bearer) -> Objects:
    """One object of each kind in tenant A, made through the public API: a charter, a directory person
    (SCIM) who opted in, a training module, a signal, a recognition, a campaign, a published content
    item, a connector, and a share with its tracked link."""
    tenant, other = f"ta{uuid.uuid4().hex[:6]}", f"tb{uuid.uuid4().hex[:6]}"
    admin, integrator = bearer(tenant, "admin-a", "admin"), bearer(tenant, "scim-a", "integrator")
    editor, reviewer = bearer(tenant, "editor-a", "editor"), bearer(tenant, "reviewer-a", "reviewer")
    amber = bearer(tenant, AMBASSADOR_LOGIN, "ambassador")
    people, content_api, sharing = (services[n].client for n in ("ambassador", "content", "distribution"))
    objects = Objects(tenant, other)
    ids = objects.by_parameter

    charter = created(await people.post("/v1/charters", headers=admin, json={
        "title": "Charter", "body": "Be yourself.", "red_lines": ["No figures"], "tone": "Personal",
        "disclosure_required": True, "disclosure_line": "#EmployeeOfA"}))
    ids["version"] = str(charter["version"])
    person = created(await people.post("/scim/v2/Users", headers=integrator, json={
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": AMBASSADOR_LOGIN, "active": True,
        "name": {"givenName": "Amber", "familyName": "A"}}))
    ids["person_id"] = ids["ambassador_id"] = person["id"]
    profile = {"persona": "expert", "topics": ["research"], "languages": ["en"], "team_id": "lab",
               "location": "Lyon", "networks": [{"network": "linkedin", "handle": "amber", "audience_size": 300}]}
    created(await people.post("/v1/me/opt-in", headers=amber,
                              json={"charter_version": charter["version"], "profile": profile}), 200)
    module = created(await people.post("/v1/training/modules", headers=admin, json={
        "title": "Disclosure", "description": "Why and how", "url": "https://a.example/training"}))
    ids["module_id"] = module["module_id"]
    signal = created(await people.post("/v1/me/signals", headers=amber, json={
        "url": "https://social.example/post/1", "note": "A heated thread", "severity": "low"}))
    ids["signal_id"] = signal["signal_id"]
    ids["export_id"] = created(await people.post("/v1/me/exports", headers=amber), 202)["export_id"]

    today = datetime.now(UTC).date()
    campaign = created(await content_api.post("/v1/campaigns", headers=editor, json={
        "name": "Lab", "objective": "talent", "starts_on": (today - timedelta(days=1)).isoformat(),
        "ends_on": (today + timedelta(days=30)).isoformat(), "disclosure_line": "#WeAreA"}))
    ids["campaign_id"] = campaign["id"]
    publish_at = datetime.now(UTC) + timedelta(seconds=2)
    item = created(await content_api.post("/v1/content", headers=editor, json={
        "campaign_id": campaign["id"], "title": "New lab", "link_url": "https://a.example/lab",
        "suggested_texts": {"linkedin": "Proud of our new lab! #WeAreA"}, "topics": ["research"],
        "language": "en", "audience": {"teams": ["lab"]}, "networks": ["linkedin"],
        "publish_at": publish_at.isoformat(), "expires_at": (publish_at + timedelta(days=7)).isoformat()}))
    ids["item_id"] = ids["content_id"] = item["id"]
    created(await content_api.post(f"/v1/content/{item['id']}/submit", headers=editor), 200)
    created(await content_api.post(f"/v1/content/{item['id']}/approve", headers=reviewer), 200)

    async def in_feed():
        feed = (await sharing.get("/v1/feed", headers=amber)).json()
        return [i for i in feed.get("items", []) if i["content_id"] == item["id"]]

    await eventually(in_feed)
    share = created(await sharing.post("/v1/shares", headers=amber, json={
        "content_id": item["id"], "network": "linkedin",
        "text": "I spent a day in the lab with the battery team; the interns run their own experiments. "
                "#WeAreA #EmployeeOfA"}))
    ids["share_id"], ids["code"] = share["share_id"], share["tracked_link_code"]
    connector = created(await sharing.post("/v1/connectors", headers=admin, json={"name": "analytics-a"}))
    ids["connector_id"], objects.connector_secret = connector["connector_id"], connector["secret"]
    ids["team_id"] = "lab"
    objects.values["network"] = "linkedin"
    return objects


@dataclass(frozen=True)
class Operation:
    """One operation of a service's OpenAPI and who may call it, as the code declares it."""

    service: str
    method: str
    path: str
    definition: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.service} {self.method.upper()} {self.path}"

    @property
    def public(self) -> bool:
        return self.definition.get("security") == []

    @property
    def roles(self) -> frozenset[str] | None:
        """The roles the operation accepts (the bearer requirement's scopes); None: any authenticated caller."""
        scopes = [set(requirement.get("bearer", ())) for requirement in self.definition.get("security", [])]
        assert scopes, f"{self.label} declares neither a bearer requirement nor `security: []` (public)"
        merged = set().union(*scopes)
        return frozenset(merged) if merged else None

    def allows(self, role: str) -> bool:
        return self.roles is None or role in self.roles

    @property
    def path_parameters(self) -> list[str]:
        return [p["name"] for p in self.definition.get("parameters", []) if p["in"] == "path"]

    @property
    def has_body(self) -> bool:
        return "requestBody" in self.definition


@pytest.fixture(scope="package")
def operations(services) -> list[Operation]:
    return [Operation(name, method, path, definition)
            for name, service in services.items()
            for path, item in service.openapi["paths"].items()
            for method, definition in item.items()]
