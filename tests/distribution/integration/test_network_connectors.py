"""The LinkedIn and X connectors against faithful fakes of the networks served over real HTTP, with the
real Kafka and database: connecting an account (OAuth code flow with PKCE), confirming a share with its
post URL, polls with changing totals (up, down, up again) and the metrics API showing the final totals;
token expiry, revocation (401), opt-out, 429 with Retry-After, X's request budget, self-reported figures."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fake_networks import FakeLinkedIn, FakeX, Throttle
from live_server import serving

from advocacy_common.events import AmbassadorOptedOut
from advocacy_common.repository import Storage
from advocacy_common.topics import ENGAGEMENT
from distribution.adapters import mongo_repositories
from distribution.bootstrap import create_app, secret_box
from distribution.connectors.linkedin import LinkedInApi
from distribution.connectors.options import connector_options
from distribution.connectors.poller import Poller, tracked_post_id
from distribution.connectors.schedule import PollSchedule
from distribution.connectors.store import connector_stores
from distribution.connectors.x import XApi
from distribution.options import Options
from distribution.service.engagement import Engagement
from metrics.bootstrap import build_worker as build_metrics_worker
from metrics.bootstrap import create_app as create_metrics_app
from metrics.settings import MetricsSettings

pytestmark = pytest.mark.integration
REDIRECT = "https://app.example.com/connections/linkedin"
FAST = PollSchedule(early_interval=timedelta(seconds=1), early_period=timedelta(hours=48),
                    late_interval=timedelta(days=1), quiet_period=timedelta(days=14), spread=0)


@pytest.fixture(scope="module")
async def networks():
    linkedin, x = FakeLinkedIn(redirect_uris={REDIRECT}), FakeX()
    async with serving(linkedin.app()) as linkedin_url, serving(x.app()) as x_url:
        yield SimpleNamespace(linkedin=linkedin, x=x, linkedin_url=linkedin_url, x_url=x_url)


@pytest.fixture(scope="module")
def connect_settings(settings, networks):
    return settings.model_copy(update={"linkedin_oauth_base": f"{networks.linkedin_url}/oauth/v2",
                                       "linkedin_api_base": networks.linkedin_url, "x_api_base": networks.x_url,
                                       "poll_request_gap_seconds": 0.0})


@pytest.fixture(scope="module")
async def api(connect_settings, worker):
    app = create_app(connect_settings)
    async with LifespanManager(app, startup_timeout=60), \
            httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as client:
        yield client


@pytest.fixture(scope="module")
async def module_poller(connect_settings, distribution_db, publisher):
    """A poller on the service's database and topics, with a fast schedule (1 s early interval)."""
    options = connector_options(connect_settings)
    options = type(options)(**{**options.__dict__, "schedule": FAST, "request_gap_seconds": 0.0})
    storage = await Storage.open(distribution_db, connect_settings.cursor_key)
    box = secret_box(connect_settings)
    async with httpx.AsyncClient(timeout=10) as http:
        engagement = Engagement(mongo_repositories(storage, box), publisher, Options.from_settings(connect_settings))
        yield Poller(connector_stores(storage, box), engagement, LinkedInApi(http, options.linkedin),
                     XApi(http, options.x_api_base), options)


@pytest.fixture
def poller(module_poller, tenant) -> Poller:
    """The test's own poller: this tenant's posts only (other tests' posts stay due in the same database)."""
    return Poller(module_poller.stores, module_poller.engagement, module_poller.linkedin, module_poller.x,
                  module_poller.options, tenant=tenant)


@pytest.fixture
async def metrics_api(infrastructure, kafka_topics, auth_settings, run_id):
    settings = MetricsSettings(kafka_bootstrap_servers=infrastructure.kafka_bootstrap_servers,
                               mongodb_uri=infrastructure.mongodb_uri,
                               database=f"metrics_conn_{run_id}_{uuid.uuid4().hex[:6]}",
                               topic_prefix=kafka_topics.prefix, topic_partitions=3,
                               consumer_group=f"metrics-conn-{uuid.uuid4().hex[:8]}", generation_poll_seconds=0.2,
                               **auth_settings)
    worker = build_metrics_worker(settings)
    await worker.start()
    app = create_metrics_app(settings)
    async with LifespanManager(app, startup_timeout=60), \
            httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://metrics") as client:
        yield client
    await worker.stop()


