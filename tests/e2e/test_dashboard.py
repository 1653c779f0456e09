"""The reference dashboard in a real browser (Debian's headless Chromium, driven by Playwright).

The metrics API and worker run on a real port, on the real Kafka and database, fed with events
as the other services would publish them. The page must show the API's figures exactly, draw its
charts, follow the live stream, keep to its Content-Security-Policy, and show an ambassador
only their own statistics. The screenshots are checked for drawn charts (docs/ keeps a committed copy).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from live_server import serving
from PIL import Image
from playwright.async_api import Page, async_playwright

from advocacy_common.auth import ambassador_id_for
from advocacy_common.events import EngagementKind, Network
from advocacy_common.publishing import EventPublisher
from metrics.bootstrap import build_worker, create_app
from metrics.settings import MetricsSettings

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "metrics"))  # the metrics test kit's event builders
from metrics_testkit import BASE_DAY, engaged, envelope, opted_in, published, shared  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
# Written under the ignored .local/ so a test run leaves the tree clean; DASHBOARD_SCREENSHOTS=docs
# refreshes the committed pictures in docs/.
SCREENSHOTS = REPO / os.environ.get("DASHBOARD_SCREENSHOTS", ".local/screenshots")
SCREENSHOT = SCREENSHOTS / "dashboard.png"
SCREENSHOT_ME = SCREENSHOTS / "dashboard-me.png"
SCREENSHOTS.mkdir(parents=True, exist_ok=True)
ALICE = "alice@acme.example"
CAMPAIGNS = ("spring-launch", "careers-week")
CONTENTS = {"c-lab": "spring-launch", "c-robots": "spring-launch", "c-interns": "careers-week"}
TITLES = {"c-lab": "Inside our new research lab", "c-robots": "Robots that sort parcels, \"fast\"",
          "c-interns": "A summer with our interns"}


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's Chromium (installed by the project's script if missing) and the vendored Chart.js."""
    subprocess.run(["bash", str(REPO / "scripts" / "ensure-chromium.sh")], check=True)
    subprocess.run(["bash", str(REPO / "scripts" / "build-dashboard.sh")], check=True)
    return shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
async def metrics_stack(infrastructure, kafka_topics, run_id, auth_settings):
    settings = MetricsSettings(kafka_bootstrap_servers=infrastructure.kafka_bootstrap_servers,
                               mongodb_uri=infrastructure.mongodb_uri, database=f"e2e_dash_{run_id}",
                               topic_prefix=kafka_topics.prefix, topic_partitions=3,
                               consumer_group=f"dash-{uuid.uuid4().hex[:8]}", stream_poll_seconds=0.3,
                               stream_heartbeat_seconds=5, **auth_settings)
    worker = build_worker(settings)
    await worker.start()
    publisher = EventPublisher(settings.kafka_bootstrap_servers, settings.topics, client_id="dashboard-test")
    await publisher.start()
    try:
        async with serving(create_app(settings)) as base_url:
            yield base_url, publisher
    finally:
        await publisher.stop()
        await worker.stop()


def days_ago(n: int) -> int:
    """The test kit's day offset (from its BASE_DAY) of `n` days before today."""
    return (datetime.now(UTC).date() - BASE_DAY.date()).days - n


def programme(tenant: str) -> list:
    """Seven ambassadors: five in "red" (shown), two in "blue" (below the minimum of five), Alice in red."""
    alice = ambassador_id_for(tenant, ALICE)
    red = [alice, *(f"red-{n}" for n in range(4))]
    blue = ["blue-0", "blue-1"]
    events: list = [opted_in(a, "red", [Network.LINKEDIN, Network.X]) for a in red]
    events += [opted_in(a, "blue", [Network.LINKEDIN]) for a in blue]
    events += [published(content, campaign, topics=("research",), title=TITLES[content])
               for content, campaign in CONTENTS.items()]
    kinds = (EngagementKind.IMPRESSION, EngagementKind.REACTION, EngagementKind.COMMENT, EngagementKind.CLICK)
    for n, person in enumerate(red + blue):
        team = "red" if person in red else "blue"
        for k, content in enumerate(CONTENTS):
            if (n + k) % 3 == 2:
                continue
            share, network = f"s-{n}-{k}", (Network.LINKEDIN, Network.X)[(n + k) % 2 if team == "red" else 0]
            day = days_ago((n * 3 + k * 5) % 24)
            events.append(shared(share, person, content, CONTENTS[content], team, network, day=day,
                                 reach=200 + 40 * n))
            for kind, count in zip(kinds, (300 + 97 * n + 31 * k, 12 + n + 3 * k, 2 + k, 5 + n), strict=True):
                events.append(engaged(f"e-{share}-{kind.value}", share, person, content, CONTENTS[content], team,
                                      kind, count, network=network, day=day, unique=kind is EngagementKind.CLICK))
    return events


