"""Outbox lag under load: from the API's 2xx for a state change to its event on the Kafka topic.

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 MONGODB_URI=mongodb://127.0.0.1:27017/ \\
        uv run python bench/outbox_bench.py [--runs 3] [--shares 200] [--rate 10] [--contents 20]

Runs the real distribution processes (API under uvicorn, worker with the outbox relay) on fresh topics and a
fresh database, seeds --runs × --shares opted-in ambassadors and --contents contents (as events), then, --runs
times: --shares ambassadors each prepare a share and confirm it, started at a steady --rate per second (each
in its own task, so a slow answer does not slow the rate). The confirmation writes the share and its
PostShared event in one document write; the relay publishes it. A consumer tailing the share topic stamps
each PostShared when it arrives: lag = arrival − the moment the confirm's 201/200 reached the client.
A 429 (the tenant's write queue full) is retried after its Retry-After, counted and printed.
Prints p50/p99 of the lag and of the prepare and confirm latencies, per run the CPU milliseconds per share of
the api and the worker (and of `--db-pid` processes: FerretDB, PostgreSQL) and their MongoDB commands per
share (prepare + confirm for the api, relay and projections for the worker; counted by a PyMongo listener,
`command_counting/`), and the processes' peak RSS. `--database-prefix` names the fresh database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from advocacy_common.envelope import from_kafka
from advocacy_common.events import PostShared
from advocacy_common.topics import SHARE

from distribution_stack import PARTITIONS, Stack, print_table, tree_cpu_seconds

COMMAND_COUNTING = Path(__file__).parent / "command_counting"  # sitecustomize of the stack's processes

WORDS = ("team plant energy customers proud weeks project learned visit site future engineers build data open "
         "honest hard work result morning colleagues thanks first time impact launch share story").split()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def personal_text(seed: int) -> str:
    return f"Personal note {seed}: " + " ".join(random.Random(seed).choices(WORDS, k=30))


class Tail:
    """Arrival time of every PostShared on the share topic, by share id, from now on."""

    def __init__(self, bootstrap: str, topic: str):
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.topic = topic
        self.arrivals: dict[str, float] = {}

    async def start(self) -> None:
        await self.consumer.start()
        tps = [TopicPartition(self.topic, p) for p in range(PARTITIONS)]
        self.consumer.assign(tps)
        await self.consumer.seek_to_end(*tps)
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=100)
            now = time.perf_counter()
            for records in batches.values():
                for record in records:
                    envelope = from_kafka(record.key, record.value, record.headers)
                    if envelope.type.endswith(PostShared.type_name):
                        self.arrivals.setdefault(envelope.data["share_id"], now)

    async def stop(self) -> None:
        self.task.cancel()
        await self.consumer.stop()


REFUSED: list[int] = [0]  # 429s answered (the tenant's write queue was full), each retried after Retry-After


async def post(client: httpx.AsyncClient, url: str, **kwargs) -> httpx.Response:
    """POST, again after `Retry-After` while the answer is a 429 (nothing was written), as a client must."""
    while (response := await client.post(url, **kwargs)).status_code == 429:
        REFUSED[0] += 1
        await asyncio.sleep(float(response.headers.get("retry-after", "1")))
    return response


async def one_share(client: httpx.AsyncClient, stack: Stack, n: int, contents: int,
                    confirmed: dict[str, float], prepare: list[float], confirm: list[float]) -> None:
    headers = stack.bearer(f"a{n}", "ambassador")
    started = time.perf_counter()
    response = await post(client, "/v1/shares", headers=headers, json={
        "content_id": f"c{n % contents}", "network": "linkedin", "text": personal_text(n)})
    assert response.status_code == 201, response.text
    prepare.append(time.perf_counter() - started)
    share_id = response.json()["share_id"]
    started = time.perf_counter()
    response = await post(client, f"/v1/shares/{share_id}/confirm", headers=headers)
    assert response.status_code in (200, 201), response.text
    confirmed[share_id] = (started, time.perf_counter())
    confirm.append(confirmed[share_id][1] - started)


def ms(values: list[float]) -> str:
    return f"p50 {statistics.median(values) * 1000:,.0f} ms, p99 {percentile(values, 0.99) * 1000:,.0f} ms"


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f} … {max(values):,.0f})"


def command_counts(prefix: str, pid: int) -> dict[str, int]:
    path = Path(f"{prefix}.{pid}.json")
    return json.loads(path.read_text()) if path.exists() else {}


def per_share(after: dict[str, int], before: dict[str, int], shares: int) -> str:
    names = sorted(after, key=lambda name: -(after[name] - before.get(name, 0)))
    total = sum(after.values()) - sum(before.values())
    return f"{total / shares:.1f} (" + ", ".join(f"{name} {(after[name] - before.get(name, 0)) / shares:.1f}"
                                             for name in names if after[name] > before.get(name, 0)) + ")"


async def main(args: argparse.Namespace) -> None:
    stack = Stack(args.bootstrap, args.uri, Path(tempfile.gettempdir()) / f"outbox_bench_{os.getpid()}.log")
    stack.database = f"{args.database_prefix}{stack.run}"
    counts_prefix = str(Path(tempfile.gettempdir()) / f"outbox_bench_{os.getpid()}_commands")
    os.environ["BENCH_COMMAND_COUNTS"] = counts_prefix  # the stack's processes inherit the environment
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(COMMAND_COUNTING), os.environ.get("PYTHONPATH")]))
    await stack.start()
    results: list[dict[str, float]] = []
    try:
        await stack.publish_people_and_contents(ambassadors=args.runs * args.shares, contents=args.contents)
        tail = Tail(args.bootstrap, stack.names.physical(SHARE))
        await tail.start()
        print(f"{args.shares} prepare+confirm per run at {args.rate}/s, {args.runs} run(s); API {stack.url}, "
              f"database {args.uri}", flush=True)
        async with httpx.AsyncClient(base_url=stack.url, timeout=60,
                                     limits=httpx.Limits(max_connections=100)) as client:
            for run in range(args.runs):
                confirmed: dict[str, tuple[float, float]] = {}  # share id -> (confirm sent, 2xx received)
                prepare: list[float] = []
                confirm: list[float] = []
                tasks = []
                REFUSED[0] = 0
                await asyncio.sleep(0.6)  # the processes write their counts every half second
                pids = {name: process.pid for name, process in stack.processes.items()}
                counts_before = {name: command_counts(counts_prefix, pid) for name, pid in pids.items()}
                cpu_before, db_before = stack.cpu_seconds(), tree_cpu_seconds(args.db_pid)
                started = time.perf_counter()
                for i in range(args.shares):
                    await asyncio.sleep(max(0.0, started + i / args.rate - time.perf_counter()))
                    tasks.append(asyncio.create_task(one_share(client, stack, run * args.shares + i, args.contents,
                                                               confirmed, prepare, confirm)))
                await asyncio.gather(*tasks)
                deadline = time.perf_counter() + args.drain_timeout
                while set(confirmed) - set(tail.arrivals) and time.perf_counter() < deadline:
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.6)
                cpu_after, db_after = stack.cpu_seconds(), tree_cpu_seconds(args.db_pid)
                counts_after = {name: command_counts(counts_prefix, pid) for name, pid in pids.items()}
                arrived = [(tail.arrivals[s], sent, answered) for s, (sent, answered) in confirmed.items()
                           if s in tail.arrivals]
                # On the topic before the 2xx reached us counts as 0: the relay can beat the HTTP answer.
                lags = [max(0.0, at - answered) for at, _, answered in arrived]
                early = sum(at < answered for at, _, answered in arrived)
                from_request = [at - sent for at, sent, _ in arrived]
                missing = len(confirmed) - len(lags)
                offered = args.shares / (time.perf_counter() - started)
                results.append({"p50": statistics.median(lags) * 1000, "p99": percentile(lags, 0.99) * 1000,
                                "request_p99": percentile(from_request, 0.99) * 1000,
                                "confirm_p99": percentile(confirm, 0.99) * 1000,
                                "prepare_p99": percentile(prepare, 0.99) * 1000,
                                **{f"{name}_cpu": (cpu_after[name] - cpu_before[name]) * 1000 / args.shares
                                   for name in cpu_after},
                                "db_cpu": (db_after - db_before) * 1000 / args.shares})
                print(f"run {run + 1}: 2xx → PostShared on the topic {ms(lags)}, max {max(lags) * 1000:,.0f} ms "
                      f"({early} of {len(lags)} there before the 2xx); confirm sent → on the topic {ms(from_request)}"
                      f"{f', {missing} MISSING' if missing else ''}; prepare {ms(prepare)}; confirm {ms(confirm)}; "
                      f"{offered:.1f} shares/s achieved; {REFUSED[0]} 429s retried (latencies include them); "
                      f"load average {os.getloadavg()[0]:.1f}", flush=True)
                print("  CPU ms per share: " + ", ".join(f"{name} {results[-1][f'{name}_cpu']:.1f}"
                                                           for name in pids)
                      + (f", database processes {results[-1]['db_cpu']:.1f}" if args.db_pid else "")
                      + "; MongoDB commands per share: "
                      + "; ".join(f"{name} {per_share(counts_after[name], counts_before[name], args.shares)}"
                                  for name in pids), flush=True)
        await tail.stop()
        rss = stack.peak_rss()
    finally:
        await stack.stop()
    print_table(f"median (min … max) over {len(results)} run(s), {args.shares} shares at {args.rate}/s:", [
        ("confirm 2xx → event on the topic, p50 ms", spread([r["p50"] for r in results]), ""),
        ("confirm 2xx → event on the topic, p99 ms", spread([r["p99"] for r in results]), "< 250"),
        ("confirm sent → event on the topic, p99 ms", spread([r["request_p99"] for r in results]), ""),
        ("prepare latency p99 ms", spread([r["prepare_p99"] for r in results]), ""),
        ("confirm latency p99 ms", spread([r["confirm_p99"] for r in results]), ""),
        *((f"{name} CPU ms per share", spread([r[f"{name}_cpu"] for r in results]), "") for name in ("api", "worker")),
        *([("database processes CPU ms per share", spread([r["db_cpu"] for r in results]), "")] if args.db_pid
          else [])], rss)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--shares", type=int, default=200, help="prepare+confirm pairs per run")
    parser.add_argument("--rate", type=float, default=10, help="pairs started per second")
    parser.add_argument("--contents", type=int, default=20)
    parser.add_argument("--database-prefix", default="distribution_bench_", help="the fresh database's name prefix")
    parser.add_argument("--db-pid", type=int, action="append", default=[],
                        help="a database process (FerretDB, PostgreSQL) whose CPU, with its children's, to count")
    parser.add_argument("--drain-timeout", type=float, default=120)
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument("--uri", default=os.environ.get("MONGODB_URI", "mongodb://127.0.0.1:27017/"))
    asyncio.run(main(parser.parse_args()))
