"""`http_workers`: the api process serves its app from that many uvicorn worker processes on one port."""

import os
import subprocess
import sys
import time

import httpx
import pytest
from pydantic import ValidationError

from advocacy_common.serving import uvicorn_options
from advocacy_common.settings import ServiceSettings

pytestmark = pytest.mark.unit

PID_APP = '''
import os
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route


def build():
    async def pid(request):
        return PlainTextResponse(str(os.getpid()))

    return Starlette(routes=[Route("/pid", pid)])
'''


def test_one_worker_by_default_and_the_setting_is_bounded():
    assert ServiceSettings().http_workers == 1
    assert uvicorn_options(ServiceSettings())["workers"] == 1
    options = uvicorn_options(ServiceSettings(http_workers=3, http_port=8123), proxy_headers=True)
    assert options["workers"] == 3 and options["factory"] is True and options["port"] == 8123
    assert options["proxy_headers"] is True and options["server_header"] is False and options["log_config"] is None
    for wrong in (0, 65):
        with pytest.raises(ValidationError):
            ServiceSettings(http_workers=wrong)


def test_the_service_prefix_names_the_setting(monkeypatch):
    from metrics.settings import MetricsSettings

    monkeypatch.setenv("METRICS_HTTP_WORKERS", "2")
    assert MetricsSettings().http_workers == 2


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_workers_answer_on_one_port(tmp_path):
    (tmp_path / "pid_app.py").write_text(PID_APP)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
           "ADVOCACY_HTTP_PORT": str(port), "ADVOCACY_HTTP_WORKERS": "2"}
    server = subprocess.Popen([sys.executable, "-c", "from advocacy_common.serving import serve_api; "
                               "from advocacy_common.settings import ServiceSettings; "
                               "serve_api(ServiceSettings(), 'pid_app:build')"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        answered: set[str] = set()
        deadline = time.monotonic() + 60
        while len(answered) < 2 and time.monotonic() < deadline:
            try:  # a new connection each time: the workers share the listening socket
                with httpx.Client(timeout=2) as client:
                    answered.add(client.get(f"http://127.0.0.1:{port}/pid").text)
            except httpx.HTTPError:
                time.sleep(0.2)
        assert len(answered) == 2, answered
        assert str(server.pid) not in answered  # the supervisor serves nothing itself
    finally:
        server.terminate()
        _, errors = server.communicate(timeout=30)
    assert server.returncode == 0, errors.decode()[-2000:]


async def test_the_collector_is_frozen_once_the_app_has_started():
    import gc
    from contextlib import asynccontextmanager

    from fastapi import FastAPI

    from advocacy_common.serving import frozen_after_startup

    events = []

    @asynccontextmanager
    async def lifespan(app):
        events.append("started")
        yield {"answer": 42}
        events.append("stopped")

    app = frozen_after_startup(FastAPI(lifespan=lifespan))
    gc.unfreeze()
    try:
        async with app.router.lifespan_context(app) as state:
            assert events == ["started"] and state == {"answer": 42}
            assert gc.get_freeze_count() > 0  # what startup left alive is out of the collector's way
        assert events == ["started", "stopped"]
    finally:
        gc.unfreeze()
