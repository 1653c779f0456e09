"""Tracked links (clicks through the outbox) and signed connector reports (202 after Kafka's ack)."""

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import AutoReconnect, ServerSelectionTimeoutError
from pymongo.monitoring import CommandListener

from advocacy_common.events import EngagementKind
from advocacy_common.outbox import queued_events
from advocacy_common.repository import Storage, UnitOfWork
from advocacy_common.topics import ENGAGEMENT
from distribution.adapters import mongo_repositories
from distribution.adapters.engagement import MongoClicks
from distribution.bootstrap import secret_box
from distribution.models.engagement import Click, engagement_id, engagement_received, sign
from distribution.models.sharing import TrackedLink
from distribution.options import Options
from distribution.service import Tracking

pytestmark = pytest.mark.integration
BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"
OWN = ("I visited our Lyon site last month and watched the solar panels go up. Today the whole plant runs on "
       "renewable power, and honestly it makes me proud to work here.")
OTHER_OWN = ("Our facilities team did something remarkable: no more fossil energy for the whole plant. I saw the "
             "first panels go up in the spring. Well done, everyone!")


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


def moment(**delta) -> str:
    """An occurred_at inside the share's life: now, or shifted by `delta` (timedelta arguments)."""
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


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


async def test_head_on_a_tracked_link_answers_like_get_without_body_or_click(client, tenant, confirmed, read_topic):
    code = confirmed["tracked_link_code"]
    visit = {"User-Agent": BROWSER, "X-Forwarded-For": "203.0.113.7"}
    head = await client.head(f"/r/{code}", headers=visit)
    get = await client.get(f"/r/{code}", headers=visit)
    assert head.status_code == get.status_code == 302 and head.content == b""
    for header in ("location", "cache-control", "referrer-policy"):
        assert head.headers[header] == get.headers[header]
    missing_head = await client.head("/r/doesnotexist", headers=visit)
    missing_get = await client.get("/r/doesnotexist", headers=visit)
    assert missing_head.status_code == 404 and missing_head.content == b""
    assert missing_head.headers["content-type"] == missing_get.headers["content-type"]
    assert missing_head.headers["content-length"] == missing_get.headers["content-length"]
    # Only the GET counted: the HEADs (a second visitor's one included) left no click.
    await client.head(f"/r/{code}", headers={**visit, "X-Forwarded-For": "198.51.100.9"})
    clicks = await read_topic(ENGAGEMENT, lambda e: e.tenantid == tenant and e.data["kind"] == "click",
                              min_count=2, timeout=5)
    assert len(clicks) == 1


async def test_unknown_code_is_a_404_page(client):
    response = await client.get("/r/doesnotexist", headers={"User-Agent": BROWSER})
    assert response.status_code == 404 and response.headers["content-type"].startswith("text/html")
    assert "does not exist" in response.text and "Traceback" not in response.text


async def test_signed_report_is_published_once(client, bearer, tenant, confirmed, connector, read_topic, repositories,
                                                 distribution_db, amb):
    assert connector["secret"].startswith("whsec_")
    assert connector["engagement_webhook"].endswith(f"/v1/connectors/{connector['connector_id']}/engagements")
    report = {"id": "li-1", "kind": "impression", "count": 1200, "occurred_at": moment(),
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
    report = {"id": "li-2", "kind": "reaction", "occurred_at": moment(),
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
            "occurred_at": moment()}
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
            **report, "occurred_at": moment(), "tracked_link_code": confirmed["tracked_link_code"]})
        assert response.status_code == 202

    async def tallied():
        awaiting = (await client.get("/v1/me/comments-awaiting-reply",
                                     headers=bearer(tenant, "amb-1", "ambassador"))).json()
        assert awaiting == {"items": [{"share_id": confirmed["share_id"], "content_id": "c1", "network": "linkedin",
                                       "post_url": confirmed["post_url"], "comments": 3, "replies": 1,
                                       "awaiting": 2}], "next_cursor": None}
    await wait_for(tallied)
    others = await client.get("/v1/me/comments-awaiting-reply", headers=bearer(tenant, "amb-2", "ambassador"))
    assert others.json() == {"items": [], "next_cursor": None}


