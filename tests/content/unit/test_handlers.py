"""The ambassador event handlers on the fakes: each event's effect on the projection, erasure anonymises."""

from __future__ import annotations

from datetime import timedelta

import pytest
from content_fakes import NOW

from advocacy_common.auth import Principal
from advocacy_common.consuming import Delivery
from advocacy_common.envelope import Envelope
from advocacy_common.events import (
    AmbassadorErased, AmbassadorOptedIn, AmbassadorOptedOut, AmbassadorProfile, AmbassadorProfileUpdated, Persona,
)
from content.handlers import build_handlers
from content.models import TargetingProfile
from content.schemas import CampaignIn, ContentIn

pytestmark = pytest.mark.unit
TENANT = "acme"
PROFILE = AmbassadorProfile(persona=Persona.EXPERT, team_id="R&D", location="Paris", languages=["en"],
                            topics=["ai"])


def delivered(event, offset: int) -> Delivery:
    envelope = Envelope(source="/ambassador", type=event.type_name, tenantid=TENANT)
    return Delivery(envelope, event, event.topic, 0, offset)


@pytest.fixture
def handle(store, service):
    handlers = build_handlers(store.ambassadors, service)

    async def handle(event, offset: int) -> None:
        await handlers[type(event)](delivered(event, offset))

    return handle


async def test_each_event_sets_what_the_projection_knows(handle, store):
    await handle(AmbassadorProfileUpdated(ambassador_id="a-1", updated_at=NOW, profile=PROFILE), 1)
    assert (await store.ambassadors.get(TENANT, "a-1")).opted_in is False
    await handle(AmbassadorOptedIn(ambassador_id="a-1", charter_version=1, opted_in_at=NOW, profile=PROFILE), 2)
    projected = await store.ambassadors.get(TENANT, "a-1")
    assert projected.opted_in and projected.profile == TargetingProfile(
        persona="expert", team_id="R&D", location="Paris", languages=["en"], topics=["ai"])
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
