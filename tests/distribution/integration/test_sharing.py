"""The two-step share flow: prepare (every rule), confirm (post.shared.v1 through the outbox)."""

import asyncio
from datetime import datetime, timedelta
from urllib.parse import quote

import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient

from advocacy_common.events import CharterPublished, QuietHours, SharingPreferences
from advocacy_common.topics import SHARE
from distribution.bootstrap import create_app

pytestmark = pytest.mark.integration


@pytest.fixture
async def world(emit, projected, make, tenant, amb):
    await emit(make.opted_in(amb(tenant, "amb-1")), make.opted_in(amb(tenant, "amb-2")), make.content("c1"),
               make.content("c2", disclosure_line="#AcmeEmployee"))
    await projected((amb(tenant, "amb-1"), amb(tenant, "amb-2")), {"c1": 1, "c2": 1})


def share(content_id="c1", network="linkedin", text=None, **extra):
    return {"content_id": content_id, "network": network, "text": text or OWN, **extra}


OWN = ("I visited our Lyon site last month and watched the solar panels go up. Today the whole plant runs on "
       "renewable power, and honestly it makes me proud to work here.")


async def test_prepare_then_confirm_emits_post_shared(client, bearer, tenant, world, read_topic, make, amb):
    headers = {**bearer(tenant, "amb-1", "ambassador"), "Idempotency-Key": "k-1"}
    response = await client.post("/v1/shares", json=share(), headers=headers)
    assert response.status_code == 201, response.text
    prepared = response.json()
    code = prepared["tracked_link_code"]
    assert prepared["status"] == "prepared" and prepared["personalized"] is True
    assert prepared["tracked_link"] == f"https://go.example.com/r/{code}"
    assert prepared["share_intent_url"] == ("https://www.linkedin.com/sharing/share-offsite/?url="
                                            + quote(prepared["tracked_link"], safe=""))
    assert prepared["similarity_to_suggested"] < 0.4

    again = await client.post("/v1/shares", json=share(), headers=headers)
    assert again.status_code == 201 and again.json() == prepared
    other_body = await client.post("/v1/shares", json=share(text=OWN + " Really."), headers=headers)
    assert other_body.status_code == 422 and "Idempotency-Key" in other_body.text

    confirm = await client.post(f"/v1/shares/{prepared['share_id']}/confirm",
                                json={"post_url": "https://www.linkedin.com/posts/p-1"},
                                headers=bearer(tenant, "amb-1", "ambassador"))
    assert confirm.status_code == 200 and confirm.json()["status"] == "confirmed"
    repeat = await client.post(f"/v1/shares/{prepared['share_id']}/confirm",
                               headers=bearer(tenant, "amb-1", "ambassador"))
    assert repeat.status_code == 200

    events = await read_topic(SHARE, lambda e: e.tenantid == tenant, min_count=2, timeout=4)
    assert len(events) == 1  # confirmed twice, shared once
    data = events[0].data
    assert events[0].type == "post.shared.v1" and events[0].subject == amb(tenant, "amb-1")
    assert data["share_id"] == prepared["share_id"] and data["content_id"] == "c1"
    assert data["campaign_id"] == "camp-1" and data["team_id"] == "team-ops" and data["network"] == "linkedin"
    assert data["potential_reach"] == 850 and data["personalized"] is True
    assert data["tracked_link_code"] == code and data["similarity_to_suggested"] == prepared["similarity_to_suggested"]

    feed = (await client.get("/v1/feed", headers=bearer(tenant, "amb-1", "ambassador"))).json()
    assert [item["content_id"] for item in feed["items"]] == ["c2"]  # c1 is shared
    refused = await client.post("/v1/shares", json=share(), headers=bearer(tenant, "amb-1", "ambassador"))
    assert refused.status_code == 422 and refused.json()["rule"] == "already_shared"


async def test_near_copies_are_refused_with_rule_score_and_threshold(client, bearer, tenant, world, make):
    refused = await client.post("/v1/shares", json=share(text="So proud! " + make.suggested),
                                headers=bearer(tenant, "amb-1", "ambassador"))
    assert refused.status_code == 422
    assert refused.headers["content-type"] == "application/problem+json"
    body = refused.json()
    assert body["rule"] == "too_similar_to_suggested" and body["threshold"] == 0.4 and body["score"] > 0.8
    assert "own words" in body["detail"]

    first = await client.post("/v1/shares", json=share(), headers=bearer(tenant, "amb-1", "ambassador"))
    await client.post(f"/v1/shares/{first.json()['share_id']}/confirm", headers=bearer(tenant, "amb-1", "ambassador"))
    parrot = OWN.replace("honestly ", "").replace("last month", "in May")
    copied = await client.post("/v1/shares", json=share(text=parrot), headers=bearer(tenant, "amb-2", "ambassador"))
    assert copied.status_code == 422 and copied.json()["rule"] == "too_similar_to_colleagues"
    assert copied.json()["score"] > 0.4