async def publish(publisher: EventPublisher, tenant: str, events: list) -> None:
    await publisher.publish_many([(event.topic, envelope(event, tenant)) for event in events])


async def settled(api: httpx.AsyncClient, headers: dict, expected_shares: int, timeout: float = 40) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        report = (await api.get("/v1/metrics/overview", headers=headers)).json()
        kpis = report.get("kpis", {})
        if kpis.get("shares") == expected_shares and kpis.get("ambassadors_opted_in") == 7 and kpis["clicks"]:
            return report
        assert time.monotonic() < deadline, f"the events never all arrived: {report}"
        await asyncio.sleep(0.3)


async def open_dashboard(page: Page, base_url: str, token: str) -> None:
    response = await page.goto(f"{base_url}/dashboard/#token={token}")
    policy = (await response.all_headers())["content-security-policy"]
    assert "script-src 'self';" in policy and "unsafe" not in policy  # the page's own policy, no inline code
    await page.wait_for_selector("body[data-ready=yes]", timeout=20000)


async def canvas_ink(page: Page, canvas_id: str) -> int:
    """How many pixels of a canvas are painted (Chart.js leaves the rest transparent)."""
    return await page.evaluate("""(id) => {
        const c = document.getElementById(id);
        const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let painted = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i] > 0) painted++;
        return painted;
    }""", canvas_id)


def non_background_pixels(png: bytes, box: dict) -> int:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    area = image.crop((int(box["x"]), int(box["y"]), int(box["x"] + box["width"]), int(box["y"] + box["height"])))
    return area.convert("L").point(lambda level: 255 if level < 250 else 0).histogram()[255]


def number(text: str) -> int:
    return int(text.replace(",", ""))


