"""Erase a person, provision the same login again, opt in, share: the four services agree on who is who.

Through the public APIs only, on the real Kafka and database: Alice shares, a reader clicks, and her
GDPR export (requested by event, assembled from every service's part) holds all of it. She is erased: an
export of her id then finds nothing anywhere. The directory provisions the same login again: SCIM gives a
new id; the newcomer opts in and, within moments, content lists published items to her, distribution
suggests and lets her share the same item (her own tracked link, not the erased person's), and metrics
counts her as opted in, with statistics of her own. Nothing of the erased person attaches to her.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from advocacy_testkit import eventually

from advocacy_common.auth import ambassador_id_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

LOGIN = "alice.martin@acme.example"
HANDLE = "alice-martin-li"
CHARTER = {"title": "Charter", "body": "Speak for yourself.", "disclosure_required": False}
SUGGESTED = "Proud of our new lab in Lyon, where interns run real experiments from day one!"
FIRST_TEXT = ("Last month I spent a whole day in our new Lyon lab with the battery team; the interns design "
              "and run their own experiments from the very first week.")
SECOND_TEXT = ("I started here in May. Walking through the Lyon lab this morning, I met two apprentices who "
               "already lead a test bench of their own.")
PROFILE = {"persona": "expert", "topics": ["Research"], "languages": ["en"], "team_id": "R&D", "location": "Lyon",
           "networks": [{"network": "linkedin", "handle": HANDLE, "audience_size": 640}]}
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


async def test_erase_provision_again_opt_in_and_share(stack, bearer):
    tenant = f"ident{uuid.uuid4().hex[:8]}"
    admin, integrator = bearer(tenant, "admin-1", "admin"), bearer(tenant, "okta-scim", "integrator")
    analyst, alice = bearer(tenant, "an-1", "analyst"), bearer(tenant, LOGIN, "ambassador")
    charter = await stack.ambassador.post("/v1/charters", json=CHARTER, headers=admin)
    version = charter.json()["version"]
    content_id = await published_item(stack, tenant, bearer)

    # --- the first holder of the login ------------------------------------------------------------
    first_id = await provisioned(stack, integrator)
    assert first_id == ambassador_id_for(tenant, LOGIN)
    await opted_in(stack, alice, version)
    await agreed_opted_in(stack, alice, analyst, content_id, opted_in=1)
    first = await shared(stack, alice, content_id, FIRST_TEXT)
    click = await stack.distribution.get(f"/r/{first['tracked_link_code']}",
                                         headers={"User-Agent": BROWSER, "X-Forwarded-For": "203.0.113.10"})
    assert click.status_code == 302

    async def statistics_counted():
        mine = (await stack.metrics.get("/v1/metrics/me?granularity=day", headers=alice)).json()
        return sum(point["kpis"]["clicks"] for point in mine["points"]) == 1

    await eventually(statistics_counted, timeout=30)
    held = await complete_export(stack, alice, "/v1/me/exports")
    assert held["ambassador"]["person"]["directory"]["user_name"] == LOGIN
    sections = {name: part["sections"] for name, part in held["services"].items()}
    assert [(s["text"], s["post_url"]) for s in sections["distribution"]["shares"]] == \
        [(FIRST_TEXT, first["post_url"])]
    assert [(link["code"], link["unique_visitors"]) for link in sections["distribution"]["tracked_links"]] == \
        [(first["tracked_link_code"], 1)]
    assert sections["content"]["ambassador"][0]["profile"]["team_id"] == "R&D"
    assert [(row["shares"], row["clicks"]) for row in sections["metrics"]["daily_statistics"]] == [(1, 1)]

    # --- erasure --------------------------------------------------------------------------------------
    erased = await stack.ambassador.post("/v1/me/erasure", headers=alice)
    assert erased.status_code == 200 and erased.json()["ambassador_id"] == first_id, erased.text

    async def erased_everywhere():
        feed = (await stack.distribution.get("/v1/feed", headers=alice)).json()
        overview = (await stack.metrics.get("/v1/metrics/overview", headers=analyst)).json()
        return feed.get("reason") == "erased" and overview["kpis"]["ambassadors_opted_in"] == 0

    await eventually(erased_everywhere, timeout=30)
    remains = await complete_export(stack, admin, f"/v1/ambassadors/{first_id}/exports")
    assert all(records == [] for part in remains["services"].values() for records in part["sections"].values()), \
        remains["services"]
    for personal in (LOGIN, HANDLE, FIRST_TEXT, first["post_url"], first["tracked_link_code"]):
        assert personal not in str(remains), personal

    # --- the same login, provisioned again ---------------------------------------------------------------
    second_id = await provisioned(stack, integrator)
    assert second_id != first_id
    again = await opted_in(stack, alice, version)
    assert again["status"] == "opted_in" and again["id"] == second_id
    agreed = await agreed_opted_in(stack, alice, analyst, content_id, opted_in=1)
    print(f"seconds from the opt-in's answer until each service agreed: {agreed}")
    assert max(agreed.values()) < 10  # about a second on a quiet machine; this one is shared by many runs

    second = await shared(stack, alice, content_id, SECOND_TEXT)  # not already_shared
    assert second["ambassador_id"] == second_id and second["tracked_link_code"] != first["tracked_link_code"]
    mine = (await stack.distribution.get("/v1/me/shares", headers=alice)).json()
    assert [s["share_id"] for s in mine["items"]] == [second["share_id"]]

    async def own_statistics():
        points = (await stack.metrics.get("/v1/metrics/me?granularity=day", headers=alice)).json()["points"]
        overview = (await stack.metrics.get("/v1/metrics/overview", headers=analyst)).json()["kpis"]
        return (sum(p["kpis"]["shares"] for p in points), sum(p["kpis"]["clicks"] for p in points),
                overview["shares"], overview["ambassadors_opted_in"]) == (1, 0, 2, 1)

    await eventually(own_statistics, timeout=30)
    held = await complete_export(stack, alice, "/v1/me/exports")
    assert held["ambassador"]["ambassador_id"] == second_id
    assert [c["kind"] for c in held["ambassador"]["person"]["consents"]] == ["opt_in"]
    sections = {name: part["sections"] for name, part in held["services"].items()}
    assert [s["id"] for s in sections["distribution"]["shares"]] == [second["share_id"]]
    assert [link["code"] for link in sections["distribution"]["tracked_links"]] == [second["tracked_link_code"]]
    assert [(row["shares"], row.get("clicks", 0)) for row in sections["metrics"]["daily_statistics"]] == [(1, 0)]
    for theirs in (FIRST_TEXT, first["post_url"], first["tracked_link_code"], first_id):
        assert theirs not in str(held["services"]), theirs


async def published_item(stack, tenant: str, bearer) -> str:
    editor, reviewer = bearer(tenant, "ed-1", "editor"), bearer(tenant, "rev-1", "reviewer")
    today = datetime.now(UTC).date()
    campaign = await stack.content.post("/v1/campaigns", headers=editor, json={
        "name": "Lyon lab", "objective": "talent", "starts_on": (today - timedelta(days=1)).isoformat(),
        "ends_on": (today + timedelta(days=30)).isoformat()})
    assert campaign.status_code == 201, campaign.text
    publish_at = datetime.now(UTC) + timedelta(seconds=2)
    item = await stack.content.post("/v1/content", headers=editor, json={
        "campaign_id": campaign.json()["id"], "title": "Our new lab opens", "link_url": "https://acme.example/lab",
        "suggested_texts": {"linkedin": SUGGESTED}, "topics": ["Research"], "language": "en",
        "networks": ["linkedin"], "publish_at": publish_at.isoformat(),
        "expires_at": (publish_at + timedelta(days=7)).isoformat()})
    assert item.status_code == 201, item.text
    content_id = item.json()["id"]
    assert (await stack.content.post(f"/v1/content/{content_id}/submit", headers=editor)).status_code == 200
    assert (await stack.content.post(f"/v1/content/{content_id}/approve", headers=reviewer)).status_code == 200

    async def published():
        return (await stack.content.get(f"/v1/content/{content_id}", headers=editor)).json()["status"] == "published"

    await eventually(published, timeout=30)
    return content_id


async def provisioned(stack, integrator) -> str:
    user = await stack.ambassador.post("/scim/v2/Users", headers=integrator, json={
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": LOGIN, "active": True,
        "name": {"givenName": "Alice", "familyName": "Martin"}, "emails": [{"value": LOGIN, "type": "work"}]})
    assert user.status_code == 201, user.text
    return user.json()["id"]


async def opted_in(stack, alice, version: int) -> dict[str, Any]:
    answer = await stack.ambassador.post("/v1/me/opt-in", headers=alice,
                                         json={"charter_version": version, "profile": PROFILE})
    assert answer.status_code == 200, answer.text
    return answer.json()


async def agreed_opted_in(stack, alice, analyst, content_id: str, opted_in: int) -> dict[str, float]:
    """Content lists the item to her, distribution suggests it, metrics counts her: when each first agreed
    (seconds from the call), once all three do."""
    started, agreed = time.monotonic(), {}

    async def content_agrees() -> bool:
        published = await stack.content.get("/v1/published", headers=alice)
        return published.status_code == 200 and [i["id"] for i in published.json()["items"]] == [content_id]

    async def distribution_agrees() -> bool:
        feed = (await stack.distribution.get("/v1/feed", headers=alice)).json()
        return [i["content_id"] for i in feed["items"]] == [content_id]

    async def metrics_agrees() -> bool:
        overview = (await stack.metrics.get("/v1/metrics/overview", headers=analyst)).json()
        return overview["kpis"]["ambassadors_opted_in"] == opted_in

    probes = {"content": content_agrees, "distribution": distribution_agrees, "metrics": metrics_agrees}

    async def agree():
        for name, probe in probes.items():
            if name not in agreed and await probe():
                agreed[name] = round(time.monotonic() - started, 2)
        return len(agreed) == len(probes)

    await eventually(agree, timeout=30, interval=0.05)
    return agreed


async def shared(stack, alice, content_id: str, text: str) -> dict[str, Any]:
    prepared = await stack.distribution.post("/v1/shares", headers={**alice, "Idempotency-Key": str(uuid.uuid4())},
                                             json={"content_id": content_id, "network": "linkedin", "text": text})
    assert prepared.status_code == 201, prepared.text
    post_url = f"https://www.linkedin.com/posts/{HANDLE}_{uuid.uuid4().hex[:12]}"
    confirmed = await stack.distribution.post(f"/v1/shares/{prepared.json()['share_id']}/confirm", headers=alice,
                                              json={"post_url": post_url})
    assert confirmed.status_code == 200, confirmed.text
    return confirmed.json()


async def complete_export(stack, headers, path: str) -> dict[str, Any]:
    """Ask for an export and read it until every service's part is in; never cached."""
    asked = await stack.ambassador.post(path, headers=headers)
    assert asked.status_code == 202, asked.text
    location = f"{path}/{asked.json()['export_id']}"

    async def complete():
        answer = await stack.ambassador.get(location, headers=headers)
        assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store", answer.text
        return answer.json() if answer.json()["status"] == "complete" else None

    return await eventually(complete, timeout=30)
