"""The service layer and the scheduler on an in-memory fake of the store (no I/O)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from advocacy_common.auth import Principal, ambassador_id_for
from advocacy_common.errors import Problem
from advocacy_common.outbox import OUTBOX_FIELD, without_outbox
from content.models import Action, FourEyesViolation, InvalidTransition
from content.schemas import CampaignIn, CampaignPatch, ContentIn, ContentPatch
from content.service import ContentService
from content.store import KeyReused

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
TENANT = "acme"


class FakeCollection:
    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}

    def matching(self, predicate) -> list[dict]:
        return [without_outbox(copy.deepcopy(doc)) for doc in self.docs.values() if predicate(doc)]


def apply_update(document: dict, update: dict) -> None:
    for name, value in update.get("$set", {}).items():
        document[name] = copy.deepcopy(value)
    for name, value in update.get("$inc", {}).items():
        document[name] = document.get(name, 0) + value
    for name, value in update.get("$push", {}).items():
        document.setdefault(name, []).extend(copy.deepcopy(value["$each"] if isinstance(value, dict) and "$each"
                                                           in value else [value]))


class FakeStore:
    """The store's interface on dicts, with the same version/status guard."""

    def __init__(self) -> None:
        self.campaigns, self.items = FakeCollection(), FakeCollection()
        self.ambassadors: dict[str, dict] = {}
        self.settings: dict[str, dict] = {}
        self.notified: list[str] = []

    async def insert_idempotent(self, collection: FakeCollection, document: dict) -> tuple[dict, bool]:
        existing = collection.docs.get(document["_id"])
        if existing is not None:
            if existing["request_fingerprint"] != document["request_fingerprint"]:
                raise KeyReused
            return without_outbox(copy.deepcopy(existing)), False
        collection.docs[document["_id"]] = copy.deepcopy(document)
        return without_outbox(copy.deepcopy(document)), True

    async def update_guarded(self, collection: FakeCollection, document: dict, update: dict) -> dict | None:
        current = collection.docs.get(document["_id"])
        if current is None or current["version"] != document["version"] or \
                current.get("status") != document.get("status"):
            return None
        apply_update(current, update)
        return without_outbox(copy.deepcopy(current))

    async def get_campaign(self, tenant: str, campaign_id: str) -> dict | None:
        found = self.campaigns.matching(lambda d: d["_id"] == campaign_id and d["tenant"] == tenant)
        return found[0] if found else None

    async def get_item(self, tenant: str, item_id: str) -> dict | None:
        found = self.items.matching(lambda d: d["_id"] == item_id and d["tenant"] == tenant)
        return found[0] if found else None

    async def notify_relay(self, item_id: str) -> None:
        self.notified.append(item_id)

    async def get_tenant_settings(self, tenant: str) -> dict:
        return self.settings.get(tenant, {"_id": tenant, "tenant": tenant, "four_eyes": True, "version": 0})

    async def save_tenant_settings(self, current: dict, changes: dict) -> dict | None:
        if self.settings.get(current["tenant"], {}).get("version", 0) != current["version"]:
            return None
        self.settings[current["tenant"]] = {**current, **changes, "version": current["version"] + 1}
        return self.settings[current["tenant"]]

    async def get_ambassador(self, tenant: str, ambassador_id: str) -> dict | None:
        return self.ambassadors.get(f"{tenant}:{ambassador_id}")

    async def list_due_for_publication(self, now: datetime, limit: int) -> list[dict]:
        return self.items.matching(lambda d: d["status"] == "approved" and d["publish_at"] <= now)[:limit]

    async def list_due_for_retirement(self, now: datetime, limit: int) -> list[dict]:
        return self.items.matching(lambda d: d["status"] == "published" and d.get("expires_at") is not None
                                   and d["expires_at"] <= now)[:limit]

    async def list_campaigns_to_refresh(self, limit: int) -> list[dict]:
        return self.campaigns.matching(lambda d: d.get("refresh_published"))[:limit]

    async def list_published_behind(self, campaign: dict, limit: int) -> list[dict]:
        return self.items.matching(lambda d: d["campaign_id"] == campaign["_id"] and d["status"] == "published"
                                   and d.get("campaign_version", 0) < campaign["version"])[:limit]

    async def list_by_person(self, tenant: str, person: str) -> list[dict]:
        return self.items.matching(lambda d: d["tenant"] == tenant and person in d["authors"])


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def person(subject: str, *roles: str) -> Principal:
    return Principal(subject=subject, tenant=TENANT, roles=frozenset(roles), claims={})


