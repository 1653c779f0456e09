"""The use cases of distribution on the shared fakes: prepare and confirm, authenticity, clicks, reports."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from advocacy_common.auth import Principal
from advocacy_common.cursors import CursorCodec
from advocacy_common.errors import Problem
from advocacy_common.events import (
    AmbassadorProfile, NetworkPresence, PostShared, QuietHours, SharingPreferences,
)
from advocacy_common.repository import KeyReused, StaleWrite
from distribution.models.authenticity import AuthenticityPolicy, TenantPolicy
from distribution.models.projections import AmbassadorStatus, AmbassadorView, CharterView, ContentView
from distribution.models.sharing import Refusal, ShareStatus
from distribution.models.engagement import sign
from distribution.options import Options
from distribution.schemas import EngagementReport, NewConnector, PrepareShare
from distribution.service import Engagement, Sharing, Tracking
from distribution.service.sharing import PolicyChanged

from distribution_fakes import FakePublisher, fake_repositories

pytestmark = pytest.mark.unit
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
TENANT = "acme"
SUGGESTED = ("We are proud to announce that our new plant in Lyon is now running on 100% renewable energy. "
             "This is a major step towards our goal of carbon neutrality by 2030. Thanks to all the teams who "
             "made this possible!")
OWN = ("I visited our Lyon site last month and watched the solar panels go up. Today the whole plant runs on "
       "renewable power, and honestly it makes me proud to work here.")
BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"
OPTIONS = Options(public_base_url="https://go.example.com", link_code_secret="links", visitor_hash_salt="salt",
                  slot_spacing=timedelta(minutes=30), webhook_tolerance_seconds=300)


def principal(login: str, *roles: str) -> Principal:
    return Principal(subject=login, tenant=TENANT, roles=frozenset(roles or ("ambassador",)), claims={})


class World:
    """The use cases over one set of fakes, with a content and two opted-in ambassadors."""

    def __init__(self) -> None:
        self.repositories = fake_repositories()
        self.publisher = FakePublisher()
        self.sharing = Sharing(self.repositories, OPTIONS, CursorCodec(b"unit-key"))
        self.tracking = Tracking(self.repositories, OPTIONS)
        self.engagement = Engagement(self.repositories, self.publisher, OPTIONS)
        self.repositories.contents.items[(TENANT, "c1")] = ContentView(
            tenant=TENANT, content_id="c1", version=1, campaign_id="camp-1", link_url="https://acme.com/green",
            suggested_texts={"linkedin": SUGGESTED}, topics=["energy"], language="en", networks=["linkedin", "x"],
            publish_at=NOW - timedelta(hours=2), expires_at=NOW + timedelta(days=5))
        for login in ("amb-1", "amb-2"):
            self.opt_in(login)

    def opt_in(self, login: str, **preferences) -> None:
        me = principal(login).ambassador_id
        profile = AmbassadorProfile(persona="expert", topics=["energy"], languages=["en"], team_id="ops",
                                    networks=[NetworkPresence(network="linkedin", audience_size=850)],
                                    preferences=SharingPreferences(**preferences))
        self.repositories.ambassadors.items[(TENANT, me)] = AmbassadorView(
            tenant=TENANT, ambassador_id=me, status=AmbassadorStatus.OPTED_IN, accepted_charter_version=1,
            profile=profile)

    async def prepare(self, login: str = "amb-1", text: str = OWN, key: str | None = None, **extra):
        request = PrepareShare(content_id="c1", network="linkedin", text=text, **extra)
        return await self.sharing.prepare(principal(login), request, key, NOW)


@pytest.fixture
def world() -> World:
    return World()


# --- prepare and confirm ------------------------------------------------------------------------

async def test_prepare_stores_the_share_and_its_link_and_a_retry_gets_the_same(world):
    share = await world.prepare(key="k-1")
    assert share.status is ShareStatus.PREPARED and share.personalized and share.similarity_to_suggested < 0.4
    assert share.tracked_link == f"https://go.example.com/r/{share.tracked_link_code}"
    link = await world.repositories.links.by_code(share.tracked_link_code)
    assert (link.tenant, link.ambassador_id, link.content_id, link.confirmed_share_id) == \
        (TENANT, principal("amb-1").ambassador_id, "c1", None)
    assert share.signature and len(share.signature_bands) == 64
    assert await world.prepare(key="k-1") == share
    with pytest.raises(KeyReused):
        await world.prepare(key="k-1", text=OWN + " Really.")


@pytest.mark.parametrize(("arrange", "rule"), [
    (lambda w: w.repositories.ambassadors.items.update({
        (TENANT, principal("amb-1").ambassador_id): AmbassadorView(
            tenant=TENANT, ambassador_id=principal("amb-1").ambassador_id, status=AmbassadorStatus.OPTED_OUT)}),
     "opted_out"),
    (lambda w: w.repositories.charters.items.update({TENANT: CharterView(current_version=2)}), "charter_pending"),
    (lambda w: w.repositories.contents.items.pop((TENANT, "c1")), "content_not_available"),
    (lambda w: w.opt_in("amb-1", max_shares_per_week=0), "weekly_limit"),
    (lambda w: w.opt_in("amb-1", quiet_hours=QuietHours(start="00:00", end="23:59"), time_zone="UTC"),
     "quiet_hours"),
])
async def test_prepare_refuses_by_rule_and_stores_nothing(world, arrange, rule):
    arrange(world)
    with pytest.raises(Refusal) as refused:
        await world.prepare()
    assert refused.value.rule == rule
    assert world.repositories.shares.items == {} and world.repositories.links.items == {}


async def test_a_near_copy_of_the_suggested_text_is_refused_or_flagged_by_policy(world):
    with pytest.raises(Refusal) as refused:
        await world.prepare(text="So proud! " + SUGGESTED)
    assert refused.value.rule == "too_similar_to_suggested" and refused.value.score > 0.8
    assert refused.value.threshold == 0.4
    world.repositories.policies.items[TENANT] = TenantPolicy(
        tenant=TENANT, policy=AuthenticityPolicy(near_copy_action="flag"), version=1)
    flagged = await world.prepare(text="So proud! " + SUGGESTED)
    assert flagged.personalized is False and flagged.similarity_to_suggested > 0.8


async def test_copying_a_colleagues_confirmed_post_is_refused_through_the_lsh_lookup(world):
    first = await world.prepare("amb-1")
    parrot = OWN.replace("honestly ", "").replace("last month", "in May")
    unconfirmed = await world.prepare("amb-2", text=parrot)  # a prepared share is no one's post yet
    assert unconfirmed.similarity_to_colleagues == 0.0
    await world.sharing.confirm(principal("amb-1"), first.id, None, NOW)
    with pytest.raises(Refusal) as refused:
        await world.prepare("amb-2", text=parrot, key="another")
    assert refused.value.rule == "too_similar_to_colleagues" and refused.value.score > 0.4
    own = await world.prepare("amb-2", key="own", text="Our facilities team did something remarkable in Lyon: "
                              "no more fossil energy for the whole plant. Well done, everyone!")
    assert own.personalized


async def test_confirm_saves_one_post_shared_event_with_the_share(world):
    prepared = await world.prepare()
    confirmed = await world.sharing.confirm(principal("amb-1"), prepared.id, "https://li/p/1", NOW)
    assert (confirmed.status, confirmed.post_url, confirmed.version) == (ShareStatus.CONFIRMED, "https://li/p/1", 2)
    again = await world.sharing.confirm(principal("amb-1"), prepared.id, "https://li/p/other", NOW)
    assert again == confirmed
    events = world.repositories.shares.events[prepared.id]
    assert [e.type for e in events] == [PostShared.type_name]
    data = events[0].data
    assert (data["share_id"], data["potential_reach"], data["network"]) == (prepared.id, 850, "linkedin")
    assert (await world.repositories.links.by_code(prepared.tracked_link_code)).confirmed_share_id == prepared.id
    with pytest.raises(Refusal) as refused:  # the link is taken: one confirmed share per link
        await world.prepare(key="again")
    assert refused.value.rule == "already_shared"


async def test_confirm_is_refused_after_an_opt_out_and_for_someone_elses_share(world):
    prepared = await world.prepare()
    with pytest.raises(Problem) as hidden:
        await world.sharing.confirm(principal("amb-2"), prepared.id, None, NOW)
    assert hidden.value.status == 404
    me = principal("amb-1").ambassador_id
    world.repositories.ambassadors.items[(TENANT, me)] = AmbassadorView(tenant=TENANT, ambassador_id=me,
                                                                        status=AmbassadorStatus.OPTED_OUT)
    with pytest.raises(Refusal) as refused:
        await world.sharing.confirm(principal("amb-1"), prepared.id, None, NOW)
    assert refused.value.rule == "opted_out" and prepared.id not in world.repositories.shares.events


def interleave(shares, before_write):
    """Let `before_write` (another replica) run between this request's read of the share and its write."""
    original = shares.confirm

    async def confirm(share, uow):
        shares.confirm = original
        await before_write()
        return await original(share, uow)

    shares.confirm = confirm


