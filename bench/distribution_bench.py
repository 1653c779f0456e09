"""Distribution service figures on the local Kafka and FerretDB (API and worker in-process, real infrastructure).

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 MONGODB_URI=mongodb://127.0.0.1:27017/ \
        uv run python bench/distribution_bench.py [--contents 100] [--shares 40] [--clicks 300] [--reports 100]

Measures: feed latency with many contents, prepare and confirm latency (authenticity against colleagues
included), redirect latency (the click is written with its event, never waiting for Kafka), time until
all clicks are on the topic, and signed-report latency (which does wait for Kafka's acknowledgement).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient

from advocacy_common.auth import ambassador_id_for
from advocacy_common.dev_issuer import DevIssuer, JwksServer
from advocacy_common.events import (
    AmbassadorOptedIn, AmbassadorProfile, ContentPublished, NetworkPresence, SharingPreferences,
)
from advocacy_common.mongo import create_client
from advocacy_common.publishing import EventPublisher, envelope_for
from advocacy_common.topics import ENGAGEMENT, ensure_topics

from distribution.adapters import ambassador_documents
from distribution.bootstrap import build_worker, create_app
from distribution.settings import DistributionSettings
from distribution.models.engagement import sign

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
from advocacy_testkit import read_envelopes  # noqa: E402  (test helpers, not shipped)

WORDS = ("team plant energy customers proud weeks project learned visit site future engineers build data open "
         "honest hard work result morning colleagues thanks first time impact launch share story").split()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def report(name: str, seconds: list[float]) -> None:
    ms = [s * 1000 for s in seconds]
    print(f"{name:<28} n={len(ms):<5} p50={statistics.median(ms):7.1f} ms  p95={percentile(ms, 0.95):7.1f} ms  "
          f"max={max(ms):7.1f} ms")


def personal_text(seed: int) -> str:
    picks = random.Random(seed).choices(WORDS, k=30)
    return f"Personal note {seed}: " + " ".join(picks)


async def timed(call) -> tuple[float, object]:
    started = time.perf_counter()
    result = await call
    return time.perf_counter() - started, result


async def main(contents: int, shares: int, clicks: int, reports: int) -> None:
    server = JwksServer([]).start()
    issuer = DevIssuer.generate(issuer=server.url)
    server.issuers.append(issuer)
    run = uuid.uuid4().hex[:8]
    settings = DistributionSettings(
        kafka_bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        mongodb_uri=os.environ.get("MONGODB_URI", "mongodb://127.0.0.1:27017/"), database=f"distribution_bench_{run}",
        topic_prefix=f"bench{run}.", topic_partitions=3, consumer_group=f"bench-{run}",
        auth_issuer=issuer.issuer, auth_audience=issuer.audience, auth_jwks_url=f"{server.url}/.well-known/jwks.json")
    tenant = "bench"

    def bearer(subject: str, *roles: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {issuer.mint(tenant=tenant, subject=subject, roles=list(roles))}"}

    await ensure_topics(settings.kafka_bootstrap_servers, settings.topics, 3)
    now = datetime.now(UTC)
    profile = AmbassadorProfile(persona="expert", topics=["energy"], languages=["en"],
                                networks=[NetworkPresence(network="linkedin", audience_size=500)],
                                preferences=SharingPreferences(max_shares_per_week=50))
    # The id the ambassador service gives the person whose token says `sub = a{i}`.
    events = [AmbassadorOptedIn(ambassador_id=ambassador_id_for(tenant, f"a{i}"), charter_version=0, opted_in_at=now,
                                profile=profile) for i in range(shares)]
    events += [ContentPublished(content_id=f"c{i}", version=1, campaign_id="camp", objective="awareness",
                                title=f"Content {i}", link_url="https://example.com/x",
                                suggested_texts={"linkedin": "Our plant runs on renewable energy, proud of the team."},
                                topics=["energy"] if i % 2 else ["hr"], language="en", networks=["linkedin"],
                                publish_at=now - timedelta(hours=i % 48)) for i in range(contents)]
    publisher = EventPublisher(settings.kafka_bootstrap_servers, settings.topics, client_id="bench")
    await publisher.start()
    await publisher.publish_many([(e.topic, envelope_for(e, tenant_id=tenant, source="/bench")) for e in events])
    await publisher.stop()

    worker = build_worker(settings)
    await worker.start()
    app = create_app(settings)
    try:
        async with LifespanManager(app, startup_timeout=60), \
                AsyncClient(transport=ASGITransport(app), base_url="http://bench") as client:
            database = create_client(settings.mongodb_uri, "bench")[settings.database]
            started = time.perf_counter()
            while (len(await ambassador_documents(database, {"tenant": tenant})) < shares
                   or await database["contents"].count_documents({"tenant": tenant}) < contents):
                await asyncio.sleep(0.1)
            print(f"projection of {len(events)} events: {time.perf_counter() - started:.1f} s (incl. consumer start)")

            feed = [(await timed(client.get("/v1/feed?limit=20", headers=bearer(f"a{i % shares}", "ambassador"))))[0]
                    for i in range(30)]
            report(f"feed ({contents} contents)", feed)

            prepare, confirm, codes = [], [], []
            for i in range(shares):
                headers = bearer(f"a{i}", "ambassador")
                spent, response = await timed(client.post("/v1/shares", headers=headers, json={
                    "content_id": "c1", "network": "linkedin", "text": personal_text(i)}))
                assert response.status_code == 201, response.text
                prepare.append(spent)
                share = response.json()
                codes.append(share["tracked_link_code"])
                spent, _ = await timed(client.post(f"/v1/shares/{share['share_id']}/confirm", headers=headers))
                confirm.append(spent)
            report("prepare (vs colleagues)", prepare)
            report("confirm", confirm)

            redirect = []
            clicks_started = time.perf_counter()
            for i in range(clicks):
                spent, response = await timed(client.get(f"/r/{codes[i % len(codes)]}", headers={
                    "User-Agent": "Mozilla/5.0 Bench", "X-Forwarded-For": f"10.0.{i % 7}.{i % 50}"}))
                assert response.status_code == 302
                redirect.append(spent)
            report("redirect /r/{code}", redirect)
            seen = await read_envelopes(settings.kafka_bootstrap_servers, settings.topics.physical(ENGAGEMENT),
                                        min_count=clicks, timeout=120)
            print(f"{clicks} clicks on Kafka {time.perf_counter() - clicks_started:.1f} s after the first click "
                  f"({len(seen)} read)")

            connector = (await client.post("/v1/connectors", json={"name": "bench"},
                                           headers=bearer("admin", "admin"))).json()
            webhook = []
            for i in range(reports):
                raw = json.dumps({"id": f"r{i}", "kind": "impression", "count": 100,
                                  "occurred_at": datetime.now(UTC).isoformat(),  # after the confirmations
                                  "tracked_link_code": codes[i % len(codes)]}).encode()
                headers = {**bearer("svc", "integrator"), "Content-Type": "application/json",
                           "X-Advocacy-Signature": sign(connector["secret"], int(time.time()), raw)}
                spent, response = await timed(client.post(f"/v1/connectors/{connector['connector_id']}/engagements",
                                                          content=raw, headers=headers))
                assert response.status_code == 202, response.text
                webhook.append(spent)
            report("signed report (Kafka ack)", webhook)
    finally:
        await worker.stop()
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contents", type=int, default=100)
    parser.add_argument("--shares", type=int, default=40)
    parser.add_argument("--clicks", type=int, default=300)
    parser.add_argument("--reports", type=int, default=100)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.contents, arguments.shares, arguments.clicks, arguments.reports))
