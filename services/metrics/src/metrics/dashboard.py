"""The reference dashboard: static files under /dashboard/, using only the public metrics API.

Served with a Content-Security-Policy of its own (scripts, styles and API calls from this origin
only, no inline code), so the page works under whatever stricter policy the API answers carry.
The charting library is vendored by scripts/build-dashboard.sh (from npm), not committed.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

DASHBOARD_FILES = Path(__file__).parent / "dashboard_files"
DASHBOARD_PATH = "/dashboard"
DASHBOARD_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                 "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
DASHBOARD_HEADERS = {
    "content-security-policy": DASHBOARD_CSP,
    "referrer-policy": "no-referrer",  # the URL fragment never leaves the page, but be explicit
    "x-content-type-options": "nosniff",
    "cache-control": "no-cache",
}


class DashboardFiles(StaticFiles):
    """Static files that carry the dashboard's own security headers."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *((k.encode(), v.encode()) for k, v in DASHBOARD_HEADERS.items()
                                        if k.encode() not in names)]
            await send(message)

        await super().__call__(scope, receive, send_with_headers)


def mount_dashboard(app: FastAPI) -> None:
    app.mount(DASHBOARD_PATH, DashboardFiles(directory=DASHBOARD_FILES, html=True), name="dashboard")
