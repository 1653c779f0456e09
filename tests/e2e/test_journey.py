"""One employee's journey through the four services, as a user would see it.

Charter and opt-in (ambassador) -> campaign, content, review, scheduled publication
(content) -> feed, personalised share, tracked click, signed engagement report
(distribution) -> exact KPIs (metrics) -> opt-out, effective everywhere.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from advocacy_testkit import eventually, webhook_signature

from advocacy_common.auth import ambassador_id_for

pytestmark = [pytest.mark.e2e]

CHARTER = {"title": "Our social media charter", "body": "Be yourself; never share confidential figures.",
           "red_lines": ["No confidential figures"], "tone": "Personal, factual",
           "disclosure_required": True, "disclosure_line": "#EmployeeOfAcme"}
ALICE = "alice@acme.example"


@dataclass(frozen=True)
class Person:
    """Who walks the journey, as the directory provisions her."""

    login: str = ALICE
    given_name: str = "Alice"
    family_name: str = "Martin"
    display_name: str = "Alice Martin"
    handle: str = "alice-m"


@dataclass
class Journey:
    """What a journey handed out or sent that must never reach a log: credentials and keys."""

    tokens: list[str] = field(default_factory=list)
    idempotency_keys: list[str] = field(default_factory=list)
    connector_secrets: list[str] = field(default_factory=list)
    post_url: str = ""
OWN_TEXT = ("Last month I spent a day in our new Lyon lab with the battery team. What struck me most was how "
            "the interns run their own experiments from day one. #WeAreAcme #EmployeeOfAcme")


async def test_employee_journey(stack, bearer):
    await walk_the_journey(stack, bearer, Person())


async def walk_the_journey(stack, bearer, person: Person) -> Journey:
    """The whole story, asserting what each user sees; returns what was handed out on the way."""
    journey = Journey()

    def credentials(tenant: str, login: str, role: str) -> dict[str, str]:
        headers = bearer(tenant, login, role)
        journey.tokens.append(headers["Authorization"].removeprefix("Bearer "))
        return headers

    def keyed(headers: dict[str, str], key: str) -> dict[str, str]:
        journey.idempotency_keys.append(key)
        return {**headers, "Idempotency-Key": key}

    tenant = f"e2e{uuid.uuid4().hex[:8]}"
    admin, integrator = credentials(tenant, "admin-1", "admin"), credentials(tenant, "okta-scim", "integrator")
    editor, reviewer = credentials(tenant, "ed-1", "editor"), credentials(tenant, "rev-1", "reviewer")
    alice, analyst = credentials(tenant, person.login, "ambassador"), credentials(tenant, "an-1", "analyst")
    manager = credentials(tenant, "mgr-1", "manager")
    journey.post_url = f"https://www.linkedin.com/posts/{person.handle}_lab-opening-{uuid.uuid4().hex[:12]}"

    # --- ambassador: a charter, a directory entry, and Alice volunteers herself ---------------
    charter = await stack.ambassador.post("/v1/charters", json=CHARTER, headers=admin)
    assert charter.status_code == 201, charter.text
    user = await stack.ambassador.post("/scim/v2/Users", headers=integrator, json={
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": person.login, "active": True,
        "displayName": person.display_name,
        "name": {"givenName": person.given_name, "familyName": person.family_name},
        "emails": [{"value": person.login, "primary": True}]})
    assert user.status_code == 201, user.text
    assert user.json()["id"] == ambassador_id_for(tenant, person.login)  # the id every service derives from her token
    profile = {"persona": "expert", "topics": ["Research"], "languages": ["en"], "team_id": "R&D",
               "location": "Lyon", "networks": [{"network": "linkedin", "handle": person.handle, "audience_size": 640}]}
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
    prepared = await stack.distribution.post("/v1/shares", headers=keyed(alice, f"share-{uuid.uuid4()}"),
                                             json={"content_id": content_id, "network": "linkedin",
                                                   "text": OWN_TEXT})
    assert prepared.status_code == 201, prepared.text
    share = prepared.json()
    assert share["share_intent_url"].startswith("https://www.linkedin.com/sharing/share-offsite/?url=")
    confirmed = await stack.distribution.post(f"/v1/shares/{share['share_id']}/confirm", headers=alice,
                                              json={"post_url": journey.post_url})
    assert confirmed.status_code == 200, confirmed.text

    # A reader clicks the tracked link; LinkedIn's preview bot fetches it too (not counted).
    code = share["tracked_link_code"]
    human = await stack.distribution.get(f"/r/{code}", headers={"User-Agent": "Mozilla/5.0 (X11; Linux)"})
    assert human.status_code == 302 and human.headers["location"].startswith("https://acme.example/lab")
    bot = await stack.distribution.get(f"/r/{code}", headers={"User-Agent": "LinkedInBot/1.0"})
    assert bot.status_code == 302

    # A connector reports what LinkedIn saw, signed.
    connector = await stack.distribution.post("/v1/connectors", headers=keyed(integrator, f"connector-{uuid.uuid4()}"),
                                              json={"name": "linkedin-analytics"})
    assert connector.status_code == 201, connector.text
    assert connector.headers["cache-control"] == "no-store"
    connector_id, secret = connector.json()["connector_id"], connector.json()["secret"]
    journey.connector_secrets.append(secret)
    occurred_at = datetime.now(UTC).isoformat()
    for report_id, kind, count in (("r1", "impression", 1000), ("r2", "reaction", 40), ("r3", "comment", 6),
                                   ("r4", "comment_reply", 3), ("r5", "reshare", 4)):
        # The reshare is reported by the post's URL, as a connector that never saw our share id would.
        post = {"post_url": journey.post_url} if kind == "reshare" else {"share_id": share["share_id"]}
        body = json.dumps({"id": report_id, "kind": kind, "count": count, "occurred_at": occurred_at,
                           **post}).encode()
        reported = await stack.distribution.post(
            f"/v1/connectors/{connector_id}/engagements", content=body,
            headers={**integrator, "content-type": "application/json", "X-Advocacy-Signature": webhook_signature(secret, body)})
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
    too_small = await stack.metrics.get("/v1/metrics/teams/R&D", headers=manager)
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
    return journey
