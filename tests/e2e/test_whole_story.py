"""The whole story of a programme across the four services, through their public APIs only.

A directory provisions five people over SCIM; an admin publishes the charter; four of them volunteer
(their own tokens). An editor's two items pass a four-eyes review and are published by the scheduler.
Alice and Bob share them in their own words (near-copies of the suggested text and of a colleague's post
are refused), readers click the tracked links (a link-preview bot and a returning visitor among them), a
connector reports engagement and conversions, and the metrics are exact in every view. Then Carol opts
out, Alice asks for her data and its erasure, the directory deprovisions Dave (SCIM DELETE), and Carol
comes back: every service keeps to it. Events flow between the services through the real Kafka only;
nothing here touches a service's storage. Expected figures are computed from what the story sent, with
the definitions of docs/kpis.md.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from advocacy_testkit import eventually, webhook_signature

from advocacy_common.auth import ambassador_id_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

CHARTER = {"title": "Social media charter", "body": "Speak for yourself; never share confidential figures.",
           "red_lines": ["No confidential figures"], "tone": "Personal, factual",
           "disclosure_required": True, "disclosure_line": "#EmployeeOfAcme"}
DISCLOSURE = "#WeAreAcme #EmployeeOfAcme"  # the campaign's line and the charter's
SUGGESTED_LAB = f"Proud of our new lab in Lyon, where interns run real experiments from day one! {DISCLOSURE}"
SUGGESTED_JOBS = f"We are hiring battery engineers in Lyon: come and build the cells of tomorrow. {DISCLOSURE}"
ALICE_TEXT = ("Last month I spent a whole day in our new Lyon lab with the battery team. What struck me most "
              f"was how the interns design and run their own experiments from the very first week. {DISCLOSURE}")
# Bob's near-copy of Alice's confirmed post: a few words changed, nothing like the suggested text.
BOB_COPY = ("Last month I spent a whole day in our new Lyon lab with the battery team. What struck me most "
            f"was how the interns design and run their own tests from the very first week. {DISCLOSURE}")
BOB_TEXT = ("Five years ago I joined the cell chemistry group as a junior engineer; today I mentor two of our "
            f"apprentices. If you like hard problems and patient colleagues, have a look. {DISCLOSURE}")
CAROL_TEXT = f"Our Lyon lab is a place where I learn something every single week, honestly. {DISCLOSURE}"


@dataclass(frozen=True)
class Person:
    login: str
    given_name: str
    family_name: str
    handle: str
    audience: int


PEOPLE = {key: Person(f"{key}.{suffix}@acme.example", key.capitalize(), family, f"{key}-{suffix}", audience)
          for key, suffix, family, audience in (
              ("alice", "martin", "Martin", 640), ("bob", "nguyen", "Nguyen", 320), ("carol", "dupont", "Dupont", 150),
              ("dave", "okafor", "Okafor", 90), ("eve", "larsen", "Larsen", 50))}
VOLUNTEERS = ("alice", "bob", "carol", "dave")  # Eve is in the directory only


@dataclass
class Story:
    """What the story has handed out so far, step by step."""

    tenant: str
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    charter_version: int = 0
    campaign_id: str = ""
    lab_id: str = ""
    jobs_id: str = ""
    shares: dict[str, dict[str, Any]] = field(default_factory=dict)
    connector: tuple[str, str] = ("", "")  # id and signing secret

    async def report(self, stack, path: str, report: dict[str, Any]) -> int:
        """A signed connector report (engagements or conversions); its status code."""
        connector_id, secret = self.connector
        body = json.dumps(report).encode()
        answer = await stack.distribution.post(
            f"/v1/connectors/{connector_id}/{path}", content=body,
            headers={**self.headers["integrator"], "content-type": "application/json",
                     "X-Advocacy-Signature": webhook_signature(secret, body)})
        assert answer.status_code < 500, answer.text
        return answer.status_code

    def id_of(self, key: str) -> str:
        return ambassador_id_for(self.tenant, PEOPLE[key].login)


def problem_of(response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    return response.json()


def comparable(kpis: dict[str, Any]) -> dict[str, Any]:
    """KPIs with ratios rounded (computed by another float path) and empty conversion types left out."""
    rounded = {key: round(value, 9) if isinstance(value, float) else value for key, value in kpis.items()}
    rounded["conversions_by_type"] = {kind: n for kind, n in kpis["conversions_by_type"].items() if n}
    return rounded


def expected_kpis(*, opted_in: int, active: int, shares: int, personalized: int, reach: int, impressions: int,
                  reactions: int, comments: int, replies: int, clicks: int, unique: int,
                  conversions: dict[str, int]) -> dict[str, Any]:
    """Every KPI of docs/kpis.md, from the raw figures this story sent (no reshares; LinkedIn's CPM is 12)."""
    def ratio(part: int, whole: int) -> float | None:
        return round(part / whole, 9) if whole else None

    converted = sum(conversions.values())
    return {"ambassadors_opted_in": opted_in, "active_ambassadors": active, "activation_rate": ratio(active, opted_in),
            "shares": shares, "personalized_shares": personalized, "personalization_rate": ratio(personalized, shares),
            "potential_reach": reach, "impressions": impressions, "reactions": reactions, "comments": comments,
            "reshares": 0, "engagements": reactions + comments,
            "engagement_rate": ratio(reactions + comments, impressions),
            "comment_replies": replies, "comment_response_rate": ratio(replies, comments), "clicks": clicks,
            "unique_clicks": unique, "click_through_rate": ratio(clicks, impressions), "conversions": converted,
            "conversions_by_type": conversions, "conversion_rate": ratio(converted, clicks),
            "earned_media_value": round(impressions / 1000 * 12, 2),
            # Nothing read from a network's own API in this story (see test_network_connectors), and
            # nobody typed figures in: organic reach and the self-reported part stay zero.
            "members_reached": 0,
            "self_reported": dict.fromkeys(("impressions", "members_reached", "reactions", "comments",
                                            "comment_replies", "reshares"), 0)}


# What the connector and the readers do, per share: (impressions, reactions, comments, comment replies),
# clicks as (visitor address, user agent), conversions by type.
REPORTED = {"alice": (1000, 40, 6, 3), "bob": (500, 15, 4, 2)}
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
SAFARI = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605"
LINKEDIN_BOT = "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)"
CLICKS = {"alice": [("203.0.113.10", FIREFOX), ("203.0.113.10", FIREFOX), ("198.51.100.7", SAFARI),
                    ("192.0.2.99", LINKEDIN_BOT)],
          "bob": [("203.0.113.10", FIREFOX)]}
CONVERSIONS = {"alice": {"application": 2}, "bob": {"lead": 1}}

LAB_KPIS = dict(shares=1, personalized=1, reach=640, impressions=1000, reactions=40, comments=6, replies=3,
                clicks=3, unique=2, conversions={"application": 2})
JOBS_KPIS = dict(shares=1, personalized=1, reach=320, impressions=500, reactions=15, comments=4, replies=2,
                 clicks=1, unique=1, conversions={"lead": 1})
PROGRAMME_KPIS = dict(shares=2, personalized=2, reach=960, impressions=1500, reactions=55, comments=10, replies=5,
                      clicks=4, unique=3, conversions={"application": 2, "lead": 1})


async def test_the_whole_story(stack, bearer):
    story = Story(tenant=f"story{uuid.uuid4().hex[:8]}")
    for login, role in (("admin-1", "admin"), ("okta-scim", "integrator"), ("rev-1", "reviewer"),
                        ("an-1", "analyst")):
        story.headers[role] = bearer(story.tenant, login, role)
    story.headers["editor"] = bearer(story.tenant, "ed-1", "editor", "reviewer")  # may review, not her own items
    for key, person in PEOPLE.items():
        story.headers[key] = bearer(story.tenant, person.login, "ambassador")

    await directory_charter_and_volunteers(stack, story)
    await reviewed_and_scheduled_content(stack, story)
    await feeds_and_shares(stack, story)
    await readers_and_the_connector(stack, story)
    await exact_metrics(stack, story)
    await carol_opts_out(stack, story)
    await alice_exports_then_erases(stack, story)
    await the_directory_deprovisions_dave(stack, story)
    await carol_comes_back(stack, story)


async def directory_charter_and_volunteers(stack, story: Story) -> None:
    charter = await stack.ambassador.post("/v1/charters", json=CHARTER, headers=story.headers["admin"])
    assert charter.status_code == 201, charter.text
    story.charter_version = charter.json()["version"]
    for key, person in PEOPLE.items():
        user = await stack.ambassador.post("/scim/v2/Users", headers=story.headers["integrator"], json={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": person.login, "active": True,
            "displayName": f"{person.given_name} {person.family_name}",
            "name": {"givenName": person.given_name, "familyName": person.family_name},
            "emails": [{"value": person.login, "primary": True, "type": "work"}]})
        assert user.status_code == 201, user.text
        assert user.json()["id"] == story.id_of(key)  # the id every service derives from the person's token
    taken = await stack.ambassador.post("/scim/v2/Users", headers=story.headers["integrator"], json={
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": PEOPLE["alice"].login.upper()})
    assert taken.status_code == 409 and taken.json()["scimType"] == "uniqueness"

    for key in VOLUNTEERS:
        person = PEOPLE[key]
        profile = {"persona": "expert", "topics": ["Research"], "languages": ["en"], "team_id": "R&D",
                   "location": "Lyon", "networks": [{"network": "linkedin", "handle": person.handle,
                                                     "audience_size": person.audience}]}
        opted_in = await stack.ambassador.post("/v1/me/opt-in", headers=story.headers[key], json={
            "charter_version": story.charter_version, "profile": profile})
        assert opted_in.status_code == 200, opted_in.text
        me = (await stack.ambassador.get("/v1/me", headers=story.headers[key])).json()
        assert (me["status"], me["charter_version"], me["needs_charter_acceptance"]) == (
            "opted_in", story.charter_version, False)
    eve = (await stack.ambassador.get("/v1/me", headers=story.headers["eve"])).json()
    assert eve["status"] != "opted_in"  # in the directory, never an ambassador until she volunteers


async def reviewed_and_scheduled_content(stack, story: Story) -> None:
    editor, reviewer = story.headers["editor"], story.headers["reviewer"]
    today = datetime.now(UTC).date()
    campaign = await stack.content.post("/v1/campaigns", headers=editor, json={
        "name": "Lyon lab and jobs", "objective": "talent", "starts_on": (today - timedelta(days=1)).isoformat(),
        "ends_on": (today + timedelta(days=30)).isoformat(), "disclosure_line": "#WeAreAcme"})
    assert campaign.status_code == 201, campaign.text
    story.campaign_id = campaign.json()["id"]
    publish_at = datetime.now(UTC) + timedelta(seconds=3)
    ids = []
    for title, link, text in (("Our new lab opens", "https://acme.example/lab", SUGGESTED_LAB),
                              ("Battery engineers wanted", "https://acme.example/jobs", SUGGESTED_JOBS)):
        item = await stack.content.post("/v1/content", headers=editor, json={
            "campaign_id": story.campaign_id, "title": title, "link_url": link,
            "suggested_texts": {"linkedin": text}, "topics": ["Research"], "language": "en",
            "audience": {"teams": ["R&D"], "languages": ["en"], "personas": ["expert"]}, "networks": ["linkedin"],
            "publish_at": publish_at.isoformat(), "expires_at": (publish_at + timedelta(days=7)).isoformat()})
        assert item.status_code == 201, item.text
        content_id = item.json()["id"]
        ids.append(content_id)
        assert (await stack.content.post(f"/v1/content/{content_id}/submit", headers=editor)).status_code == 200
        own = await stack.content.post(f"/v1/content/{content_id}/approve", headers=editor)
        assert own.status_code == 403 and "four-eyes" in own.text.lower()  # she holds the reviewer role too
        approved = await stack.content.post(f"/v1/content/{content_id}/approve", headers=reviewer)
        assert approved.status_code == 200 and approved.json()["status"] == "approved", approved.text
    story.lab_id, story.jobs_id = ids

    async def both_published():
        items = [(await stack.content.get(f"/v1/content/{i}", headers=editor)).json() for i in ids]
        return items if all(item["status"] == "published" for item in items) else None

    for item in await eventually(both_published, timeout=30):
        # Published by the scheduler at its time, not by the approval; the reviewer is on record.
        assert datetime.fromisoformat(item["published_at"]) >= publish_at, item
        steps = [(entry["status"], entry["by"]) for entry in item["history"]]
        assert steps[-2] == ("approved", "rev-1") and steps[-1][0] == "published", steps


async def feeds_and_shares(stack, story: Story) -> None:
    alice, bob = story.headers["alice"], story.headers["bob"]

    async def feed_of(key: str) -> dict[str, Any]:
        feed = await stack.distribution.get("/v1/feed", headers=story.headers[key])
        assert feed.status_code == 200, feed.text
        return feed.json()

    async def both_in_the_feeds():
        feeds = [await feed_of(key) for key in ("alice", "bob")]
        return all({i["content_id"] for i in feed["items"]} == {story.lab_id, story.jobs_id} for feed in feeds)

    await eventually(both_in_the_feeds)
    eve = await feed_of("eve")
    assert eve["items"] == [] and eve["reason"] == "not_opted_in"

    # The suggested text verbatim is refused with a clear problem: personalise it.
    verbatim = await stack.distribution.post("/v1/shares", headers=alice, json={
        "content_id": story.lab_id, "network": "linkedin", "text": SUGGESTED_LAB})
    refusal = problem_of(verbatim, 422)
    assert refusal["rule"] == "too_similar_to_suggested" and refusal["score"] == pytest.approx(1.0)
    assert refusal["threshold"] == pytest.approx(0.4) and refusal["detail"]

    story.shares["alice"] = await prepared_and_confirmed(stack, story, "alice", story.lab_id, ALICE_TEXT)

    # Bob's light edit of Alice's confirmed post is refused as a colleague's near-copy.
    copied = await stack.distribution.post("/v1/shares", headers=bob, json={
        "content_id": story.lab_id, "network": "linkedin", "text": BOB_COPY})
    refusal = problem_of(copied, 422)
    assert refusal["rule"] == "too_similar_to_colleagues" and refusal["score"] > refusal["threshold"], refusal
    for alices in (PEOPLE["alice"].given_name, PEOPLE["alice"].handle, story.id_of("alice"), "design and run"):
        assert alices not in copied.text  # the refusal says a colleague's post, not whose nor what it said
    story.shares["bob"] = await prepared_and_confirmed(stack, story, "bob", story.jobs_id, BOB_TEXT)

    async def shared_items_left_the_feeds():
        return (not [i for i in (await feed_of("alice"))["items"] if i["content_id"] == story.lab_id]
                and not [i for i in (await feed_of("bob"))["items"] if i["content_id"] == story.jobs_id])

    await eventually(shared_items_left_the_feeds, timeout=10)


async def prepared_and_confirmed(stack, story: Story, key: str, content_id: str, text: str) -> dict[str, Any]:
    headers = story.headers[key]
    prepared = await stack.distribution.post("/v1/shares", headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
                                             json={"content_id": content_id, "network": "linkedin", "text": text})
    assert prepared.status_code == 201, prepared.text
    share = prepared.json()
    assert share["personalized"] is True and share["similarity_to_suggested"] < 0.4, share
    assert share["share_intent_url"].startswith("https://www.linkedin.com/sharing/share-offsite/?url=")
    post_url = f"https://www.linkedin.com/posts/{PEOPLE[key].handle}_{uuid.uuid4().hex[:12]}"
    confirmed = await stack.distribution.post(f"/v1/shares/{share['share_id']}/confirm", headers=headers,
                                              json={"post_url": post_url})
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "confirmed", confirmed.text
    return share


async def readers_and_the_connector(stack, story: Story) -> None:
    integrator = story.headers["integrator"]
    for key, visits in CLICKS.items():
        link = story.shares[key]["tracked_link_code"]
        target = "https://acme.example/lab" if key == "alice" else "https://acme.example/jobs"
        for address, agent in visits:
            visit = await stack.distribution.get(f"/r/{link}", headers={"User-Agent": agent,
                                                                        "X-Forwarded-For": address})
            assert visit.status_code == 302 and visit.headers["location"].startswith(target), visit.text
            assert f"utm_content={link}" in visit.headers["location"]

    connector = await stack.distribution.post("/v1/connectors", headers=integrator,
                                              json={"name": "linkedin-analytics"})
    assert connector.status_code == 201, connector.text
    assert connector.headers["cache-control"] == "no-store"
    story.connector = (connector.json()["connector_id"], connector.json()["secret"])
    connector_id = story.connector[0]

    occurred_at = datetime.now(UTC).isoformat()
    for key, counts in REPORTED.items():
        share_id = story.shares[key]["share_id"]
        for kind, count in zip(("impression", "reaction", "comment", "comment_reply"), counts, strict=True):
            assert await story.report(stack, "engagements", {"id": f"{key}-{kind}", "kind": kind, "count": count,
                                                             "occurred_at": occurred_at, "share_id": share_id}) == 202
        for conversion_type, count in CONVERSIONS[key].items():
            assert await story.report(stack, "conversions", {
                "id": f"{key}-{conversion_type}", "tracked_link_code": story.shares[key]["tracked_link_code"],
                "conversion_type": conversion_type, "count": count, "occurred_at": occurred_at}) == 202
    replayed = await story.report(stack, "engagements", {"id": "alice-reaction", "kind": "reaction", "count": 40,
                                                         "occurred_at": occurred_at,
                                                         "share_id": story.shares["alice"]["share_id"]})
    assert replayed == 409  # a connector's retry never counts twice
    unsigned = await stack.distribution.post(f"/v1/connectors/{connector_id}/engagements", headers=integrator,
                                             json={"id": "forged", "kind": "impression", "count": 10 ** 6,
                                                   "occurred_at": occurred_at,
                                                   "share_id": story.shares["alice"]["share_id"]})
    assert unsigned.status_code == 401, unsigned.text


async def kpis_once_equal(stack, story: Story, path: str, expected: dict[str, Any], headers=None,
                          timeout: float = 45.0) -> None:
    """Poll a metrics view until its KPIs are exactly `expected`; on timeout, the last difference is shown."""
    headers = headers or story.headers["analyst"]
    differences: dict[str, Any] = {}

    async def equal():
        answer = await stack.metrics.get(path, headers=headers)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        kpis = body["kpis"] if "kpis" in body else body["points"][-1]["kpis"]
        got = comparable(kpis)
        assert set(got) == set(expected), f"KPIs named differently: {set(got) ^ set(expected)}"
        differences.clear()
        differences.update({k: (got.get(k), v) for k, v in expected.items() if got.get(k) != v})
        return not differences

    try:
        await eventually(equal, timeout=timeout, interval=0.5)
    except AssertionError:
        pytest.fail(f"{path}: KPIs (got, expected) differ: {differences}")


async def exact_metrics(stack, story: Story) -> None:
    await kpis_once_equal(stack, story, "/v1/metrics/overview",
                          expected_kpis(opted_in=4, active=2, **PROGRAMME_KPIS))
    await kpis_once_equal(stack, story, f"/v1/metrics/campaigns/{story.campaign_id}",
                          expected_kpis(opted_in=4, active=2, **PROGRAMME_KPIS), timeout=5)
    await kpis_once_equal(stack, story, f"/v1/metrics/contents/{story.lab_id}",
                          expected_kpis(opted_in=4, active=1, **LAB_KPIS), timeout=5)
    await kpis_once_equal(stack, story, f"/v1/metrics/contents/{story.jobs_id}",
                          expected_kpis(opted_in=4, active=1, **JOBS_KPIS), timeout=5)
    today = datetime.now(UTC).date().isoformat()
    await kpis_once_equal(stack, story, f"/v1/metrics/me?from={today}&to={today}&granularity=day",
                          expected_kpis(opted_in=1, active=1, **LAB_KPIS), headers=story.headers["alice"], timeout=5)
    nosy = await stack.metrics.get("/v1/metrics/overview", headers=story.headers["alice"])
    assert nosy.status_code == 403  # an ambassador reads her own figures only


async def carol_opts_out(stack, story: Story) -> None:
    carol = story.headers["carol"]
    out = await stack.ambassador.post("/v1/me/opt-out", headers=carol, json={})
    assert out.status_code == 200 and out.json()["status"] == "opted_out", out.text

    async def feed_explains():
        feed = (await stack.distribution.get("/v1/feed", headers=carol)).json()
        return feed if feed["items"] == [] and feed.get("reason") == "opted_out" else None

    feed = await eventually(feed_explains, timeout=20)
    assert "opted out" in feed["message"]
    later = await stack.distribution.post("/v1/shares", headers=carol, json={
        "content_id": story.lab_id, "network": "linkedin", "text": CAROL_TEXT})
    assert problem_of(later, 422)["rule"] == "opted_out"
    await kpis_once_equal(stack, story, "/v1/metrics/overview", expected_kpis(opted_in=3, active=2, **PROGRAMME_KPIS),
                          timeout=20)


async def alice_exports_then_erases(stack, story: Story) -> None:
    alice, admin, alice_id = story.headers["alice"], story.headers["admin"], story.id_of("alice")
    person = PEOPLE["alice"]
    export = await stack.ambassador.get("/v1/me/export", headers=alice)
    assert export.status_code == 200, export.text
    assert export.headers["cache-control"] == "no-store"
    held = export.json()
    assert held["ambassador_id"] == alice_id and held["person"]["directory"]["user_name"] == person.login
    assert held["person"]["profile"]["networks"][0]["handle"] == person.handle
    assert ("opt_in", story.charter_version) in [(c["kind"], c["charter_version"]) for c in held["person"]["consents"]]

    erased = await stack.ambassador.post("/v1/me/erasure", headers=alice)
    assert erased.status_code == 200 and erased.json()["ambassador_id"] == alice_id, erased.text
    again = problem_of(await stack.ambassador.get("/v1/me/export", headers=alice), 403)
    assert "directory" in again["detail"]  # she is no longer in the directory: nothing is held to export

    # The ambassador service: no personal data left, the SCIM resource gone, consent proofs kept.
    scim = await stack.ambassador.get(f"/scim/v2/Users/{alice_id}", headers=story.headers["integrator"])
    assert scim.status_code == 404, scim.text
    found = await stack.ambassador.get("/scim/v2/Users", headers=story.headers["integrator"],
                                       params={"filter": f'userName eq "{person.login}"'})
    assert found.status_code == 200 and found.json()["totalResults"] == 0, found.text
    remains = await stack.ambassador.get(f"/v1/ambassadors/{alice_id}/export", headers=admin)
    assert remains.status_code == 200, remains.text
    assert remains.json()["person"]["status"] == "erased" and remains.json()["person"]["consents"]
    consents = await stack.ambassador.get("/v1/consents/export", headers=admin, params={"format": "json"})
    assert consents.status_code == 200, consents.text
    hers = [c for c in map(json.loads, consents.text.splitlines()) if c["ambassador_id"] == alice_id]  # JSON lines
    assert {(c["kind"], c["user_name"]) for c in hers} == {("opt_in", None), ("withdrawal", None)}, hers
    listed = (await stack.ambassador.get(f"/v1/ambassadors/{alice_id}", headers=admin)).json()
    assert (listed["status"], listed["user_name"], listed["display_name"]) == ("erased", None, None)
    for personal in (person.login, person.given_name, person.family_name, person.handle, "Lyon"):
        assert personal.lower() not in remains.text.lower(), f"{personal!r} still held: {remains.text}"
        assert personal.lower() not in consents.text.lower(), f"{personal!r} in the consent export"

    # Distribution: her shares are no longer served to her, and she is told why nothing is suggested.
    share_id = story.shares["alice"]["share_id"]

    async def share_gone():
        return (await stack.distribution.get(f"/v1/shares/{share_id}", headers=alice)).status_code == 404

    await eventually(share_gone, timeout=20)
    mine = await stack.distribution.get("/v1/me/shares", headers=alice)
    assert mine.status_code == 200 and mine.json()["items"] == [], mine.text
    kept = await stack.distribution.get(f"/v1/shares/{share_id}", headers=story.headers["integrator"])
    assert kept.status_code == 200, kept.text  # the anonymous fact stays, without her words or her post
    assert kept.json()["ambassador_id"] != alice_id and ALICE_TEXT not in kept.text
    assert PEOPLE["alice"].handle not in kept.text
    feed = (await stack.distribution.get("/v1/feed", headers=alice)).json()
    assert feed["items"] == [] and feed["reason"] == "erased"
    bobs = await stack.distribution.get(f"/v1/shares/{story.shares['bob']['share_id']}", headers=story.headers["bob"])
    assert bobs.status_code == 200  # only hers

    # Her post stays online: a reader's late visit and a connector's late report still count, anonymously.
    link = story.shares["alice"]["tracked_link_code"]
    late_visit = await stack.distribution.get(f"/r/{link}", headers={"User-Agent": SAFARI,
                                                                     "X-Forwarded-For": "198.51.100.200"})
    assert late_visit.status_code == 302, late_visit.text
    assert await story.report(stack, "engagements", {"id": "alice-late-reaction", "kind": "reaction", "count": 1,
                                                     "occurred_at": datetime.now(UTC).isoformat(),
                                                     "share_id": share_id}) == 202

    # Metrics: her own statistics are gone; the programme keeps the anonymous counts, minus her as an ambassador.
    today = datetime.now(UTC).date().isoformat()
    await kpis_once_equal(stack, story, f"/v1/metrics/me?from={today}&to={today}&granularity=day",
                          expected_kpis(opted_in=0, active=0, shares=0, personalized=0, reach=0, impressions=0,
                                        reactions=0, comments=0, replies=0, clicks=0, unique=0, conversions={}),
                          headers=alice, timeout=20)
    late = {"reactions": 1, "clicks": 1, "unique": 1}
    await kpis_once_equal(stack, story, "/v1/metrics/overview",
                          expected_kpis(opted_in=2, active=1, **plus(PROGRAMME_KPIS, late)), timeout=20)
    await kpis_once_equal(stack, story, f"/v1/metrics/contents/{story.lab_id}",
                          expected_kpis(opted_in=2, active=0, **plus(LAB_KPIS, late)), timeout=5)
    await kpis_once_equal(stack, story, f"/v1/metrics/contents/{story.jobs_id}",
                          expected_kpis(opted_in=2, active=1, **JOBS_KPIS), timeout=5)


def plus(figures: dict[str, Any], more: dict[str, int]) -> dict[str, Any]:
    return {key: value + more.get(key, 0) if isinstance(value, int) else value for key, value in figures.items()}


async def the_directory_deprovisions_dave(stack, story: Story) -> None:
    """SCIM DELETE is an erasure too: Dave, who never shared, leaves the programme's count."""
    integrator, dave_id = story.headers["integrator"], story.id_of("dave")
    deleted = await stack.ambassador.delete(f"/scim/v2/Users/{dave_id}", headers=integrator)
    assert deleted.status_code == 204, deleted.text
    assert (await stack.ambassador.get(f"/scim/v2/Users/{dave_id}", headers=integrator)).status_code == 404
    late = {"reactions": 1, "clicks": 1, "unique": 1}
    await kpis_once_equal(stack, story, "/v1/metrics/overview",
                          expected_kpis(opted_in=1, active=1, **plus(PROGRAMME_KPIS, late)), timeout=20)

    async def feed_says_erased():  # the opt-out (reason "erased") comes first, then the erasure
        feed = (await stack.distribution.get("/v1/feed", headers=story.headers["dave"])).json()
        return feed["items"] == [] and feed["reason"] == "erased"

    await eventually(feed_says_erased, timeout=20)


async def carol_comes_back(stack, story: Story) -> None:
    """Opting out is not for ever: a new opt-in brings the suggestions and the count back."""
    carol = story.headers["carol"]
    again = await stack.ambassador.post("/v1/me/opt-in", headers=carol,
                                        json={"charter_version": story.charter_version})
    assert again.status_code == 200 and again.json()["status"] == "opted_in", again.text

    async def feed_back():
        feed = (await stack.distribution.get("/v1/feed", headers=carol)).json()
        return {i["content_id"] for i in feed["items"]} == {story.lab_id, story.jobs_id}

    await eventually(feed_back, timeout=20)
    late = {"reactions": 1, "clicks": 1, "unique": 1}
    await kpis_once_equal(stack, story, "/v1/metrics/overview",
                          expected_kpis(opted_in=2, active=1, **plus(PROGRAMME_KPIS, late)), timeout=20)