EDITOR, REVIEWER = person("ed", "editor"), person("rev", "reviewer")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def service(store, clock) -> ContentService:
    return ContentService(store, clock)  # type: ignore[arg-type]


async def campaign_of(service: ContentService, **overrides) -> dict:
    body = CampaignIn(name="C", objective="leads", starts_on=NOW.date() - timedelta(days=30),
                      ends_on=NOW.date() + timedelta(days=30), disclosure_line="#Acme", **overrides)
    return (await service.create_campaign(EDITOR, body, None))[0]


def content_in(campaign_id: str, **overrides) -> ContentIn:
    fields = {"campaign_id": campaign_id, "title": "T", "link_url": "https://example.com", "language": "en",
              "networks": ["linkedin"], "suggested_texts": {"linkedin": "Hi #Acme"},
              "publish_at": NOW + timedelta(hours=1), **overrides}
    return ContentIn(**fields)


async def approved(service: ContentService, campaign_id: str, **overrides) -> dict:
    item, _ = await service.create_item(EDITOR, content_in(campaign_id, **overrides), None)
    item = await service.act(EDITOR, item, Action.SUBMIT)
    return await service.act(REVIEWER, item, Action.APPROVE)


def outbox_types(store: FakeStore, item_id: str) -> list[str]:
    return [entry["envelope"]["type"] for entry in store.items.docs[item_id].get(OUTBOX_FIELD, [])]


async def test_scheduler_publishes_due_items_with_their_snapshot(service, store, clock):
    campaign = await campaign_of(service)
    due = await approved(service, campaign["_id"])
    later = await approved(service, campaign["_id"], publish_at=NOW + timedelta(hours=5))
    assert await service.publish_due(clock(), 100) == 0
    clock.now = NOW + timedelta(hours=2)
    assert await service.publish_due(clock(), 100) == 1
    published = store.items.docs[due["_id"]]
    assert published["status"] == "published" and published["version"] == due["version"] + 1
    [entry] = published[OUTBOX_FIELD]
    assert entry["topic"] == "advocacy.content" and entry["envelope"]["subject"] == due["_id"]
    assert entry["envelope"]["data"]["objective"] == "leads" and entry["envelope"]["data"]["disclosure_line"] == "#Acme"
    assert store.items.docs[later["_id"]]["status"] == "approved"
    assert store.notified == [due["_id"]]  # the relay is pointed at it, no scan needed
    assert await service.publish_due(clock(), 100) == 0  # nothing publishes twice


async def test_items_expired_before_publication_retire_silently(service, store, clock):
    campaign = await campaign_of(service)
    item = await approved(service, campaign["_id"], expires_at=NOW + timedelta(hours=2))
    clock.now = NOW + timedelta(hours=3)
    assert await service.publish_due(clock(), 100) == 1
    assert store.items.docs[item["_id"]]["status"] == "retired"
    assert store.items.docs[item["_id"]]["retired_reason"] == "expired"
    assert outbox_types(store, item["_id"]) == []


