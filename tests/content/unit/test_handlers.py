"""The ambassador event handlers on the fakes: each event's effect on the projection, erasure anonymises."""

from __future__ import annotations

from datetime import timedelta

import pytest
from content_fakes import NOW

from advocacy_common.auth import Principal
from advocacy_common.consuming import Delivery
from advocacy_common.envelope import Envelope
from advocacy_common.events import (
    AmbassadorErased, AmbassadorOptedIn, AmbassadorOptedOut, AmbassadorProfile, AmbassadorProfileUpdated,
    GdprExportRequested, NetworkPresence, Persona,
)
from advocacy_testkit import FakeExportParts
from content.handlers import build_handlers
from content.models import TargetingProfile
from content.schemas import CampaignIn, ContentIn

pytestmark = pytest.mark.unit
TENANT = "acme"
PROFILE = AmbassadorProfile(persona=Persona.EXPERT, team_id="R&D", location="Paris", languages=["en"],
                            topics=["ai"], networks=[NetworkPresence(network="linkedin", audience_size=120)])


def delivered(event, offset: int) -> Delivery:
    envelope = Envelope(source="/ambassador", type=event.type_name, tenantid=TENANT)
    return Delivery(envelope, event, event.topic, 0, offset)


@pytest.fixture
def export_parts():
    return FakeExportParts()


@pytest.fixture
def handle(store, service, export_parts):
    handlers = build_handlers(store.ambassadors, service, export_parts)

    async def handle(event, offset: int) -> None:
        await handlers[type(event)](delivered(event, offset))

    return handle


async def test_each_event_sets_what_the_projection_knows(handle, store):
    await handle(AmbassadorProfileUpdated(ambassador_id="a-1", updated_at=NOW, profile=PROFILE), 1)
    assert (await store.ambassadors.get(TENANT, "a-1")).opted_in is False
    await handle(AmbassadorOptedIn(ambassador_id="a-1", charter_version=1, opted_in_at=NOW, profile=PROFILE), 2)
    projected = await store.ambassadors.get(TENANT, "a-1")
    assert projected.opted_in and projected.profile == TargetingProfile(
        persona="expert", team_id="R&D", location="Paris", languages=["en"], topics=["ai"], networks=["linkedin"])
    await handle(AmbassadorOptedOut(ambassador_id="a-1", opted_out_at=NOW), 3)
    assert (await store.ambassadors.get(TENANT, "a-1")).model_dump(include={"opted_in", "profile"}) == \
        {"opted_in": False, "profile": None}


async def test_erasure_leaves_a_tombstone_and_anonymises_the_proposals(handle, store, service):
    proposer = Principal(subject="ann", tenant=TENANT, roles=frozenset({"ambassador"}), claims={})
    editor = Principal(subject="ed", tenant=TENANT, roles=frozenset({"editor"}), claims={})
    opted_in = AmbassadorOptedIn(ambassador_id=proposer.subject_key, charter_version=1, opted_in_at=NOW,
                                 profile=PROFILE)
    await handle(opted_in, 1)
    campaign, _ = await service.create_campaign(editor, CampaignIn(
        name="C", objective="leads", starts_on=NOW.date(), ends_on=NOW.date() + timedelta(days=9)), None)
    proposal, _ = await service.propose(proposer, ContentIn(
        campaign_id=campaign.id, title="T", link_url="https://example.com", language="en", networks=["x"]), None)

    await handle(AmbassadorErased(ambassador_id=proposer.subject_key, erased_at=NOW), 2)
    await handle(opted_in, 3)  # replayed behind the erasure
    tombstone = await store.ambassadors.get(TENANT, proposer.subject_key)
    assert (tombstone.erased, tombstone.opted_in, tombstone.profile) == (True, False, None)
    stored = await service.get_item(TENANT, proposal.id)
    assert stored.proposed_by == stored.created_by == "erased" and proposer.subject_key not in str(stored)


async def test_a_login_provisioned_again_after_an_erasure_is_a_new_ambassador_with_nothing_of_the_old(
        handle, store, service, export_parts):
    ann = Principal(subject="ann", tenant=TENANT, roles=frozenset({"ambassador"}), claims={})
    editor = Principal(subject="ed", tenant=TENANT, roles=frozenset({"editor"}), claims={})
    campaign, _ = await service.create_campaign(editor, CampaignIn(
        name="C", objective="leads", starts_on=NOW.date(), ends_on=NOW.date() + timedelta(days=9)), None)
    proposal = ContentIn(campaign_id=campaign.id, title="T", link_url="https://example.com", language="en",
                         networks=["x"])
    await handle(AmbassadorOptedIn(ambassador_id=ann.subject_key, charter_version=1, opted_in_at=NOW,
                                   profile=PROFILE), 1)
    first, _ = await service.propose(ann, proposal, None)
    await handle(AmbassadorErased(ambassador_id=ann.subject_key, erased_at=NOW), 2)
    with pytest.raises(Exception, match="opted in"):
        await service.propose(ann, proposal, "again")  # the erased holder of the login

    # The same login, provisioned again: a new id, whose opt-in names the login's subject key.
    await handle(AmbassadorOptedIn(ambassador_id="new-ann", subject_key=ann.subject_key, charter_version=1,
                                   opted_in_at=NOW + timedelta(hours=1), profile=PROFILE), 3)
    # The erased person's opt-in, replayed from another partition after the new one, does not take it back.
    await handle(AmbassadorOptedIn(ambassador_id=ann.subject_key, charter_version=1, opted_in_at=NOW,
                                   profile=PROFILE), 4)
    second, _ = await service.propose(ann, proposal, "again")
    assert second.proposed_by == "new-ann" and (await service.get_item(TENANT, first.id)).proposed_by == "erased"

    for export_id, person in (("x-old", ann.subject_key), ("x-new", "new-ann")):
        await handle(GdprExportRequested(export_id=export_id, ambassador_id=person, requested_at=service.now()), 5)
    assert export_parts.records(TENANT, "x-old") == {"ambassador": [], "content_items": []}
    new = export_parts.records(TENANT, "x-new")
    assert [a["ambassador_id"] for a in new["ambassador"]] == ["new-ann"]
    assert [item["id"] for item in new["content_items"]] == [second.id]


async def test_an_export_request_older_than_a_day_is_not_answered(handle, service, export_parts):
    await handle(GdprExportRequested(export_id="x-stale", ambassador_id="a-1",
                                     requested_at=service.now() - timedelta(days=2)), 1)
    assert export_parts.pages == {}
