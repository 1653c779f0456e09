"""Each MongoDB adapter of the content ports against the real database, and the unit tests' fakes
against the same contract (so that a unit test on a fake means what it says)."""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from advocacy_common.consuming import Delivery
from advocacy_common.envelope import Envelope
from advocacy_common.events import AmbassadorOptedOut
from advocacy_common.mongo import create_client
from advocacy_common.outbox import HINTS_COLLECTION, OUTBOX_FIELD
from advocacy_common.repository import KeyReused, StaleWrite, UnitOfWork
from content.models import (
    Action, Campaign, ContentItem, HistoryEntry, ItemFilter, Status, TargetingProfile, TenantSettings,
)
from content.store import ContentStore

sys.path.insert(0, str(Path(__file__).parents[1] / "unit"))
from content_fakes import Fakes  # noqa: E402

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
async def database(content_settings):
    client = create_client(content_settings.mongodb_uri, "content-store-tests")
    database = client[f"{content_settings.database}_store"]
    yield database
    await client.drop_database(database.name)
    await client.close()


@pytest.fixture(params=["mongodb", "fake"])
async def ports(request, database, content_settings):
    if request.param == "fake":
        return Fakes()
    store = await ContentStore.open(database, content_settings.cursor_key)
    await store.create_indexes()
    return store


def campaign(tenant: str, **fields) -> Campaign:
    return Campaign(**{"id": str(uuid.uuid4()), "tenant": tenant, "name": "C", "objective": "leads",
                       "starts_on": "2026-11-01", "ends_on": "2026-12-31", "disclosure_line": "#Acme",
                       "created_by": "ed", "created_at": T0, "updated_at": T0, **fields})


def item(tenant: str, minutes: int = 0, **fields) -> ContentItem:
    created = T0 + timedelta(minutes=minutes)
    return ContentItem(**{
        "id": str(uuid.uuid4()), "tenant": tenant, "campaign_id": "c-1", "title": "T",
        "link_url": "https://example.com", "media": [{"url": "https://cdn.example.com/a.jpg"}],
        "suggested_texts": {"linkedin": "Hi #Acme"}, "topics": ["ai"], "language": "en",
        "audience": {"teams": ["r&d"], "personas": ["expert"]}, "networks": ["linkedin"],
        "publish_at": created + timedelta(days=1), "status": "draft", "created_by": "ed", "created_at": created,
        "updated_at": created, "authors": ["ed"],
        "history": [HistoryEntry(action=Action.CREATE, status=Status.DRAFT, by="ed", at=created)], **fields})


def delivery(offset: int, partition: int = 0) -> Delivery:
    event = AmbassadorOptedOut(ambassador_id="a-1", opted_out_at=T0)
    return Delivery(Envelope(source="/tests", type=event.type_name), event, "advocacy.ambassador", partition, offset)


def tenant_id() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


async def test_items_round_trip_tenant_checked_idempotent_and_versioned(ports):
    tenant = tenant_id()
    draft = item(tenant)
    created, is_new = await ports.items.add_idempotent(draft, "fp-1")
    assert is_new and created == draft
    assert await ports.items.get(tenant, draft.id) == draft  # every field reads back equal
    assert await ports.items.get("other", draft.id) is None
    again, is_new = await ports.items.add_idempotent(draft, "fp-1")
    assert not is_new and again == draft
    with pytest.raises(KeyReused):
        await ports.items.add_idempotent(draft.model_copy(update={"title": "Other"}), "fp-2")

    submitted = draft.moved(Action.SUBMIT, Status.IN_REVIEW, "ed", T0)
    saved = await ports.items.save(submitted, guard={"status": "draft"})
    assert saved.version == 2 and await ports.items.get(tenant, draft.id) == saved
    with pytest.raises(StaleWrite):  # the version it was read at is gone
        await ports.items.save(draft.model_copy(update={"title": "Lost"}))
    with pytest.raises(StaleWrite):  # the status guard fails like a stale version
        await ports.items.save(saved.model_copy(update={"title": "Lost"}), guard={"status": "approved"})
    assert (await ports.items.get(tenant, draft.id)).title == "T"


