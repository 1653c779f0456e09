"""Ambassador service figures on the local Kafka and FerretDB (API in-process, real infrastructure).

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 MONGODB_URI=mongodb://127.0.0.1:27017/ \
        uv run python bench/ambassador_bench.py [--rows 2000] [--opt-outs 50]

Measures: bulk directory import (rows/s), opt-in and opt-out latency as the caller sees it, and the
time from the opt-out call's start until the event is read back from the topic.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient
from pymongo import AsyncMongoClient

from advocacy_common import topics
from advocacy_common.dev_issuer import DevIssuer, JwksServer

from ambassador.bootstrap import create_app
from ambassador.settings import AmbassadorSettings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
from advocacy_testkit import read_envelopes  # noqa: E402  (test helpers, not shipped)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def main(rows: int, opt_outs: int) -> None:
    server = JwksServer([]).start()
    issuer = DevIssuer.generate(issuer=server.url)
    server.issuers.append(issuer)
    run = uuid.uuid4().hex[:8]
    settings = AmbassadorSettings(
        kafka_bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        mongodb_uri=os.environ.get("MONGODB_URI", "mongodb://127.0.0.1:27017/"),
        database=f"ambassador_bench_{run}", topic_prefix=f"bench{run}.", topic_partitions=3,
        auth_issuer=issuer.issuer, auth_audience=issuer.audience,
        auth_jwks_url=f"{server.url}/.well-known/jwks.json")

    def headers(subject: str, *roles: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {issuer.mint(tenant='bench', subject=subject, roles=list(roles))}"}

    app = create_app(settings)
    try:
        async with LifespanManager(app), AsyncClient(transport=ASGITransport(app), base_url="http://b") as http:
            employees = [{"user_name": f"e{i}@corp.example", "given_name": "E", "team_id": f"team{i % 20}",
                          "email": f"e{i}@corp.example"} for i in range(rows)]
            started = time.perf_counter()
            report = (await http.post("/v1/directory/import", json={"employees": employees},
                                      headers=headers("hr", "integrator"))).json()
            elapsed = time.perf_counter() - started
            print(f"import: {report['created']} rows in {elapsed:.2f} s = {rows / elapsed:.0f} rows/s")

            charter = (await http.post("/v1/charters", json={"title": "C", "body": "B"},
                                       headers=headers("admin", "admin"))).json()
            opt_in_ms, opt_out_ms, visible_ms = [], [], []
            physical = settings.topics.physical(topics.AMBASSADOR)
            for i in range(opt_outs):
                me = headers(f"e{i}@corp.example", "ambassador")
                started = time.perf_counter()
                view = (await http.post("/v1/me/opt-in", json={"charter_version": charter["version"]}, headers=me)).json()
                opt_in_ms.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                await http.post("/v1/me/opt-out", headers=me)
                opt_out_ms.append((time.perf_counter() - started) * 1000)
                await read_envelopes(settings.kafka_bootstrap_servers, physical, timeout=10,
                                     predicate=lambda e, pid=view["id"]: e.type == "ambassador.opted_out.v1"
                                     and e.subject == pid)
                visible_ms.append((time.perf_counter() - started) * 1000)
            for name, values in (("opt-in call", opt_in_ms), ("opt-out call", opt_out_ms),
                                 ("opt-out call start -> read back from topic (incl. consumer start)", visible_ms)):
                print(f"{name}: median {statistics.median(values):.1f} ms, p95 {percentile(values, 0.95):.1f} ms")
    finally:
        server.stop()
        mongo = AsyncMongoClient(settings.mongodb_uri)
        await mongo.drop_database(settings.database)
        await mongo.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--opt-outs", type=int, default=30)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rows, arguments.opt_outs))
