"""The use cases of distribution on the shared fakes: prepare and confirm, authenticity, clicks, reports."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from advocacy_common.errors import Problem
from advocacy_common.events import (
    NetworkPresence, PostShared, QuietHours,
)
from advocacy_common.repository import KeyReused, StaleWrite
from distribution.models.authenticity import AuthenticityPolicy, TenantPolicy
from distribution.models.projections import ERASED, AmbassadorStatus, AmbassadorView, CharterView
from distribution.models.sharing import Refusal, ShareStatus
from distribution.models.engagement import sign
from distribution.models.plausibility import Implausible
from distribution.schemas import EngagementReport, NewConnector, PrepareShare
from distribution.options import Options
from distribution.service import Tracking
from distribution.service.sharing import PolicyChanged

from distribution_world import BROWSER, NOW, OPTIONS, OWN, SUGGESTED, TENANT, World, principal

pytestmark = pytest.mark.unit


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
        (TENANT, principal("amb-1").subject_key, "c1", None)
    assert len(share.signature) == 128
    assert await world.prepare(key="k-1") == share
    with pytest.raises(KeyReused):
        await world.prepare(key="k-1", text=OWN + " Really.")


async def test_a_prepare_never_confirmed_gives_its_slot_back_after_the_hold(world):
    """The clock is the `now` each call is given; the hold is the options' 30 minutes."""
    for login in ("amb-3", "amb-4", "amb-5"):
        world.opt_in(login)
    planned = NOW + timedelta(hours=2)

    texts = {"amb-1": OWN, "amb-2": "Spent a morning with the Lyon crew: every roof panel they fitted now "
                                     "powers the line I work on.",
             "amb-3": OWN, "amb-4": OWN, "amb-5": OWN}  # only amb-2 confirms: nobody else copies a post

    async def slot_of(login: str, minutes: int):
        request = PrepareShare(content_id="c1", network="linkedin", text=texts[login], planned_at=planned)
        share = await world.sharing.prepare(principal(login), request, None, NOW + timedelta(minutes=minutes))
        return share, share.recommended_at - NOW

    _, first = await slot_of("amb-1", 0)
    second_share, second = await slot_of("amb-2", 10)
    _, third = await slot_of("amb-3", 29)
    assert (first, second, third) == (timedelta(hours=2), timedelta(hours=2, minutes=30), timedelta(hours=3))
    await world.sharing.confirm(principal("amb-2"), second_share.id, None, NOW + timedelta(minutes=20))
    # 31 minutes on, amb-1 never confirmed: the 2 h slot is free again; amb-3's prepare still holds 3 h.
    _, fourth = await slot_of("amb-4", 31)
    assert fourth == timedelta(hours=2)
    # An hour on, amb-3's prepare timed out too; amb-2's confirmed share keeps its slot for good.
    _, fifth = await slot_of("amb-5", 61)
    assert fifth == timedelta(hours=3)
    assert OPTIONS.prepare_hold == timedelta(minutes=30)