async def test_a_confirmation_that_lost_a_race_answers_with_what_is_stored(world):
    prepared = await world.prepare()
    shares = world.repositories.shares

    async def other_replica_confirms():
        await world.sharing.confirm(principal("amb-1"), prepared.id, "https://li/winner", NOW)

    interleave(shares, other_replica_confirms)
    answered = await world.sharing.confirm(principal("amb-1"), prepared.id, "https://li/loser", NOW)
    assert answered.post_url == "https://li/winner" == shares.items[prepared.id].post_url
    assert len(shares.events[prepared.id]) == 1 and shares.items[prepared.id].version == 2


async def test_a_confirmation_racing_an_erasure_is_a_conflict_and_writes_nothing(world):
    prepared = await world.prepare()
    shares = world.repositories.shares

    async def erasure():
        await shares.anonymise(TENANT, principal("amb-1").ambassador_id, "erased")

    interleave(shares, erasure)
    with pytest.raises(StaleWrite):
        await world.sharing.confirm(principal("amb-1"), prepared.id, "https://li/p", NOW)
    stored = shares.items[prepared.id]
    assert (stored.status, stored.ambassador_id, stored.text) == (ShareStatus.PREPARED, "erased", None)
    assert prepared.id not in shares.events


# --- the feed -------------------------------------------------------------------------------------