async def test_connector_registration_is_idempotent_and_secret_shown_once(client, bearer, tenant, connector):
    headers = {**bearer(tenant, "admin-1", "admin"), "Idempotency-Key": "conn-1"}
    again = await client.post("/v1/connectors", json={"name": "linkedin-sync"}, headers=headers)
    assert again.status_code == 201 and again.json()["connector_id"] == connector["connector_id"]
    other_body = await client.post("/v1/connectors", json={"name": "other"}, headers=headers)
    assert other_body.status_code == 422
    same_name = await client.post("/v1/connectors", json={"name": "linkedin-sync"},
                                  headers=bearer(tenant, "admin-1", "admin"))
    assert same_name.status_code == 409
    integrator = bearer(tenant, "svc", "integrator")
    listed = (await client.get("/v1/connectors", headers=integrator)).json()
    assert [(c["name"], c["secret"]) for c in listed["items"]] == [("linkedin-sync", None)]
    assert listed["next_cursor"] is None
    # Paged like every list: oldest first, a bounded limit, signed cursors.
    await client.post("/v1/connectors", json={"name": "x-sync"}, headers=integrator)
    first = (await client.get("/v1/connectors", params={"limit": 1}, headers=integrator)).json()
    rest = (await client.get("/v1/connectors", params={"limit": 1, "cursor": first["next_cursor"]},
                             headers=integrator)).json()
    assert [c["name"] for c in first["items"] + rest["items"]] == ["linkedin-sync", "x-sync"]
    assert rest["next_cursor"] is None
    assert (await client.get("/v1/connectors", params={"cursor": "forged"}, headers=integrator)).status_code == 400
    assert (await client.get("/v1/connectors", params={"limit": 1000}, headers=integrator)).status_code == 422
    assert (await client.post("/v1/connectors", json={"name": "x"},
                              headers=bearer(tenant, "amb", "ambassador"))).status_code == 403


# --- plausibility, through the signed webhook -----------------------------------------------------------

async def assert_refused(client, bearer, tenant, connector, body, reason, field, repositories, kind="engagements"):
    response = await post_report(client, bearer, tenant, connector, body, kind=kind)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem.get("reason"), problem["errors"][0]["field"]) == (reason, field), problem
    assert await repositories.reports.get(tenant, f"{tenant}/{connector['connector_id']}/{body['id']}") is None


async def test_implausible_reports_are_refused_and_counted_nowhere(client, bearer, tenant, emit, projected, make,
                                                                   amb, confirmed, connector, repositories,
                                                                   read_topic):
    headers = bearer(tenant, "amb-2", "ambassador")
    await emit(make.opted_in(amb(tenant, "amb-2")))
    await projected((amb(tenant, "amb-2"),))
    prepared = (await client.post("/v1/shares", json={"content_id": "c1", "network": "linkedin",
                                                      "text": OTHER_OWN},
                                  headers=headers)).json()
    share_id = confirmed["share_id"]
    cases = [
        ({"id": "p-1", "kind": "reaction", "occurred_at": moment(), "share_id": prepared["share_id"]},
         "share_not_confirmed", "share_id"),
        ({"id": "p-2", "kind": "reaction", "occurred_at": moment(),
          "tracked_link_code": prepared["tracked_link_code"]}, "share_not_confirmed", "tracked_link_code"),
        ({"id": "p-3", "kind": "impression", "count": 5, "occurred_at": moment(days=3), "share_id": share_id},
         "occurred_in_the_future", "occurred_at"),
        ({"id": "p-4", "kind": "impression", "count": 5, "occurred_at": moment(hours=-2), "share_id": share_id},
         "occurred_before_the_share", "occurred_at"),
        ({"id": "p-5", "kind": "impression", "count": 0, "occurred_at": moment(), "share_id": share_id},
         "count_out_of_range", "count"),
        ({"id": "p-6", "kind": "impression", "count": 50_000_000, "occurred_at": moment(), "share_id": share_id},
         "count_out_of_range", "count"),
        ({"id": "p-7", "kind": "comment_reply", "count": 1, "occurred_at": moment(), "share_id": share_id},
         "replies_exceed_comments", "count"),
    ]
    for body, reason, field in cases:
        await assert_refused(client, bearer, tenant, connector, body, reason, field, repositories)
    conversion = {"id": "p-8", "tracked_link_code": prepared["tracked_link_code"], "conversion_type": "lead",
                  "occurred_at": moment()}
    await assert_refused(client, bearer, tenant, connector, conversion, "share_not_confirmed", "tracked_link_code",
                         repositories, kind="conversions")
    naive = await post_report(client, bearer, tenant, connector, {"id": "p-9", "kind": "reaction", "share_id": share_id,
                                                                  "occurred_at": "2026-12-01T10:00:00"})
    assert naive.status_code == 422 and naive.json()["errors"][0]["field"] == "occurred_at"
    negative = await post_report(client, bearer, tenant, connector, {"id": "p-10", "kind": "reaction", "count": -1,
                                                                     "share_id": share_id, "occurred_at": moment()})
    assert negative.status_code == 422 and negative.json()["errors"][0]["field"] == "count"

    # A plausible report after all of them: the only event on the topic.
    accepted = await post_report(client, bearer, tenant, connector, {"id": "ok", "kind": "reaction",
                                                                     "occurred_at": moment(), "share_id": share_id})
    assert accepted.status_code == 202, accepted.text
    events = await read_topic(ENGAGEMENT, lambda e: e.tenantid == tenant and e.data["kind"] != "click",
                              min_count=2, timeout=3)
    assert [e.data["source_event_id"] for e in events] == ["ok"]


