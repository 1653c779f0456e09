"""The MongoDB adapters of `ambassador.store` on the real server, through the ports' contract."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from advocacy_common.events import AmbassadorOptedOut
from advocacy_common.mongo import create_client
from advocacy_common.outbox import OUTBOX_FIELD
from advocacy_common.repository import AlreadyExists, KeyReused, StaleWrite, UnitOfWork

from ambassador.models import Charter, DirectoryEntry, OptOutReason, Recognition, Signal, new_person, opt_in, \
    opt_out
from ambassador.store import AmbassadorStores

pytestmark = pytest.mark.integration
T0 = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.fixture
async def stores(infrastructure):
    client = create_client(infrastructure.mongodb_uri, "ambassador-store-tests")
    name = f"ambassador_store_{uuid.uuid4().hex[:8]}"
    opened = await AmbassadorStores.open(client[name], "test-key")
    await opened.create_indexes()
    yield opened
    await client.drop_database(name)
    await client.close()


def person(person_id: str, user_name: str, tenant: str = "acme", minutes: int = 0, **entry):
    return new_person(person_id, tenant, DirectoryEntry(user_name=user_name, **entry), T0 + timedelta(minutes=minutes))


async def test_people_are_found_by_id_and_login_within_their_tenant(stores):
    people = stores.people
    await people.add(person("p1", "Ann@Corp.example", external_id="00u-ann"))
    assert (await people.find_by_key("acme", "user_name", "ann@corp.EXAMPLE")).id == "p1"
    assert (await people.find_by_key("acme", "external_id", "00U-ANN")).id == "p1"
    assert await people.find_by_key("globex", "user_name", "ann@corp.example") is None
    assert await people.get("globex", "p1") is None
    with pytest.raises(AlreadyExists):
        await people.add(person("p2", "ANN@corp.example"))
    assert await people.get("acme", "p2") is None


async def test_a_rename_moves_the_login_and_a_stale_save_writes_nothing(stores):
    people = stores.people
    await people.add(person("p1", "old@corp.example"))
    await people.add(person("p2", "other@corp.example"))
    read = await people.get("acme", "p1")
    renamed = read.model_copy(update={"directory": read.directory.model_copy(update={"user_name": "new@corp.example"})})

    saved = await people.save(renamed, previous=read)

    assert saved.version == read.version + 1
    assert (await people.find_by_key("acme", "user_name", "new@corp.example")).id == "p1"
    assert await people.find_by_key("acme", "user_name", "old@corp.example") is None
    with pytest.raises(StaleWrite):
        await people.save(read.model_copy(update={"status": "opted_in"}), previous=read)
    taken = saved.model_copy(update={"directory": saved.directory.model_copy(update={"user_name": "other@corp.example"})})
    with pytest.raises(AlreadyExists):
        await people.save(taken, previous=saved)
    stored = await people.get("acme", "p1")
    assert (stored.version, stored.status, stored.directory.user_name) == (saved.version, "not_enrolled",
                                                                            "new@corp.example")


async def test_events_ride_in_the_persons_write(stores):
    people = stores.people
    await people.add(person("p1", "e@corp.example"))
    read = await people.get("acme", "p1")
    uow = UnitOfWork("acme", "/ambassador")
    uow.record(AmbassadorOptedOut(ambassador_id="p1", opted_out_at=T0, reason=OptOutReason.SELF), event_id="evt-1")
    await people.save(read.model_copy(update={"status": "opted_out"}), uow, previous=read)
    document = await people.collection.find_one({"_id": "p1"})
    assert [entry["id"] for entry in document[OUTBOX_FIELD]] == ["evt-1"]


async def test_erased_people_stay_under_their_id_and_the_directory_lists_the_rest(stores):
    people = stores.people
    for index in range(3):
        await people.add(person(f"p{index}", f"u{index}@corp.example", minutes=index))
    first = await people.get("acme", "p0")
    await people.save(first.model_copy(update={"directory": None, "status": "erased"}), previous=first)

    total, listed = await people.directory_page("acme", 1, 10)
    assert (total, [p.id for p in listed]) == (2, ["p1", "p2"])
    assert (await people.get("acme", "p0")).status == "erased"
    await people.add(person("p3", "u0@corp.example", minutes=3))  # the erased one's userName is free again
    newest = await people.list_by_status("acme", None, None, 2)
    rest = await people.list_by_status("acme", None, newest.next_cursor, 2)
    assert [p.id for p in newest.items + rest.items] == ["p3", "p2", "p1", "p0"] and rest.next_cursor is None


async def test_consent_pages_walk_people_in_batches_without_gaps(stores):
    people = stores.people
    people.consent_batch = 2
    for index in range(5):
        someone = opt_in(person(f"id{index}", f"c{index}@corp.example"), 1, 1, "web", T0).person
        if index % 2 == 0:
            someone = opt_out(someone, OptOutReason.SELF, "web", T0).person
        await people.add(someone)

    seen, cursor = [], None
    while True:
        page = await people.consent_page("acme", cursor, 2, None)
        seen.extend(entry.consent.consent_id for entry in page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    every = [entry.consent.consent_id async for entry in people.consents_after("acme")]

    assert seen == every and len(every) == 8 and len(set(every)) == 8
    assert (await people.consent_page("acme", None, 50, 2)).items == []


async def test_charters_are_versioned_and_idempotent(stores):
    charters = stores.charters

    def charter(charter_id: str, version: int) -> Charter:
        return Charter(id=charter_id, tenant="acme", version=version, title="t", body="b", published_at=T0,
                       created_at=T0 + timedelta(minutes=version), published_by="admin")

    first, created = await charters.add_idempotent(charter("c1", 1), "fp-1")
    again, created_again = await charters.add_idempotent(charter("c1", 2), "fp-1")
    assert created and not created_again and again == first
    with pytest.raises(KeyReused):
        await charters.add_idempotent(charter("c1", 2), "fp-other")
    with pytest.raises(AlreadyExists):  # that version number is taken
        await charters.add_idempotent(charter("c2", 1), "fp-2")
    await charters.add_idempotent(charter("c3", 2), "fp-3")
    assert (await charters.current("acme")).id == "c3" and (await charters.get_version("acme", 1)).id == "c1"
    assert [c.version for c in (await charters.newest_first("acme", None, 5)).items] == [2, 1]


async def test_erasure_of_related_records_moves_signal_versions(stores):
    signal = Signal(id="s1", tenant="acme", reporter_id="p1", url="https://x.example", note="words",
                    severity="low", created_at=T0, updated_at=T0)
    await stores.signals.add(signal)
    read = await stores.signals.get("acme", "s1")
    await stores.recognitions.add(Recognition(id="r1", tenant="acme", recipient_id="p1", giver_id="p2",
                                              giver_role="peer", kind="kudos", badge=None, reason="thanks",
                                              created_at=T0))
    await stores.recognitions.add(Recognition(id="r2", tenant="acme", recipient_id="p2", giver_id="p1",
                                              giver_role="peer", kind="kudos", badge=None, reason="back",
                                              created_at=T0))

    await stores.signals.forget_reporter("acme", "p1")
    await stores.recognitions.forget_person("acme", "p1")

    # A triage read before the erasure cannot write the note back.
    with pytest.raises(StaleWrite):
        await stores.signals.save(read.model_copy(update={"status": "closed"}))
    stored = await stores.signals.get("acme", "s1")
    assert (stored.note, stored.reporter_id, stored.url) == (None, None, "https://x.example")
    assert await stores.recognitions.received_by("acme", "p1") == []
    assert [r.giver_id for r in await stores.recognitions.received_by("acme", "p2")] == [None]