@pytest.fixture
async def person(api, bearer, tenant, emit, projected, make, amb, networks):
    """An opted-in ambassador of a tenant whose admin registered the (fake) LinkedIn app, and content c1."""
    await emit(make.opted_in(amb(tenant, "amb-1")), make.content("c1"))
    await projected((amb(tenant, "amb-1"),), {"c1": 1})
    response = await api.put("/v1/settings/network-apps/linkedin", headers=bearer(tenant, "admin-1", "admin"),
                             json={"client_id": networks.linkedin.client_id, "redirect_uri": REDIRECT,
                                   "client_secret": networks.linkedin.client_secret})
    assert response.status_code == 204, response.text
    return SimpleNamespace(headers=bearer(tenant, "amb-1", "ambassador"), id=amb(tenant, "amb-1"),
                           member=f"member-{uuid.uuid4().hex[:8]}")


async def connect(api, networks, person) -> dict:
    """The whole consent: start, the browser at LinkedIn (consent given), the redirect, the callback."""
    started = await api.post("/v1/me/connections/linkedin/start", headers=person.headers)
    assert started.status_code == 201, started.text
    url = started.json()["authorization_url"]
    async with httpx.AsyncClient() as browser:
        # `login_as`: who is signed in at the fake (the real page asks the person to sign in and allow).
        consent = await browser.get(f"{url}&login_as={person.member}")
    assert consent.status_code == 302, consent.text
    back = parse_qs(urlsplit(consent.headers["location"]).query)
    assert back["state"] == [started.json()["state"]]
    done = await api.post("/v1/me/connections/linkedin/callback", headers=person.headers,
                          json={"code": back["code"][0], "state": back["state"][0]})
    assert done.status_code == 201, done.text
    return done.json()


async def prepared_share(api, person, network="linkedin", content_id="c1") -> str:
    response = await api.post("/v1/shares", headers=person.headers, json={
        "content_id": content_id, "network": network,
        "text": "I visited our Lyon site last month and watched the solar panels go up. Today the whole plant "
                "runs on renewable power, and honestly it makes me proud to work here."})
    assert response.status_code == 201, response.text
    return response.json()["share_id"]


async def poll_once_due(poller: Poller, timeout: float = 10.0) -> int:
    """Poll rounds until one polled something (the post's next time comes within the 1 s interval)."""
    deadline = time.monotonic() + timeout
    while True:
        polled = await poller.poll_due()
        if polled or time.monotonic() > deadline:
            return polled
        await asyncio.sleep(0.2)


async def linked_post(api, networks, person, content_id="c1", **totals) -> tuple[str, str]:
    """A connected person's confirmed LinkedIn share with its post linked: (share id, urn)."""
    number = str(7_100_000_000_000_000_000 + int(uuid.uuid4().int % 10**15))
    urn = networks.linkedin.publish(person.member, number, **totals)
    share_id = await prepared_share(api, person, content_id=content_id)
    response = await api.post(f"/v1/shares/{share_id}/confirm", headers=person.headers,
                              json={"post_url": f"https://www.linkedin.com/feed/update/{urn}/"})
    assert response.status_code == 200, response.text
    return share_id, urn


def calls_for(fake: FakeLinkedIn, urn: str) -> int:
    return sum(1 for c in fake.analytics_calls() if urn.replace(":", "%3A") in c["query"].get("entity", ""))


async def tracked(api, person, share_id) -> dict:
    posts = (await api.get(f"/v1/shares/{share_id}/posts", headers=person.headers)).json()
    return next(p for p in posts if p["source"] != "self-reported")