async def test_published_items_retire_at_expiry(service, store, clock):
    campaign = await campaign_of(service)
    item = await approved(service, campaign["_id"], expires_at=NOW + timedelta(hours=2))
    clock.now = NOW + timedelta(hours=1, minutes=30)
    await service.publish_due(clock(), 100)
    assert await service.retire_due(clock(), 100) == 0
    clock.now = NOW + timedelta(hours=2)
    assert await service.retire_due(clock(), 100) == 1
    assert outbox_types(store, item["_id"]) == ["content.published.v1", "content.retired.v1"]
    assert store.items.docs[item["_id"]][OUTBOX_FIELD][1]["envelope"]["data"]["reason"] == "expired"


async def test_four_eyes_follows_the_tenant_setting(service, store):
    campaign = await campaign_of(service)
    both = person("ann", "editor", "reviewer")
    item, _ = await service.create_item(both, content_in(campaign["_id"]), None)
    item = await service.act(both, item, Action.SUBMIT)
    with pytest.raises(FourEyesViolation):
        await service.act(both, item, Action.APPROVE)
    # Someone who only edited the item counts as an author too.
    edited = await service.edit_item(person("bob", "editor", "reviewer"), item, ContentPatch(title="T2"))
    with pytest.raises(FourEyesViolation):
        await service.act(person("bob", "reviewer"), edited, Action.APPROVE)
    await service.save_tenant_settings(await store.get_tenant_settings(TENANT), {"four_eyes": False})
    assert (await service.act(both, edited, Action.APPROVE))["status"] == "approved"


async def test_edits_and_withdrawals_emit_only_for_published_items(service, store, clock):
    campaign = await campaign_of(service)
    item = await approved(service, campaign["_id"])
    back = await service.edit_item(EDITOR, item, ContentPatch(title="New"))
    assert back["status"] == "in_review" and outbox_types(store, item["_id"]) == []
    other = await approved(service, campaign["_id"])
    clock.now = NOW + timedelta(hours=2)
    await service.publish_due(clock(), 100)
    published = await service.get_item(TENANT, other["_id"])
    updated = await service.edit_item(EDITOR, published, ContentPatch(title="Newer"))
    assert updated["status"] == "published"
    withdrawn = await service.act(EDITOR, updated, Action.WITHDRAW, comment="stop")
    assert withdrawn["retired_reason"] == "withdrawn"
    assert outbox_types(store, other["_id"]) == ["content.published.v1", "content.updated.v1", "content.retired.v1"]
    with pytest.raises(InvalidTransition):
        await service.edit_item(EDITOR, withdrawn, ContentPatch(title="Too late"))
    quiet = await service.act(EDITOR, back, Action.WITHDRAW)
    assert quiet["status"] == "retired" and outbox_types(store, item["_id"]) == []


async def test_action_replays_and_key_reuse(service):
    campaign = await campaign_of(service)
    item, _ = await service.create_item(EDITOR, content_in(campaign["_id"]), None)
    submitted = await service.act(EDITOR, item, Action.SUBMIT, key="k1")
    assert await service.act(EDITOR, submitted, Action.SUBMIT, key="k1") == submitted
    with pytest.raises(KeyReused):
        await service.act(EDITOR, submitted, Action.WITHDRAW, key="k1")
    again, created = await service.create_item(EDITOR, content_in(campaign["_id"]), "same")
    replay, replay_created = await service.create_item(EDITOR, content_in(campaign["_id"]), "same")
    assert created and not replay_created and replay["_id"] == again["_id"]
    with pytest.raises(KeyReused):
        await service.create_item(EDITOR, content_in(campaign["_id"], title="Other"), "same")