async def test_text_rules_disclosure_length_network(client, bearer, tenant, world):
    headers = bearer(tenant, "amb-1", "ambassador")
    missing = await client.post("/v1/shares", json=share("c2"), headers=headers)
    assert missing.status_code == 422 and missing.json()["rule"] == "disclosure_missing"
    assert "#AcmeEmployee" in missing.json()["detail"]
    ok = await client.post("/v1/shares", json=share("c2", text=OWN + " #AcmeEmployee"), headers=headers)
    assert ok.status_code == 201, ok.text

    too_long = await client.post("/v1/shares", json=share(network="x", text=OWN + " " + OWN), headers=headers)
    assert too_long.status_code == 422 and too_long.json()["rule"] == "length_limit"
    assert too_long.json()["threshold"] == 256
    tweet = await client.post("/v1/shares", json=share(network="x", text="Proud of our Lyon team: the plant now "
                                                                          "runs on sun and wind. Go see it!"),
                              headers=headers)
    assert tweet.status_code == 201
    assert tweet.json()["share_intent_url"].startswith("https://x.com/intent/post?text=Proud%20of")

    network = await client.post("/v1/shares", json=share(network="facebook"), headers=headers)
    assert network.status_code == 422 and network.json()["rule"] == "network_not_allowed"
    unknown = await client.post("/v1/shares", json=share("nope"), headers=headers)
    assert unknown.status_code == 422 and unknown.json()["rule"] == "content_not_available"
    invalid = await client.post("/v1/shares", json={"content_id": "c1", "network": "myspace", "text": "x"},
                                headers=headers)
    assert invalid.status_code == 422 and invalid.json()["errors"][0]["field"] == "network"


async def test_charter_disclosure_is_required_too(client, bearer, tenant, world, emit, wait_for, repositories, make):
    await emit(CharterPublished(charter_id="ch", version=1, published_at=make.now, disclosure_required=True,
                                disclosure_line="#IWorkAtAcme"))

    async def charter():
        assert (await repositories.charters.current(tenant)).disclosure_line == "#IWorkAtAcme"
    await wait_for(charter)
    headers = bearer(tenant, "amb-1", "ambassador")
    missing = await client.post("/v1/shares", json=share(), headers=headers)
    assert missing.status_code == 422 and "#IWorkAtAcme" in missing.json()["detail"]

    # The feed lists every line a share will need, the charter's as well as the campaign's...
    feed = {item["content_id"]: item for item in (await client.get("/v1/feed", headers=headers)).json()["items"]}
    assert feed["c1"]["disclosure_lines"] == ["#IWorkAtAcme"] and feed["c1"]["disclosure_line"] is None
    assert feed["c2"]["disclosure_lines"] == ["#AcmeEmployee", "#IWorkAtAcme"]
    # ...so a text carrying what the feed showed is accepted, and one carrying only the campaign's is not.
    campaign_only = await client.post("/v1/shares", json=share("c2", text=OWN + " #AcmeEmployee"), headers=headers)
    assert campaign_only.status_code == 422 and campaign_only.json()["rule"] == "disclosure_missing"
    shown = await client.post("/v1/shares", json=share("c2", text=" ".join([OWN, *feed["c2"]["disclosure_lines"]])),
                              headers=headers)
    assert shown.status_code == 201, shown.text


async def test_weekly_limit_quiet_hours_and_slots(client, bearer, tenant, emit, projected, make, amb):
    prefs = SharingPreferences(max_shares_per_week=1, quiet_hours=QuietHours(start="22:00", end="07:00"),
                               time_zone="Europe/Paris")
    await emit(make.opted_in(amb(tenant, "amb-q"), preferences=prefs), make.opted_in(amb(tenant, "amb-r")),
               make.opted_in(amb(tenant, "amb-s")), make.content("c1"), make.content("c2"))
    await projected((amb(tenant, "amb-q"), amb(tenant, "amb-r"), amb(tenant, "amb-s")), {"c1": 1, "c2": 1})
    headers = bearer(tenant, "amb-q", "ambassador")
    night = (make.now + timedelta(days=1)).replace(hour=22, minute=30)  # 23:30 or 00:30 in Paris
    quiet = await client.post("/v1/shares", json=share(planned_at=night.isoformat()), headers=headers)
    assert quiet.status_code == 422 and quiet.json()["rule"] == "quiet_hours"

    day = (make.now + timedelta(days=1)).replace(hour=9, minute=0)  # 10:00 or 11:00 in Paris
    first = (await client.post("/v1/shares", json=share(planned_at=day.isoformat()), headers=headers)).json()
    assert first["recommended_at"] >= day.isoformat()[:16]
    slots = []
    for ambassador, text in (("amb-r", "Our Lyon plant went fully renewable; I saw the crews at work all spring."),
                             ("amb-s", "Renewable power for the whole Lyon plant: proud of the facilities team.")):
        prepared = await client.post("/v1/shares", json=share(text=text),
                                     headers=bearer(tenant, ambassador, "ambassador"))
        slots.append(datetime.fromisoformat(prepared.json()["recommended_at"]))
    assert slots[1] - slots[0] == timedelta(minutes=30)  # one content's shares are spread, not a burst
    assert slots[0] >= make.now

    await client.post(f"/v1/shares/{first['share_id']}/confirm", headers=headers)
    limited = await client.post("/v1/shares", json=share("c2", planned_at=day.isoformat()), headers=headers)
    assert limited.status_code == 422 and limited.json()["rule"] == "weekly_limit"
    assert limited.json()["threshold"] == 1


