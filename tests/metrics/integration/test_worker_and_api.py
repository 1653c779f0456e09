"""The worker and the API on the real Kafka and database: freshness, privacy, erasure, rebuild."""

import asyncio
import csv
import io
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from asgi_lifespan import LifespanManager
from pymongo import AsyncMongoClient

from advocacy_common.auth import ambassador_id_for
from advocacy_common.events import ConversionType, EngagementKind, Network
from advocacy_common.publishing import EventPublisher
from metrics.bootstrap import build_worker, create_app, open_generations
from metrics.rebuild import rebuild
from metrics.settings import MetricsSettings
from metrics_testkit import BASE_DAY, engaged, envelope, erased, moved, opted_in, published, shared

pytestmark = pytest.mark.integration
PERIOD = {"from": BASE_DAY.date().isoformat(), "to": BASE_DAY.date().isoformat()}


@pytest.fixture
def settings(infrastructure, kafka_topics, unique_db_name, auth_settings) -> MetricsSettings:
    return MetricsSettings(kafka_bootstrap_servers=infrastructure.kafka_bootstrap_servers,
                           mongodb_uri=infrastructure.mongodb_uri, database=unique_db_name("metrics"),
                           topic_prefix=kafka_topics.prefix, topic_partitions=3,
                           consumer_group=f"metrics-{uuid.uuid4().hex[:8]}", generation_poll_seconds=0.2,
                           stream_poll_seconds=0.1, stream_heartbeat_seconds=0.2, **auth_settings)


