"""One employee's journey through the four services, as a user would see it.

Charter and opt-in (ambassador) -> campaign, content, review, scheduled publication
(content) -> feed, personalised share, tracked click, signed engagement report
(distribution) -> exact KPIs (metrics) -> opt-out, effective everywhere.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from advocacy_common.auth import ambassador_id_for

pytestmark = [pytest.mark.e2e]

CHARTER = {"title": "Our social media charter", "body": "Be yourself; never share confidential figures.",
           "red_lines": ["No confidential figures"], "tone": "Personal, factual",
           "disclosure_required": True, "disclosure_line": "#EmployeeOfAcme"}
ALICE = "alice@acme.example"
OWN_TEXT = ("Last month I spent a day in our new Lyon lab with the battery team. What struck me most was how "
            "the interns run their own experiments from day one. #WeAreAcme #EmployeeOfAcme")


async def eventually(probe, timeout: float = 45.0, interval: float = 0.5):
    """Poll `probe` until it returns a truthy value; the services converge through Kafka."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"not reached within {timeout} s; last value: {last!r}")


def signed(secret: str, body: bytes) -> str:
    timestamp = str(int(time.time()))
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


async def test_employee_journey(stack, bearer):
    tenant = f"e2e{uuid.uuid4().hex[:8]}"
    admin, integrator = bearer(tenant, "admin-1", "admin"), bearer(tenant, "okta-scim", "integrator")
    editor, reviewer = bearer(tenant, "ed-1", "editor"), bearer(tenant, "rev-1", "reviewer")
    alice, analyst = bearer(tenant, ALICE, "ambassador"), bearer(tenant, "an-1", "analyst")

    # --- ambassador: a charter, a directory entry, and Alice volunteers herself ---------------
    charter = await stack.ambassador.post("/v1/charters", json=CHARTER, headers=admin)
    assert charter.status_code == 201, charter.text
    user = await stack.ambassador.post("/scim/v2/Users", headers=integrator, json={
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": ALICE, "active": True,
        "name": {"givenName": "Alice", "familyName": "Martin"}, "emails": [{"value": ALICE, "primary": True}]})
    assert user.status_code == 201, user.text
    assert user.json()["id"] == ambassador_id_for(tenant, ALICE)  # the id every service derives from her token
    profile = {"persona": "expert", "topics": ["Research"], "languages": ["en"], "team_id": "R&D",
               "location": "Lyon", "networks": [{"network": "linkedin", "handle": "alice-m", "audience_size": 640}]}
    opted_in = await stack.ambassador.post("/v1/me/opt-in", headers=alice, json={
        "charter_version": charter.json()["version"], "profile": profile})
    assert opted_in.status_code == 200, opted_in.text

    # --- content: campaign, item, four-eyes review, publication by the scheduler ---------------
    today = datetime.now(UTC).date()
    campaign = await stack.content.post("/v1/campaigns", headers=editor, json={
        "name": "Lab opening", "objective": "talent", "starts_on": (today - timedelta(days=1)).isoformat(),
        "ends_on": (today + timedelta(days=30)).isoformat(), "disclosure_line": "#WeAreAcme"})
    assert campaign.status_code == 201, campaign.text
    publish_at = datetime.now(UTC) + timedelta(seconds=2)
    item = await stack.content.post("/v1/content", headers=editor, json={
        "campaign_id": campaign.json()["id"], "title": "Our new lab opens", "link_url": "https://acme.example/lab",
        "suggested_texts": {"linkedin": "Proud of our new lab in Lyon! #WeAreAcme"}, "topics": ["Research"],
        "language": "en", "audience": {"teams": ["R&D"], "languages": ["en"], "personas": ["expert"]},
        "networks": ["linkedin"], "publish_at": publish_at.isoformat(),
        "expires_at": (publish_at + timedelta(days=7)).isoformat()})
    assert item.status_code == 201, item.text
    content_id = item.json()["id"]
    assert (await stack.content.post(f"/v1/content/{content_id}/submit", headers=editor)).status_code == 200
    assert (await stack.content.post(f"/v1/content/{content_id}/approve", headers=editor)).status_code == 403
    assert (await stack.content.post(f"/v1/content/{content_id}/approve", headers=reviewer)).status_code == 200

    async def published():
        return (await stack.content.get(f"/v1/content/{content_id}", headers=editor)).json()["status"] == "published"

    await eventually(published, timeout=20)

    # --- distribution: the item reaches Alice's feed; she shares it in her own words ---------
    async def feed_has_item():
        feed = (await stack.distribution.get("/v1/feed", headers=alice)).json()
        return [i for i in feed.get("items", []) if i["content_id"] == content_id]

    await eventually(feed_has_item)
    parrot = await stack.distribution.post("/v1/shares", headers=alice, json={
        "content_id": content_id, "network": "linkedin",
        "text": "Proud of our new lab in Lyon! #WeAreAcme #EmployeeOfAcme"})
    assert parrot.status_code == 422 and parrot.json()["rule"] == "too_similar_to_suggested"  # no parrot effect
    prepared = await stack.distribution.post("/v1/shares", headers={**alice, "Idempotency-Key": "alice-1"},
                                             json={"content_id": content_id, "network": "linkedin",
                                                   "text": OWN_TEXT})
    assert prepared.status_code == 201, prepared.text
    share = prepared.json()
    assert share["share_intent_url"].startswith("https://www.linkedin.com/sharing/share-offsite/?url=")
    confirmed = await stack.distribution.post(f"/v1/shares/{share['share_id']}/confirm", headers=alice)
    assert confirmed.status_code == 200, confirmed.text

    # A reader clicks the tracked link; LinkedIn's preview bot fetches it too (not counted).
    code = share["tracked_link_code"]
    human = await stack.distribution.get(f"/r/{code}", headers={"User-Agent": "Mozilla/5.0 (X11; Linux)"})
    assert human.status_code == 302 and human.headers["location"].startswith("https://acme.example/lab")
    bot = await stack.distribution.get(f"/r/{code}", headers={"User-Agent": "LinkedInBot/1.0"})
    assert bot.status_code == 302

    # A connector reports what LinkedIn saw, signed.
    connector = await stack.distribution.post("/v1/connectors", headers={**integrator, "Idempotency-Key": "c1"},
                                              json={"name": "linkedin-analytics"})
    assert connector.status_code == 201, connector.text
    connector_id, secret = connector.json()["connector_id"], connector.json()["secret"]
    occurred_at = datetime.now(UTC).isoformat()
    for report_id, kind, count in (("r1", "impression", 1000), ("r2", "reaction", 40), ("r3", "comment", 6),
                                   ("r4", "comment_reply", 3), ("r5", "reshare", 4)):
        body = json.dumps({"id": report_id, "kind": kind, "count": count, "occurred_at": occurred_at,
                           "share_id": share["share_id"]}).encode()
        reported = await stack.distribution.post(
            f"/v1/connectors/{connector_id}/engagements", content=body,
            headers={**integrator, "content-type": "application/json", "X-Advocacy-Signature": signed(secret, body)})
        assert reported.status_code == 202, reported.text

    # --- metrics: the KPIs are exact ------------------------------------------------------------
    async def overview_complete():
        report = (await stack.metrics.get("/v1/metrics/overview", headers=analyst)).json()
        kpis = report.get("kpis", {})
        # Everything reported so far has arrived once the last report (a reshare) and the click are in.
        return kpis if kpis.get("reshares") == 4 and kpis.get("clicks") == 1 else None

    kpis = await eventually(overview_complete)
    assert kpis["ambassadors_opted_in"] == 1 and kpis["active_ambassadors"] == 1
    assert kpis["shares"] == 1 and kpis["personalized_shares"] == 1 and kpis["potential_reach"] == 640
    assert (kpis["reactions"], kpis["comments"], kpis["reshares"], kpis["comment_replies"]) == (40, 6, 4, 3)
    assert kpis["engagement_rate"] == pytest.approx((40 + 6 + 4) / 1000)
    assert kpis["comment_response_rate"] == pytest.approx(3 / 6)
    assert kpis["clicks"] == 1 and kpis["unique_clicks"] == 1
    assert kpis["click_through_rate"] == pytest.approx(1 / 1000)

    mine = await stack.metrics.get("/v1/metrics/me", headers=alice)
    assert mine.status_code == 200, mine.text
    too_small = await stack.metrics.get("/v1/metrics/teams/R&D", headers=bearer(tenant, "mgr-1", "manager"))
    assert too_small.status_code in (403, 404, 422) and "small" in too_small.text.lower()

    # --- opt-out: one call, effective everywhere ----------------------------------------------
    out = await stack.ambassador.post("/v1/me/opt-out", headers=alice, json={})
    assert out.status_code == 200, out.text

    async def feed_closed():
        feed = (await stack.distribution.get("/v1/feed", headers=alice)).json()
        return feed if feed["items"] == [] and feed.get("reason") else None

    await eventually(feed_closed, timeout=20)
    refused = await stack.distribution.post("/v1/shares", headers=alice, json={
        "content_id": content_id, "network": "linkedin", "text": OWN_TEXT + " Again."})
    assert refused.status_code in (403, 422)

    async def opted_in_count_is_zero():
        kpis = (await stack.metrics.get("/v1/metrics/overview", headers=analyst)).json()["kpis"]
        return kpis["ambassadors_opted_in"] == 0

    await eventually(opted_in_count_is_zero, timeout=20)
