"""The worker's outbox relay: charter and signal events, and person events the API could not publish."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient

from advocacy_common.outbox import OUTBOX_FIELD

from ambassador.bootstrap import build_worker

pytestmark = pytest.mark.integration
CHILD = Path(__file__).with_name("opt_out_child.py")


@pytest.fixture(scope="module")
async def worker(settings, client) -> AsyncIterator[None]:
    running = build_worker(settings)
    await running.start()
    yield
    await running.stop()


@pytest.fixture
async def database(settings) -> AsyncIterator:
    mongo = AsyncMongoClient(settings.mongodb_uri)
    yield mongo[settings.database]
    await mongo.close()


async def _outbox_drained(collection, tenant: str) -> bool:
    for _ in range(50):
        if await collection.count_documents({"tenant": tenant, f"{OUTBOX_FIELD}.0": {"$exists": True}}) == 0:
            return True
        await asyncio.sleep(0.1)
    return False


async def test_worker_publishes_charter_and_signal_events(client, worker, publish_charter, provision, volunteer,
                                                          as_employee, tenant, tenant_events, database):
    charter = await publish_charter()
    user = await provision("wendy@corp.example")
    await volunteer("wendy@corp.example")
    signal = await client.post("/v1/me/signals", json={"url": "https://social.example/t/9", "note": "private words",
                                                    "severity": "low"}, headers=as_employee("wendy@corp.example"))

    published = await tenant_events(1, lambda e: e.type == "charter.published.v1")
    reported = await tenant_events(1, lambda e: e.type == "signal.reported.v1")

    assert published[0].subject == tenant  # charter events are keyed by tenant
    assert published[0].data["charter_id"] == charter["charter_id"]
    assert published[0].data["disclosure_line"] == "#EmployeeOfAcme"
    assert reported[0].subject == user["id"]
    assert reported[0].data["signal_id"] == signal.json()["signal_id"]
    assert "note" not in reported[0].data
    assert await _outbox_drained(database["charters"], tenant)
    assert await _outbox_drained(database["signals"], tenant)


async def test_worker_publishes_what_the_api_could_not(app, client, worker, provision, volunteer, as_employee,
                                                       tenant_events):
    user = await provision("kafka-down@corp.example")
    await volunteer("kafka-down@corp.example")
    ambassadors = app.state.service

    async def unavailable(person_id: str) -> None:
        raise ConnectionError("broker unreachable")

    original, ambassadors.publish_now = ambassadors.publish_now, unavailable
    try:
        response = await client.post("/v1/me/opt-out", headers=as_employee("kafka-down@corp.example"))
    finally:
        ambassadors.publish_now = original

    assert response.status_code == 200 and response.json()["status"] == "opted_out"
    events = await tenant_events(1, lambda e: e.type == "ambassador.opted_out.v1" and e.subject == user["id"])
    assert events[0].data["reason"] == "self"


async def test_an_opt_out_survives_a_crash_between_write_and_publication(client, worker, settings, provision,
                                                                         volunteer, as_employee, tenant,
                                                                         tenant_events):
    user = await provision("crash@corp.example")
    await volunteer("crash@corp.example")

    child = await asyncio.create_subprocess_exec(sys.executable, str(CHILD), settings.mongodb_uri,
                                                 settings.database, tenant, user["id"])
    assert await asyncio.wait_for(child.wait(), timeout=60) == -signal.SIGKILL

    # The API process died after the write: the state is there and the worker's relay publishes the event.
    me = await client.get("/v1/me", headers=as_employee("crash@corp.example"))
    assert me.json()["status"] == "opted_out"
    events = await tenant_events(1, lambda e: e.type == "ambassador.opted_out.v1" and e.subject == user["id"])
    assert events[0].data["reason"] == "self"