@pytest.fixture
async def running(settings):
    """The worker and the API, both in-process, plus a publisher to feed the topics."""
    worker = build_worker(settings)
    await worker.start()
    publisher = EventPublisher(settings.kafka_bootstrap_servers, settings.topics, client_id="metrics-test")
    await publisher.start()
    app = create_app(settings)
    async with LifespanManager(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://metrics") as client:
            yield client, publisher, worker
    await publisher.stop()
    await worker.stop()


async def publish(publisher: EventPublisher, tenant: str, *events) -> None:
    await publisher.publish_many([(event.topic, envelope(event, tenant)) for event in events])


async def wait_for(client, path, headers, check, timeout=15.0, params=PERIOD):
    deadline = time.monotonic() + timeout
    while True:
        response = await client.get(path, headers=headers, params=params)
        if response.status_code == 200 and check(response.json()):
            return response.json()
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never satisfied the check: {response.status_code} {response.text[:500]}")
        await asyncio.sleep(0.1)


async def test_kpis_privacy_erasure_and_freshness(running, bearer):
    client, publisher, _ = running
    tenant = f"acme-{uuid.uuid4().hex[:6]}"
    amb0 = ambassador_id_for(tenant, "amb0")  # the id her token names (the ambassador service's id)
    analyst = bearer(tenant, "ann", "analyst")
    team = [amb0, *(f"amb{n}" for n in range(1, 5))]
    # Engagement before its share, and shares before the opt-ins: all must still count.
    await publish(publisher, tenant,
                  engaged("e1", "s1", amb0, "c1", "camp1", "red", EngagementKind.IMPRESSION, 200),
                  engaged("e2", "s1", amb0, "c1", "camp1", "red", EngagementKind.REACTION, 10),
                  engaged("e3", "s2", "amb1", "c2", "camp1", "red", EngagementKind.IMPRESSION, 100),
                  engaged("e4", "s2", "amb1", "c2", "camp1", "red", EngagementKind.COMMENT, 30),
                  shared("s1", amb0, "c1", "camp1", "red", reach=1000),
                  shared("s2", "amb1", "c2", "camp1", "red", personalized=False, reach=500),
                  published("c1", "camp1", ["ai"]), published("c2", "camp1", ["hr"]),
                  *[opted_in(a, "red", leaderboard=a == "amb1") for a in team],
                  opted_in("solo1", "blue"), opted_in("solo2", "blue"))
    overview = await wait_for(client, "/v1/metrics/overview", analyst,
                              lambda body: body["kpis"]["shares"] == 2 and body["kpis"]["comments"] == 30
                              and body["kpis"]["ambassadors_opted_in"] == 7
                              and body["kpis"]["active_ambassadors"] == 2)  # activity is its own write
    kpis = overview["kpis"]
    assert (kpis["active_ambassadors"], kpis["impressions"], kpis["potential_reach"]) == (2, 300, 1500)
    assert kpis["engagement_rate"] == 40 / 300 and kpis["personalization_rate"] == 0.5
    assert kpis["earned_media_value"] == round(300 * 12.0 / 1000, 2)

    red = (await client.get("/v1/metrics/teams/red", headers=bearer(tenant, "m", "manager"), params=PERIOD)).json()
    assert red["kpis"]["ambassadors_opted_in"] == 5 and red["kpis"]["activation_rate"] == 2 / 5
    too_small = await client.get("/v1/metrics/teams/blue", headers=bearer(tenant, "m", "manager"), params=PERIOD)
    assert too_small.status_code == 403 and too_small.json()["title"] == "Group too small"
    assert too_small.headers["content-type"].startswith("application/problem+json")
    listing = (await client.get("/v1/metrics/teams", headers=analyst, params=PERIOD)).json()
    assert [t["value"] for t in listing["items"]] == ["red"] and listing["hidden_teams"] == 1

    top = (await client.get("/v1/metrics/top/contents", headers=analyst, params=PERIOD)).json()["items"]
    assert [item["key"] for item in top] == ["c2", "c1"]  # 30/100 before 10/200
    # Every list pages the same way: one item a page through `next_cursor`, the same items in the same order.
    paged, cursor = [], None
    while True:
        page = (await client.get("/v1/metrics/top/contents", headers=analyst,
                                 params={**PERIOD, "limit": 1, **({"cursor": cursor} if cursor else {})})).json()
        paged += [item["key"] for item in page["items"]]
        if (cursor := page["next_cursor"]) is None:
            break
    assert paged == ["c2", "c1"]
    first_page = (await client.get("/v1/metrics/top/contents", headers=analyst, params={**PERIOD, "limit": 1})).json()
    for bad_cursor in (first_page["next_cursor"][:-2] + "AA", "nonsense"):
        tampered = await client.get("/v1/metrics/top/contents", headers=analyst,
                                    params={**PERIOD, "limit": 1, "cursor": bad_cursor})
        assert tampered.status_code == 400 and tampered.headers["content-type"].startswith("application/problem+json")
    other_list = await client.get("/v1/metrics/leaderboard", headers=analyst,
                                  params={**PERIOD, "cursor": first_page["next_cursor"]})
    assert other_list.status_code == 400  # a cursor is bound to its list
    topics = (await client.get("/v1/metrics/top/topics", headers=analyst, params=PERIOD)).json()["items"]
    assert [item["key"] for item in topics] == ["hr", "ai"]
    board = (await client.get("/v1/metrics/leaderboard", headers=bearer(tenant, "amb3", "ambassador"),
                              params=PERIOD)).json()["items"]
    assert [entry["ambassador_id"] for entry in board] == ["amb1"]  # only who chose to appear
    csv_text = (await client.get("/v1/metrics/export.csv", headers=analyst,
                                 params={**PERIOD, "dimension": "team"})).text
    row = next(csv.DictReader(io.StringIO(csv_text)))
    assert (row["dimension"], row["value"], row["ambassadors_opted_in"]) == ("team", "red", "5")
    assert "blue" not in csv_text

    me = bearer(tenant, "amb0", "ambassador")
    mine = (await client.get("/v1/metrics/me", headers=me, params=PERIOD)).json()
    assert mine["points"][0]["kpis"]["impressions"] == 200
    assert (await client.get("/v1/metrics/overview", headers=me)).status_code == 403
    assert (await client.get("/v1/metrics/overview")).status_code == 401
    other = bearer("another-tenant", "x", "analyst")
    assert (await client.get("/v1/metrics/campaigns/camp1", headers=other, params=PERIOD)).status_code == 404

    async with client.stream("GET", "/v1/metrics/stream", headers=analyst, params={"max_events": 1}) as sse:
        assert sse.headers["content-type"].startswith("text/event-stream")
        body = "".join([chunk async for chunk in sse.aiter_text()])
    assert body.startswith("id: 1\nevent: kpis\ndata: {")
    # Two updates: the figures now, then the next change; comment lines keep the quiet time in between.
    async def two_updates() -> str:
        async with client.stream("GET", "/v1/metrics/stream", headers=analyst, params={"max_events": 2}) as sse:
            return "".join([chunk async for chunk in sse.aiter_text()])

    streaming = asyncio.create_task(two_updates())
    await asyncio.sleep(0.6)  # heartbeats every 0.2 s
    today = (datetime.now(UTC).date() - BASE_DAY.date()).days  # the stream shows the last 30 days
    await publish(publisher, tenant, engaged("e-now", "s2", "amb1", "c2", "camp1", "red", EngagementKind.REACTION, 3,
                                             day=today))
    updates = (await asyncio.wait_for(streaming, timeout=10)).split("\n\n")
    assert updates[0].startswith("id: 1\nevent: kpis\ndata: {") and updates[-2].startswith("id: 2\nevent: kpis")
    assert ": keep-alive" in updates[1:-2] and '"reactions": 3' in updates[-2]

    # Freshness at steady state: one more event shows within 2 seconds.
    started = time.monotonic()
    await publish(publisher, tenant, engaged("e5", "s1", amb0, "c1", "camp1", "red", EngagementKind.CLICK, 4,
                                             unique=True))
    await wait_for(client, "/v1/metrics/overview", analyst, lambda b: b["kpis"]["clicks"] == 4, timeout=5)
    assert time.monotonic() - started < 2.0

    # Erasure: the person's own figures go, the totals stay.
    await publish(publisher, tenant, erased(amb0))
    await wait_for(client, "/v1/metrics/me", me, lambda b: b["points"][0]["kpis"]["impressions"] == 0)
    after = (await client.get("/v1/metrics/overview", headers=analyst, params=PERIOD)).json()["kpis"]
    assert (after["impressions"], after["shares"], after["ambassadors_opted_in"]) == (300, 2, 6)


async def test_rebuild_equals_live_and_the_worker_follows(running, bearer, settings):
    client, publisher, worker = running
    tenant = f"rebuild-{uuid.uuid4().hex[:6]}"
    analyst = bearer(tenant, "ann", "analyst")
    # Opt-ins on two days: the rebuilt series must give each day its own opted-in count again.
    await publish(publisher, tenant, *[opted_in(f"a{n}", "red", [Network.LINKEDIN, Network.X], at=on_day(n % 2))
                                       for n in range(5)],
                  *[shared(f"s{n}", f"a{n % 5}", f"c{n % 3}", "camp", "red", Network.X, day=n % 2) for n in range(20)],
                  *[engaged(f"e{n}", f"s{n}", f"a{n % 5}", f"c{n % 3}", "camp", "red", kind, n + 1,
                            network=Network.X, day=n % 2)
                    for n, kind in enumerate(list(EngagementKind) * 4)])
    two_days = {"from": PERIOD["from"], "to": BASE_DAY.date().replace(day=BASE_DAY.day + 1).isoformat()}
    await wait_for(client, "/v1/metrics/overview", analyst, lambda b: b["kpis"]["shares"] == 20, params=two_days)
    await asyncio.sleep(1.0)  # let the last engagements land too
    paths = ["/v1/metrics/overview", "/v1/metrics/campaigns/camp", "/v1/metrics/networks/x",
             "/v1/metrics/contents/c1", "/v1/metrics/teams/red"]
    live = [(await client.get(p, headers=analyst, params=two_days)).json() for p in paths]
    series = (await client.get("/v1/metrics/timeseries", headers=analyst, params={**two_days, "granularity": "day"})).json()
    assert [point["kpis"]["ambassadors_opted_in"] for point in series["points"]] == [3, 5]

    assert await rebuild(settings) == 2
    rebuilt = [(await client.get(p, headers=analyst, params=two_days)).json() for p in paths]
    assert rebuilt == live
    assert (await client.get("/v1/metrics/timeseries", headers=analyst,
                             params={**two_days, "granularity": "day"})).json() == series

    # The worker moves to the new generation and keeps counting there.
    await wait_for(client, "/livez", {}, lambda b: worker.generation == 2, params={})
    await publish(publisher, tenant, shared("late", "a1", "c1", "camp", "red", Network.X))
    await wait_for(client, "/v1/metrics/overview", analyst, lambda b: b["kpis"]["shares"] == 21, params=two_days)


def on_day(day: int) -> datetime:
    return BASE_DAY + timedelta(days=day)


def flat(report: dict, prefix: str = "") -> dict[str, object]:
    """A JSON report's fields as CSV columns: nested objects flattened (`conversions_by_type.lead` as
    `conversions_lead`, `self_reported.impressions` as `self_reported_impressions`, `kpis.shares` as `shares`, `period.first_day` as `first_day`)."""
    fields: dict[str, object] = {}
    for key, value in report.items():
        if isinstance(value, dict):
            fields.update(flat(value, {"conversions_by_type": "conversions_", "self_reported": "self_reported_"}.get(key, "")))
        elif not isinstance(value, list):
            fields[prefix + key] = value
    return fields


def cell(value: object) -> str:
    return "" if value is None else str(value)


async def test_each_day_has_its_own_opted_in_count_and_the_csv_has_every_json_field(running, bearer, settings):
    """People join, move and leave on their own days; titles and chosen names come from events only."""
    client, publisher, _ = running
    tenant = f"days-{uuid.uuid4().hex[:6]}"
    analyst = bearer(tenant, "ann", "analyst")
    await publish(publisher, tenant,
                  opted_in("a1", "red", [Network.LINKEDIN], leaderboard=True, at=on_day(0), name="Ada L."),
                  opted_in("a2", "red", [Network.LINKEDIN, Network.X], at=on_day(0)),
                  opted_in("a4", "red", [Network.X], leaderboard=True, at=on_day(1), name="Dee"),
                  opted_in("a3", "blue", [Network.X], leaderboard=True, at=on_day(2), name="Cy"),
                  moved("a2", "blue", [Network.X], at=on_day(3)), erased("a4", at=on_day(3)),
                  published("c1", "camp1", title="Spring launch"), published("c2", "camp2", title="Careers"),
                  published("c1", "camp1", title="Spring launch, v2", version=2),
                  *[shared(share, who, content, campaign, team, Network.X, day=day)
                    for share, who, content, campaign, team, day in (
                        ("s1", "a1", "c1", "camp1", "red", 0), ("s4", "a4", "c2", "camp2", "red", 1),
                        ("s3", "a3", "c1", "camp1", "blue", 2), ("s2", "a2", "c2", "camp2", "blue", 3))],
                  *[engaged(f"e{n}-{kind.value}", share, who, content, campaign, team, kind, count, Network.X, day,
                            conversion=ConversionType.LEAD if kind is EngagementKind.CONVERSION else None)
                    for n, (share, who, content, campaign, team, day) in enumerate((
                        ("s1", "a1", "c1", "camp1", "red", 0), ("s4", "a4", "c2", "camp2", "red", 1),
                        ("s3", "a3", "c1", "camp1", "blue", 2), ("s2", "a2", "c2", "camp2", "blue", 3)))
                    for kind, count in ((EngagementKind.IMPRESSION, 100 * (n + 1)), (EngagementKind.REACTION, n + 1),
                                        (EngagementKind.CLICK, 2), (EngagementKind.CONVERSION, 1))])
    period = {"from": on_day(0).date().isoformat(), "to": on_day(4).date().isoformat()}
    overview = await wait_for(client, "/v1/metrics/overview", analyst,
                              lambda b: b["kpis"]["impressions"] == 1000 and b["kpis"]["conversions"] == 4
                              and b["kpis"]["ambassadors_opted_in"] == 3 and b["kpis"]["active_ambassadors"] == 3,
                              params=period)

    # Each day its own count: a1 and a2 from day 0, a4 from day 1 until erased on day 3, a3 from day 2.
    series = (await client.get("/v1/metrics/timeseries", headers=analyst, params=period)).json()
    assert [p["kpis"]["ambassadors_opted_in"] for p in series["points"]] == [2, 3, 4, 3, 3]
    # Erasure deletes a4's activity days (personal data): day 1 keeps her in the count, not among the active.
    assert [p["kpis"]["active_ambassadors"] for p in series["points"]] == [1, 0, 1, 1, 0]
    assert [p["kpis"]["shares"] for p in series["points"]] == [1, 1, 1, 1, 0]  # totals stay
    on_x = (await client.get("/v1/metrics/timeseries", headers=analyst,
                             params={**period, "dimension": "network", "value": "x"})).json()
    assert [p["kpis"]["ambassadors_opted_in"] for p in on_x["points"]] == [1, 2, 3, 2, 2]
    weekly = (await client.get("/v1/metrics/timeseries", headers=analyst,
                               params={**period, "granularity": "week"})).json()  # Monday 2 March: one week
    assert [p["kpis"]["ambassadors_opted_in"] for p in weekly["points"]] == [3]

    # Titles and chosen names, from the content and ambassador events; the erased person's name is gone.
    top = (await client.get("/v1/metrics/top/contents", headers=analyst, params=period)).json()["items"]
    assert {item["key"]: item["title"] for item in top} == {"c1": "Spring launch, v2", "c2": "Careers"}
    board = (await client.get("/v1/metrics/leaderboard", headers=bearer(tenant, "a2", "ambassador"),
                              params=period)).json()["items"]
    assert [(entry["ambassador_id"], entry["display_name"]) for entry in board] == [("a3", "Cy"), ("a1", "Ada L.")]
    generations = await open_generations(AsyncMongoClient(settings.mongodb_uri)[settings.database], settings)
    stored = {view.ambassador_id: view for view in
              await generations.store(await generations.current()).list_ambassadors(tenant)}
    assert stored["a4"].erased and stored["a4"].leaderboard_name is None and stored["a1"].leaderboard_name == "Ada L."
    assert stored["a2"].leaderboard_name is None  # never chose to appear

    # The CSV offers every field of the JSON overview, series and breakdowns, with the same figures.
    async def export(**params) -> list[dict[str, str]]:
        response = await client.get("/v1/metrics/export.csv", headers=analyst, params={**period, **params})
        return list(csv.DictReader(io.StringIO(response.text)))

    rows = await export(granularity="day")
    assert len(rows) == len(series["points"])
    for row, point in zip(rows, series["points"], strict=True):
        expected = {**flat({key: value for key, value in series.items() if key != "period"}), **flat(point)}
        assert {name: row[name] for name in expected} == {name: cell(value) for name, value in expected.items()}
    assert set(flat(overview)) <= set(rows[0])
    for dimension, path, values in (("campaign", "campaigns", ["camp1", "camp2"]),
                                    ("content", "contents", ["c1", "c2"]), ("network", "networks", ["x"])):
        by_value = {row["value"]: row for row in await export(dimension=dimension, granularity="month")}
        assert sorted(by_value) == values
        for value in values:
            report = (await client.get(f"/v1/metrics/{path}/{value}", headers=analyst, params=period)).json()
            assert {name: by_value[value][name] for name in flat(report)} == \
                {name: cell(figure) for name, figure in flat(report).items()}, (dimension, value)
    titled = {row["value"]: row["title"] for row in await export(dimension="content")}
    assert titled == {"c1": "Spring launch, v2", "c2": "Careers"}