async def test_replies_racing_on_two_replicas_never_exceed_the_comments(client, bearer, tenant, confirmed, connector,
                                                                        settings, worker, repositories, read_topic):
    from asgi_lifespan import LifespanManager
    from httpx import ASGITransport, AsyncClient

    from distribution.bootstrap import create_app

    share_id = confirmed["share_id"]
    comments = await post_report(client, bearer, tenant, connector, {"id": "c", "kind": "comment", "count": 3,
                                                                     "occurred_at": moment(), "share_id": share_id})
    assert comments.status_code == 202, comments.text
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=60), \
            AsyncClient(transport=ASGITransport(app), base_url="http://replica-b") as replica:
        answers = await asyncio.gather(*(
            post_report(api, bearer, tenant, connector, {"id": f"r-{i}", "kind": "comment_reply",
                                                         "occurred_at": moment(), "share_id": share_id})
            for i, api in enumerate([client, replica] * 3)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [202, 202, 202, 422, 422, 422], [a.text for a in answers]
    assert all(a.json()["reason"] == "replies_exceed_comments" for a in answers if a.status_code == 422)
    totals = await repositories.totals.get(tenant, share_id)
    assert (totals.comments, totals.replies) == (3, 3)
    replies = await read_topic(ENGAGEMENT, lambda e: e.tenantid == tenant and e.data["kind"] == "comment_reply",
                               min_count=4, timeout=3)
    assert len(replies) == 3  # the response rate on this post is exactly 1, never above


async def test_an_erased_persons_post_is_counted_anonymously(client, bearer, tenant, confirmed, connector, emit,
                                                             amb, repositories, wait_for, read_topic):
    from advocacy_common.events import AmbassadorErased

    await emit(AmbassadorErased(ambassador_id=amb(tenant, "amb-1"), erased_at=datetime.now(UTC)))

    async def erased():
        assert (await repositories.ambassadors.get(tenant, amb(tenant, "amb-1"))).status == "erased"
    await wait_for(erased)
    accepted = await post_report(client, bearer, tenant, connector, {"id": "late", "kind": "reaction",
                                                                     "occurred_at": moment(),
                                                                     "share_id": confirmed["share_id"]})
    assert accepted.status_code == 202, accepted.text
    [event] = await read_topic(ENGAGEMENT, lambda e: e.tenantid == tenant and e.data["kind"] == "reaction")
    assert event.data["ambassador_id"] == "erased" and amb(tenant, "amb-1") not in json.dumps(event.data)


class Inserts(CommandListener):
    """The insert commands a client sends, by collection."""

    def __init__(self) -> None:
        self.collections: list[str] = []

    def started(self, event) -> None:
        if event.command_name == "insert":
            self.collections.append(event.command["insert"])

    def succeeded(self, event) -> None:
        pass

    def failed(self, event) -> None:
        pass


async def test_concurrent_clicks_share_two_inserts_per_batch_and_each_reaches_the_topic_once(settings, worker,
                                                                                             tenant, read_topic):
    """The use case on the real adapters and database (the session's worker relays the queue): 60 clicks of
    20 visitors at once are a few batches of two inserts each, every click is on the topic once, and each
    visitor is unique once."""
    inserts = Inserts()
    mongo = AsyncMongoClient(settings.mongodb_uri, tz_aware=True, retryWrites=False, event_listeners=[inserts])
    try:
        storage = await Storage.open(mongo[settings.database], settings.cursor_key)
        repositories = mongo_repositories(storage, secret_box(settings))
        link = TrackedLink(code=f"{tenant}-batch", tenant=tenant, ambassador_id="a1", content_id="c1",
                           network="linkedin", link_url="https://acme.com/batch", created_at=datetime.now(UTC))
        await repositories.links.ensure(link)
        tracking = Tracking(repositories, Options.from_settings(settings))
        inserts.collections.clear()
        visits = [f"198.51.100.{visitor}" for _ in range(3) for visitor in range(20)]
        targets = await asyncio.gather(*(tracking.follow(link.code, ip, BROWSER, datetime.now(UTC)) for ip in visits))
    finally:
        await mongo.close()
    assert all(target.startswith("https://acme.com/batch?utm_source=linkedin") for target in targets)
    batches = tracking.clicks.batches
    assert tracking.clicks.items == 60 and 1 <= batches <= 10
    assert sorted(inserts.collections) == sorted(["click_visitors", "click_queue"] * batches)

    clicks = await read_topic(ENGAGEMENT, lambda e: e.tenantid == tenant and e.data["kind"] == "click",
                              min_count=61, timeout=4)  # one more than expected: waits to see none extra
    assert len(clicks) == 60 and len({c.id for c in clicks}) == 60
    assert sum(c.data["unique_visitor"] for c in clicks) == 20


async def test_a_failing_click_batch_answers_503_and_counts_nothing(client, tenant, confirmed, read_topic,
                                                                    monkeypatch):
    code = confirmed["tracked_link_code"]

    async def unreachable(self, clicks):
        raise AutoReconnect("connection closed")
    monkeypatch.setattr(MongoClicks, "record_many", unreachable)
    failed = await asyncio.gather(*(client.get(f"/r/{code}", headers={"User-Agent": BROWSER,
                                                                       "X-Forwarded-For": f"203.0.113.{n}"})
                                    for n in range(5)))
    assert [response.status_code for response in failed] == [503] * 5
    assert all(response.headers["retry-after"] and response.headers["content-type"] == "application/problem+json"
               for response in failed)
    monkeypatch.undo()
    assert (await client.get(f"/r/{code}", headers={"User-Agent": BROWSER, "X-Forwarded-For": "203.0.113.1"})
            ).status_code == 302
    clicks = await read_topic(ENGAGEMENT, lambda e: e.tenantid == tenant and e.data["kind"] == "click",
                              min_count=2, timeout=4)
    assert len(clicks) == 1  # the answered one only


async def test_clicks_written_again_after_a_broken_connection_are_stored_once(repositories, tenant, monkeypatch):
    """The connection breaks after the server stored the clicks: the retry finds them there (duplicate keys)
    and the callers are answered, each click stored once."""
    collection = repositories.clicks.collection
    insert_many = collection.insert_many
    calls = []

    async def stored_then_broken(documents, **options):
        calls.append(len(documents))
        result = await insert_many(documents, **options)
        if len(calls) == 1:
            raise AutoReconnect("connection reset after the write")
        return result
    monkeypatch.setattr(collection, "insert_many", stored_then_broken)
    uows = []
    for n in range(3):
        uow = UnitOfWork(tenant, "/tests")
        uow.record(engagement_received(tenant, {"share_id": None, "content_id": "c1", "campaign_id": None,
                                                "ambassador_id": "a1", "team_id": None, "network": "linkedin"},
                                       kind=EngagementKind.CLICK, count=1, source="redirect",
                                       source_event_id=f"{tenant}-{n}", occurred_at=datetime.now(UTC)))
        uows.append((Click(id=f"{tenant}-retry/{n}", tenant=tenant, code=f"{tenant}-retry", at=datetime.now(UTC)),
                     uow))
    await repositories.clicks.record_many(uows)
    assert calls == [1, 1]  # the batch's three clicks in one document of the queue, written twice
    stored = await collection.find({"tenant": tenant}).to_list()
    assert [document["_id"] for document in stored] == [f"{tenant}-retry/0"] and stored[0]["clicks"] == 3
    assert [envelope.id for _, envelope in queued_events(stored[0])] == [uow.pending[0][1].id for _, uow in uows]


async def test_clicks_are_not_written_again_when_no_server_was_reached(repositories, tenant, monkeypatch):
    calls = []

    async def no_server(documents, **options):
        calls.append(len(documents))
        raise ServerSelectionTimeoutError("no server")
    monkeypatch.setattr(repositories.clicks.collection, "insert_many", no_server)
    click = Click(id=f"{tenant}-none/1", tenant=tenant, code=f"{tenant}-none", at=datetime.now(UTC))
    with pytest.raises(ServerSelectionTimeoutError):  # a 503 for the batch's redirects: nothing was sent
        await repositories.clicks.record_many([(click, UnitOfWork(tenant, "/tests"))])
    assert calls == [1]
