"""Process entry points: `distribution-api`, `distribution-worker`, `distribution-poller` and
`distribution-reseal-secrets`."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

import uvicorn

from advocacy_common.logs import configure_logging
from advocacy_common.worker import ServiceWorker

from .bootstrap import build_poller, build_worker, create_app, reseal_connector_secrets, settings_from_environment
from .settings import DistributionSettings


def run_api() -> None:
    settings = settings_from_environment()
    configure_logging(settings.log_level, settings.log_json)
    uvicorn.run(create_app(settings), host=settings.http_host, port=settings.http_port, proxy_headers=True,
                log_config=None, server_header=False)  # our redacting log handler; no Server banner


def run_worker() -> None:
    _run_until_signalled(build_worker)


def run_poller() -> None:
    """The network connectors' polling worker (LinkedIn, X); several replicas may run (claims are CAS)."""
    _run_until_signalled(build_poller)


def _run_until_signalled(build: Callable[[DistributionSettings], ServiceWorker]) -> None:
    settings = settings_from_environment()
    configure_logging(settings.log_level, settings.log_json)

    async def work() -> None:
        # Kafka clients must be created inside the running event loop.
        await build(settings).run()

    asyncio.run(work())


def run_reseal_secrets() -> None:
    """After a key rotation: re-encrypt every connector secret under the current key (idempotent).

    Exits 1 when some secret could not be read (its key is no longer in the keyring): do not remove a key
    before this command reports `unreadable=0`.
    """
    settings = settings_from_environment()
    configure_logging(settings.log_level, settings.log_json)
    count = asyncio.run(reseal_connector_secrets(settings))
    print(f"resealed={count.resealed} unreadable={count.unreadable} current_key={settings.secret_key_id}")
    sys.exit(1 if count.unreadable else 0)