async def wait_for_metrics(metrics_api, headers, content_id, check, timeout=45.0):
    today = datetime.now(UTC).date()
    params = {"from": (today - timedelta(days=1)).isoformat(), "to": (today + timedelta(days=1)).isoformat()}
    deadline = time.monotonic() + timeout
    while True:
        response = await metrics_api.get(f"/v1/metrics/contents/{content_id}", headers=headers, params=params)
        if response.status_code == 200 and check(response.json()["kpis"]):
            return response.json()["kpis"]
        if time.monotonic() > deadline:
            raise AssertionError(f"metrics never matched: {response.status_code} {response.text[:800]}")
        await asyncio.sleep(0.2)


async def test_connect_confirm_poll_and_metrics_show_the_final_totals(
        api, networks, person, poller, metrics_api, bearer, tenant, read_topic, distribution_db):
    fake = networks.linkedin
    connection = await connect(api, networks, person)
    assert connection["status"] == "active" and connection["scopes"] == ["openid", "profile", "r_member_postAnalytics"]
    expires = datetime.fromisoformat(connection["expires_at"])
    assert abs((expires - datetime.now(UTC)) - timedelta(days=60)) < timedelta(minutes=1)
    assert connection["expires_soon"] is False
    assert connection["reconnect_url"].endswith("/v1/me/connections/linkedin/start")

    # The token is sealed at rest: neither the field nor the value is in the stored document.
    stored = await distribution_db["network_connections"].find_one({"tenant": tenant})
    token = next(t for t, v in fake.tokens.items() if v["sub"] == person.member)
    assert "access_token" not in stored and token not in str(stored)

    number = str(7_200_000_000_000_000_000 + int(uuid.uuid4().int % 10**15))
    urn = fake.publish(person.member, number, IMPRESSION=100, MEMBERS_REACHED=60, REACTION=5, COMMENT=1)
    someone_else = fake.publish("another-member", str(int(number) + 1), IMPRESSION=999)
    share_id = await prepared_share(api, person)

    # A URL that is not a post of the connected member is refused and confirms nothing.
    refused = await api.post(f"/v1/shares/{share_id}/confirm", headers=person.headers,
                             json={"post_url": f"https://www.linkedin.com/feed/update/{someone_else}/"})
    assert refused.status_code == 422 and "not a post of your connected LinkedIn" in refused.text
    assert (await api.get(f"/v1/shares/{share_id}", headers=person.headers)).json()["status"] == "prepared"

    # The public /posts/...-activity-<id>-... form of the member's own post is accepted and linked.
    confirmed = await api.post(f"/v1/shares/{share_id}/confirm", headers=person.headers, json={
        "post_url": f"https://www.linkedin.com/posts/jane-doe_renewables-activity-{number}-AbCd?utm_source=share"})
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["share_composer_url"].startswith("https://www.linkedin.com/feed/?shareActive=true&text=")
    posts = (await api.get(f"/v1/shares/{share_id}/posts", headers=person.headers)).json()
    assert [(p["source"], p["post_ref"], p["status"]) for p in posts] == [("linkedin", urn, "active")]

    # Simulated polls: up, down (a correction), up above the earlier high-water mark.
    rounds = [dict(IMPRESSION=100, MEMBERS_REACHED=60, REACTION=5, COMMENT=1, RESHARE=0),
              dict(IMPRESSION=250, MEMBERS_REACHED=140, REACTION=12, COMMENT=3, RESHARE=1),
              dict(IMPRESSION=240, MEMBERS_REACHED=138, REACTION=11, COMMENT=3, RESHARE=1),
              dict(IMPRESSION=400, MEMBERS_REACHED=210, REACTION=20, COMMENT=4, RESHARE=2)]
    for totals in rounds:
        fake.set_totals(urn, **totals)
        assert await poll_once_due(poller) >= 1
        await asyncio.sleep(1.05)  # the (configured) early interval
    calls = [c for c in fake.analytics_calls() if urn.replace(":", "%3A") in c["query"].get("entity", "")]
    assert calls and all(c["headers"]["linkedin-version"] == connect_settings_version(api)
                         and c["headers"]["x-restli-protocol-version"] == "2.0.0" for c in calls)

    final = rounds[-1]
    kpis = await wait_for_metrics(metrics_api, bearer(tenant, "admin-1", "admin"), "c1",
                                  lambda k: k["impressions"] == final["IMPRESSION"] and k["reshares"] == final["RESHARE"])
    assert (kpis["impressions"], kpis["members_reached"], kpis["reactions"], kpis["comments"], kpis["reshares"]) == \
        (final["IMPRESSION"], final["MEMBERS_REACHED"], final["REACTION"], final["COMMENT"], final["RESHARE"])
    assert kpis["self_reported"]["impressions"] == 0

    # Exactly once on the topic: one event per (metric, new high total), with deterministic ids.
    envelopes = await read_topic(ENGAGEMENT, lambda e: e.data.get("share_id") == share_id, min_count=14)
    ids = [e.data["source_event_id"] for e in envelopes]
    # 4 (RESHARE still 0) + 5 + 0 (the correction) + 5 (each metric above its high-water mark again)
    assert len(ids) == len(set(ids)) == 14
    assert f"{share_id}:IMPRESSION:250" in ids and f"{share_id}:IMPRESSION:240" not in ids
    assert {e.data["source"] for e in envelopes} == {"linkedin"}
    assert sum(e.data["count"] for e in envelopes if e.data["kind"] == "impression") == 400


