"""The demo loader (scripts/demo_tenant.py), small, against the real stack: the four services on real
ports, the real Kafka and database, the loader in its own process talking to the public APIs only.

It must produce figures worth looking at (shares, weeks of engagement, clicks, conversions, teams),
consistent with what the APIs say, and running it a second time, every write sent again, must
change nothing.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(480)]
REPO = Path(__file__).resolve().parents[2]
LOADER = REPO / "scripts" / "demo_tenant.py"
PEOPLE, FIRST_SLICE = 14, 6


def loader_module():
    """The loader's own directory and content, to know what it was asked to create."""
    spec = importlib.util.spec_from_file_location("demo_tenant", LOADER)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("demo_tenant", module)  # its dataclasses look their module up while defined
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def key_file(dev_issuer, tmp_path_factory) -> Path:
    """The test issuer's key, where the loader reads it (as `make up` hands it the dev issuer's)."""
    issuer, _ = dev_issuer
    path = tmp_path_factory.mktemp("demo") / "key.pem"
    path.write_bytes(issuer.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
    return path


async def run_loader(urls: dict[str, str], key: Path, issuer: str, tenant: str, state: Path, *args: str) -> str:
    """One run of the loader in its own process (asynchronously: the services run in this event loop)."""
    command = [sys.executable, str(LOADER), "--key-file", str(key), "--issuer", issuer, "--tenant", tenant,
               "--people", str(PEOPLE), "--first-slice", str(FIRST_SLICE), "--state", str(state),
               *(f"--{name}={url}" for name, url in urls.items()), *args]
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(), timeout=300)
    text = output.decode()
    assert process.returncode == 0, text
    assert "demo tenant:" not in text, text  # a person's load refused (the loader goes on, the test must not)
    print(text)
    return text


async def figures(api: httpx.AsyncClient, headers: dict) -> dict:
    """What an analyst sees: the overview, the daily series, the teams and the top content."""
    return {path: (await api.get(f"/v1/metrics/{path}", headers=headers)).json()
            for path in ("overview", "timeseries", "teams", "top/contents?limit=20")}


async def settled(api: httpx.AsyncClient, headers: dict, shares: int, timeout: float = 90) -> dict:
    """The figures once every share is counted and nothing has moved for a few seconds."""
    deadline, last, calm_since = time.monotonic() + timeout, None, time.monotonic()
    while True:
        now = await figures(api, headers)
        if now != last:
            last, calm_since = now, time.monotonic()
        elif now["overview"]["kpis"]["shares"] == shares and time.monotonic() - calm_since >= 4:
            return now
        assert time.monotonic() < deadline, f"the figures never settled: {now['overview']}"
        await asyncio.sleep(1)


async def test_the_demo_loader_gives_plausible_consistent_figures_and_a_second_run_changes_nothing(
        served_stack, key_file, dev_issuer, mint_token, tmp_path):
    urls, (issuer, _) = served_stack, dev_issuer
    tenant, state = f"demo{uuid.uuid4().hex[:6]}", tmp_path / "state"
    demo = loader_module()
    analyst = {"Authorization": f"Bearer {mint_token(tenant, 'ann', 'analyst')}"}

    printed = await run_loader(urls, key_file, issuer.issuer, tenant, state, "load")
    assert f"first {FIRST_SLICE} people" in printed
    await run_loader(urls, key_file, issuer.issuer, tenant, state, "--steps", "3", "trickle")  # the rest, then live
    noted = json.loads((state / "shares.json").read_text())

    async with httpx.AsyncClient(base_url=urls["metrics"], timeout=30) as api:
        first = await settled(api, analyst, len(noted))
        kpis = first["overview"]["kpis"]
        people = demo.directory(PEOPLE)
        volunteers = [p for p in people if p.opts_in]
        # Non-trivial: most people opted in, several shared, weeks of engagement, clicks and conversions.
        assert kpis["ambassadors_opted_in"] == len(volunteers) >= PEOPLE // 2
        assert 3 <= kpis["active_ambassadors"] <= len(volunteers) and kpis["shares"] == len(noted) >= 5
        assert kpis["impressions"] > 100 * kpis["shares"] and kpis["reactions"] > 0 and kpis["comments"] > 0
        assert 0 < kpis["clicks"] and kpis["unique_clicks"] <= kpis["clicks"]
        assert kpis["comment_replies"] <= kpis["comments"] and 0 < kpis["engagement_rate"] < 1
        assert kpis["earned_media_value"] > 0 and kpis["potential_reach"] > 0
        points = first["timeseries"]["points"]
        assert sum(1 for p in points if p["kpis"]["impressions"]) >= 5  # the history spreads over weeks
        # Consistent with the API's other views.
        assert sum(p["kpis"]["impressions"] for p in points) == kpis["impressions"]
        assert sum(p["kpis"]["clicks"] for p in points) == kpis["clicks"]
        assert points[-1]["kpis"]["ambassadors_opted_in"] == kpis["ambassadors_opted_in"]
        titles = {item["title"] for item in first["top/contents?limit=20"]["items"]}
        assert titles and titles <= {item["title"] for item in demo.CONTENT}
        assert {c["campaign"] for c in demo.CONTENT} and len(demo.CAMPAIGNS) == 3
        shares_by_team = sum(t["kpis"]["shares"] for t in first["teams"]["items"])
        assert shares_by_team <= kpis["shares"]  # teams below the minimum size are only counted
        mine = {s["share_id"] for s in noted if s["login"] == people[0].login}
        alice = {"Authorization": f"Bearer {mint_token(tenant, people[0].login, 'ambassador')}"}
        own = (await api.get("/v1/metrics/me", headers=alice, params={"granularity": "month"})).json()
        assert sum(p["kpis"]["shares"] for p in own["points"]) == len(mine)

        # A second run, every write sent again: nothing changes.
        await run_loader(urls, key_file, issuer.issuer, tenant, state, "--again", "load")
        await run_loader(urls, key_file, issuer.issuer, tenant, state, "--again", "--steps", "0", "trickle")
        assert json.loads((state / "shares.json").read_text()) == noted
        await asyncio.sleep(3)  # what the second run sent has had time to reach the metrics
        assert await settled(api, analyst, len(noted)) == first
