"""The feed's read models on the shared fakes: what I shared (entered at confirmation, dropped at erasure,
kept through an opt-out) and the tenant's snapshot (listed again only when a content changed)."""

from __future__ import annotations

from datetime import timedelta
from itertools import count

import pytest

from advocacy_common.consuming import Delivery
from advocacy_common.events import (
    AmbassadorErased, AmbassadorOptedIn, AmbassadorOptedOut, AmbassadorProfile, CharterPublished, ContentPublished,
    ContentRetired, Event, NetworkPresence, Objective,
)
from advocacy_common.publishing import envelope_for
from advocacy_common.repository import StaleWrite
from distribution.handlers import PROJECTION_HANDLERS
from distribution.models.sharing import ShareStatus
from distribution.service.feed_snapshots import LISTING_GAP_SECONDS, FeedSnapshots

from distribution_world import NOW, TENANT, World, principal

pytestmark = pytest.mark.unit
OFFSETS = count(1000)


@pytest.fixture
def world() -> World:
    return World()


async def handle(world: World, event: Event) -> Delivery:
    delivery = Delivery(envelope_for(event, tenant_id=TENANT, source="/tests"), event, event.topic, 0, next(OFFSETS))
    await PROJECTION_HANDLERS[type(event)](world.repositories, delivery)
    return delivery


async def feed_ids(world: World, login: str = "amb-1") -> list[str]:
    page = await world.sharing.feed(principal(login), NOW, 20, None)
    return [s.content.content_id for s in page.items]


def me(login: str = "amb-1") -> str:
    return principal(login).subject_key


# --- what I shared ---------------------------------------------------------------------------------

async def test_what_i_confirm_leaves_my_next_feed_and_only_mine(world):
    assert await feed_ids(world) == ["c1"]
    prepared = await world.prepare()
    assert await feed_ids(world) == ["c1"]  # prepared is not shared
    await world.sharing.confirm(principal("amb-1"), prepared.id, None, NOW)
    assert await feed_ids(world) == []  # my very next request (read-your-writes)
    assert await feed_ids(world, "amb-2") == ["c1"]
    await world.sharing.confirm(principal("amb-1"), prepared.id, None, NOW)  # confirmed again: changes nothing
    assert world.repositories.shared.items[(TENANT, me())] == {prepared.id: "c1"}


async def test_a_confirmation_that_does_not_go_through_takes_out_its_own_entry_only(world):
    shared = world.repositories.shared
    await shared.add(TENANT, me(), "my-share-on-x", "c1")  # the same content, shared on another network
    prepared = await world.prepare()
    shares = world.repositories.shares
    original = shares.confirm

    async def erased_meanwhile(share, uow):  # another process anonymises the share before our write
        shares.confirm = original
        await shares.anonymise(TENANT, me(), "erased")
        return await original(share, uow)

    shares.confirm = erased_meanwhile
    with pytest.raises(StaleWrite):
        await world.sharing.confirm(principal("amb-1"), prepared.id, None, NOW)
    assert shared.items[(TENANT, me())] == {"my-share-on-x": "c1"}


async def test_an_erasure_drops_what_i_shared_and_its_redelivery_changes_nothing(world):
    prepared = await world.prepare()
    await world.sharing.confirm(principal("amb-1"), prepared.id, None, NOW)
    erased = AmbassadorErased(ambassador_id=me(), erased_at=NOW)
    delivery = await handle(world, erased)
    assert await world.repositories.shared.of(TENANT, me()) == set()
    await PROJECTION_HANDLERS[AmbassadorErased](world.repositories, delivery)  # redelivered
    assert (TENANT, me()) not in world.repositories.shared.items
    assert (await world.sharing.feed(principal("amb-1"), NOW, 20, None)).reason == "erased"


async def test_what_i_shared_stays_out_of_my_feed_after_an_opt_out_and_back(world):
    prepared = await world.prepare()
    await world.sharing.confirm(principal("amb-1"), prepared.id, None, NOW)
    await handle(world, AmbassadorOptedOut(ambassador_id=me(), opted_out_at=NOW))
    assert (await world.sharing.feed(principal("amb-1"), NOW, 20, None)).reason == "opted_out"
    profile = AmbassadorProfile(persona="expert", topics=["energy"], languages=["en"], team_id="ops",
                                networks=[NetworkPresence(network="linkedin", audience_size=850)])
    await handle(world, AmbassadorOptedIn(ambassador_id=me(), charter_version=1, opted_in_at=NOW, profile=profile))
    assert await feed_ids(world) == []  # my post of c1 is still mine
    assert await world.repositories.shared.of(TENANT, me()) == {"c1"}


