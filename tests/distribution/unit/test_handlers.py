"""The event handlers on the shared fakes: newest version wins, redelivery changes nothing, erasure sticks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count

import pytest

from advocacy_common.consuming import Delivery
from advocacy_common.events import (
    AmbassadorErased, AmbassadorOptedIn, AmbassadorOptedOut, AmbassadorProfile, CharterAccepted, CharterPublished,
    ContentPublished, ContentRetired, ContentUpdated, EngagementReceived, Event, Objective,
)
from advocacy_common.publishing import envelope_for
from distribution.handlers import ENGAGEMENT_HANDLERS, PROJECTION_HANDLERS
from distribution.models.projections import AmbassadorStatus
from distribution.models.sharing import Share, TrackedLink

from distribution_fakes import fake_repositories

pytestmark = pytest.mark.unit
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
TENANT = "acme"
OFFSETS = count()


def delivered(event: Event, offset: int | None = None) -> Delivery:
    envelope = envelope_for(event, tenant_id=TENANT, source="/tests")
    return Delivery(envelope, event, event.topic, 0, next(OFFSETS) if offset is None else offset)


async def handle(repositories, delivery: Delivery) -> None:
    handlers = {**PROJECTION_HANDLERS, **ENGAGEMENT_HANDLERS}
    await handlers[type(delivery.event)](repositories, delivery)


def content(version: int, title: str, cls=ContentPublished) -> Event:
    return cls(content_id="c1", version=version, campaign_id="camp", objective=Objective.AWARENESS, title=title,
               link_url="https://acme.com", suggested_texts={}, topics=[], language="en", networks=["linkedin"],
               publish_at=NOW - timedelta(hours=1))


def opted_in(charter_version: int = 1) -> AmbassadorOptedIn:
    return AmbassadorOptedIn(ambassador_id="a1", charter_version=charter_version, opted_in_at=NOW,
                             profile=AmbassadorProfile(persona="expert"))


async def test_the_newest_content_version_wins_and_redelivery_changes_nothing():
    repositories = fake_repositories()
    await handle(repositories, delivered(content(3, "v3", ContentUpdated)))
    await handle(repositories, delivered(content(2, "late v2")))
    assert (await repositories.contents.get(TENANT, "c1")).title == "v3"
    retired = delivered(ContentRetired(content_id="c1", version=4, campaign_id="camp", reason="expired",
                                       retired_at=NOW))
    await handle(repositories, retired)
    await handle(repositories, delivered(content(5, "v5"), offset=retired.offset))  # same offset: a redelivery
    stored = await repositories.contents.get(TENANT, "c1")
    assert (stored.version, stored.retired) == (4, True)
    assert await repositories.contents.list_unretired(TENANT) == []


async def test_charter_acceptance_and_opt_in_apply_in_any_order():
    repositories = fake_repositories()
    await handle(repositories, delivered(CharterPublished(charter_id="ch", version=2, published_at=NOW)))
    await handle(repositories, delivered(CharterAccepted(ambassador_id="a1", charter_version=2, accepted_at=NOW)))
    await handle(repositories, delivered(opted_in(charter_version=1)))
    ambassador = await repositories.ambassadors.get(TENANT, "a1")
    assert (ambassador.status, ambassador.accepted_charter_version) == (AmbassadorStatus.OPTED_IN, 2)
    assert (await repositories.charters.current(TENANT)).current_version == 2
    await handle(repositories, delivered(CharterPublished(charter_id="ch", version=1, published_at=NOW)))
    assert (await repositories.charters.current(TENANT)).current_version == 2


async def test_erasure_drops_the_person_everywhere_and_later_events_do_not_bring_them_back():
    repositories = fake_repositories()
    await handle(repositories, delivered(opted_in()))
    await repositories.links.ensure(TrackedLink(code="code1", tenant=TENANT, ambassador_id="a1", content_id="c1",
                                                network="linkedin"))
    await repositories.shares.add_prepared(Share(
        id="s1", tenant=TENANT, ambassador_id="a1", content_id="c1", campaign_id="camp", network="linkedin",
        text="my words", tracked_link_code="code1", tracked_link="https://go/r/code1", share_intent_url=None,
        recommended_at=NOW, similarity_to_suggested=0.1, similarity_to_colleagues=0.0, personalized=True,
        post_url="https://li/p/1", created_at=NOW), "fp")
    await handle(repositories, delivered(AmbassadorErased(ambassador_id="a1", erased_at=NOW)))
    await handle(repositories, delivered(AmbassadorOptedOut(ambassador_id="a1", opted_out_at=NOW)))
    ambassador = await repositories.ambassadors.get(TENANT, "a1")
    assert (ambassador.status, ambassador.profile) == (AmbassadorStatus.ERASED, None)
    share = await repositories.shares.get(TENANT, "s1")
    assert (share.ambassador_id, share.text, share.post_url) == ("erased", None, None)
    assert (await repositories.links.by_code("code1")).ambassador_id == "erased"
    comment = EngagementReceived(engagement_id="e1", kind="comment", count=2, share_id="s1", content_id="c1",
                                 ambassador_id="a1", network="linkedin", occurred_at=NOW, source="li",
                                 source_event_id="r1")
    await handle(repositories, delivered(comment))
    # A replay keeps the person out.
    assert (await repositories.comments.awaiting_reply(TENANT, "a1", None, 10)).items == []
    [tally] = (await repositories.comments.awaiting_reply(TENANT, "erased", None, 10)).items
    assert tally.awaiting == 2


async def test_comment_tallies_count_each_report_once():
    repositories = fake_repositories()

    def report(kind: str, n: int) -> EngagementReceived:
        return EngagementReceived(engagement_id=f"e-{kind}", kind=kind, count=n, share_id="s1", content_id="c1",
                                  ambassador_id="a1", network="linkedin", occurred_at=NOW, source="li",
                                  source_event_id=kind)

    comments = delivered(report("comment", 3))
    await handle(repositories, comments)
    await handle(repositories, comments)  # redelivered
    await handle(repositories, delivered(report("comment_reply", 1)))
    await handle(repositories, delivered(report("impression", 500)))  # not a comment: no tally
    [tally] = (await repositories.comments.awaiting_reply(TENANT, "a1", None, 10)).items
    assert (tally.comments, tally.replies, tally.awaiting) == (3, 1, 2)