async def test_a_save_carries_its_events(ports):
    tenant = tenant_id()
    draft = item(tenant)
    await ports.items.add_idempotent(draft, "fp")
    uow = UnitOfWork(tenant, "/advocacy/content")
    uow.record(AmbassadorOptedOut(ambassador_id="a-1", opted_out_at=T0), event_id="evt-1")
    await ports.items.save(draft.moved(Action.SUBMIT, Status.IN_REVIEW, "ed", T0), uow)
    if isinstance(ports, ContentStore):
        document = await ports.items.collection.find_one({"_id": draft.id})
        assert [entry["id"] for entry in document[OUTBOX_FIELD]] == ["evt-1"]
        hints = ports.items.collection.database[HINTS_COLLECTION]
        assert await hints.find_one({"document_id": draft.id}) is not None
    else:
        assert [envelope.id for _, envelope in ports.items.events[draft.id]] == ["evt-1"]


async def test_item_lists_filters_pages_calendar_and_scheduler_queries(ports):
    tenant = tenant_id()
    items = [item(tenant, minutes=index, topics=["ai"] if index % 2 else ["cloud"]) for index in range(5)]
    for each in items:
        await ports.items.add_idempotent(each, each.id)
    await ports.items.add_idempotent(item("other"), "fp")
    newest = [each.id for each in reversed(items)]

    pages, cursor = [], None
    while True:
        page = await ports.items.newest_first(tenant, ItemFilter(), cursor, 2)
        pages.append([each.id for each in page.items])
        if (cursor := page.next_cursor) is None:
            break
    assert pages == [newest[:2], newest[2:4], newest[4:]]
    ai = await ports.items.newest_first(tenant, ItemFilter(topic="ai"), None, 10)
    assert [each.id for each in ai.items] == [items[3].id, items[1].id]
    window = ItemFilter(publish_from=items[1].publish_at, publish_to=items[3].publish_at)
    assert [each.id for each in (await ports.items.newest_first(tenant, window, None, 10)).items] == \
        [items[2].id, items[1].id]

    calendar = await ports.items.scheduled_between(tenant, items[1].publish_at, items[4].publish_at, 10)
    assert [each.id for each in calendar] == [items[1].id, items[2].id, items[3].id]

    approved = items[0].model_copy(update={"status": Status.APPROVED})
    await ports.items.save(approved)
    due = await ports.items.due_for_publication(items[0].publish_at, 100)
    assert items[0].id in [each.id for each in due] and items[1].id not in [each.id for each in due]


async def test_the_feed_matches_the_audience_and_erasure_finds_a_person(ports):
    tenant = tenant_id()
    for_rnd = item(tenant, status="published", campaign_version=1)
    for_all = item(tenant, minutes=1, status="published", audience={}, proposed_by="amb-1", campaign_version=1)
    unpublished = item(tenant, minutes=2, audience={})
    for each in (for_rnd, for_all, unpublished):
        await ports.items.add_idempotent(each, each.id)
    expert = TargetingProfile(persona="expert", team_id="R&D")
    assert [each.id for each in (await ports.items.published_for(tenant, expert, None, 10)).items] == \
        [for_all.id, for_rnd.id]
    assert [each.id for each in (await ports.items.published_for(tenant, None, None, 10)).items] == [for_all.id]
    assert [each.id for each in await ports.items.touched_by(tenant, "amb-1")] == [for_all.id]
    assert await ports.items.touched_by("other", "amb-1") == []

    owner = campaign(tenant, id="c-1", version=2)
    assert sorted(each.id for each in await ports.items.published_behind(owner, 10)) == \
        sorted([for_rnd.id, for_all.id])
    await ports.items.save(for_rnd.model_copy(update={"campaign_version": 2}))
    assert [each.id for each in await ports.items.published_behind(owner, 10)] == [for_all.id]


async def test_the_feed_applies_topics_language_and_networks_like_distribution(ports):
    tenant = tenant_id()
    open_axes = {"audience": {}, "status": "published", "campaign_version": 1}
    for_energy = item(tenant, **{**open_axes, "audience": {"topics": ["energy"]}})
    in_french = item(tenant, minutes=1, **open_axes, language="fr")
    on_x = item(tenant, minutes=2, **open_axes, networks=["x"])
    described_only = item(tenant, minutes=3, **open_axes, topics=["quantum"])  # its own topics do not target
    for each in (for_energy, in_french, on_x, described_only):
        await ports.items.add_idempotent(each, each.id)

    async def seen(profile: TargetingProfile) -> set[str]:
        return {each.id for each in (await ports.items.published_for(tenant, profile, None, 10)).items}

    reader = TargetingProfile(persona="expert", topics=["Energy"], languages=["en"], networks=["linkedin"])
    assert await seen(reader) == {for_energy.id, described_only.id}
    assert await seen(reader.model_copy(update={"topics": [], "languages": []})) == {in_french.id, described_only.id}
    assert await seen(reader.model_copy(update={"networks": ["x"]})) == {on_x.id}
    # A projection from before networks were kept constrains no network.
    assert on_x.id in await seen(reader.model_copy(update={"networks": None}))


