"""Test helpers shared by every service's tests and by the benchmarks (not shipped in any package).

`find_infrastructure()` gives Kafka and the database: from KAFKA_BOOTSTRAP_SERVERS /
MONGODB_URI when set; else from testcontainers when a Docker engine answers; else
the project's own local servers, started with `make infra-up`. The fixtures built
on these live in tests/conftest.py. Importable as `advocacy_testkit` because
pyproject.toml puts tests/support on pytest's path (bench/ adds it itself).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from advocacy_common.envelope import Envelope, MalformedEnvelope, from_kafka
from aiokafka import AIOKafkaConsumer

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Infrastructure:
    kafka_bootstrap_servers: str
    mongodb_uri: str


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


@contextmanager
def find_infrastructure() -> Iterator[Infrastructure]:
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    mongo = os.environ.get("MONGODB_URI")
    if kafka and mongo:
        yield Infrastructure(kafka, mongo)
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer
        from testcontainers.mongodb import MongoDbContainer

        with KafkaContainer("apache/kafka:4.1.0").with_kraft() as kafka_container, \
                MongoDbContainer("mongo:8.0") as mongo_container:
            yield Infrastructure(kafka_container.get_bootstrap_server(), mongo_container.get_connection_url())
        return
    kafka_port = int(os.environ.get("KAFKA_PORT", "9092"))
    mongo_port = int(os.environ.get("FERRETDB_PORT", "27017"))
    if not (_port_open("127.0.0.1", kafka_port) and _port_open("127.0.0.1", mongo_port)):
        subprocess.run(["make", "-C", str(REPO_ROOT), "infra-up"], check=True)
    yield Infrastructure(f"127.0.0.1:{kafka_port}", f"mongodb://127.0.0.1:{mongo_port}/")


async def read_envelopes(bootstrap_servers: str, physical_topic: str, *, min_count: int = 1,
                         timeout: float = 15.0, predicate=None) -> list[Envelope]:
    """Read a topic from the start until `min_count` envelopes match `predicate` (or time runs out)."""
    consumer = AIOKafkaConsumer(physical_topic, bootstrap_servers=bootstrap_servers, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    found: list[Envelope] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(found) < min_count and asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            for records in batches.values():
                for record in records:
                    try:
                        envelope = from_kafka(record.key, record.value, record.headers)
                    except MalformedEnvelope:
                        continue  # e.g. a dead-lettered record that never was a CloudEvent
                    if predicate is None or predicate(envelope):
                        found.append(envelope)
    finally:
        await consumer.stop()
    return found


async def drain(stream: AsyncIterator) -> list:
    return [item async for item in stream]


async def eventually(probe, timeout: float = 45.0, interval: float = 0.5):
    """Poll `probe` until it returns a truthy value (bounded): the services converge through Kafka."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"not reached within {timeout} s; last value: {last!r}")


async def until_turns(condition, turns: int = 2000) -> None:
    """Give the event loop up to `turns` turns for `condition()` to hold: unit tests wait on the code's own
    steps, never on wall-clock time (CI is a loaded machine)."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


def webhook_signature(secret: str, body: bytes) -> str:
    """The `X-Advocacy-Signature` header a connector sends with `body`, signed now."""
    timestamp = str(int(time.time()))
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def document_with_pending(document: dict, items) -> dict:
    """A raw document carrying pending events, as a repository's write leaves it (for relay tests)."""
    from advocacy_common.outbox import OUTBOX_FIELD, outbox_entries

    return {**document, OUTBOX_FIELD: outbox_entries(items)}


# --- hostile HTTP input (every service's tests send it to every route) -------------------------------------

ALL_ROLES = ("admin", "editor", "reviewer", "analyst", "manager", "ambassador", "integrator")
HUGE_INT = "9" * 30
HOSTILE_QUERIES = {
    "huge integers and a broken cursor": f"limit={HUGE_INT}&count={HUGE_INT}&startIndex={HUGE_INT}"
                                         f"&charter_version={HUGE_INT}&min_impressions={HUGE_INT}&cursor=%FF%FE",
    "first days of the calendar": "start=0001-01-01&end=0001-01-01&from=0001-01-01&to=0001-01-01"
                                  "&since=0001-01-01T00:00:00%2B05:00&publish_from=0001-01-01T00:00:00%2B05:00",
    "last days of the calendar": "start=9999-12-31&end=9999-12-31&from=9999-12-31&to=9999-12-31"
                                 "&publish_to=9999-12-31T23:59:59-05:00&since=9999-12-31T23:59:59-05:00",
    "unparsable filter": "filter=userName%20eq%20&filter=%22",
}


