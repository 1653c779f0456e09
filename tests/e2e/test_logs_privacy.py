"""The logs of a whole journey carry no personal data and no credential.

Every record any logger emits in this process while the journey runs through the four services (their
APIs and workers on the real Kafka and database) is captured at DEBUG, under the logging set-up the
services use (`configure_logging`), and searched for what the journey
handed out: the person's e-mail, names and network handle, the bearer tokens, the connector's secret, the
post URL's personal part and the Idempotency-Keys. A poison event carrying the e-mail as an invalid value
drives the consumers' retry and dead-letter logs too.

The second test serves the stack as it is deployed: the eight console scripts (`<service>-api` and
`<service>-worker`) as processes of their own, configured through their environment at the default log
level, so uvicorn writes its access log. The same journey, plus the requests whose URLs carry personal data
or credentials (a SCIM filter on the e-mail, a token in the query string), goes over HTTP; then every line
the processes wrote to stdout and stderr is searched for the same values.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from advocacy_common.events import AmbassadorProfile, AmbassadorProfileUpdated, Persona
from advocacy_common.logs import configure_logging
from advocacy_common.publishing import EventPublisher, envelope_for

pytestmark = [pytest.mark.e2e]


def _journey_module():
    # Test modules are not importable by name under --import-mode=importlib; load the journey's by path.
    path = Path(__file__).with_name("test_journey.py")
    spec = importlib.util.spec_from_file_location("e2e_journey_for_logs", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


journey_steps = _journey_module()

# Distinctive values: any of them found in a log can only have come from this journey.
PERSON = journey_steps.Person(login="zebulon.quixhatch@acme.example", given_name="Zebulon",
                              family_name="Quixhatch", display_name="Zeb Quixhatch-Ormond",
                              handle="zquixhatch-lyon")
SERVED_PERSON = journey_steps.Person(login="ysolde.vantroyen@acme.example", given_name="Ysolde",
                                     family_name="Vantroyen", display_name="Ysolde Vantroyen-Brask",
                                     handle="yvantroyen-gent")
SERVICES = ("content", "ambassador", "distribution", "metrics")


class EveryRecord(logging.Handler):
    """Keeps every record, whatever its logger, fully rendered (message, arguments, exception, extras)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.rendered: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        parts = [record.getMessage(), repr(record.args)]
        if record.exc_info:
            parts.append(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            parts.append(record.stack_info)
        parts += [f"{k}={v!r}" for k, v in vars(record).items() if k not in _STANDARD_ATTRIBUTES]
        self.rendered.append((record.name, "\n".join(parts)))


_STANDARD_ATTRIBUTES = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


@contextmanager
def logging_as_the_services_do_at_debug(capture: logging.Handler) -> Iterator[None]:
    """The services' own logging set-up (`configure_logging`, as their entry points call it) at DEBUG, with
    `capture` beside its handler on the root logger; pytest's handlers and levels come back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logger.level for name, logger in logging.root.manager.loggerDict.items()
              if isinstance(logger, logging.Logger)}
    configure_logging("DEBUG", json_format=True)
    root.addHandler(capture)
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, old in levels.items():
            logging.getLogger(name).setLevel(old)


def forbidden_values(journey, person=PERSON) -> dict[str, str]:
    """What must appear in no log, by what it is."""
    values = {"e-mail": person.login, "given name": person.given_name, "family name": person.family_name,
              "display name": person.display_name, "network handle": person.handle,
              "post URL": journey.post_url, "post URL's personal part": person.handle,
              "e-mail, URL-encoded": person.login.replace("@", "%40")}
    for number, token in enumerate(journey.tokens):
        values[f"bearer token {number}"] = token
        values[f"bearer token {number}'s signature"] = token.rsplit(".", 1)[1]
    values |= {f"connector secret {n}": secret for n, secret in enumerate(journey.connector_secrets)}
    values |= {f"Idempotency-Key {n}": key for n, key in enumerate(journey.idempotency_keys)}
    return values


async def a_poison_event_with_personal_data(infrastructure, kafka_topics, capture: EveryRecord) -> None:
    """An ambassador event whose data does not validate, with the person's e-mail as the bad value (a
    producer's bug): every consumer of the topic retries it, logs why and dead-letters it."""
    valid = AmbassadorProfileUpdated(ambassador_id="poison", updated_at=datetime.now(UTC),
                                     profile=AmbassadorProfile(persona=Persona.EXPERT))
    envelope = envelope_for(valid, tenant_id="e2e-poison", source="/tests")
    poison = envelope.model_copy(update={"data": {**envelope.data, "profile": {"persona": PERSON.login}}})
    publisher = EventPublisher(infrastructure.kafka_bootstrap_servers, kafka_topics, client_id="e2e-poison")
    await publisher.start()
    try:
        await publisher.publish(valid.topic, poison)
    finally:
        await publisher.stop()
    deadline = asyncio.get_running_loop().time() + 45
    while sum("dead-lettered" in text for _, text in capture.rendered) < 2:  # distribution's and metrics'
        assert asyncio.get_running_loop().time() < deadline, "the poison event was not dead-lettered"
        await asyncio.sleep(0.2)


async def test_journey_logs_carry_no_personal_data_or_credentials(stack, bearer, infrastructure, kafka_topics):
    capture = EveryRecord()
    with logging_as_the_services_do_at_debug(capture):
        journey = await journey_steps.walk_the_journey(stack, bearer, PERSON)
        await a_poison_event_with_personal_data(infrastructure, stack.topics, capture)

    assert len(capture.rendered) > 100, "the capture saw (almost) nothing: it would prove nothing"
    leaks: dict[tuple[str, str], str] = {}
    for what, value in forbidden_values(journey).items():
        for logger, text in capture.rendered:
            if value.lower() in text.lower():
                leaks.setdefault((what, logger), text[:400])
    assert not leaks, "\n".join(f"{what} in {logger}: {text}" for (what, logger), text in leaks.items())


# --- the stack as served processes ------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServedStack:
    """The eight console scripts as processes, on the session's Kafka and database, with topics, consumer
    groups and databases of their own; stdout and stderr of each in a file of `logs`."""

    def __init__(self, infrastructure, auth_settings: dict[str, str], run_id: str, logs: Path):
        self.infrastructure, self.auth, self.logs = infrastructure, auth_settings, logs
        self.stack_id = f"{run_id}{uuid.uuid4().hex[:4]}"
        self.ports = {service: free_port() for service in SERVICES}
        self.processes: list[subprocess.Popen] = []

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def env(self, service: str) -> dict[str, str]:
        settings = {"KAFKA_BOOTSTRAP_SERVERS": self.infrastructure.kafka_bootstrap_servers,
                    "MONGODB_URI": self.infrastructure.mongodb_uri, "HTTP_PORT": str(self.ports[service]),
                    "TOPIC_PREFIX": f"logs{self.stack_id}.", "TOPIC_PARTITIONS": "3",
                    "DATABASE": f"logs_{self.stack_id}_{service}", "CONSUMER_GROUP": f"logs-{service}-{self.stack_id}",
                    "AUTH_ISSUER": self.auth["auth_issuer"], "AUTH_AUDIENCE": self.auth["auth_audience"],
                    "AUTH_JWKS_URL": self.auth["auth_jwks_url"], "PUBLIC_BASE_URL": self.url(service)}
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(service.upper() + "_")}
        return {**inherited, **{f"{service.upper()}_{name}": value for name, value in settings.items()}}

    def start(self) -> None:
        scripts = Path(sys.executable).parent
        for service in SERVICES:
            for role in ("worker", "api"):
                with open(self.logs / f"{service}-{role}.log", "wb") as log:
                    self.processes.append(subprocess.Popen([str(scripts / f"{service}-{role}")], env=self.env(service),
                                                           stdout=log, stderr=subprocess.STDOUT,
                                                           start_new_session=True))

    async def ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=5) as client:
            for service in SERVICES:
                while True:
                    try:
                        if (await client.get(f"{self.url(service)}/readyz")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    dead = [p.args[0] for p in self.processes if p.poll() is not None]
                    assert not dead and time.monotonic() < deadline, f"not ready: {service}; exited: {dead}"
                    await asyncio.sleep(0.3)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def lines(self) -> list[tuple[str, str]]:
        return [(path.stem, line) for path in sorted(self.logs.glob("*.log"))
                for line in path.read_text(errors="replace").splitlines()]


async def urls_with_personal_data(stack, bearer, journey, person) -> None:
    """Requests whose URL carries what an access log must not keep: a SCIM filter on the e-mail, tokens in
    the query string (a client's mistake), the e-mail as a path segment and as a query value."""
    tenant = f"logs{uuid.uuid4().hex[:6]}"
    integrator, analyst = bearer(tenant, "okta-scim", "integrator"), bearer(tenant, "an-1", "analyst")
    journey.tokens += [h["Authorization"].removeprefix("Bearer ") for h in (integrator, analyst)]
    token = journey.tokens[-1]
    found = await stack.ambassador.get("/scim/v2/Users", params={"filter": f'userName eq "{person.login}"'},
                                       headers=integrator)
    assert found.status_code == 200, found.text
    for path, params in (("/v1/metrics/overview", {"access_token": token}),
                         ("/v1/metrics/overview", {"email": person.login, "token": token}),
                         (f"/scim/v2/Users/{person.login}", {})):
        client = stack.ambassador if path.startswith("/scim") else stack.metrics
        answer = await client.get(path, params=params, headers=integrator if path.startswith("/scim") else analyst)
        assert answer.status_code < 500, answer.text


async def test_served_processes_logs_carry_no_personal_data_or_credentials(infrastructure, auth_settings, bearer,
                                                                         run_id, tmp_path):
    served = ServedStack(infrastructure, auth_settings, run_id, tmp_path)
    served.start()
    try:
        await served.ready()
        async with AsyncExitStack() as exits:
            clients = {service: await exits.enter_async_context(httpx.AsyncClient(base_url=served.url(service),
                                                                                   timeout=30))
                       for service in SERVICES}
            stack = SimpleNamespace(**clients)
            journey = await journey_steps.walk_the_journey(stack, bearer, SERVED_PERSON)
            await urls_with_personal_data(stack, bearer, journey, SERVED_PERSON)
    finally:
        served.stop()

    lines = served.lines()
    access = [(name, line) for name, line in lines if '"logger": "uvicorn.access"' in line]
    # The scan must have seen the access log of every API and the requests that carried personal data.
    assert {name for name, _ in access} == {f"{service}-api" for service in SERVICES}, sorted({n for n, _ in lines})
    assert len(access) >= 30 and any("/scim/v2/Users?filter=" in line for _, line in access)
    assert any("access_token=" in line for _, line in access) and all(json.loads(line) for _, line in access)
    leaks: dict[tuple[str, str], str] = {}
    for what, value in forbidden_values(journey, SERVED_PERSON).items():
        for name, line in lines:
            if value.lower() in line.lower():
                leaks.setdefault((what, name), line[:400])
    assert not leaks, "\n".join(f"{what} in {name}: {line}" for (what, name), line in leaks.items())
