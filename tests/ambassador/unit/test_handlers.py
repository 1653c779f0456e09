"""Command handlers on a fake store: retries, immediate publication, provisioning, consent pages."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

import pytest

from ambassador import handlers
from ambassador.handlers import Context
from ambassador.models import DirectoryEntry, OptOutReason, Person, lookup_key, new_person, opt_in, opt_out
from ambassador.store import AmbassadorStore, StaleWrite

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 22, tzinfo=UTC)


class FakeStore:
    """The store's person operations in memory, with a hook to simulate a concurrent writer."""

    def __init__(self):
        self.people: dict[str, Person] = {}
        self.outbox: dict[str, list] = {}
        self.interfere = 0
        self.hinted: list[str] = []

    async def get_person(self, tenant, person_id):
        person = self.people.get(person_id)
        return person if person and person.tenant == tenant else None

    async def get_person_by_key(self, tenant, attribute, value):
        return next((p for p in self.people.values() if p.tenant == tenant and p.directory
                     and lookup_key(getattr(p.directory, attribute)) == lookup_key(value)), None)

    async def insert_person(self, person, items):
        self.people[person.id] = person
        self.outbox[person.id] = list(items)

    async def update_person(self, person, previous, items):
        expected_version = previous.version
        if self.interfere:
            self.interfere -= 1
            current = self.people[person.id]
            self.people[person.id] = current.model_copy(update={"version": current.version + 1})
        if self.people[person.id].version != expected_version:
            raise StaleWrite(person.id)
        self.people[person.id] = person
        self.outbox.setdefault(person.id, []).extend(items)

    async def hint_person(self, person_id):
        self.hinted.append(person_id)

    async def list_people_with_consents(self, tenant, from_person_id, batch, inclusive=True):
        ids = sorted(i for i, p in self.people.items() if p.consents and (
            from_person_id is None or i > from_person_id or (inclusive and i == from_person_id)))
        return [self.people[i] for i in ids[:batch]]


@pytest.fixture
def store():
    return FakeStore()


@pytest.fixture
def flushed():
    return []


@pytest.fixture
def ctx(store, flushed):
    async def flush(person_id):
        flushed.append(person_id)

    ids = iter(f"p{i}" for i in range(100))
    return Context(store=store, flush=flush, clock=lambda: NOW, new_id=lambda: next(ids))


def entry(user_name="a@corp.example", **fields):
    return DirectoryEntry(user_name=user_name, **fields)


async def test_a_concurrent_write_is_retried_on_fresh_state(ctx, store, flushed):
    person, _ = await handlers.provision(ctx, "acme", entry())
    store.interfere = 2

    updated = await handlers.change_person(ctx, "acme", person.id, lambda p: opt_in(p, 1, 1, "web", NOW))

    assert updated.status == "opted_in" and updated.version == store.people[person.id].version
    assert [env.type for _, env in store.outbox[person.id]] == ["ambassador.opted_in.v1", "charter.accepted.v1"]
    assert flushed == [person.id]


async def test_no_write_and_no_publication_when_nothing_changes(ctx, store, flushed):
    person, _ = await handlers.provision(ctx, "acme", entry())
    unchanged = await handlers.change_person(ctx, "acme", person.id,
                                             lambda p: opt_out(p, OptOutReason.SELF, "web", NOW))
    assert unchanged.version == person.version and flushed == [] and store.outbox[person.id] == []


async def test_a_failed_immediate_publication_leaves_events_to_the_relay(ctx, store):
    async def broken(person_id):
        raise ConnectionError("kafka down")

    ctx.flush = broken
    person, _ = await handlers.provision(ctx, "acme", entry())
    updated = await handlers.change_person(ctx, "acme", person.id, lambda p: opt_in(p, 1, 1, "web", NOW))
    assert updated.status == "opted_in" and len(store.outbox[person.id]) == 2
    assert store.hinted == [person.id]


async def test_provision_creates_updates_or_leaves_unchanged(ctx):
    assert (await handlers.provision(ctx, "acme", entry()))[1] == "created"
    assert (await handlers.provision(ctx, "acme", entry()))[1] == "unchanged"
    assert (await handlers.provision(ctx, "acme", entry("A@CORP.example", team_id="x")))[1] == "updated"
    assert (await handlers.provision(ctx, "other", entry()))[1] == "created"


async def test_someone_else_is_not_found_by_another_tenant(ctx):
    person, _ = await handlers.provision(ctx, "acme", entry())
    with pytest.raises(handlers.PersonNotFound):
        await handlers.change_person(ctx, "other", person.id, lambda p: opt_in(p, 1, 1, "web", NOW))


async def test_consent_pages_walk_people_in_batches_without_gaps(ctx, store):
    for index in range(5):
        person = new_person(f"id{index}", "acme", entry(f"u{index}@corp.example"), NOW)
        person = opt_in(person, 1, 1, "web", NOW).person
        if index % 2 == 0:
            person = opt_out(person, OptOutReason.SELF, "web", NOW).person
        store.people[person.id] = person

    seen, position = [], None
    while True:
        page, position = await handlers.consent_page(ctx, "acme", position, 2)
        seen.extend(consent.consent_id for _, _, consent in page)
        if position is None:
            break
    every = [c.consent_id async for _, _, c in handlers.consents_after(ctx, "acme", batch=2)]

    assert seen == every and len(every) == 8 and len(set(every)) == 8
    withdrawals, _ = await handlers.consent_page(ctx, "acme", None, 50, charter_version=2)
    assert withdrawals == []


def test_conditional_writes_are_compare_and_set_where_the_server_makes_them_atomic():
    collections = defaultdict(lambda: None)
    assert AmbassadorStore(collections, atomic_updates=True).guarded("acme", "p1", 3) == {
        "_id": "p1", "tenant": "acme", "version": 3}
    # FerretDB 1.x: a bare _id (anything more scans the collection); the version was checked on read.
    assert AmbassadorStore(collections, atomic_updates=False).guarded("acme", "p1", 3) == {"_id": "p1"}
