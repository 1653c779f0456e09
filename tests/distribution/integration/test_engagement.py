"""Tracked links (clicks through the outbox) and signed connector reports (202 after Kafka's ack)."""

import json
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from advocacy_common.topics import ENGAGEMENT
from distribution.models.engagement import engagement_id, sign

pytestmark = pytest.mark.integration
BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"
OWN = ("I visited our Lyon site last month and watched the solar panels go up. Today the whole plant runs on "
       "renewable power, and honestly it makes me proud to work here.")


@pytest.fixture
async def confirmed(client, bearer, tenant, emit, projected, make, amb):
    """amb-1 shared c1 on LinkedIn; returns the confirmed share."""
    await emit(make.opted_in(amb(tenant, "amb-1")), make.content("c1"))
    await projected((amb(tenant, "amb-1"),), {"c1": 1})
    headers = bearer(tenant, "amb-1", "ambassador")
    prepared = (await client.post("/v1/shares", json={"content_id": "c1", "network": "linkedin", "text": OWN},
                                  headers=headers)).json()
    response = await client.post(f"/v1/shares/{prepared['share_id']}/confirm",
                                 json={"post_url": f"https://www.linkedin.com/posts/{tenant}"}, headers=headers)
    return response.json()


@pytest.fixture
async def connector(client, bearer, tenant):
    response = await client.post("/v1/connectors", json={"name": "linkedin-sync"},
                                 headers={**bearer(tenant, "admin-1", "admin"), "Idempotency-Key": "conn-1"})
    assert response.status_code == 201, response.text
    return response.json()


def signed(connector, body: dict, timestamp: int | None = None, secret: str | None = None) -> tuple[bytes, str]:
    raw = json.dumps(body).encode()
    return raw, sign(secret or connector["secret"], timestamp or int(time.time()), raw)


async def post_report(client, bearer, tenant, connector, body, kind="engagements", **signing):
    raw, signature = signed(connector, body, **signing)
    return await client.post(f"/v1/connectors/{connector['connector_id']}/{kind}", content=raw,
                             headers={**bearer(tenant, "svc", "integrator"), "X-Advocacy-Signature": signature,
                                      "Content-Type": "application/json"})


async def test_redirect_counts_clicks_uniquely_and_skips_bots(client, tenant, confirmed, read_topic, amb):
    code = confirmed["tracked_link_code"]
    visit = {"User-Agent": BROWSER, "X-Forwarded-For": "203.0.113.7"}
    first = await client.get(f"/r/{code}", headers=visit)
    assert first.status_code == 302
    target = urlsplit(first.headers["location"])
    query = parse_qs(target.query)
    assert (target.netloc, target.path) == ("www.example.com", "/news/green")
    assert query == {"lang": ["en"], "utm_source": ["linkedin"], "utm_medium": ["employee_advocacy"],
                     "utm_campaign": ["camp-1"], "utm_content": [code]}
    assert (await client.get(f"/r/{code}", headers=visit)).status_code == 302
    assert (await client.get(f"/r/{code}", headers={**visit, "X-Forwarded-For": "198.51.100.9"})).status_code == 302
    for bot in ("LinkedInBot/1.0 (compatible; Mozilla/5.0)", "Twitterbot/1.0",
                "facebookexternalhit/1.1", "Slackbot-LinkExpanding 1.0"):
        assert (await client.get(f"/r/{code}", headers={"User-Agent": bot})).status_code == 302

    clicks = await read_topic(ENGAGEMENT, lambda e: e.tenantid == tenant and e.data["kind"] == "click",
                              min_count=4, timeout=5)
    assert len(clicks) == 3
    assert sorted(c.data["unique_visitor"] for c in clicks) == [False, True, True]
    data = clicks[0].data
    assert (data["share_id"], data["content_id"], data["campaign_id"], data["ambassador_id"], data["team_id"],
            data["network"], data["source"], data["count"]) == \
        (confirmed["share_id"], "c1", "camp-1", amb(tenant, "amb-1"), "team-ops", "linkedin", "redirect", 1)
    assert clicks[0].id == data["engagement_id"]


async def test_unknown_code_is_a_404_page(client):
    response = await client.get("/r/doesnotexist", headers={"User-Agent": BROWSER})
    assert response.status_code == 404 and response.headers["content-type"].startswith("text/html")
    assert "does not exist" in response.text and "Traceback" not in response.text


async def test_signed_report_is_published_once(client, bearer, tenant, confirmed, connector, read_topic, repositories,
                                                 distribution_db, amb):
    assert connector["secret"].startswith("whsec_")
    assert connector["engagement_webhook"].endswith(f"/v1/connectors/{connector['connector_id']}/engagements")
    report = {"id": "li-1", "kind": "impression", "count": 1200, "occurred_at": "2026-11-20T10:00:00Z",
              "post_url": confirmed["post_url"]}
    accepted = await post_report(client, bearer, tenant, connector, report)
    assert accepted.status_code == 202, accepted.text
    expected_id = engagement_id(tenant, "linkedin-sync", "li-1")
    assert accepted.json() == {"engagement_id": expected_id, "status": "accepted"}

    replay = await post_report(client, bearer, tenant, connector, report)
    assert replay.status_code == 409 and replay.json()["engagement_id"] == expected_id

    events = await read_topic(ENGAGEMENT, lambda e: e.tenantid == tenant, min_count=2, timeout=3)
    assert [e.id for e in events] == [expected_id]
    data = events[0].data
    assert (data["kind"], data["count"], data["share_id"], data["ambassador_id"], data["source"],
            data["source_event_id"]) == ("impression", 1200, confirmed["share_id"], amb(tenant, "amb-1"),
                                         "linkedin-sync", "li-1")
    report_id = f"{tenant}/{connector['connector_id']}/li-1"
    stored = await repositories.reports.get(tenant, report_id)
    assert stored.acknowledged is True and stored.envelope is None
    assert "envelope" not in await distribution_db["reports"].find_one({"_id": report_id})