async def test_shares_confirmed_before_shared_contents_existed_are_entered_once_at_start(world):
    shares, shared = world.repositories.shares, world.repositories.shared
    mine = await world.prepare("amb-1")
    theirs = await world.prepare("amb-2")
    for share in (mine, theirs):  # as an earlier release stored them: confirmed, in no person's document
        shares.items[share.id] = share.model_copy(update={"status": ShareStatus.CONFIRMED, "confirmed_at": NOW})
    await shares.anonymise(TENANT, me("amb-2"), "erased")  # amb-2 was erased since: their share names nobody
    assert await feed_ids(world) == ["c1"]
    assert await world.sharing.fill_shared() == 2
    assert await world.sharing.fill_shared() == 0  # nothing left: a restart does nothing
    assert shared.items == {(TENANT, me()): {mine.id: "c1"}}
    assert await feed_ids(world) == []


# --- the tenant's snapshot ---------------------------------------------------------------------------

def published(content_id: str, version: int = 1, **fields) -> ContentPublished:
    return ContentPublished(**{"content_id": content_id, "version": version, "campaign_id": "camp",
                               "objective": Objective.AWARENESS, "title": content_id, "link_url": "https://acme.com",
                               "suggested_texts": {}, "topics": ["energy"], "language": "en",
                               "networks": ["linkedin"], "publish_at": NOW - timedelta(hours=1), **fields})


async def test_the_snapshot_lists_the_contents_again_only_after_a_content_write(world):
    contents = world.repositories.contents
    assert await feed_ids(world) == ["c1"]
    assert await feed_ids(world) == ["c1"]
    assert contents.listings == 1  # checked twice, listed once
    await handle(world, published("c2"))
    assert set(await feed_ids(world)) == {"c1", "c2"} and contents.listings == 2
    await handle(world, ContentRetired(content_id="c2", version=2, campaign_id="camp", reason="withdrawn",
                                       retired_at=NOW))
    assert await feed_ids(world) == ["c1"] and contents.listings == 3
    delivery = await handle(world, published("c3"))
    await PROJECTION_HANDLERS[ContentPublished](world.repositories, delivery)  # a redelivery: one more listing
    assert set(await feed_ids(world)) == {"c1", "c3"} and contents.listings == 4
    assert set(await feed_ids(world)) == {"c1", "c3"} and contents.listings == 4


async def test_a_scheduled_content_shows_when_its_time_comes_without_any_write(world):
    await handle(world, published("later", publish_at=NOW + timedelta(minutes=5)))
    assert await feed_ids(world) == ["c1"]
    later = await world.sharing.feed(principal("amb-1"), NOW + timedelta(minutes=6), 20, None)
    assert {s.content.content_id for s in later.items} == {"c1", "later"}
    assert world.repositories.contents.listings == 1


async def test_a_new_charter_shows_at_the_next_check_without_listing_the_contents(world):
    assert await feed_ids(world) == ["c1"]
    await handle(world, CharterPublished(charter_id="ch", version=2, published_at=NOW, disclosure_required=True,
                                         disclosure_line="#employee"))
    page = await world.sharing.feed(principal("amb-1"), NOW, 20, None)
    assert page.reason == "charter_pending" and world.repositories.contents.listings == 1
    world.opt_in("amb-1")
    me_now = world.repositories.ambassadors.items[(TENANT, me())]
    world.repositories.ambassadors.items[(TENANT, me())] = me_now.model_copy(update={"accepted_charter_version": 2})
    [item] = (await world.sharing.feed(principal("amb-1"), NOW, 20, None)).items
    assert item.disclosure_lines == ["#employee"]


async def test_contents_changing_all_the_time_are_listed_at_most_every_gap(world):
    clock = [100.0]
    snapshots = FeedSnapshots(world.repositories.contents, world.repositories.charters, 1.0, clock=lambda: clock[0])
    contents = world.repositories.contents
    assert len((await snapshots._check(TENANT)).index) == 1 and contents.listings == 1
    await handle(world, published("c2"))
    clock[0] += LISTING_GAP_SECONDS - 1
    assert len((await snapshots._check(TENANT)).index) == 1 and contents.listings == 1  # too soon: kept
    await handle(world, published("c3"))
    clock[0] += 1
    assert len((await snapshots._check(TENANT)).index) == 3 and contents.listings == 2  # both changes listed
    clock[0] += 60
    assert len((await snapshots._check(TENANT)).index) == 3 and contents.listings == 2  # nothing changed since
