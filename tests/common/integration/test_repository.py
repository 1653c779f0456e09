import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from advocacy_common import topics
from advocacy_common.errors import Problem
from advocacy_common.events import AmbassadorOptedOut
from advocacy_common.outbox import HINTS_COLLECTION, OUTBOX_FIELD
from advocacy_common.repository import (AlreadyExists, KeyReused, SortKey, StaleWrite, Storage, UnitOfWork)

from repository_subjects import Counter, CounterRepository

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent
T0 = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.fixture
async def repository(database):
    return CounterRepository(await Storage.open(database, "test-key"))


def counter(identifier: str, tenant: str = "acme", minutes: int = 0, **fields) -> Counter:
    return Counter(id=identifier, tenant=tenant, created_at=T0 + timedelta(minutes=minutes), **fields)


async def test_capabilities_are_detected(repository):
    capabilities = repository.storage.capabilities
    assert capabilities.version
    assert capabilities.max_update_statements == (50 if capabilities.ferretdb else 1000)


async def test_another_tenants_entity_is_not_found(repository):
    await repository.add(counter("c1", tenant="globex"))
    assert await repository.get("acme", "c1") is None
    assert (await repository.get("globex", "c1")).tenant == "globex"
    with pytest.raises(AlreadyExists):
        await repository.add(counter("c1", tenant="acme"))  # an id is never taken over by another tenant
    assert (await repository.get("globex", "c1")).tenant == "globex"


async def test_idempotent_insert_same_body_same_answer_other_body_refused(repository):
    first, created = await repository.add_idempotent(counter("k1", value=3), "fp-a")
    assert created and first.value == 3
    again, created = await repository.add_idempotent(counter("k1", value=3), "fp-a")
    assert not created and again == first
    with pytest.raises(KeyReused):
        await repository.add_idempotent(counter("k1", value=4), "fp-b")
    assert (await repository.get("acme", "k1")).value == 3


async def test_versioned_save_refuses_a_stale_version_and_writes_nothing(repository):
    await repository.add(counter("v1"))
    read_by_a = await repository.get("acme", "v1")
    read_by_b = await repository.get("acme", "v1")
    saved = await repository.save(read_by_a.model_copy(update={"value": 1}))
    assert saved.version == 2
    with pytest.raises(StaleWrite):
        await repository.save(read_by_b.model_copy(update={"value": 99}))
    with pytest.raises(StaleWrite):  # a guard on another field fails like a stale version
        await repository.save(saved.model_copy(update={"value": 5}), guard={"value": 42})
    stored = await repository.get("acme", "v1")
    assert (stored.value, stored.version) == (1, 2)


async def test_events_ride_in_the_same_write_and_leave_a_hint(repository, database):
    uow = UnitOfWork("acme", "/tests")
    envelope = uow.record(AmbassadorOptedOut(ambassador_id="a-1", opted_out_at=T0), event_id="evt-1")
    await repository.add(counter("e1"), uow)
    document = await database["counters"].find_one({"_id": "e1"})
    assert [entry["id"] for entry in document[OUTBOX_FIELD]] == ["evt-1"] == [envelope.id]
    assert document[OUTBOX_FIELD][0]["topic"] == topics.AMBASSADOR
    assert await database[HINTS_COLLECTION].find_one({"document_id": "e1"}) is not None

    later = UnitOfWork("acme", "/tests")
    later.record(AmbassadorOptedOut(ambassador_id="a-1", opted_out_at=T0), event_id="evt-2")
    await repository.save((await repository.get("acme", "e1")).model_copy(update={"value": 1}), later)
    document = await database["counters"].find_one({"_id": "e1"})
    assert [entry["id"] for entry in document[OUTBOX_FIELD]] == ["evt-1", "evt-2"]
    assert "_outbox" not in (await repository.get("acme", "e1")).model_dump()


async def test_keyset_pages_cover_everything_once_and_refuse_tampered_cursors(repository):
    for i in range(7):
        await repository.add(counter(f"p{i}", minutes=i // 2))  # ties on created_at, broken by _id
    await repository.add(counter("other", tenant="globex"))
    seen, cursor = [], None
    while True:
        page = await repository.page({"tenant": "acme"}, cursor=cursor, limit=3)
        seen += [c.id for c in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == ["p6", "p5", "p4", "p3", "p2", "p1", "p0"]
    ascending = await repository.page({"tenant": "acme"}, cursor=None, limit=10,
                                      order=SortKey("value", int, descending=False))
    assert len(ascending.items) == 7 and ascending.next_cursor is None
    first = await repository.page({"tenant": "acme"}, cursor=None, limit=3)
    with pytest.raises(Problem) as caught:
        await repository.page({"tenant": "acme"}, cursor=first.next_cursor[:-2] + "xx", limit=3)
    assert caught.value.status == 400
    with pytest.raises(Problem):  # a cursor of another list (another scope)
        await repository.page({"tenant": "acme"}, cursor=first.next_cursor, limit=3, scope="status=draft")


async def test_two_processes_racing_on_one_document_lose_no_update(repository, database, infrastructure):
    await repository.add(counter("shared"))
    increments = 40
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    children = [await asyncio.create_subprocess_exec(
        sys.executable, str(HERE / "racing_child.py"), infrastructure.mongodb_uri, database.name, str(increments),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env) for _ in range(2)]
    outputs = [await asyncio.wait_for(child.communicate(), timeout=300) for child in children]
    assert [child.returncode for child in children] == [0, 0], [err.decode()[-2000:] for _, err in outputs]
    reported = [tuple(map(int, out.split())) for out, _ in outputs]
    stored = await repository.get("acme", "shared")
    # Every save that reported success happened, and none other did.
    assert stored.value == sum(done for done, _ in reported) == 2 * increments
    assert stored.version == 1 + 2 * increments