async def test_feed_pages_with_signed_cursors_and_reasons(world):
    for i in range(3):
        world.repositories.contents.items[(TENANT, f"more-{i}")] = world.repositories.contents.items[
            (TENANT, "c1")].model_copy(update={"content_id": f"more-{i}"})
    first = await world.sharing.feed(principal("amb-1"), NOW, 2, None)
    second = await world.sharing.feed(principal("amb-1"), NOW, 2, first.next_cursor)
    assert len(first.items) == 2 and len(second.items) == 2 and second.next_cursor is None
    assert {s.content.content_id for s in first.items + second.items} == {"c1", "more-0", "more-1", "more-2"}
    with pytest.raises(Problem) as foreign:  # a cursor of another person's feed
        await world.sharing.feed(principal("amb-2"), NOW, 2, first.next_cursor)
    assert foreign.value.status == 400
    nobody = await world.sharing.feed(principal("nobody"), NOW, 2, None)
    assert nobody.items == [] and nobody.reason == "not_opted_in" and "opted in" in nobody.message


# --- clicks -----------------------------------------------------------------------------------------

async def test_clicks_are_counted_once_per_visitor_and_never_for_bots(world):
    share = await world.prepare()
    code = share.tracked_link_code
    target = await world.tracking.follow(code, "203.0.113.7", BROWSER, NOW)
    assert target.startswith("https://acme.com/green?utm_source=linkedin&utm_medium=employee_advocacy")
    await world.tracking.follow(code, "203.0.113.7", BROWSER, NOW)
    await world.tracking.follow(code, "198.51.100.9", BROWSER, NOW)
    for bot in ("LinkedInBot/1.0 (compatible; Mozilla/5.0)", "XING-contenttabreceiver/2.0", "Microsoft Preview",
                "", None):
        assert await world.tracking.follow(code, "203.0.113.8", bot, NOW) == target
    events = world.repositories.clicks.all_events
    assert len(events) == 3 and len(world.repositories.clicks.items) == 3
    assert sorted(e.data["unique_visitor"] for e in events) == [False, True, True]
    assert {e.data["share_id"] for e in events} == {None}  # the share is not confirmed yet
    assert all(e.id == e.data["engagement_id"] and "203.0.113" not in json.dumps(e.data) for e in events)
    assert await world.tracking.follow("unknown", "203.0.113.7", BROWSER, NOW) is None


async def test_redirect_reuses_what_it_read_of_a_link_for_the_cache_period_only(world):
    share = await world.prepare()
    code = share.tracked_link_code
    reads = []
    by_code = world.repositories.links.by_code

    async def counted(code_: str):
        reads.append(code_)
        return await by_code(code_)
    world.repositories.links.by_code = counted
    for _ in range(3):
        await world.tracking.follow(code, "203.0.113.7", BROWSER, NOW)
    assert reads == [code]  # one read for three clicks
    world.repositories.links.items[code] = world.repositories.links.items[code].model_copy(
        update={"confirmed_share_id": share.id})
    world.tracking.destinations.clear()  # what the period's end does
    await world.tracking.follow(code, "203.0.113.7", BROWSER, NOW)
    assert reads == [code, code]
    assert world.repositories.clicks.all_events[-1].data["share_id"] == share.id

    uncached = Tracking(world.repositories, Options(**{**vars(OPTIONS), "link_cache_seconds": 0}))
    await uncached.follow(code, "203.0.113.7", BROWSER, NOW)
    await uncached.follow(code, "203.0.113.7", BROWSER, NOW)
    assert reads == [code] * 4
    assert await world.tracking.follow("unknown", "203.0.113.7", BROWSER, NOW) is None
    assert "unknown" not in world.tracking.destinations  # an unknown code may be created any moment