async def test_the_dashboard_shows_the_apis_figures(metrics_stack, chromium, mint_token):
    base_url, publisher = metrics_stack
    tenant = f"dash{uuid.uuid4().hex[:6]}"
    events = programme(tenant)
    await publish(publisher, tenant, events)
    analyst_token = mint_token(tenant, "ann", "analyst")
    analyst = {"Authorization": f"Bearer {analyst_token}"}
    shares = sum(1 for e in events if type(e).__name__ == "PostShared")

    async with httpx.AsyncClient(base_url=base_url) as api, async_playwright() as playwright:
        await settled(api, analyst, shares)
        browser = await playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        console: list[str] = []
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        await open_dashboard(page, base_url, analyst_token)
        assert "token" not in page.url  # the fragment is dropped once read

        period = {"from": await page.input_value("#from"), "to": await page.input_value("#to")}
        overview = (await api.get("/v1/metrics/overview", headers=analyst, params=period)).json()["kpis"]
        shown = await page.eval_on_selector_all("[data-kpi]", "els => els.map(e => [e.dataset.kpi, "
                                                "JSON.parse(e.dataset.raw), e.textContent])")
        assert len(shown) == 13
        for name, raw, text in shown:
            assert raw == overview[name], name
        texts = {name: text for name, _, text in shown}
        assert number(texts["impressions"]) == overview["impressions"]
        assert texts["engagement_rate"] == f"{overview['engagement_rate'] * 100:.2f} %"

        # Time series of the programme, by day.
        series = (await api.get("/v1/metrics/timeseries", headers=analyst, params=period)).json()
        drawn = json.loads(await page.get_attribute("#series-chart", "data-points"))
        assert drawn == [p["kpis"]["impressions"] for p in series["points"]] and sum(drawn) == overview["impressions"]

        # Breakdown per campaign (the default), then content, network and team.
        async def breakdown_rows() -> dict[str, list[str]]:
            rows = await page.eval_on_selector_all("#breakdown-table tbody tr",
                                                   "rows => rows.map(r => [...r.cells].map(c => c.textContent))")
            return {row[0]: row[1:] for row in rows}

        rows = await breakdown_rows()
        assert sorted(rows) == sorted(CAMPAIGNS)
        for campaign in CAMPAIGNS:
            report = (await api.get(f"/v1/metrics/campaigns/{campaign}", headers=analyst, params=period)).json()
            assert [number(rows[campaign][0]), number(rows[campaign][1]), number(rows[campaign][2])] == \
                [report["kpis"]["shares"], report["kpis"]["impressions"], report["kpis"]["engagements"]]
        for dimension, path, values in (("content", "contents", list(CONTENTS)),
                                        ("network", "networks", ["linkedin", "x"])):
            await page.select_option("#breakdown-dimension", dimension)
            await page.wait_for_function("(v) => [...document.querySelectorAll('#breakdown-table tbody tr')]"
                                         ".some(r => r.cells[0].textContent === v)", arg=values[0])
            rows = await breakdown_rows()
            for value in values:
                report = (await api.get(f"/v1/metrics/{path}/{value}", headers=analyst, params=period)).json()
                assert number(rows[value][1]) == report["kpis"]["impressions"], (dimension, value)
        await page.select_option("#breakdown-dimension", "team")
        await page.wait_for_selector("#breakdown-table td.too-small")
        teams = (await api.get("/v1/metrics/teams", headers=analyst, params=period)).json()
        rows = await breakdown_rows()
        assert [t["value"] for t in teams["items"]] == ["red"] and teams["hidden_teams"] == 1
        assert number(rows["red"][1]) == teams["items"][0]["kpis"]["impressions"]
        assert rows["1 more team"] == ["group too small"] and "blue" not in rows
        await page.fill("#team-lookup", "blue")
        await page.click("#team-show")
        assert await (await page.wait_for_selector("#team-result .too-small")).text_content() == \
            "blue: group too small"

        # Top content, by engagement rate, with the titles of the content events.
        top = (await api.get("/v1/metrics/top/contents", headers=analyst, params={**period, "limit": 10})).json()
        ranked = await page.eval_on_selector_all("#top-table tbody tr", "rows => rows.map(r => [...r.cells]"
                                                 ".slice(0, 5).map(c => c.textContent))")
        assert ranked == [[item["title"], item["key"], f"{item['engagement_rate'] * 100:.2f} %",
                           f"{item['engagements']:,}", f"{item['impressions']:,}"] for item in top["items"]]
        assert sorted(row[0] for row in ranked) == sorted(TITLES.values())

        # Live: the stream (opened with a ticket) shows the last 30 days, and follows a new report.
        await page.wait_for_function("() => document.getElementById('live-status').textContent === 'live'")
        live_impressions = "() => document.querySelector('[data-live=impressions]')?.dataset.raw"
        await page.wait_for_function(f"() => ({live_impressions})() === '{overview['impressions']}'")
        await publish(publisher, tenant, [engaged("e-live", "s-0-0", ambassador_id_for(tenant, ALICE), "c-lab",
                                                  "spring-launch", "red", EngagementKind.IMPRESSION, 500,
                                                  network=Network.LINKEDIN, day=days_ago(0))])
        await page.wait_for_function(f"() => ({live_impressions})() === '{overview['impressions'] + 500}'",
                                     timeout=20000)

        # The token never travelled in a URL; the stream was opened with a ticket.
        assert not [url for url in requested if analyst_token in url]
        assert [url for url in requested if "/v1/metrics/stream?ticket=" in url]

        # The charts are drawn, on the canvas and in the screenshot.
        for canvas in ("series-chart", "breakdown-chart"):
            assert await canvas_ink(page, canvas) > 2000, canvas
        await page.select_option("#breakdown-dimension", "campaign")
        await page.wait_for_selector("#breakdown-table tbody tr >> text=spring-launch")
        png = await page.screenshot(path=str(SCREENSHOT), full_page=True)
        for canvas in ("#series-chart", "#breakdown-chart"):
            box = await page.locator(canvas).bounding_box()
            assert non_background_pixels(png, box) > 2000, canvas
        # No CSP violation, no script error; the one failed request is the team below the minimum (403).
        errors = [line for line in console if line.startswith(("error", "pageerror")) or "Content Security" in line]
        assert errors == ["error: Failed to load resource: the server responded with a status of 403 (Forbidden)"]

        # An ambassador sees only her own statistics.
        alice_token = mint_token(tenant, ALICE, "ambassador")
        mine = await browser.new_page(viewport={"width": 1280, "height": 700})
        await open_dashboard(mine, base_url, alice_token)
        assert await mine.is_hidden("#programme") and await mine.is_visible("#me")
        assert await mine.is_hidden("#live-status")  # no stream for ambassadors
        me_period = {"from": await mine.input_value("#from"), "to": await mine.input_value("#to"),
                     "granularity": "week"}
        me = (await api.get("/v1/metrics/me", headers={"Authorization": f"Bearer {alice_token}"},
                            params=me_period)).json()
        own = json.loads(await mine.get_attribute("[data-mine=impressions]", "data-raw"))
        assert own == sum(p["kpis"]["impressions"] for p in me["points"]) and 0 < own < overview["impressions"]
        assert await canvas_ink(mine, "me-chart") > 1000
        png = await mine.screenshot(path=str(SCREENSHOT_ME), full_page=True)
        assert non_background_pixels(png, await mine.locator("#me-chart").bounding_box()) > 1000
        await browser.close()