async def test_shares_are_private_to_their_owner_and_tenant(client, bearer, tenant, world):
    prepared = (await client.post("/v1/shares", json=share(), headers=bearer(tenant, "amb-1", "ambassador"))).json()
    path = f"/v1/shares/{prepared['share_id']}"
    assert (await client.get(path, headers=bearer(tenant, "amb-1", "ambassador"))).status_code == 200
    assert (await client.get(path, headers=bearer(tenant, "amb-2", "ambassador"))).status_code == 404
    assert (await client.get(path, headers=bearer("other-tenant", "amb-1", "ambassador"))).status_code == 404
    assert (await client.get(path, headers=bearer(tenant, "svc", "integrator"))).status_code == 200
    stolen = await client.post(f"{path}/confirm", headers=bearer(tenant, "amb-2", "ambassador"))
    assert stolen.status_code == 404


async def test_my_shares_are_paginated_newest_first(client, bearer, tenant, world):
    headers = bearer(tenant, "amb-1", "ambassador")
    first = (await client.post("/v1/shares", json=share(), headers=headers)).json()
    second = (await client.post("/v1/shares", json=share("c2", text=OWN + " #AcmeEmployee"), headers=headers)).json()
    page = (await client.get("/v1/me/shares?limit=1", headers=headers)).json()
    assert [s["share_id"] for s in page["items"]] == [second["share_id"]]
    rest = (await client.get(f"/v1/me/shares?limit=1&cursor={page['next_cursor']}", headers=headers)).json()
    assert [s["share_id"] for s in rest["items"]] == [first["share_id"]] and rest["next_cursor"] is None
    assert (await client.get("/v1/me/shares", headers=bearer(tenant, "amb-2", "ambassador"))).json()["items"] == []
    bad = await client.get("/v1/me/shares?cursor=bm9wZQ", headers=headers)
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "cursor"
    someone_elses = await client.get(f"/v1/me/shares?limit=1&cursor={page['next_cursor']}",
                                     headers=bearer(tenant, "amb-2", "ambassador"))
    assert someone_elses.status_code == 400  # a cursor of another person's list


HOLD_SECONDS = 2
OTHER_TEXTS = ("Our Lyon plant went fully renewable; I saw the crews at work all spring.",
               "Renewable power for the whole Lyon plant: proud of the facilities team.",
               "Spent a morning with the Lyon crew: every roof panel they fitted now powers the line I work on.")


@pytest.fixture
async def short_hold(settings, worker):
    """An API replica whose prepares hold their slot for 2 seconds only (the default is 30 minutes)."""
    app = create_app(settings.model_copy(update={"prepare_hold_seconds": HOLD_SECONDS}))
    async with LifespanManager(app, startup_timeout=60), \
            AsyncClient(transport=ASGITransport(app), base_url="http://short-hold") as replica:
        yield replica


async def test_an_abandoned_prepare_gives_its_slot_back_after_the_hold(short_hold, bearer, tenant, emit, projected,
                                                                         make, amb):
    logins = ("amb-h1", "amb-h2", "amb-h3", "amb-h4")
    await emit(*(make.opted_in(amb(tenant, login)) for login in logins), make.content("c1"))
    await projected(tuple(amb(tenant, login) for login in logins), {"c1": 1})
    planned = (make.now + timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0).isoformat()

    async def prepare(login: str, text: str):
        response = await short_hold.post("/v1/shares", json=share(text=text, planned_at=planned),
                                         headers=bearer(tenant, login, "ambassador"))
        assert response.status_code == 201, response.text
        return response.json(), datetime.fromisoformat(response.json()["recommended_at"])

    _, abandoned = await prepare("amb-h1", OWN)
    kept, second = await prepare("amb-h2", OTHER_TEXTS[0])
    assert second - abandoned == timedelta(minutes=30)  # while held, the first slot is taken
    confirmed = await short_hold.post(f"/v1/shares/{kept['share_id']}/confirm",
                                      headers=bearer(tenant, "amb-h2", "ambassador"))
    assert confirmed.status_code == 200
    await asyncio.sleep(HOLD_SECONDS + 0.5)
    _, reused = await prepare("amb-h3", OTHER_TEXTS[1])
    assert reused == abandoned  # amb-h1 never confirmed: the slot came back
    _, after = await prepare("amb-h4", OTHER_TEXTS[2])
    assert after - abandoned == timedelta(hours=1)  # the confirmed share and the fresh prepare still hold theirs
