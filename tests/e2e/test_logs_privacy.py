"""The logs of a whole journey carry no personal data and no credential.

Every record any logger emits in this process while the journey runs through the four services (their
APIs and workers on the real Kafka and database) is captured at DEBUG, under the logging set-up the
services use (`configure_logging`), and searched for what the journey
handed out: the person's e-mail, names and network handle, the bearer tokens, the connector's secret, the
post URL's personal part and the Idempotency-Keys. A poison event carrying the e-mail as an invalid value
drives the consumers' retry and dead-letter logs too. Our own code's records only: the APIs are driven in
process through ASGI, so no access log is written here (a served stack's access log is to be added).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

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


def forbidden_values(journey) -> dict[str, str]:
    """What must appear in no log, by what it is."""
    values = {"e-mail": PERSON.login, "given name": PERSON.given_name, "family name": PERSON.family_name,
              "display name": PERSON.display_name, "network handle": PERSON.handle,
              "post URL": journey.post_url, "post URL's personal part": PERSON.handle}
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