def hostile_headers(authorization: dict[str, str]) -> dict[str, dict[str, str]]:
    """Header sets that must be answered 4xx: huge or malformed values of every header we read."""
    return {
        "huge If-Match": {**authorization, "If-Match": '"1",' * 1500},
        "malformed If-Match": {**authorization, "If-Match": 'W/"' + HUGE_INT * 100},
        "long Idempotency-Key": {**authorization, "Idempotency-Key": "k" * 5000},
        "control chars in Idempotency-Key": {**authorization, "Idempotency-Key": "a\tb\x7f"},
        "signature with thousands of digits": {**authorization, "X-Advocacy-Signature": "t=" + "9" * 4000
                                               + ",v1=" + "f" * 64},
        "signature with a non-numeric timestamp": {**authorization, "X-Advocacy-Signature": "t=soon,v1=x"},
        "signature with a float timestamp": {**authorization, "X-Advocacy-Signature": "t=1e400,v1=x"},
        "signature without fields": {**authorization, "X-Advocacy-Signature": ",,,=,=="},
        "token of digits": {"Authorization": "Bearer " + "9" * 6000},
        "token with a list kid": {"Authorization": "Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6WzFdfQ.e30.c2ln"},
        "lying Content-Length": {**authorization, "Content-Length": "99999999999"},
        "malformed Content-Length": {**authorization, "Content-Length": "12abc"},
        "odd Content-Type": {**authorization, "Content-Type": "application/json; charset=klingon"},
        "X-Forwarded-For garbage": {**authorization, "X-Forwarded-For": "::::" * 500},
    }


def route_calls(app, path_values: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """(method, path) of every documented route of `app`; path parameters from `path_values` (real ids
    reach deeper into the handlers), else a plausible id."""
    values = {"version": "1", **(path_values or {})}
    calls = []
    for path, operations in app.openapi()["paths"].items():
        filled = re.sub(r"\{([^}]+)\}", lambda match: values.get(match.group(1), "x-1"), path)
        calls += [(method.upper(), filled) for method in operations if method != "parameters"]
    return calls


async def server_errors_on_hostile_input(client, app, authorization: dict[str, str],
                                         path_values: dict[str, str] | None = None,
                                         extra_query: str = "") -> list[str]:
    """Send deep JSON, oversized bodies, hostile headers and hostile query values to every route;
    return what answered 5xx (or a deep/huge body that was not refused), empty when all is well."""
    deep = b'{"a": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    failures = []
    for method, path in route_calls(app, path_values):
        # extra_query: e.g. max_events=1, so that a stream ends.
        cases: list[tuple[str, dict]] = [(f"query with {name}", {"headers": authorization,
                                                                  "url": f"{path}?{query}&{extra_query}"})
                                         for name, query in HOSTILE_QUERIES.items()]
        cases += [(name, {"headers": headers}) for name, headers in hostile_headers(authorization).items()]
        if method in ("POST", "PUT", "PATCH"):
            for media_type in ("application/json", "application/scim+json", "text/plain"):
                cases.append((f"deep {media_type}", {"headers": {**authorization, "Content-Type": media_type},
                                                     "content": deep, "expect": 400}))
            cases.append(("2 MiB body", {"headers": {**authorization, "Content-Type": "application/json"},
                                         "content": b'{"a": "' + b"x" * (2 * 1024 * 1024) + b'"}', "expect": 413}))
        for name, case in cases:
            expect = case.pop("expect", None)
            url = case.pop("url", f"{path}?{extra_query}" if extra_query else path)
            try:
                response = await client.request(method, url, **case)
            except Exception as error:  # an in-process transport re-raises what became a 500
                failures.append(f"{method} {path} {name}: raised {type(error).__name__}: {error}")
                continue
            if response.status_code >= 500 or (expect and response.status_code not in (expect, 429)):
                failures.append(f"{method} {path} {name}: {response.status_code} {response.text[:200]}")
    return failures


class FakeSubjectHolders:
    """In-memory `advocacy_common.subjects.SubjectHolders`: the latest claim of each subject key wins.

    Every service's unit fakes mix it into their ambassador projection fake."""

    def __init__(self) -> None:
        self.subject_claims: dict[tuple[str, str], tuple[object, str]] = {}

    async def claim_subject(self, tenant: str, subject_key: str, ambassador_id: str, claimed_at) -> None:
        current = self.subject_claims.get((tenant, subject_key))
        if current is None or current[0] <= claimed_at:
            self.subject_claims[(tenant, subject_key)] = (claimed_at, ambassador_id)

    async def subject_holder(self, tenant: str, subject_key: str) -> str | None:
        claim = self.subject_claims.get((tenant, subject_key))
        return claim[1] if claim else None


class FakeExportParts:
    """In-memory `advocacy_common.gdpr_export.ExportParts`: the page events each export would publish."""

    def __init__(self) -> None:
        self.pages: dict[tuple[str, str], list] = {}  # (tenant, export id) -> GdprExportPartWritten pages

    async def write(self, delivery, service: str, sections, now) -> bool:
        from advocacy_common.gdpr_export import part_pages
        key = (delivery.tenant_id, delivery.event.export_id)
        if key in self.pages:
            return False
        self.pages[key] = part_pages(delivery.event, service, sections, now)
        return True

    def records(self, tenant: str, export_id: str) -> dict[str, list]:
        """Every page's records merged by section."""
        merged: dict[str, list] = {}
        for page in self.pages.get((tenant, export_id), []):
            for kind, items in page.sections.items():
                merged.setdefault(kind, []).extend(items)
        return merged