def connect_settings_version(api) -> str:
    return api._transport.app.state.distribution.connections.options.linkedin.version


async def test_an_expired_token_stops_polling_without_calls_and_a_reconnection_resumes(api, networks, person,
                                                                                      poller):
    fake = networks.linkedin
    fake.token_lifetime = 6  # this grant lapses in 6 s
    try:
        connection = await connect(api, networks, person)
    finally:
        fake.token_lifetime = 60 * 24 * 3600
    listed = (await api.get("/v1/me/connections", headers=person.headers)).json()["items"]
    assert listed[0]["expires_soon"] is True  # within the warning period: the reconnect link is offered
    share_id, urn = await linked_post(api, networks, person, IMPRESSION=10)
    assert await poll_once_due(poller) >= 1
    assert (await tracked(api, person, share_id))["counted"]["IMPRESSION"] == 10
    lapse = datetime.fromisoformat(connection["expires_at"]) - datetime.now(UTC)
    await asyncio.sleep(max(lapse.total_seconds(), 0) + 0.3)  # the token's lifetime ran out
    before = calls_for(fake, urn)
    await poll_once_due(poller, timeout=3)
    for _ in range(3):  # more rounds: nothing is retried, nothing piles up
        await poller.poll_due()
    assert calls_for(fake, urn) == before  # no call with a lapsed token
    listed = (await api.get("/v1/me/connections", headers=person.headers)).json()["items"]
    assert [(c["status"], c["expires_soon"]) for c in listed] == [("expired", True)]
    assert (await tracked(api, person, share_id))["status"] == "paused"

    fake.set_totals(urn, IMPRESSION=25)
    await connect(api, networks, person)  # reconnecting: the paused post resumes
    assert (await tracked(api, person, share_id))["status"] == "active"
    assert await poll_once_due(poller) >= 1
    post = await tracked(api, person, share_id)
    assert post["counted"]["IMPRESSION"] == 25 and post["status"] == "active"


async def test_a_revoked_token_401_marks_the_connection_once_and_stops_polling(api, networks, person, poller):
    fake = networks.linkedin
    await connect(api, networks, person)
    share_id, urn = await linked_post(api, networks, person, IMPRESSION=3)
    linked = calls_for(fake, urn)  # the check at confirmation that the post is the member's
    fake.revoke_all(person.member)
    await poll_once_due(poller)
    after_first = calls_for(fake, urn)
    assert after_first == linked + 1  # the 401 came at the first metric; no retry
    await asyncio.sleep(1.1)
    for _ in range(3):
        await poller.poll_due()
    assert calls_for(fake, urn) == after_first
    listed = (await api.get("/v1/me/connections", headers=person.headers)).json()["items"]
    assert listed[0]["status"] == "revoked" and listed[0]["expires_soon"] is True
    assert (await tracked(api, person, share_id))["status"] == "paused"


