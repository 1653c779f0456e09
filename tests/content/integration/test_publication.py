"""Scheduled publication, updates and retirement: events read back from the real Kafka topic
with the CloudEvents SDK; catch-up after downtime; two schedulers never publish twice."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from advocacy_common.mongo import create_client
from content.bootstrap import service_on
from content.models import event_id, published_event
from content.store import ContentStore

pytestmark = pytest.mark.integration
PUBLISHED, UPDATED, RETIRED = "content.published.v1", "content.updated.v1", "content.retired.v1"


def soon(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def status_is(kit, item_id: str, status: str):
    async def probe():
        item = await kit.get(item_id)
        return item if item["status"] == status else None

    return probe


async def test_publishes_at_publish_at_updates_and_retires_at_expiry(kit, worker, wait_until):
    campaign = await kit.campaign()
    audience = {"teams": ["R&D"], "languages": ["en"], "personas": ["expert"], "topics": ["Energy", "energy", "AI"]}
    item = await kit.approved(campaign["id"], publish_at=soon(1), expires_at=None, audience=audience)
    assert item["status"] == "approved"
    # Editors set and read the topic axis like the others (lower-cased, one of each).
    assert item["audience"]["topics"] == ["energy", "ai"] and item["audience"]["teams"] == ["r&d"]
    published = await wait_until(await status_is(kit, item["id"], "published"))
    assert published["published_at"] and published["history"][-1]["by"] == "scheduler"

    [event] = await kit.events(1, PUBLISHED)
    data = event.get_data()
    assert event.get_subject() == item["id"] and event.get_source() == "/advocacy/content"
    assert event.get_extension("tenantid") == kit.tenant
    assert (data["content_id"], data["campaign_id"], data["objective"], data["disclosure_line"]) == \
        (item["id"], campaign["id"], "talent", "#WeAreAcme")
    assert data["version"] == published["version"]
    assert data["suggested_texts"] == item["suggested_texts"] and data["networks"] == ["linkedin", "x"]
    assert data["audience"]["teams"] == ["r&d"] and data["media"][0]["url"] == "https://cdn.example.com/lab.jpg"
    assert data["audience"]["topics"] == ["energy", "ai"]  # what distribution's feed targets by
    assert data["link_url"] == item["link_url"] and data["topics"] == ["research", "innovation"]
    assert data["expires_at"] is None

    expiry = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0).isoformat()
    edited = await kit.api.patch(f"/v1/content/{item['id']}", json={"title": "The lab is open", "expires_at": expiry},
                                 headers={**kit.editor, "If-Match": f'"{published["version"]}"'})
    assert edited.status_code == 200 and edited.json()["status"] == "published"
    [update] = await kit.events(1, UPDATED)
    assert update.get_data()["title"] == "The lab is open"
    assert update.get_data()["version"] == published["version"] + 1
    assert datetime.fromisoformat(update.get_data()["expires_at"]) == datetime.fromisoformat(expiry)

    retired = await wait_until(await status_is(kit, item["id"], "retired"))
    assert retired["retired_reason"] == "expired" and retired["history"][-1]["action"] == "expire"
    [retirement] = await kit.events(1, RETIRED)
    assert retirement.get_data()["reason"] == "expired" and retirement.get_data()["version"] == retired["version"]
    # Every event of the item, in order, on one key with increasing versions.
    everything = await kit.events(3)
    assert [e.get_type() for e in everything] == [PUBLISHED, UPDATED, RETIRED]
    assert [e.get_data()["version"] for e in everything] == sorted({e.get_data()["version"] for e in everything})


async def test_campaign_change_reannounces_published_items_and_withdrawal_retires(kit, worker, wait_until):
    campaign = await kit.campaign()
    item = await kit.approved(campaign["id"], publish_at=soon(-60), expires_at=None)
    draft = await kit.content(campaign["id"])
    published = await wait_until(await status_is(kit, item["id"], "published"))

    changed = await kit.api.patch(f"/v1/campaigns/{campaign['id']}", headers=kit.editor,
                                  json={"objective": "awareness", "disclosure_line": "#AcmeTeam"})
    assert changed.status_code == 200
    [update] = await kit.events(1, UPDATED)
    assert update.get_data()["content_id"] == item["id"] and update.get_data()["version"] == published["version"] + 1
    assert (update.get_data()["objective"], update.get_data()["disclosure_line"]) == ("awareness", "#AcmeTeam")
    refreshed = await kit.get(item["id"])
    assert refreshed["history"][-1]["action"] == "campaign_change" and refreshed["status"] == "published"
    assert (await kit.get(draft["id"]))["version"] == draft["version"]  # unpublished items are not announced
    # Once re-announced, the campaign is not re-announced again.
    renamed = await kit.api.patch(f"/v1/campaigns/{campaign['id']}", json={"name": "Renamed"}, headers=kit.editor)
    assert renamed.status_code == 200

    withdrawn = await kit.act(item["id"], "withdraw", kit.reviewer)
    assert withdrawn["status"] == "retired" and withdrawn["version"] == refreshed["version"] + 1
    [event] = await kit.events(1, RETIRED)
    assert event.get_data()["reason"] == "withdrawn" and event.get_data()["content_id"] == item["id"]
    # Published, re-announced once (the rename changed nothing in the snapshot), withdrawn: nothing more.
    assert [e.get_type() for e in await kit.events(4, timeout=3)] == [PUBLISHED, UPDATED, RETIRED]


async def test_catch_up_after_the_worker_was_down(kit, content_settings, worker_starter, wait_until):
    campaign = await kit.campaign()
    async with worker_starter(content_settings):
        gone = await kit.approved(campaign["id"], publish_at=soon(-60), expires_at=None)
        gone = await wait_until(await status_is(kit, gone["id"], "published"))
    # While the worker is down: two items become overdue, one expires before it could be
    # published, and the published one expires.
    overdue = [await kit.approved(campaign["id"], publish_at=soon(-3600), expires_at=None) for _ in range(2)]
    missed = await kit.approved(campaign["id"], publish_at=soon(-7200), expires_at=soon(-3600))
    expiring = await kit.api.patch(f"/v1/content/{gone['id']}", json={"expires_at": soon(0.3)}, headers=kit.editor)
    assert expiring.status_code == 200
    await asyncio.sleep(0.5)

    async with worker_starter(content_settings):
        for item in overdue:
            await wait_until(await status_is(kit, item["id"], "published"))
        retired = await wait_until(await status_is(kit, missed["id"], "retired"))
        assert retired["retired_reason"] == "expired" and retired["published_at"] is None
        await wait_until(await status_is(kit, gone["id"], "retired"))
        publications = await kit.events(3, PUBLISHED)
        retirements = await kit.events(1, RETIRED)
    assert sorted(e.get_data()["content_id"] for e in publications) == sorted(
        [overdue[0]["id"], overdue[1]["id"], gone["id"]])
    # The item that expired before it could be published was never announced, so nothing retires it.
    assert [e.get_data()["content_id"] for e in retirements] == [gone["id"]]
    assert len(await kit.events(4, PUBLISHED, timeout=2)) == 3


async def test_two_schedulers_racing_publish_each_item_once(kit, content_settings):
    campaign = await kit.campaign()
    items = [await kit.approved(campaign["id"], publish_at=soon(-30), expires_at=None) for _ in range(8)]
    client = create_client(content_settings.mongodb_uri, "content-race")
    try:
        store = await ContentStore.open(client[content_settings.database], content_settings.cursor_key)
        schedulers = [service_on(store) for _ in range(3)]
        now = datetime.now(UTC)
        moved = await asyncio.gather(*(s.publish_due(now, 100) for s in schedulers))
        # The status/version guard lets exactly one scheduler win each item (on FerretDB 1.x only
        # because the project's proxy serialises writes; the deterministic event id is the second
        # line of defence: writers of the same transition would write the same event).
        assert sum(moved) == len(items)
        for item in items:
            document = await store.items.collection.find_one({"_id": item["id"]})
            assert document["status"] == "published" and document["version"] == item["version"] + 1
            [entry] = document["_outbox"]
            assert entry["envelope"]["type"] == PUBLISHED
            stored = await store.items.get(kit.tenant, item["id"])
            stored_campaign = await store.campaigns.get(kit.tenant, campaign["id"])
            assert entry["envelope"]["id"] == event_id(kit.tenant, published_event(stored, stored_campaign,
                                                                                   document["version"]))
            assert [h["action"] for h in document["history"]].count("publish") == 1
        assert sum(await asyncio.gather(*(s.publish_due(datetime.now(UTC), 100) for s in schedulers))) == 0
    finally:
        await client.close()