@pytest.mark.parametrize(("arrange", "rule"), [
    (lambda w: w.repositories.ambassadors.items.update({
        (TENANT, principal("amb-1").subject_key): AmbassadorView(
            tenant=TENANT, ambassador_id=principal("amb-1").subject_key, status=AmbassadorStatus.OPTED_OUT)}),
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


async def test_copying_a_colleagues_confirmed_post_is_refused_through_the_signature_book(world):
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


PARROT = OWN.replace("honestly ", "").replace("last month", "in May")


async def test_of_two_colleagues_preparing_the_same_text_only_the_first_to_confirm_succeeds(world):
    first, second = await world.prepare("amb-1"), await world.prepare("amb-2", text=PARROT)
    assert first.personalized and second.personalized  # at preparation neither had confirmed yet
    await world.sharing.confirm(principal("amb-1"), first.id, None, NOW)
    with pytest.raises(Refusal) as refused:
        await world.sharing.confirm(principal("amb-2"), second.id, None, NOW)
    assert (refused.value.rule, refused.value.threshold) == ("too_similar_to_colleagues", 0.4)
    assert refused.value.score > 0.4 and "colleague already posted" in refused.value.message
    stored = world.repositories.shares.items[second.id]
    assert stored.status is ShareStatus.PREPARED and second.id not in world.repositories.shares.events
    book = await world.repositories.books.read(TENANT, "c1")
    assert [e.share_id for e in book.entries] == [first.id]  # the refused one left no trace
    link = await world.repositories.links.by_code(second.tracked_link_code)
    assert link.confirmed_share_id is None  # and did not take its link: a rewritten text can still go


async def test_a_colleague_confirming_between_our_read_and_our_write_is_compared_with(world):
    first, second = await world.prepare("amb-1"), await world.prepare("amb-2", text=PARROT)
    books = world.repositories.books
    original = books.add

    async def add(book, entry):  # amb-1's confirmation lands between amb-2's read of the book and its write
        books.add = original
        await world.sharing.confirm(principal("amb-1"), first.id, None, NOW)
        return await original(book, entry)

    books.add = add
    with pytest.raises(Refusal) as refused:
        await world.sharing.confirm(principal("amb-2"), second.id, None, NOW)
    assert refused.value.rule == "too_similar_to_colleagues"
    assert [e.share_id for e in (await books.read(TENANT, "c1")).entries] == [first.id]


async def test_with_the_flag_policy_the_second_confirmation_goes_through_as_not_personalised(world):
    world.repositories.policies.items[TENANT] = TenantPolicy(
        tenant=TENANT, policy=AuthenticityPolicy(near_copy_action="flag"), version=1)
    first, second = await world.prepare("amb-1"), await world.prepare("amb-2", text=PARROT)
    await world.sharing.confirm(principal("amb-1"), first.id, None, NOW)
    confirmed = await world.sharing.confirm(principal("amb-2"), second.id, None, NOW)
    assert confirmed.personalized is False and confirmed.similarity_to_colleagues > 0.4
    [event] = world.repositories.shares.events[second.id]
    assert event.data["personalized"] is False and event.data["similarity_to_colleagues"] > 0.4


async def test_my_own_posts_of_one_content_on_two_networks_are_not_compared(world):
    world.opt_in("amb-1")
    me = principal("amb-1").subject_key
    profile = world.repositories.ambassadors.items[(TENANT, me)].profile
    world.repositories.ambassadors.items[(TENANT, me)].profile = profile.model_copy(update={"networks": [
        *profile.networks, NetworkPresence(network="x", audience_size=100)]})
    linkedin = await world.prepare("amb-1", text=OWN[:250])
    x = await world.sharing.prepare(principal("amb-1"), PrepareShare(content_id="c1", network="x", text=OWN[:250]),
                                    None, NOW)
    await world.sharing.confirm(principal("amb-1"), linkedin.id, None, NOW)
    confirmed = await world.sharing.confirm(principal("amb-1"), x.id, None, NOW)
    assert confirmed.personalized and confirmed.similarity_to_colleagues == 0.0


async def test_shares_confirmed_before_the_books_existed_are_entered_once_at_start(world):
    prepared = await world.prepare("amb-1")
    shares = world.repositories.shares
    shares.items[prepared.id] = prepared.model_copy(update={"status": ShareStatus.CONFIRMED, "confirmed_at": NOW})
    assert await world.sharing.fill_books() == 1
    assert await world.sharing.fill_books() == 0  # nothing left: a restart does nothing
    assert [e.share_id for e in (await world.repositories.books.read(TENANT, "c1")).entries] == [prepared.id]
    with pytest.raises(Refusal) as refused:  # a colleague's copy of it is a near-copy again
        await world.prepare("amb-2", text=PARROT)
    assert refused.value.rule == "too_similar_to_colleagues"


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
    me = principal("amb-1").subject_key
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
        await shares.anonymise(TENANT, principal("amb-1").subject_key, "erased")

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


async def test_a_link_resolved_without_counting_records_no_click(world):
    share = await world.prepare()
    counted = await world.tracking.follow(share.tracked_link_code, "203.0.113.7", BROWSER, NOW)
    probed = await world.tracking.follow(share.tracked_link_code, "203.0.113.9", BROWSER, NOW, count=False)
    assert probed == counted
    assert len(world.repositories.clicks.items) == 1 and len(world.repositories.clicks.all_events) == 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1e-6  # every reading later than the one before, as a process clock's
        return self.now


async def test_redirect_keeps_a_link_while_its_tenant_version_stays(world):
    share = await world.prepare()
    code, links = share.tracked_link_code, world.repositories.links
    clock = world.tracking.versions.clock = Clock()
    period = OPTIONS.link_cache_seconds
    for _ in range(5):
        await world.tracking.follow(code, "203.0.113.7", BROWSER, NOW)
    # The tenant's first link is read again once its version is checked (no tag older than the read yet).
    assert links.reads == 2
    clock.now += period * 10  # checked again and again: the version stays, so does the link
    for _ in range(3):
        clock.now += period
        await world.tracking.follow(code, "203.0.113.7", BROWSER, NOW)
    assert links.reads == 2
    assert world.repositories.clicks.all_events[-1].data["share_id"] is None

    assert await links.claim(share.tenant, code, share.id)  # moves the tenant's link count on
    await world.tracking.follow(code, "203.0.113.7", BROWSER, NOW)
    assert links.reads == 2  # within the check period: the confirmation is not seen yet
    clock.now += period
    await world.tracking.follow(code, "203.0.113.7", BROWSER, NOW)
    assert links.reads == 3 and world.repositories.clicks.all_events[-1].data["share_id"] == share.id

    await links.anonymise(share.tenant, share.ambassador_id, ERASED)  # an erasure: its id leaves the events
    clock.now += period
    await world.tracking.follow(code, "203.0.113.7", BROWSER, NOW)
    assert world.repositories.clicks.all_events[-1].data["ambassador_id"] == ERASED

    uncached = Tracking(world.repositories, Options(**{**vars(OPTIONS), "link_cache_seconds": 0}))
    await uncached.follow(code, "203.0.113.7", BROWSER, NOW)
    await uncached.follow(code, "203.0.113.7", BROWSER, NOW)
    assert links.reads == 6
    assert await world.tracking.follow("unknown", "203.0.113.7", BROWSER, NOW) is None
    assert "unknown" not in world.tracking.destinations  # an unknown code may be created any moment


async def test_redirect_reads_a_content_url_again_once_the_tenants_contents_changed(world):
    share = await world.prepare()
    code, contents = share.tracked_link_code, world.repositories.contents
    clock = world.tracking.versions.clock = Clock()
    before = await world.tracking.follow(code, "203.0.113.7", BROWSER, NOW)
    await world.tracking.follow(code, "203.0.113.7", BROWSER, NOW)  # tagged now
    content = await contents.get(share.tenant, share.content_id)
    contents.items[(share.tenant, share.content_id)] = content.model_copy(update={
        "version": content.version + 1, "link_url": "https://example.com/moved"})
    contents._changed(share.tenant)  # what the projection's write does
    assert await world.tracking.follow(code, "203.0.113.7", BROWSER, NOW) == before
    clock.now += OPTIONS.link_cache_seconds
    after = await world.tracking.follow(code, "203.0.113.7", BROWSER, NOW)
    assert after != before and after.startswith("https://example.com/moved")


async def test_a_link_read_while_its_tenant_is_checked_is_not_tagged_with_that_check(world):
    """A check that ends after a link's read began may have read a count moved after that read: the link
    is read again at its next use, not kept under a version newer than itself."""
    share = await world.prepare()
    code, links = share.tracked_link_code, world.repositories.links
    world.tracking.versions.clock = Clock()
    by_code = links.by_code

    async def read_during_a_check(code_: str):
        link = await by_code(code_)
        await world.tracking.versions.current(share.tenant)  # a check of another request, meanwhile
        return link
    links.by_code = read_during_a_check
    await world.tracking.follow(code, "203.0.113.7", BROWSER, NOW)
    assert world.tracking.destinations[code].version is None
    links.by_code = by_code
    await world.tracking.follow(code, "203.0.113.7", BROWSER, NOW)
    assert world.tracking.destinations[code].version == (0, await world.repositories.contents.changes(share.tenant))


# --- connectors and their reports ------------------------------------------------------------------------

async def _connector(world):
    admin = principal("admin-1", "admin")
    return await world.engagement.register_connector(admin, NewConnector(name="linkedin-sync"), "conn-1", NOW)


def _report(**fields) -> bytes:
    return json.dumps({"id": "li-1", "kind": "impression", "count": 1200, "occurred_at": "2026-03-10T12:00:00Z",
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
    await world.sharing.confirm(principal("amb-1"), share.id, None, NOW)
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
    with pytest.raises(Implausible) as unknown:
        await world.engagement.ingest_report(integrator, connector.id, EngagementReport, body,
                                             sign(connector.secret, int(NOW.timestamp()), body), NOW)
    assert (unknown.value.reason, unknown.value.field) == ("unknown_post", "share_id")
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


# --- identity: erasure, then the same login provisioned again ---------------------------------------

NEW_TEXT = ("Our Lyon colleagues switched the whole site to wind and solar. I joined the team in May and "
            "seeing the meters today was something else.")

async def test_a_login_provisioned_again_after_an_erasure_shares_afresh_and_exports_nothing_of_the_old(world):
    from advocacy_common.consuming import Delivery
    from advocacy_common.envelope import Envelope, utcnow
    from advocacy_common.events import AmbassadorErased, AmbassadorOptedIn, GdprExportRequested
    from distribution.handlers import PROJECTION_HANDLERS

    async def handle(event, offset):
        envelope = Envelope(source="/ambassador", type=event.type_name, tenantid=TENANT)
        await PROJECTION_HANDLERS[type(event)](world.repositories, Delivery(envelope, event, event.topic, 0, offset))

    old = principal("amb-1").subject_key
    first = await world.prepare(key="k-old")
    await world.sharing.confirm(principal("amb-1"), first.id, "https://li/old", NOW)
    await handle(AmbassadorErased(ambassador_id=old, erased_at=NOW), 1)
    with pytest.raises(Refusal) as refused:
        await world.prepare(key="k-erased")
    assert refused.value.rule == "erased"

    profile = world.repositories.ambassadors.items[(TENANT, principal("amb-2").subject_key)].profile
    await handle(AmbassadorOptedIn(ambassador_id="new-amb-1", subject_key=old, charter_version=1,
                                   opted_in_at=NOW + timedelta(hours=1), profile=profile), 2)
    # Not already_shared: a link of their own. (The erased share's text still counts as a colleague's post:
    # the post is still out there, anonymously; so the newcomer writes their own.)
    second = await world.prepare(key="k-new", text=NEW_TEXT)
    assert second.ambassador_id == "new-amb-1" and second.tracked_link_code != first.tracked_link_code
    confirmed = await world.sharing.confirm(principal("amb-1"), second.id, "https://li/new", NOW)
    assert confirmed.status is ShareStatus.CONFIRMED
    assert [s.id for s in (await world.sharing.mine(principal("amb-1"), None, 10)).items] == [second.id]
    await world.tracking.record_click(await world.repositories.links.by_code(second.tracked_link_code),
                                      "203.0.113.9", BROWSER, NOW)

    for export_id, person in (("x-old", old), ("x-new", "new-amb-1")):
        await handle(GdprExportRequested(export_id=export_id, ambassador_id=person, requested_at=utcnow()), 3)
    exports = world.repositories.exports
    assert exports.records(TENANT, "x-old") == {"ambassador": [], "shares": [], "tracked_links": []}
    new = exports.records(TENANT, "x-new")
    assert [(s["id"], s["text"], s["post_url"]) for s in new["shares"]] == [(second.id, NEW_TEXT, "https://li/new")]
    assert [(link["code"], link["unique_visitors"]) for link in new["tracked_links"]] == [(second.tracked_link_code, 1)]
    assert new["ambassador"][0]["ambassador_id"] == "new-amb-1"
