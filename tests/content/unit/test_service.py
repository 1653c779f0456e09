"""The service layer and the scheduler on the in-memory fakes of its ports (no I/O)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from content_fakes import NOW, Fakes

from advocacy_common.auth import Principal, ambassador_id_for
from advocacy_common.errors import Problem
from advocacy_common.repository import KeyReused
from content.models import Action, ContentItem, FourEyesViolation, InvalidTransition, KeyUsedForAnotherAction
from content.schemas import CampaignIn, CampaignPatch, ContentIn, ContentPatch
from content.service import ContentService

pytestmark = pytest.mark.unit
TENANT = "acme"


def person(subject: str, *roles: str) -> Principal:
    return Principal(subject=subject, tenant=TENANT, roles=frozenset(roles), claims={})


EDITOR, REVIEWER = person("ed", "editor"), person("rev", "reviewer")


async def campaign_of(service: ContentService, **overrides):
    body = CampaignIn(name="C", objective="leads", starts_on=NOW.date() - timedelta(days=30),
                      ends_on=NOW.date() + timedelta(days=30), disclosure_line="#Acme", **overrides)
    return (await service.create_campaign(EDITOR, body, None))[0]


def content_in(campaign_id: str, **overrides) -> ContentIn:
    fields = {"campaign_id": campaign_id, "title": "T", "link_url": "https://example.com", "language": "en",
              "networks": ["linkedin"], "suggested_texts": {"linkedin": "Hi #Acme"},
              "publish_at": NOW + timedelta(hours=1), **overrides}
    return ContentIn(**fields)


async def approved(service: ContentService, campaign_id: str, **overrides) -> ContentItem:
    item, _ = await service.create_item(EDITOR, content_in(campaign_id, **overrides), None)
    item = await service.act(EDITOR, item, Action.SUBMIT)
    return await service.act(REVIEWER, item, Action.APPROVE)


def outbox_types(store: Fakes, item_id: str) -> list[str]:
    return store.items.event_types(item_id)


async def test_scheduler_publishes_due_items_with_their_snapshot(service, store, clock):
    campaign = await campaign_of(service)
    due = await approved(service, campaign.id)
    later = await approved(service, campaign.id, publish_at=NOW + timedelta(hours=5))
    assert await service.publish_due(clock(), 100) == 0
    clock.now = NOW + timedelta(hours=2)
    assert await service.publish_due(clock(), 100) == 1
    published = store.items.entities[due.id]
    assert published.status == "published" and published.version == due.version + 1
    [(topic, envelope)] = store.items.events[due.id]
    assert topic == "advocacy.content" and envelope.subject == due.id
    assert envelope.data["objective"] == "leads" and envelope.data["disclosure_line"] == "#Acme"
    assert envelope.data["version"] == published.version
    assert store.items.entities[later.id].status == "approved"
    assert store.items.hinted == [due.id]  # the relay is pointed at it, no scan needed
    assert await service.publish_due(clock(), 100) == 0  # nothing publishes twice


async def test_items_expired_before_publication_retire_silently(service, store, clock):
    campaign = await campaign_of(service)
    item = await approved(service, campaign.id, expires_at=NOW + timedelta(hours=2))
    clock.now = NOW + timedelta(hours=3)
    assert await service.publish_due(clock(), 100) == 1
    assert store.items.entities[item.id].status == "retired"
    assert store.items.entities[item.id].retired_reason == "expired"
    assert outbox_types(store, item.id) == []


async def test_published_items_retire_at_expiry(service, store, clock):
    campaign = await campaign_of(service)
    item = await approved(service, campaign.id, expires_at=NOW + timedelta(hours=2))
    clock.now = NOW + timedelta(hours=1, minutes=30)
    await service.publish_due(clock(), 100)
    assert await service.retire_due(clock(), 100) == 0
    clock.now = NOW + timedelta(hours=2)
    assert await service.retire_due(clock(), 100) == 1
    assert outbox_types(store, item.id) == ["content.published.v1", "content.retired.v1"]
    assert store.items.events[item.id][1][1].data["reason"] == "expired"


async def test_four_eyes_follows_the_tenant_setting(service, store):
    campaign = await campaign_of(service)
    both = person("ann", "editor", "reviewer")
    item, _ = await service.create_item(both, content_in(campaign.id), None)
    item = await service.act(both, item, Action.SUBMIT)
    with pytest.raises(FourEyesViolation):
        await service.act(both, item, Action.APPROVE)
    # Someone who only edited the item counts as an author too.
    edited = await service.edit_item(person("bob", "editor", "reviewer"), item, ContentPatch(title="T2"))
    with pytest.raises(FourEyesViolation):
        await service.act(person("bob", "reviewer"), edited, Action.APPROVE)
    await service.save_tenant_settings(await service.get_tenant_settings(TENANT), four_eyes=False)
    assert (await service.act(both, edited, Action.APPROVE)).status == "approved"


async def test_edits_and_withdrawals_emit_only_for_published_items(service, store, clock):
    campaign = await campaign_of(service)
    item = await approved(service, campaign.id)
    back = await service.edit_item(EDITOR, item, ContentPatch(title="New"))
    assert back.status == "in_review" and outbox_types(store, item.id) == []
    other = await approved(service, campaign.id)
    clock.now = NOW + timedelta(hours=2)
    await service.publish_due(clock(), 100)
    published = await service.get_item(TENANT, other.id)
    updated = await service.edit_item(EDITOR, published, ContentPatch(title="Newer"))
    assert updated.status == "published"
    withdrawn = await service.act(EDITOR, updated, Action.WITHDRAW, comment="stop")
    assert withdrawn.retired_reason == "withdrawn"
    assert outbox_types(store, other.id) == ["content.published.v1", "content.updated.v1", "content.retired.v1"]
    assert [envelope.data["version"] for _, envelope in store.items.events[other.id]] == \
        [published.version, updated.version, withdrawn.version]
    with pytest.raises(InvalidTransition):
        await service.edit_item(EDITOR, withdrawn, ContentPatch(title="Too late"))
    quiet = await service.act(EDITOR, back, Action.WITHDRAW)
    assert quiet.status == "retired" and outbox_types(store, item.id) == []


async def test_action_replays_and_key_reuse(service):
    campaign = await campaign_of(service)
    item, _ = await service.create_item(EDITOR, content_in(campaign.id), None)
    submitted = await service.act(EDITOR, item, Action.SUBMIT, key="k1")
    assert await service.act(EDITOR, submitted, Action.SUBMIT, key="k1") == submitted
    with pytest.raises(KeyUsedForAnotherAction):
        await service.act(EDITOR, submitted, Action.WITHDRAW, key="k1")
    again, created = await service.create_item(EDITOR, content_in(campaign.id), "same")
    replay, replay_created = await service.create_item(EDITOR, content_in(campaign.id), "same")
    assert created and not replay_created and replay.id == again.id
    with pytest.raises(KeyReused):
        await service.create_item(EDITOR, content_in(campaign.id, title="Other"), "same")


async def test_campaign_change_reannounces_published_items_once(service, store, clock):
    campaign = await campaign_of(service)
    item = await approved(service, campaign.id)
    draft, _ = await service.create_item(EDITOR, content_in(campaign.id), None)
    clock.now = NOW + timedelta(hours=2)
    await service.publish_due(clock(), 100)
    campaign = await service.update_campaign(EDITOR, campaign, CampaignPatch(disclosure_line="#AcmeLife"))
    assert campaign.refresh_published is True
    assert await service.refresh_campaign_snapshots(clock(), 100) == 1
    assert await service.refresh_campaign_snapshots(clock(), 100) == 0
    [_, (_, update)] = store.items.events[item.id]
    assert update.type == "content.updated.v1"
    assert update.data["disclosure_line"] == "#AcmeLife"
    assert outbox_types(store, draft.id) == []
    # Clearing the flag is the worker's bookkeeping: the campaign's version (its ETag) stays.
    assert (await service.get_campaign(TENANT, campaign.id)).version == campaign.version
    renamed = await service.update_campaign(EDITOR, await service.get_campaign(TENANT, campaign.id),
                                            CampaignPatch(name="Renamed"))
    assert renamed.refresh_published is False


async def test_erasure_anonymises_every_trace_of_the_person(service, store):
    campaign = await campaign_of(service)
    amb = ambassador_id_for(TENANT, "amb")
    store.ambassadors.put(TENANT, amb, opted_in=True, profile={"persona": "expert"})
    proposal, _ = await service.propose(person("amb", "ambassador"), content_in(campaign.id), None)
    assert proposal.status == "in_review" and proposal.proposed_by == amb
    assert await service.anonymise_person(TENANT, amb) == 1
    stored = store.items.entities[proposal.id]
    assert stored.proposed_by == stored.created_by == "erased" and stored.authors == ["erased"]
    assert {entry.by for entry in stored.history} == {"erased"}
    assert await service.anonymise_person(TENANT, amb) == 0


async def test_an_item_that_cannot_publish_does_not_hold_back_the_others(service, store, clock):
    broken_campaign = await campaign_of(service)
    good_campaign = await campaign_of(service)
    broken = await approved(service, broken_campaign.id, publish_at=NOW + timedelta(minutes=1))
    good = await approved(service, good_campaign.id, publish_at=NOW + timedelta(minutes=2))
    del store.campaigns.entities[broken_campaign.id]  # a damaged reference
    clock.now = NOW + timedelta(hours=1)
    assert await service.publish_due(clock(), 100) == 1
    assert store.items.entities[good.id].status == "published"
    assert store.items.entities[broken.id].status == "approved"


async def test_an_ambassador_is_known_by_the_id_their_login_implies(service, store):
    campaign = await campaign_of(service)
    amb = ambassador_id_for(TENANT, "alice@corp.example")
    store.ambassadors.put(TENANT, amb, opted_in=True, profile={})
    login = person("Alice@Corp.example", "ambassador")  # the login's case does not matter
    proposal, _ = await service.propose(login, content_in(campaign.id), None)
    assert proposal.proposed_by == proposal.created_by == amb and proposal.authors == [amb]
    assert "alice@corp.example" not in str(proposal).lower()
    # An entry under the bare login is not theirs (ambassador events never carry the login).
    store.ambassadors.put(TENANT, "bob", opted_in=True, profile={})
    with pytest.raises(Problem) as refused:
        await service.propose(person("bob", "ambassador"), content_in(campaign.id), None)
    assert refused.value.status == 403


async def test_a_proposer_cannot_approve_their_own_proposal(service, store):
    campaign = await campaign_of(service)
    amb = ambassador_id_for(TENANT, "ann")
    store.ambassadors.put(TENANT, amb, opted_in=True, profile={})
    ann = person("ann", "ambassador", "reviewer")
    proposal, _ = await service.propose(ann, content_in(campaign.id), None)
    with pytest.raises(FourEyesViolation):
        await service.act(ann, proposal, Action.APPROVE)
    assert (await service.act(REVIEWER, proposal, Action.APPROVE)).status == "approved"