async def test_opt_out_deletes_the_tokens_and_tracked_posts(api, networks, person, emit, distribution_db, tenant,
                                                            wait_for):
    await connect(api, networks, person)
    share_id, _ = await linked_post(api, networks, person, IMPRESSION=1)
    assert await distribution_db["network_connections"].count_documents({"tenant": tenant}) == 1
    await emit(AmbassadorOptedOut(ambassador_id=person.id, opted_out_at=datetime.now(UTC)))

    async def gone():
        assert await distribution_db["network_connections"].count_documents({"tenant": tenant}) == 0
        assert await distribution_db["tracked_posts"].count_documents({"tenant": tenant}) == 0
        assert await distribution_db["network_authorizations"].count_documents({"tenant": tenant}) == 0

    await wait_for(gone)
    assert (await api.get("/v1/me/connections", headers=person.headers)).json()["items"] == []


async def test_disconnect_deletes_the_token(api, networks, person, distribution_db, tenant):
    await connect(api, networks, person)
    share_id, _ = await linked_post(api, networks, person, IMPRESSION=1)
    response = await api.delete("/v1/me/connections/linkedin", headers=person.headers)
    assert response.status_code == 204
    assert await distribution_db["network_connections"].count_documents({"tenant": tenant}) == 0
    assert (await tracked(api, person, share_id))["status"] == "paused"


async def test_429_with_retry_after_backs_off_that_network_then_counts_exactly(api, networks, person, poller):
    fake = networks.linkedin
    await connect(api, networks, person)
    share_id, urn = await linked_post(api, networks, person, IMPRESSION=70, REACTION=7)
    typed = await api.post(f"/v1/shares/{share_id}/self-reported", headers=person.headers, json={"impressions": 9})
    assert typed.status_code == 422  # read from LinkedIn already: typed figures would count twice
    fake.throttle = Throttle(times=1, retry_after=2)
    started = datetime.now(UTC)
    assert await poll_once_due(poller) >= 1
    post = await tracked(api, person, share_id)
    assert post["counted"] == {} and post["status"] == "active"
    wait = datetime.fromisoformat(post["next_poll_at"]) - started
    assert timedelta(seconds=1.5) < wait < timedelta(seconds=4)  # Retry-After: 2
    before = len(fake.analytics_calls())
    await poller.poll_due()  # still held: no call to LinkedIn for this tenant
    assert len(fake.analytics_calls()) == before
    await asyncio.sleep(2.1)
    assert await poll_once_due(poller) >= 1
    post = await tracked(api, person, share_id)
    assert post["counted"] == {"IMPRESSION": 70, "REACTION": 7}


async def test_two_pollers_never_poll_a_post_twice_in_one_period(api, networks, person, poller, emit, make,
                                                                 projected):
    fake = networks.linkedin
    await emit(make.content("c2"), make.content("c3"))
    await projected(contents={"c2": 1, "c3": 1})
    await connect(api, networks, person)
    share_ids = []
    urns = []
    for content_id in ("c1", "c2", "c3"):
        share_id, urn = await linked_post(api, networks, person, content_id, IMPRESSION=5)
        share_ids.append(share_id)
        urns.append(urn)
    linked = [calls_for(fake, urn) for urn in urns]  # one check each, at confirmation
    twin = Poller(poller.stores, poller.engagement, poller.linkedin, poller.x, poller.options, tenant=poller.tenant)
    await asyncio.gather(poller.poll_due(), twin.poll_due())
    # Each post: one poll (5 metrics), by one of the two.
    assert [calls_for(fake, urn) - before for urn, before in zip(urns, linked, strict=True)] == [5, 5, 5]