# --- connectors and their reports ------------------------------------------------------------------------

async def _connector(world):
    admin = principal("admin-1", "admin")
    return await world.engagement.register_connector(admin, NewConnector(name="linkedin-sync"), "conn-1", NOW)


def _report(**fields) -> bytes:
    return json.dumps({"id": "li-1", "kind": "impression", "count": 1200, "occurred_at": "2026-03-10T10:00:00Z",
                       **fields}).encode()


async def test_a_signed_report_is_published_once_and_a_replay_is_refused(world):
    connector = await _connector(world)
    assert await _connector(world) == connector  # same key, same body: the same connector and secret
    share = await world.prepare()
    await world.sharing.confirm(principal("amb-1"), share.id, "https://li/p/1", NOW)
    body = _report(post_url="https://li/p/1")
    integrator = principal("svc", "integrator")
    signature = sign(connector.secret, int(NOW.timestamp()), body)
    engagement_id = await world.engagement.ingest_report(integrator, connector.id, EngagementReport, body,
                                                         signature, NOW)
    [(topic, envelope)] = world.publisher.published
    assert envelope.id == engagement_id == envelope.data["engagement_id"]
    assert (envelope.data["share_id"], envelope.data["count"], envelope.data["source"]) == \
        (share.id, 1200, "linkedin-sync")
    with pytest.raises(Problem) as replay:
        await world.engagement.ingest_report(integrator, connector.id, EngagementReport, body, signature, NOW)
    assert replay.value.status == 409 and replay.value.extensions["engagement_id"] == engagement_id
    assert len(world.publisher.published) == 1
    [stored] = world.repositories.reports.items.values()
    assert stored.acknowledged and stored.envelope is None


async def test_a_report_whose_publish_failed_is_published_again_as_the_same_event(world):
    connector = await _connector(world)
    share = await world.prepare()
    body = _report(share_id=share.id, kind="comment", count=2)
    integrator = principal("svc", "integrator")
    signature = sign(connector.secret, int(NOW.timestamp()), body)
    world.publisher.failing = True
    with pytest.raises(Problem) as unavailable:
        await world.engagement.ingest_report(integrator, connector.id, EngagementReport, body, signature, NOW)
    assert unavailable.value.status == 503 and world.publisher.published == []
    world.publisher.failing = False
    engagement_id = await world.engagement.ingest_report(integrator, connector.id, EngagementReport, body,
                                                         signature, NOW)
    assert [e.id for _, e in world.publisher.published] == [engagement_id]


async def test_bad_signatures_and_unknown_targets_change_nothing(world):
    connector = await _connector(world)
    integrator = principal("svc", "integrator")
    body = _report(share_id="nope")
    with pytest.raises(Problem) as forged:
        await world.engagement.ingest_report(integrator, connector.id, EngagementReport, body,
                                             sign("whsec_guess", int(NOW.timestamp()), body), NOW)
    assert forged.value.status == 401
    with pytest.raises(Problem) as unknown:
        await world.engagement.ingest_report(integrator, connector.id, EngagementReport, body,
                                             sign(connector.secret, int(NOW.timestamp()), body), NOW)
    assert unknown.value.status == 422 and unknown.value.extensions["errors"][0]["field"] == "share_id"
    assert world.repositories.reports.items == {} and world.publisher.published == []


# --- the tenant's policy ------------------------------------------------------------------------------------

async def test_policy_replacement_is_compare_and_set(world):
    relaxed = AuthenticityPolicy(max_similarity_to_suggested=0.9)
    seen: list[int] = []
    stored = await world.sharing.replace_policy(TENANT, relaxed, precondition=seen.append)
    assert (stored.version, seen) == (1, [0])
    policies = world.repositories.policies

    def someone_else_first(version: int) -> None:  # another admin writes between our read and our write
        policies.items[TENANT] = TenantPolicy(tenant=TENANT, policy=AuthenticityPolicy(), version=version + 1)

    with pytest.raises(PolicyChanged):
        await world.sharing.replace_policy(TENANT, AuthenticityPolicy(near_copy_action="flag"), someone_else_first)
    assert (await world.sharing.policy(TENANT)).policy == AuthenticityPolicy()