async def test_bad_signatures_are_refused_and_change_nothing(client, bearer, tenant, confirmed, connector,
                                                             repositories):
    report = {"id": "li-2", "kind": "reaction", "occurred_at": "2026-11-20T10:00:00Z",
              "share_id": confirmed["share_id"]}
    wrong_secret = await post_report(client, bearer, tenant, connector, report, secret="whsec_guess")
    assert wrong_secret.status_code == 401 and "does not match" in wrong_secret.json()["detail"]
    stale = await post_report(client, bearer, tenant, connector, report, timestamp=int(time.time()) - 301)
    assert stale.status_code == 401 and "300 seconds" in stale.json()["detail"]
    raw, _ = signed(connector, report)
    unsigned = await client.post(f"/v1/connectors/{connector['connector_id']}/engagements", content=raw,
                                 headers=bearer(tenant, "svc", "integrator"))
    assert unsigned.status_code == 401
    for refused in (wrong_secret, stale, unsigned):  # the challenge names the signature, not the (valid) token
        assert refused.headers["www-authenticate"].startswith('Advocacy-Signature realm="webhooks"')
    other_tenant = await post_report(client, bearer, "someone-else", connector, report)
    assert other_tenant.status_code == 404
    not_integrator = await client.post(f"/v1/connectors/{connector['connector_id']}/engagements", content=raw,
                                       headers=bearer(tenant, "amb-1", "ambassador"))
    assert not_integrator.status_code == 403
    unknown_share = await post_report(client, bearer, tenant, connector, {**report, "share_id": "nope"})
    assert unknown_share.status_code == 422 and unknown_share.json()["errors"][0]["field"] == "share_id"
    assert await repositories.reports.get(tenant, f"{tenant}/{connector['connector_id']}/li-2") is None


async def test_conversion_postback_by_tracked_link(client, bearer, tenant, confirmed, connector, read_topic):
    body = {"id": "ats-77", "tracked_link_code": confirmed["tracked_link_code"], "conversion_type": "application",
            "occurred_at": "2026-11-21T08:00:00Z"}
    accepted = await post_report(client, bearer, tenant, connector, body, kind="conversions")
    assert accepted.status_code == 202, accepted.text
    events = await read_topic(ENGAGEMENT, lambda e: e.tenantid == tenant and e.data["kind"] == "conversion")
    assert events[0].data["conversion_type"] == "application"
    assert events[0].data["share_id"] == confirmed["share_id"]
    bad = await post_report(client, bearer, tenant, connector, {**body, "id": "ats-78", "conversion_type": "sale"},
                            kind="conversions")
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "conversion_type"


async def test_comments_awaiting_reply(client, bearer, tenant, confirmed, connector, wait_for):
    for report in ({"id": "c-1", "kind": "comment", "count": 3}, {"id": "c-2", "kind": "comment_reply"}):
        response = await post_report(client, bearer, tenant, connector, {
            **report, "occurred_at": "2026-11-21T09:00:00Z", "tracked_link_code": confirmed["tracked_link_code"]})
        assert response.status_code == 202

    async def tallied():
        awaiting = (await client.get("/v1/me/comments-awaiting-reply",
                                     headers=bearer(tenant, "amb-1", "ambassador"))).json()
        assert awaiting == [{"share_id": confirmed["share_id"], "content_id": "c1", "network": "linkedin",
                             "post_url": confirmed["post_url"], "comments": 3, "replies": 1, "awaiting": 2}]
    await wait_for(tallied)
    others = await client.get("/v1/me/comments-awaiting-reply", headers=bearer(tenant, "amb-2", "ambassador"))
    assert others.json() == []


async def test_connector_registration_is_idempotent_and_secret_shown_once(client, bearer, tenant, connector):
    headers = {**bearer(tenant, "admin-1", "admin"), "Idempotency-Key": "conn-1"}
    again = await client.post("/v1/connectors", json={"name": "linkedin-sync"}, headers=headers)
    assert again.status_code == 201 and again.json()["connector_id"] == connector["connector_id"]
    other_body = await client.post("/v1/connectors", json={"name": "other"}, headers=headers)
    assert other_body.status_code == 422
    same_name = await client.post("/v1/connectors", json={"name": "linkedin-sync"},
                                  headers=bearer(tenant, "admin-1", "admin"))
    assert same_name.status_code == 409
    listed = (await client.get("/v1/connectors", headers=bearer(tenant, "svc", "integrator"))).json()
    assert [(c["name"], c["secret"]) for c in listed] == [("linkedin-sync", None)]
    assert (await client.post("/v1/connectors", json={"name": "x"},
                              headers=bearer(tenant, "amb", "ambassador"))).status_code == 403
