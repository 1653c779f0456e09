"""Content's `/v1/published` and distribution's `/v1/feed` show an item to the same people.

Editors target through content's API (teams, locations, languages, personas, topics); the snapshot event
carries the audience to distribution; each ambassador's team and location come from the directory (SCIM)
or their own profile. For every person and item, both services must give the audience this table expects.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from advocacy_testkit import eventually

pytestmark = [pytest.mark.e2e]

CHARTER = {"title": "Charter", "body": "Be yourself.", "red_lines": ["No confidential figures"], "tone": "Personal",
           "disclosure_required": False}
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"

# login -> (directory team, directory location, profile): team and location from the directory unless the
# profile sets its own (dan's does).
PEOPLE = {
    "ana": ("R&D", "Lyon", {"persona": "expert", "topics": ["Energy"], "languages": ["en"], "networks": ["linkedin"]}),
    "ben": ("Sales", "Paris", {"persona": "supporter", "topics": ["Hiring"], "languages": ["en", "fr"],
                               "networks": ["linkedin", "x"]}),
    "cle": ("R&D", "Paris", {"persona": "expert", "topics": [], "languages": ["fr"], "networks": ["x"]}),
    "dan": (None, None, {"persona": "talent", "topics": ["energy", "AI"], "languages": [], "networks": ["linkedin"],
                         "team_id": "sales", "location": "lyon"}),
    "eve": ("Marketing", "Berlin", {"persona": "supporter", "topics": ["AI"], "languages": ["de"],
                                    "networks": ["linkedin"]}),
}
# item -> (its targeting and language/networks, who must see it)
ITEMS = {
    "for-anyone": ({"audience": {}}, {"ana", "ben", "dan"}),  # cle reads only French, eve only German
    "for-energy-followers": ({"audience": {"topics": ["Energy"]}}, {"ana", "dan"}),
    "for-rnd-in-lyon": ({"audience": {"teams": ["r&d"], "locations": ["LYON"]}}, {"ana"}),
    "in-french-on-x": ({"language": "fr", "networks": ["x"]}, {"ben", "cle"}),
    "for-sales-hiring-or-ai": ({"audience": {"teams": ["Sales"], "topics": ["hiring", "ai"]}}, {"ben", "dan"}),
    "in-german": ({"language": "de", "networks": ["linkedin"]}, {"dan", "eve"}),
    "described-not-targeted": ({"topics": ["Quantum"]}, {"ana", "ben", "dan"}),  # own topics only rank
}


async def test_published_and_feed_give_the_same_audience(stack, bearer):
    tenant = f"tg{uuid.uuid4().hex[:8]}"
    admin, integrator = bearer(tenant, "admin-1", "admin"), bearer(tenant, "okta", "integrator")
    editor, reviewer = bearer(tenant, "ed-1", "editor"), bearer(tenant, "rev-1", "reviewer")
    people = {name: bearer(tenant, f"{name}@acme.example", "ambassador") for name in PEOPLE}

    charter = await stack.ambassador.post("/v1/charters", json=CHARTER, headers=admin)
    assert charter.status_code == 201, charter.text
    for name, (team, location, profile) in PEOPLE.items():
        user = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": f"{name}@acme.example",
                "active": True, "name": {"givenName": name, "familyName": "Test"}}
        if team:
            user[ENTERPRISE] = {"department": team}
        if location:
            user["addresses"] = [{"type": "work", "locality": location}]
        assert (await stack.ambassador.post("/scim/v2/Users", json=user, headers=integrator)).status_code == 201
        body = {**profile, "networks": [{"network": n, "handle": f"{name}-{n}", "audience_size": 100}
                                        for n in profile["networks"]]}
        opted_in = await stack.ambassador.post("/v1/me/opt-in", headers=people[name], json={
            "charter_version": charter.json()["version"], "profile": body})
        assert opted_in.status_code == 200, opted_in.text

    today = datetime.now(UTC).date()
    campaign = await stack.content.post("/v1/campaigns", headers=editor, json={
        "name": "Targeting", "objective": "awareness", "starts_on": (today - timedelta(days=1)).isoformat(),
        "ends_on": (today + timedelta(days=30)).isoformat()})
    assert campaign.status_code == 201, campaign.text
    publish_at = datetime.now(UTC) + timedelta(seconds=2)
    ids = {}
    for title, (targeting, _) in ITEMS.items():
        networks = targeting.get("networks", ["linkedin", "x"])
        created = await stack.content.post("/v1/content", headers=editor, json={
            "campaign_id": campaign.json()["id"], "title": title, "link_url": f"https://acme.example/{title}",
            "suggested_texts": {n: f"Read about {title}" for n in networks}, "language": "en", "networks": networks,
            "publish_at": publish_at.isoformat(), **{k: v for k, v in targeting.items() if k != "networks"}})
        assert created.status_code == 201, created.text
        ids[created.json()["id"]] = title
        assert (await stack.content.post(f"/v1/content/{created.json()['id']}/submit", headers=editor)).status_code \
            == 200
        assert (await stack.content.post(f"/v1/content/{created.json()['id']}/approve",
                                         headers=reviewer)).status_code == 200
    expected = {name: {title for title, (_, audience) in ITEMS.items() if name in audience} for name in PEOPLE}

    async def seen_in(client, path: str, key: str) -> dict[str, set[str]] | None:
        seen = {}
        for name, headers in people.items():
            response = await client.get(path, params={"limit": 50}, headers=headers)
            if response.status_code == 403 and "opted in" in response.json()["detail"]:
                return None  # the service has not yet projected this person's opt-in (it comes through Kafka)
            assert response.status_code == 200, response.text
            seen[name] = {ids[item[key]] for item in response.json()["items"] if item[key] in ids}
        return seen

    async def agree(client, path: str, key: str):
        seen = await seen_in(client, path, key)
        return seen if seen == expected else None

    # Both converge (publication, then projections through Kafka) to the same, expected audiences.
    published = await eventually(lambda: agree(stack.content, "/v1/published", "id"), timeout=60)
    feed = await eventually(lambda: agree(stack.distribution, "/v1/feed", "content_id"), timeout=60)
    assert published == feed == expected
    # Editors read back the topic axis they set, as distribution applies it.
    energy = next(i for i, title in ids.items() if title == "for-energy-followers")
    stored = (await stack.content.get(f"/v1/content/{energy}", headers=editor)).json()
    assert stored["audience"]["topics"] == ["energy"]