async def test_a_crash_after_the_deltas_were_written_reports_them_once_on_restart(
        api, networks, person, poller, read_topic, tenant):
    class Down:
        async def publish(self, topic, envelope):
            raise ConnectionError("Kafka is down")

    await connect(api, networks, person)
    share_id, urn = await linked_post(api, networks, person, IMPRESSION=33, COMMENT=2)
    broken = Engagement(poller.engagement.repositories, Down(), poller.engagement.options)
    crashed = Poller(poller.stores, broken, poller.linkedin, poller.x, poller.options, tenant=poller.tenant)
    assert await poll_once_due(crashed) >= 1
    post = await tracked(api, person, share_id)
    assert post["counted"] == {"IMPRESSION": 33, "COMMENT": 2}  # written with the deltas, not yet reported
    stored = await poller.stores.posts.get(tenant, tracked_post_id(tenant, share_id, "linkedin"))
    assert len(stored.pending) == 2
    await asyncio.sleep(1.1)
    restarted = Poller(poller.stores, poller.engagement, poller.linkedin, poller.x, poller.options,
                       tenant=poller.tenant)
    assert await poll_once_due(restarted) >= 1
    await asyncio.sleep(1.1)
    assert await poll_once_due(restarted) >= 1  # a later poll of the same totals adds nothing
    envelopes = await read_topic(ENGAGEMENT, lambda e: e.data.get("share_id") == share_id, min_count=2)
    assert sorted((e.data["kind"], e.data["count"]) for e in envelopes) == [("comment", 2), ("impression", 33)]



async def test_x_public_metrics_through_the_same_pipeline_within_the_tenant_budget(
        api, networks, person, poller, bearer, tenant, read_topic):
    fake = networks.x
    admin = bearer(tenant, "admin-1", "admin")
    response = await api.put("/v1/settings/network-apps/x", headers=admin,
                             json={"bearer_token": fake.bearer_token, "daily_request_budget": 2})
    assert response.status_code == 204
    apps = (await api.get("/v1/settings/network-apps", headers=admin)).json()
    assert apps["x"]["daily_request_budget"] == 2 and fake.bearer_token not in str(apps)
    post = str(1_800_000_000_000_000_000 + int(uuid.uuid4().int % 10**15))
    fake.publish(post, impression_count=500, like_count=9, reply_count=2, retweet_count=3, quote_count=1)
    share_id = await prepared_share(api, person, network="x")
    refused = await api.post(f"/v1/shares/{share_id}/confirm", headers=person.headers,
                             json={"post_url": "https://x.com/janedoe"})
    assert refused.status_code == 422  # not a post address
    confirmed = await api.post(f"/v1/shares/{share_id}/confirm", headers=person.headers,
                               json={"post_url": f"https://x.com/janedoe/status/{post}"})
    assert confirmed.status_code == 200, confirmed.text
    before = fake.requests
    assert await poll_once_due(poller) >= 1
    fake.set_metrics(post, impression_count=800, like_count=12)
    await asyncio.sleep(1.05)
    assert await poll_once_due(poller) >= 1
    assert fake.requests == before + 2
    fake.set_metrics(post, impression_count=900)
    await asyncio.sleep(1.05)
    await poll_once_due(poller, timeout=3)
    assert fake.requests == before + 2  # the budget of 2 requests a day is spent: no third call
    tracked_x = await tracked(api, person, share_id)
    assert tracked_x["counted"]["impression_count"] == 800
    assert datetime.fromisoformat(tracked_x["next_poll_at"]) >= datetime.combine(
        datetime.now(UTC).date() + timedelta(days=1), datetime.min.time(), UTC)  # tomorrow's budget
    envelopes = await read_topic(ENGAGEMENT, lambda e: e.data.get("share_id") == share_id, min_count=7)
    assert {e.data["source"] for e in envelopes} == {"x"}
    by_kind: dict[str, int] = {}
    for envelope in envelopes:
        by_kind[envelope.data["kind"]] = by_kind.get(envelope.data["kind"], 0) + envelope.data["count"]
    assert by_kind == {"impression": 800, "reaction": 12, "comment": 2, "reshare": 4}


