"""The metrics API under load: the tenant overview and a 90-day daily series, from a real metrics api process
(uvicorn) over the aggregates of --events events, loaded by wrk.

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 MONGODB_URI=mongodb://127.0.0.1:27017/ \\
        uv run python bench/metrics_api_bench.py [--events 10000000] [--days 90] [--ambassadors 2000] \\
        [--contents 300] [--campaigns 30] [--teams 20] [--clients 1,10,50] [--runs 3] [--seconds 10] \\
        [--profile] [--keep] [--database NAME] [--api-processes 1]

Seeding goes through the worker's own aggregation and store code, in bulk: opt-ins and publications
become state fragments (`aggregation.state_fragment`), every share and engagement is summed into one
slice per partition and batch (`aggregation.slice_of`), slices become the rolled-up counters' fragments
(`aggregation.folded_fragments`) and activity days, and `MongoMetricsStore` writes them
(`handlers.apply_exactly_once`, `add_activity`), as a fold does. The store writes into a
`RecordingDatabase` (bulk_seed.py) whose documents are then inserted in bulk; only claims (the
de-duplication of re-sent envelopes, which these synthetic events do not need) are skipped. The workload:
~10 % of the envelopes are shares (one event each), the rest engagement reports of every kind (impressions
weighted 4, reactions 2) counting --report-size events each (`count`, as a connector reports them: 10,000,000
events are ~111,000 envelopes at the default 100), spread evenly
over --days days ending yesterday, --ambassadors people in --teams teams on 1-3 networks, every third on
the leaderboard.

Then wrk loads GET /v1/metrics/overview (default period: the last 30 days) and GET
/v1/metrics/timeseries?from=<90 days ago>&to=<yesterday>&granularity=day, each with analyst tokens,
at --clients connections, --runs times; p50 / p99 / requests per second, median (min … max), the api's
MongoDB round trips per request by collection (bench/command_counting), and the api's peak RSS. --profile
adds a py-spy profile of each endpoint at the largest client count (raw stacks kept in /tmp).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
from pymongo import AsyncMongoClient

from advocacy_common.consuming import Delivery
from advocacy_common.events import (
    AmbassadorOptedIn, AmbassadorProfile, ContentPublished, ConversionType, EngagementKind, EngagementReceived,
    Network, NetworkPresence, Objective, Persona, PostShared,
)
from advocacy_common.publishing import envelope_for
from advocacy_common.repository import Storage

from metrics.aggregation import folded_fragments, merge_activity, slice_of, state_fragment
from metrics.handlers import apply_exactly_once
from metrics.models import FIRST_GENERATION
from metrics.store import MongoMetricsStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bulk_seed import RecordingDatabase  # noqa: E402
from http_load import (  # noqa: E402
    ApiProcess, add_api_processes_argument, commands_so_far, counting_commands, drop_database, free_port,
    load_average, measure, profile, run_wrk, service_environment, start_dev_issuer, wrk_script,
)

TENANT = "metricsbench"
PARTITIONS = 6
BATCH = 100_000  # deliveries summed into one slice per partition, as a worker batch would
NETWORKS = [Network.LINKEDIN, Network.X, Network.XING]
KINDS = [EngagementKind.IMPRESSION] * 4 + [EngagementKind.REACTION] * 2 + [
    EngagementKind.COMMENT, EngagementKind.COMMENT_REPLY, EngagementKind.RESHARE, EngagementKind.CLICK,
    EngagementKind.CONVERSION]
SHARE_RATIO = 0.1


class Workload:
    def __init__(self, arguments: argparse.Namespace):
        self.days, self.last_day = arguments.days, datetime.now(UTC).date() - timedelta(days=1)
        self.ambassadors = [f"a{n}" for n in range(arguments.ambassadors)]
        self.teams = {a: f"team{n % arguments.teams}" for n, a in enumerate(self.ambassadors)}
        self.networks = {a: NETWORKS[: 1 + n % 3] for n, a in enumerate(self.ambassadors)}
        self.contents = {f"c{n}": f"camp{n % arguments.campaigns}" for n in range(arguments.contents)}
        self.content_ids = list(self.contents)
        self.report_size = arguments.report_size

    def setup_events(self) -> list:
        start = datetime.combine(self.last_day - timedelta(days=self.days), datetime.min.time(), UTC)
        people = [AmbassadorOptedIn(ambassador_id=a, charter_version=1, opted_in_at=start, profile=AmbassadorProfile(
            persona=Persona.EXPERT, team_id=self.teams[a], leaderboard_opt_in=n % 3 == 0,
            networks=[NetworkPresence(network=network, audience_size=300) for network in self.networks[a]]))
            for n, a in enumerate(self.ambassadors)]
        contents = [ContentPublished(content_id=c, version=1, campaign_id=camp, objective=Objective.AWARENESS,
                                     title=c, link_url="https://example.com", topics=[f"topic{n % 12}"],
                                     language="en", networks=NETWORKS, publish_at=start)
                    for n, (c, camp) in enumerate(self.contents.items())]
        return people + contents

    def counted(self, n: int, pick: random.Random):
        """The n-th share or engagement (built without validation: millions of them)."""
        ambassador = pick.choice(self.ambassadors)
        content = pick.choice(self.content_ids)
        network = pick.choice(self.networks[ambassador])
        day = self.last_day - timedelta(days=pick.randrange(self.days))
        at = datetime.combine(day, datetime.min.time(), UTC) + timedelta(seconds=pick.randrange(86_400))
        common = dict(content_id=content, campaign_id=self.contents[content], ambassador_id=ambassador,
                      team_id=self.teams[ambassador], network=network)
        if pick.random() < SHARE_RATIO:
            return PostShared.model_construct(share_id=f"s{n}", personalized=pick.random() < 0.7,
                                              similarity_to_suggested=0.1, similarity_to_colleagues=0.0,
                                              potential_reach=300, tracked_link_code=f"l{n}", shared_at=at, **common)
        kind = pick.choice(KINDS)
        return EngagementReceived.model_construct(
            engagement_id=f"e{n}", kind=kind, count=self.report_size, share_id=f"s{n}", occurred_at=at, source="bench",
            source_event_id=str(n), unique_visitor=kind is EngagementKind.CLICK and pick.random() < 0.6,
            conversion_type=pick.choice(list(ConversionType)) if kind is EngagementKind.CONVERSION else None,
            **common)


async def seed(settings: dict[str, str], arguments: argparse.Namespace) -> int:
    workload = Workload(arguments)
    client = AsyncMongoClient(settings["METRICS_MONGODB_URI"])
    try:
        real = await Storage.open(client[settings["METRICS_DATABASE"]], "bench")
        recording = RecordingDatabase(settings["METRICS_DATABASE"])
        store = MongoMetricsStore(Storage(recording, real.capabilities, real.cursors), FIRST_GENERATION)
        started = time.perf_counter()
        setup = workload.setup_events()
        deliveries = [Delivery(envelope_for(e, tenant_id=TENANT, source="/bench"), e, e.topic, 0, n)
                      for n, e in enumerate(setup)]
        await apply_exactly_once(store, filter(None, (state_fragment(d) for d in deliveries)))
        envelope = deliveries[0].envelope  # the tenant is all the fold reads of an envelope
        pick, offsets, done = random.Random(11), [0] * PARTITIONS, 0
        # Shares count one event each, engagement reports --report-size each.
        deliveries = round(arguments.events / (SHARE_RATIO + (1 - SHARE_RATIO) * arguments.report_size))
        while done < deliveries:
            size = min(BATCH, deliveries - done)
            groups: list[list[Delivery]] = [[] for _ in range(PARTITIONS)]
            for n in range(done, done + size):
                event = workload.counted(n, pick)
                partition = hash(event.ambassador_id) % PARTITIONS
                groups[partition].append(Delivery(envelope, event, event.topic, partition, offsets[partition]))
                offsets[partition] += 1
            slices = [slice_of(group, group, set()) for group in groups if group]
            await apply_exactly_once(store, folded_fragments(slices, set()))
            await store.add_activity(merge_activity(row for piece in slices for row in piece.activity))
            done += size
            if done % 1_000_000 == 0 or done == deliveries:
                print(f"  folded {done:,} envelopes ({done / (time.perf_counter() - started):,.0f}/s, "
                      f"load {load_average()})", flush=True)
        folded = time.perf_counter()
        sizes = {name: len(c.documents) for name, c in recording.collections.items()}
        written = await recording.flush(client[settings["METRICS_DATABASE"]])
        print(f"  {written:,} documents {sizes} inserted in {time.perf_counter() - folded:.0f} s", flush=True)
        await client[settings["METRICS_DATABASE"]]["bench_seeded"].insert_one({"_id": TENANT,
                                                                                "events": arguments.events})
        return arguments.events
    finally:
        await client.close()


async def seeded(settings: dict[str, str]) -> int:
    client = AsyncMongoClient(settings["METRICS_MONGODB_URI"])
    try:
        document = await client[settings["METRICS_DATABASE"]]["bench_seeded"].find_one({"_id": TENANT})
        return int(document["events"]) if document else 0
    finally:
        await client.close()


def round_trips(commands, requests: int) -> str:
    """The api's MongoDB commands during the runs, per answer and by collection: the per-request pointer
    reads and the kept reports' recomputations (each command is one round trip the database pays CPU for)."""
    by_target = ", ".join(f"{target} {n / max(1, requests):.3f}" for target, n in commands.most_common(8))
    return f"  round trips per request: {sum(commands.values()) / max(1, requests):.3f} ({by_target})"


