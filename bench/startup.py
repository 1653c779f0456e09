"""Time from `make up` to live KPIs on the dashboard, as a newcomer sees it.

    uv run python bench/startup.py            # with the environment `make up` / `make down` read

Starts `make up`, and meanwhile waits for the dev issuer's key, mints an analyst token for the demo
tenant, and opens the dashboard in headless Chromium (Debian's, as the dashboard test) until it shows
the demo tenant's KPIs with the live stream on. Prints when `make up` returned, when the API first
answered with shares, and when the dashboard was live. It leaves the stack running (`make down` stops it).
The ports follow ADVOCACY_PORT_BASE and ISSUER_PORT, the key ADVOCACY_LOCAL, as in scripts/stack.sh.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from pathlib import Path

import httpx
from playwright.async_api import async_playwright

from advocacy_common.dev_issuer import DevIssuer

ROOT = Path(__file__).resolve().parents[1]
TENANT = "acme"


async def wait_for_key(path: Path, started: float, limit: float) -> DevIssuer:
    issuer = f"http://127.0.0.1:{os.environ.get('ISSUER_PORT', '8400')}"
    while not path.exists():
        if time.monotonic() - started > limit:
            raise SystemExit(f"no dev issuer key at {path} after {limit:.0f} s")
        await asyncio.sleep(0.5)
    await asyncio.sleep(0.2)  # written at once, but let the writer finish
    return DevIssuer.from_key_file(path, issuer)


async def first_shares(metrics: str, token: str, started: float, limit: float) -> float:
    async with httpx.AsyncClient(timeout=5) as client:
        while time.monotonic() - started < limit:
            try:
                response = await client.get(f"{metrics}/v1/metrics/overview",
                                            headers={"Authorization": f"Bearer {token}"})
                if response.status_code == 200 and response.json()["kpis"]["shares"] > 0:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.5)
    raise SystemExit(f"no shares in the overview after {limit:.0f} s")


async def dashboard_live(metrics: str, token: str, started: float, limit: float) -> float:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                                   args=["--no-sandbox"])
        page = await browser.new_page()
        try:
            while time.monotonic() - started < limit:
                try:
                    await page.goto(f"{metrics}/dashboard/#token={token}", timeout=10000)
                    await page.wait_for_selector("body[data-ready=yes]", timeout=10000)
                    await page.wait_for_function(
                        "() => document.getElementById('live-status').textContent === 'live' && "
                        "Number(document.querySelector('[data-live=shares]')?.dataset.raw) > 0", timeout=10000)
                    return time.monotonic() - started
                except Exception:  # not up yet, or no shares yet: load the page again, as a person would
                    await asyncio.sleep(1)
        finally:
            await browser.close()
    raise SystemExit(f"the dashboard was not live after {limit:.0f} s")


async def main(limit: float = 600) -> None:
    base = int(os.environ.get("ADVOCACY_PORT_BASE", "8100"))
    metrics = f"http://127.0.0.1:{base + 4}"
    key = Path(os.environ.get("ADVOCACY_LOCAL", ROOT / ".local")) / "dev-issuer" / "key.pem"
    started = time.monotonic()
    log = ROOT / ".local" / "startup-bench.log"  # what `make up` printed (tokens included: kept local)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as output:
        make = await asyncio.create_subprocess_exec("make", "-s", "up", cwd=ROOT, stdout=output,
                                                    stderr=asyncio.subprocess.STDOUT)
        returned = asyncio.create_task(make.wait())
        issuer = await wait_for_key(key, started, limit)
        token = issuer.mint(tenant=TENANT, subject="startup-bench", roles=["analyst"], ttl_seconds=3600)
        watching = asyncio.gather(first_shares(metrics, token, started, limit),
                                  dashboard_live(metrics, token, started, limit))
        done, _ = await asyncio.wait({returned, watching}, return_when=asyncio.FIRST_COMPLETED)
        returned_at = time.monotonic() - started
        if returned in done and returned.result() != 0:
            watching.cancel()
            raise SystemExit(f"make up failed (exit {returned.result()}) after {returned_at:.0f} s: see {log}")
        api_at, live_at = await watching
        code = await returned
        returned_at = returned_at if returned in done else time.monotonic() - started
    print(f"make up returned (exit {code}) after {returned_at:.1f} s; overview with shares after {api_at:.1f} s; "
          f"dashboard live with the demo tenant's KPIs after {live_at:.1f} s; load average {os.getloadavg()[0]:.1f}")
    sys.exit(code)


if __name__ == "__main__":
    asyncio.run(main())