async def test_self_reported_figures_are_marked_and_separable_in_the_kpis(
        api, person, bearer, tenant, metrics_api, read_topic):
    share_id = await prepared_share(api, person)
    assert (await api.post(f"/v1/shares/{share_id}/confirm", headers=person.headers)).status_code == 200
    first = await api.post(f"/v1/shares/{share_id}/self-reported", headers=person.headers,
                           json={"impressions": 300, "reactions": 8})
    assert first.status_code == 200, first.text
    admin = bearer(tenant, "admin-1", "admin")
    again = await api.post(f"/v1/shares/{share_id}/self-reported", headers=admin,
                           json={"impressions": 280, "reactions": 10, "comments": 1})
    assert again.json()["counted"] == {"impressions": 300, "reactions": 10, "comments": 1}
    assert again.json()["totals"] == {"impressions": 280, "reactions": 10, "comments": 1}
    unknown = await api.post(f"/v1/shares/{share_id}/self-reported", headers=person.headers, json={"clicks": 5})
    assert unknown.status_code == 422  # clicks come from tracked links only
    envelopes = await read_topic(ENGAGEMENT, lambda e: e.data.get("share_id") == share_id, min_count=4)
    assert all(e.data["self_reported"] and e.data["source"] == "self-reported" for e in envelopes)
    kpis = await wait_for_metrics(metrics_api, admin, "c1", lambda k: k["comments"] == 1 and k["reactions"] == 10)
    assert (kpis["impressions"], kpis["self_reported"]["impressions"], kpis["self_reported"]["reactions"]) == \
        (300, 300, 10)


async def test_key_rotation_reseals_tokens_and_app_secrets_then_the_old_key_can_go(settings, unique_db_name):
    from advocacy_common.mongo import create_client
    from advocacy_common.secretbox import Keyring, SecretBox, new_encoded_key
    from distribution.bootstrap import reseal_connector_secrets
    from distribution.connectors.models import Connection, LinkedInApp, XApp

    old, new = new_encoded_key(), new_encoded_key()
    database = unique_db_name("distribution")
    client = create_client(settings.mongodb_uri, "rotation-test")
    try:
        storage = await Storage.open(client[database], settings.cursor_key)
        before = connector_stores(storage, SecretBox(Keyring.from_encoded({"k1": old}, "k1")))
        now = datetime.now(UTC)
        await before.connections.put(Connection(id="t1/a1/linkedin", tenant="t1", ambassador_id="a1",
                                                network="linkedin", member_id="m1", access_token="AQ-secret-token",
                                                scopes=["r_member_postAnalytics"], connected_at=now,
                                                expires_at=now + timedelta(days=60)))
        await before.apps.put_linkedin(LinkedInApp(tenant="t1", client_id="cid", client_secret="li-secret",
                                                   redirect_uri=REDIRECT, updated_at=now))
        await before.apps.put_x(XApp(tenant="t1", bearer_token="x-bearer", daily_request_budget=5, updated_at=now))
        both = settings.model_copy(update={"database": database, "secret_keys": {"k1": old, "k2": new},
                                           "secret_key_id": "k2"})
        first = await reseal_connector_secrets(both)
        assert (first.resealed, first.unreadable) == (3, 0)
        assert (await reseal_connector_secrets(both)).resealed == 0  # idempotent
        after = connector_stores(storage, SecretBox(Keyring.from_encoded({"k2": new}, "k2")))  # old key removed
        assert (await after.connections.get("t1", "a1", "linkedin")).access_token == "AQ-secret-token"
        assert (await after.apps.linkedin("t1")).client_secret == "li-secret"
        assert (await after.apps.x("t1")).bearer_token == "x-bearer"
    finally:
        await client.drop_database(database)
        await client.close()