async def test_an_item_stored_before_the_topics_axis_is_for_anyone_on_it(database, content_settings):
    store = await ContentStore.open(database, content_settings.cursor_key)
    tenant = tenant_id()
    old = item(tenant, status="published", audience={})
    await store.items.add_idempotent(old, old.id)
    await database["content_items"].update_one({"_id": old.id}, {"$unset": {"targets.topics": ""}})
    profile = TargetingProfile(persona="expert", topics=["ai"], languages=["en"], networks=["linkedin"])
    assert [each.id for each in (await store.items.published_for(tenant, profile, None, 10)).items] == [old.id]


async def test_campaigns_page_and_the_refresh_flag_keeps_the_version(ports):
    tenant = tenant_id()
    first, second = campaign(tenant), campaign(tenant, created_at=T0 + timedelta(minutes=1))
    for each in (first, second):
        await ports.campaigns.add_idempotent(each, each.id)
    assert await ports.campaigns.get(tenant, first.id) == first
    assert await ports.campaigns.get("other", first.id) is None
    page = await ports.campaigns.newest_first(tenant, None, 1)
    assert [c.id for c in page.items] == [second.id] and page.next_cursor
    assert [c.id for c in (await ports.campaigns.newest_first(tenant, page.next_cursor, 1)).items] == [first.id]

    flagged = await ports.campaigns.save(first.model_copy(update={"refresh_published": True}))
    assert flagged.id in [c.id for c in await ports.campaigns.awaiting_refresh(1000)]
    assert not await ports.campaigns.mark_refreshed(first)  # read before the flag: a newer change keeps it
    assert await ports.campaigns.mark_refreshed(flagged)
    stored = await ports.campaigns.get(tenant, first.id)
    assert stored.refresh_published is False and stored.version == flagged.version


async def test_tenant_settings_default_first_save_and_races(ports):
    tenant = tenant_id()
    defaults = await ports.tenant_settings.of_tenant(tenant)
    assert defaults == TenantSettings(tenant=tenant, four_eyes=True, version=0)
    saved = await ports.tenant_settings.save(defaults.model_copy(update={"four_eyes": False}))
    assert saved.version == 1 and await ports.tenant_settings.of_tenant(tenant) == saved
    with pytest.raises(StaleWrite):  # a second "first save" lost the race
        await ports.tenant_settings.save(defaults)
    with pytest.raises(StaleWrite):
        await ports.tenant_settings.save(saved.model_copy(update={"version": 5}))
    assert (await ports.tenant_settings.save(saved.model_copy(update={"four_eyes": True}))).version == 2
    assert (await ports.tenant_settings.of_tenant("other")).version == 0


async def test_the_projection_applies_each_event_once_and_keeps_the_erased_out(ports):
    tenant = tenant_id()
    profile = TargetingProfile(persona="expert", team_id="r&d", languages=["en"])
    projections = ports.ambassadors
    assert await projections.profile_updated(tenant, "a-1", profile, delivery(3))
    assert (await projections.get(tenant, "a-1")).opted_in is False  # a profile alone is no opt-in
    assert await projections.opted_in(tenant, "a-1", profile, delivery(4))
    assert not await projections.opted_out(tenant, "a-1", delivery(4))  # a redelivery changes nothing
    assert (await projections.get(tenant, "a-1")).opted_in is True
    assert await projections.opted_out(tenant, "a-1", delivery(1, partition=2))  # another partition's offsets
    gone = await projections.get(tenant, "a-1")
    assert (gone.opted_in, gone.profile) == (False, None)
    assert await projections.opted_in(tenant, "a-1", profile, delivery(5))
    assert (await projections.get(tenant, "a-1")).profile == profile
    assert await projections.get("other", "a-1") is None

    assert await projections.erased(tenant, "a-1", delivery(6))
    assert not await projections.opted_in(tenant, "a-1", profile, delivery(7))  # a replayed opt-in
    tombstone = await projections.get(tenant, "a-1")
    assert (tombstone.erased, tombstone.opted_in, tombstone.profile) == (True, False, None)