async def test_campaign_change_reannounces_published_items_once(service, store, clock):
    campaign = await campaign_of(service)
    item = await approved(service, campaign["_id"])
    draft, _ = await service.create_item(EDITOR, content_in(campaign["_id"]), None)
    clock.now = NOW + timedelta(hours=2)
    await service.publish_due(clock(), 100)
    campaign = await service.update_campaign(EDITOR, campaign, CampaignPatch(disclosure_line="#AcmeLife"))
    assert campaign["refresh_published"] is True
    assert await service.refresh_campaign_snapshots(clock(), 100) == 1
    assert await service.refresh_campaign_snapshots(clock(), 100) == 0
    [_, update] = store.items.docs[item["_id"]][OUTBOX_FIELD]
    assert update["envelope"]["type"] == "content.updated.v1"
    assert update["envelope"]["data"]["disclosure_line"] == "#AcmeLife"
    assert outbox_types(store, draft["_id"]) == []
    renamed = await service.update_campaign(EDITOR, await service.get_campaign(TENANT, campaign["_id"]),
                                            CampaignPatch(name="Renamed"))
    assert renamed["refresh_published"] is False


async def test_erasure_anonymises_every_trace_of_the_person(service, store):
    campaign = await campaign_of(service)
    amb = ambassador_id_for(TENANT, "amb")
    store.ambassadors[f"{TENANT}:{amb}"] = {"ambassador_id": amb, "opted_in": True, "profile": {"persona": "expert"}}
    proposal, _ = await service.propose(person("amb", "ambassador"), content_in(campaign["_id"]), None)
    assert proposal["status"] == "in_review" and proposal["proposed_by"] == amb
    assert await service.anonymise_person(TENANT, amb) == 1
    stored = store.items.docs[proposal["_id"]]
    assert stored["proposed_by"] == stored["created_by"] == "erased" and stored["authors"] == ["erased"]
    assert {entry["by"] for entry in stored["history"]} == {"erased"}
    assert await service.anonymise_person(TENANT, amb) == 0


async def test_an_item_that_cannot_publish_does_not_hold_back_the_others(service, store, clock):
    broken_campaign = await campaign_of(service)
    good_campaign = await campaign_of(service)
    broken = await approved(service, broken_campaign["_id"], publish_at=NOW + timedelta(minutes=1))
    good = await approved(service, good_campaign["_id"], publish_at=NOW + timedelta(minutes=2))
    del store.campaigns.docs[broken_campaign["_id"]]  # a damaged reference
    clock.now = NOW + timedelta(hours=1)
    assert await service.publish_due(clock(), 100) == 1
    assert store.items.docs[good["_id"]]["status"] == "published"
    assert store.items.docs[broken["_id"]]["status"] == "approved"


async def test_an_ambassador_is_known_by_the_id_their_login_implies(service, store):
    campaign = await campaign_of(service)
    amb = ambassador_id_for(TENANT, "alice@corp.example")
    store.ambassadors[f"{TENANT}:{amb}"] = {"ambassador_id": amb, "opted_in": True, "profile": {}}
    login = person("Alice@Corp.example", "ambassador")  # the login's case does not matter
    proposal, _ = await service.propose(login, content_in(campaign["_id"]), None)
    assert proposal["proposed_by"] == proposal["created_by"] == amb and proposal["authors"] == [amb]
    assert "alice@corp.example" not in str(proposal).lower()
    # An entry under the bare login is not theirs (ambassador events never carry the login).
    store.ambassadors[f"{TENANT}:bob"] = {"ambassador_id": "bob", "opted_in": True, "profile": {}}
    with pytest.raises(Problem) as refused:
        await service.propose(person("bob", "ambassador"), content_in(campaign["_id"]), None)
    assert refused.value.status == 403


async def test_a_proposer_cannot_approve_their_own_proposal(service, store):
    campaign = await campaign_of(service)
    amb = ambassador_id_for(TENANT, "ann")
    store.ambassadors[f"{TENANT}:{amb}"] = {"ambassador_id": amb, "opted_in": True, "profile": {}}
    ann = person("ann", "ambassador", "reviewer")
    proposal, _ = await service.propose(ann, content_in(campaign["_id"]), None)
    with pytest.raises(FourEyesViolation):
        await service.act(ann, proposal, Action.APPROVE)
    assert (await service.act(REVIEWER, proposal, Action.APPROVE))["status"] == "approved"
