"""Process entry points: `distribution-api`, `distribution-worker`, `distribution-poller`,
`distribution-reseal-secrets` and `distribution-flatten-profiles`."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

from typing import TYPE_CHECKING

from advocacy_common.logs import configure_logging
from advocacy_common.serving import frozen_after_startup, serve_api

from .settings import DistributionSettings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from advocacy_common.worker import ServiceWorker

# The bootstrap (every module of the service) is imported where it is used: with http_workers > 1 the
# process that calls run_api is uvicorn's supervisor, which only needs the settings (~80 MB less).


def api_app() -> FastAPI:
    """The app of one api process, from the environment (uvicorn calls it in each worker process)."""
    from .bootstrap import create_app, settings_from_environment

    settings = settings_from_environment()
    configure_logging(settings.log_level, settings.log_json)
    return frozen_after_startup(create_app(settings))


def run_api() -> None:
    settings = DistributionSettings()  # as bootstrap.settings_from_environment, without importing the service
    configure_logging(settings.log_level, settings.log_json)
    # proxy_headers: the redirect's visitor address comes from X-Forwarded-For of the trusted proxy.
    serve_api(settings, "distribution.main:api_app", proxy_headers=True)  # DISTRIBUTION_HTTP_WORKERS processes


def run_worker() -> None:
    from .bootstrap import build_worker

    _run_until_signalled(build_worker)


def run_poller() -> None:
    """The network connectors' polling worker (LinkedIn, X); several replicas may run (claims are CAS)."""
    from .bootstrap import build_poller

    _run_until_signalled(build_poller)


def _run_until_signalled(build: Callable[[DistributionSettings], ServiceWorker]) -> None:
    from .bootstrap import settings_from_environment

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
    from .bootstrap import reseal_connector_secrets, settings_from_environment

    settings = settings_from_environment()
    configure_logging(settings.log_level, settings.log_json)
    count = asyncio.run(reseal_connector_secrets(settings))
    print(f"resealed={count.resealed} unreadable={count.unreadable} current_key={settings.secret_key_id}")
    sys.exit(1 if count.unreadable else 0)


def run_flatten_profiles() -> None:
    """Once after upgrading from a release that nested the profile in the ambassador documents: store it as
    one string in each (the feed reads both; a nested one costs the database more per read on FerretDB).
    Idempotent; the services keep running meanwhile."""
    from .bootstrap import flatten_profiles, settings_from_environment

    settings = settings_from_environment()
    configure_logging(settings.log_level, settings.log_json)
    print(f"flattened={asyncio.run(flatten_profiles(settings))}")