def main(arguments: argparse.Namespace) -> None:
    server, issuer = start_dev_issuer()
    run = uuid.uuid4().hex[:8]
    env = service_environment("METRICS", arguments.database or f"metricsbench_{run}", f"mbench{run}.", server, issuer)
    if arguments.report_fresh is not None:  # else the service's defaults (the per-process report cache)
        env["METRICS_REPORT_FRESH_SECONDS"] = str(arguments.report_fresh)
    clients = [int(c) for c in arguments.clients.split(",")]
    print(f"metrics api bench: database {env['METRICS_DATABASE']}, {arguments.events:,} events over {arguments.days} "
          f"days, clients {clients}, {arguments.runs} runs of {arguments.seconds} s; load {load_average()}", flush=True)
    try:
        events = asyncio.run(seeded(env))
        if not events:
            started = time.perf_counter()
            events = asyncio.run(seed(env, arguments))
            print(f"seeded in {time.perf_counter() - started:.0f} s", flush=True)
        last = date.today() - timedelta(days=1)
        first = last - timedelta(days=arguments.days - 1)
        tokens = [issuer.mint(tenant=TENANT, subject=f"analyst{n}", roles=["analyst"], ttl_seconds=24 * 3600)
                  for n in range(20)]
        endpoints = {"overview (30 days)": "/v1/metrics/overview",
                     f"daily series ({arguments.days} days)":
                         f"/v1/metrics/timeseries?from={first}&to={last}&granularity=day"}
        port = free_port()
        counted = f"/tmp/metricsbench_{run}_commands"
        api = ApiProcess("metrics.main", counting_commands(
            {**env, "METRICS_HTTP_PORT": str(port), "BENCH_COMMAND_COUNTS_BY_COLLECTION": "1"}, counted), port,
            Path(f"/tmp/metricsbench_{run}_api.log"), processes=arguments.api_processes)
        api.start()
        p99: dict[str, float] = {}
        try:
            with tempfile.TemporaryDirectory() as directory:
                for name, path in endpoints.items():
                    # The first request reads everything (nothing kept yet): the cost of a cold report.
                    started = time.perf_counter()
                    answer = httpx.get(api.url + path, headers={"Authorization": f"Bearer {tokens[0]}"}, timeout=600)
                    answer.raise_for_status()
                    print(f"{name}: first (cold) request {1000 * (time.perf_counter() - started):,.0f} ms "
                          f"(load {load_average()})", flush=True)
                    script = wrk_script([(path, token) for token in tokens], Path(directory))
                    # Every api process keeps its own reports: 2 s of load, not measured, so that each has
                    # computed its copy once (its cold request is the one printed above); then the steady state.
                    warm = run_wrk(api.url, script, 10, 2.0)
                    print(f"  warm-up: {warm.requests} requests at 10 clients, p99 {warm.p99_ms:.1f} ms", flush=True)
                    time.sleep(0.6)  # the counts so far written (every half second)
                    before = commands_so_far(counted)
                    results = measure(f"{name}, {events:,} events", api.url, script, clients, arguments.runs,
                                      arguments.seconds, api)
                    time.sleep(0.6)
                    print(round_trips(commands_so_far(counted) - before,
                                      sum(r.requests for rows in results.values() for r in rows)), flush=True)
                    p99[name] = statistics.median(r.p99_ms for r in results[max(clients)])
                    if arguments.profile:
                        stacks = Path(f"/tmp/metricsbench_{run}_{path.split('?')[0].rsplit('/', 1)[-1]}_stacks.txt")
                        print(profile(api, api.url, script, max(clients), arguments.seconds, keep=stacks))
                        print(f"raw stacks: {stacks}")
            rss = api.peak_rss_mb()
        finally:
            api.stop()
        for name, value in p99.items():
            print(f"p99 of {name} at {max(clients)} clients: {value:.1f} ms (target < 50)")
        print(f"api peak RSS {rss:.0f} MB (target < 300); load {load_average()}")
    finally:
        server.stop()
        if arguments.keep:
            print(f"kept database {env['METRICS_DATABASE']}")
        else:
            asyncio.run(drop_database(env["METRICS_MONGODB_URI"], env["METRICS_DATABASE"]))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--report-size", type=int, default=100,
                        help="events one engagement envelope counts (a connector's report: `count`); shares count 1")
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--ambassadors", type=int, default=2000)
    parser.add_argument("--contents", type=int, default=300)
    parser.add_argument("--campaigns", type=int, default=30)
    parser.add_argument("--teams", type=int, default=20)
    parser.add_argument("--clients", default="1,10,50")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--profile", action="store_true")
    add_api_processes_argument(parser)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--database", help="reuse (or create) this database")
    parser.add_argument("--report-fresh", type=float, help="METRICS_REPORT_FRESH_SECONDS (0: off; default: the service's)")
    main(parser.parse_args())
