"""The ambassador projection fed from the real `advocacy.ambassador` topic: who may propose content,
what published content each ambassador is targeted by, opt-out and erasure."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from advocacy_common.events import (
    AmbassadorErased, AmbassadorOptedIn, AmbassadorOptedOut, AmbassadorProfile, AmbassadorProfileUpdated, NetworkPresence,
    Persona,
)

pytestmark = pytest.mark.integration
NOW = datetime.now(UTC)


def opted_in(ambassador_id: str, team: str, persona: Persona = Persona.EXPERT, languages=("en",)) -> AmbassadorOptedIn:
    return AmbassadorOptedIn(ambassador_id=ambassador_id, charter_version=1, opted_in_at=NOW,
                             profile=AmbassadorProfile(persona=persona, team_id=team, location="Paris",
                                                       languages=list(languages),
                                                       networks=[NetworkPresence(network="linkedin", audience_size=300)]))


async def test_projection_drives_proposals_feed_opt_out_and_erasure(kit, worker, wait_until, amb):
    ann, bob = kit.as_("amb-ann", "ambassador"), kit.as_("amb-bob", "ambassador")
    stranger = kit.as_("amb-cid", "ambassador")
    ann_id, bob_id = amb(kit.tenant, "amb-ann"), amb(kit.tenant, "amb-bob")
    campaign = await kit.campaign()
    await kit.publish([opted_in(ann_id, "R&D"), opted_in(bob_id, "Sales", Persona.SUPPORTER)])
    store = worker.relay.collections[0].database["ambassadors"]

    async def projected(ambassador_id: str, **expected):
        async def probe():
            document = await store.find_one({"_id": f"{kit.tenant}:{ambassador_id}"})
            return document if document and all(document.get(k) == v for k, v in expected.items()) else None
        return await wait_until(probe)

    await projected(ann_id, opted_in=True)
    await projected(bob_id, opted_in=True)

    proposal = await kit.api.post("/v1/proposals", json=kit.content_body(campaign["id"], title="Hackathon photos"),
                                  headers=ann)
    assert proposal.status_code == 201, proposal.text
    proposed = proposal.json()
    assert proposed["status"] == "in_review" and proposed["proposed_by"] == ann_id
    refused = await kit.api.post("/v1/proposals", json=kit.content_body(campaign["id"]), headers=stranger)
    assert refused.status_code == 403
    assert (await kit.api.post("/v1/proposals", json=kit.content_body(campaign["id"]),
                               headers=kit.editor)).status_code == 403

    # Published now: one item for R&D experts, one for everyone, one still in review.
    for_rnd = await kit.approved(campaign["id"], publish_at=(NOW - timedelta(minutes=1)).isoformat(), expires_at=None)
    for_all = await kit.approved(campaign["id"], publish_at=(NOW - timedelta(minutes=2)).isoformat(), expires_at=None,
                                 audience={})
    for item in (for_rnd, for_all):
        async def is_published(item_id=item["id"]):
            return (await kit.get(item_id))["status"] == "published"
        await wait_until(is_published)

    async def feed(headers) -> list[str]:
        response = await kit.api.get("/v1/published", headers=headers)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert await feed(ann) == [for_rnd["id"], for_all["id"]]
    assert await feed(bob) == [for_all["id"]]
    assert (await kit.api.get(f"/v1/published/{for_rnd['id']}", headers=bob)).status_code == 404
    seen = await kit.api.get(f"/v1/published/{for_rnd['id']}", headers=ann)
    assert seen.status_code == 200 and "history" not in seen.json() and "created_by" not in seen.json()
    assert (await kit.api.get("/v1/published", headers=stranger)).status_code == 403

    # Bob moves to R&D as an expert: now targeted by both.
    await kit.publish([AmbassadorProfileUpdated(ambassador_id=bob_id, updated_at=NOW, profile=AmbassadorProfile(
        persona=Persona.EXPERT, team_id="r&d", languages=["en"],
        networks=[NetworkPresence(network="linkedin", audience_size=300)]))])
    await projected(bob_id, profile={"persona": "expert", "team_id": "r&d", "location": None,
                                     "languages": ["en"], "topics": [], "networks": ["linkedin"]})
    assert await feed(bob) == [for_rnd["id"], for_all["id"]]

    # Opt-out takes effect at once: no feed, no proposals.
    await kit.publish([AmbassadorOptedOut(ambassador_id=bob_id, opted_out_at=NOW)])
    await projected(bob_id, opted_in=False)
    assert (await kit.api.get("/v1/published", headers=bob)).status_code == 403
    assert (await kit.api.post("/v1/proposals", json=kit.content_body(campaign["id"]), headers=bob)).status_code == 403

    # Erasure anonymises the proposer everywhere, and a replayed opt-in cannot bring them back.
    await kit.publish([AmbassadorErased(ambassador_id=ann_id, erased_at=NOW), opted_in(ann_id, "R&D")])
    await projected(ann_id, erased=True)

    async def anonymised():
        item = await kit.get(proposed["id"])
        return item if item["proposed_by"] == "erased" else None

    item = await wait_until(anonymised)
    assert item["created_by"] == "erased" and {h["by"] for h in item["history"]} == {"erased"}
    assert ann_id not in str(item) and "amb-ann" not in str(item)
    await asyncio.sleep(1)  # time for the replayed opt-in behind the erasure to be consumed
    tombstone = await projected(ann_id, erased=True)
    assert tombstone["opted_in"] is False and "profile" not in tombstone
    assert (await kit.api.post("/v1/proposals", json=kit.content_body(campaign["id"]), headers=ann)).status_code == 403
