"""The ambassador feed under load: GET /v1/feed of a real distribution api process (uvicorn), loaded by wrk.

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 MONGODB_URI=mongodb://127.0.0.1:27017/ \\
        uv run python bench/feed_bench.py [--items 500,5000] [--ambassadors 100000] [--clients 1,10,50] \\
        [--runs 3] [--seconds 10] [--tokens 3000] [--profile] [--keep] [--database NAME] \\
        [--api-processes 1]

Seeds one tenant through the projections' own code path: `ContentPublished` and `AmbassadorOptedIn`
events go through distribution's event handlers (`handlers.on_content_snapshot`, `handlers.on_opted_in`)
into the MongoDB adapters, as the worker applies them, only without Kafka in between and with the
adapters' updates applied in memory then inserted in bulk (`bulk_seed.py`: one update per event is a
scan on FerretDB 1.x, hours for 100,000). Contents
are spread over 30 days of publication, 12 topics, 3 languages, some targeted to teams or personas;
ambassadors over 40 teams, 8 locations, personas, 1–3 topics and 1–3 networks each.

For each size of --items (cumulative: the second size adds to the first), the api process is started
afresh and wrk loads it with --clients concurrent connections (closed loop: each sends its next request
as soon as the last is answered), --runs times each, every request with the token of one of --tokens
ambassadors drawn at random, after one first (cold) request whose time is printed apart (the tenant's
contents are listed then) and 3 s of unmeasured load, repeated while the contents' listing is still
under way (every api process lists them on its own first request). Prints p50 / p99 / requests per
second per run, the median (min … max) per client count, the ratio of p99 at the largest to the
smallest size, the api's MongoDB commands per request (counted in the api processes by
`command_counting/`), the api process's peak RSS and, with --db-pid, the database processes' CPU per
request (FerretDB, and PostgreSQL's backends of --pg-database: give a FerretDB of its own for a figure
that is the feed's alone).
--profile adds a py-spy profile of the api at the largest client count (raw stacks kept in /tmp).
--database reuses a seeded database (with --keep, a second invocation skips the seeding: sizes are taken
from what is there).
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
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from pymongo import AsyncMongoClient

from advocacy_common.auth import ambassador_id_for
from advocacy_common.consuming import Delivery
from advocacy_common.events import (
    AmbassadorOptedIn, AmbassadorProfile, Audience, ContentPublished, NetworkPresence, Network, Objective, Persona,
)
from advocacy_common.publishing import envelope_for
from advocacy_common.repository import Storage

from distribution import handlers
from distribution.adapters import mongo_repositories
from distribution.bootstrap import secret_box
from distribution.settings import DistributionSettings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bulk_seed import RecordingDatabase  # noqa: E402
from redirect_bench import root_cpu_seconds  # noqa: E402
from http_load import (  # noqa: E402
    ApiProcess, add_api_processes_argument, commands_so_far, counting_commands, drop_database, free_port,
    load_average, measure, profile, run_wrk, service_environment, start_dev_issuer, wrk_script,
)

TENANT = "feedbench"
WARM_UP_SECONDS = 3
TOPICS = ["energy", "hiring", "culture", "product", "research", "safety", "customers", "sustainability",
          "events", "engineering", "data", "community"]
TEAMS = [f"team{n}" for n in range(40)]
LOCATIONS = ["paris", "lyon", "berlin", "munich", "london", "madrid", "milan", "lisbon"]
LANGUAGES = ["en", "fr", "de"]
NETWORKS = [Network.LINKEDIN, Network.X, Network.XING]


def ambassador_event(n: int, now: datetime) -> AmbassadorOptedIn:
    pick = random.Random(n)
    profile = AmbassadorProfile(
        persona=pick.choice(list(Persona)), topics=pick.sample(TOPICS, pick.randint(1, 3)),
        languages=pick.sample(LANGUAGES, pick.randint(1, 2)), team_id=pick.choice(TEAMS),
        location=pick.choice(LOCATIONS),
        networks=[NetworkPresence(network=network, audience_size=pick.randint(50, 5000))
                  for network in pick.sample(NETWORKS, pick.randint(1, 3))])
    return AmbassadorOptedIn(ambassador_id=ambassador_id_for(TENANT, f"a{n}"), charter_version=0, opted_in_at=now,
                             profile=profile)


def content_event(n: int, now: datetime) -> ContentPublished:
    pick = random.Random(-1 - n)
    audience = Audience()
    if n % 5 == 0:
        audience = Audience(teams=pick.sample(TEAMS, 5))
    elif n % 7 == 0:
        audience = Audience(personas=pick.sample(list(Persona), 2))
    networks = pick.sample(NETWORKS, pick.randint(1, 3))
    return ContentPublished(
        content_id=f"c{n}", version=1, campaign_id=f"camp{n % 50}", objective=Objective.AWARENESS,
        title=f"Content {n}", link_url=f"https://example.com/c{n}",
        suggested_texts={network: f"Suggested text {n} for {network.value}: proud of the team." for network in networks},
        topics=pick.sample(TOPICS, pick.randint(0, 2)), language=pick.choice(LANGUAGES), audience=audience,
        networks=networks, publish_at=now - timedelta(minutes=pick.randint(1, 30 * 24 * 60)))


async def seed(settings: DistributionSettings, contents: range, ambassadors: range) -> None:
    """The events through distribution's handlers and adapters into a `RecordingDatabase`, then in bulk
    into the database (see bulk_seed.py)."""
    client = AsyncMongoClient(settings.mongodb_uri)
    try:
        real = await Storage.open(client[settings.database], settings.cursor_key)
        recording = RecordingDatabase(settings.database)
        repositories = mongo_repositories(Storage(recording, real.capabilities, real.cursors), secret_box(settings))
        now = datetime.now(UTC)
        for name, numbers, make, handler in (("contents", contents, content_event, handlers.on_content_snapshot),
                                             ("ambassadors", ambassadors, ambassador_event, handlers.on_opted_in)):
            if not numbers:
                continue
            started = time.perf_counter()
            for n in numbers:
                event = make(n, now)
                delivery = Delivery(envelope_for(event, tenant_id=TENANT, source="/bench"), event, event.topic, 0, n)
                await handler(repositories, delivery)
            applied = time.perf_counter()
            written = await recording.flush(client[settings.database])
            print(f"  {len(numbers)} {name} events applied in {applied - started:.1f} s, {written} documents "
                  f"inserted in {time.perf_counter() - applied:.1f} s (load {load_average()})", flush=True)
    finally:
        await client.close()


async def counts(settings: DistributionSettings) -> tuple[int, int]:
    client = AsyncMongoClient(settings.mongodb_uri)
    try:
        seeded = client[settings.database]["bench_seeded"]
        document = await seeded.find_one({"_id": TENANT}) or {}
        return int(document.get("contents", 0)), int(document.get("ambassadors", 0))
    finally:
        await client.close()


async def note_counts(settings: DistributionSettings, contents: int, ambassadors: int) -> None:
    client = AsyncMongoClient(settings.mongodb_uri)
    try:
        await client[settings.database]["bench_seeded"].update_one(
            {"_id": TENANT}, {"$set": {"contents": contents, "ambassadors": ambassadors}}, upsert=True)
    finally:
        await client.close()


def commands_per_request(commands, requests: int) -> str:
    """MongoDB commands the api sent during the runs (per-request reads and the snapshots' checks) per answer."""
    by_name = ", ".join(f"{name} {n / max(1, requests):.2f}" for name, n in commands.most_common())
    return f"  MongoDB commands per request: {sum(commands.values()) / max(1, requests):.2f} ({by_name})"


def warm_up(url: str, script: Path, connections: int, counted: str, at_most: int = 6) -> None:
    for _ in range(at_most):
        before = commands_so_far(counted)["getMore"]
        run_wrk(url, script, connections, WARM_UP_SECONDS)
        time.sleep(0.6)  # the counts so far written (every half second)
        if commands_so_far(counted)["getMore"] == before:
            return


def database_cpu(arguments: argparse.Namespace):
    """CPU seconds so far of the --db-pid trees (a postmaster's: only its backends of --pg-database), or None."""
    if not arguments.db_pid:
        return None
    return lambda: sum(root_cpu_seconds(root, arguments.pg_database) for root in arguments.db_pid)


def main(arguments: argparse.Namespace) -> None:
    server, issuer = start_dev_issuer()
    run = uuid.uuid4().hex[:8]
    database = arguments.database or f"feedbench_{run}"
    env = service_environment("DISTRIBUTION", database, f"feedbench{run}.", server, issuer)
    settings = DistributionSettings(kafka_bootstrap_servers=env["DISTRIBUTION_KAFKA_BOOTSTRAP_SERVERS"],
                                    mongodb_uri=env["DISTRIBUTION_MONGODB_URI"], database=database)
    sizes = sorted(int(s) for s in arguments.items.split(","))
    clients = [int(c) for c in arguments.clients.split(",")]
    print(f"feed bench: database {database}, {arguments.ambassadors} ambassadors, items {sizes}, clients {clients}, "
          f"{arguments.runs} runs of {arguments.seconds} s; load {load_average()}", flush=True)
    p99_at_most: dict[int, float] = {}
    rss: dict[int, float] = {}
    try:
        have_contents, have_ambassadors = asyncio.run(counts(settings))
        if have_ambassadors < arguments.ambassadors:
            started = time.perf_counter()
            asyncio.run(seed(settings, range(0), range(have_ambassadors, arguments.ambassadors)))
            print(f"ambassadors seeded in {time.perf_counter() - started:.0f} s", flush=True)
            have_ambassadors = arguments.ambassadors
            asyncio.run(note_counts(settings, have_contents, have_ambassadors))
        picks = random.Random(3).sample(range(have_ambassadors), min(arguments.tokens, have_ambassadors))
        tokens = [("/v1/feed?limit=20", issuer.mint(tenant=TENANT, subject=f"a{n}", roles=["ambassador"],
                                                     ttl_seconds=24 * 3600)) for n in picks]
        with tempfile.TemporaryDirectory() as directory:
            script = wrk_script(tokens, Path(directory))
            for size in sizes:
                if have_contents < size:
                    started = time.perf_counter()
                    asyncio.run(seed(settings, range(have_contents, size), range(0)))
                    print(f"contents seeded up to {size} in {time.perf_counter() - started:.0f} s", flush=True)
                    have_contents = size
                    asyncio.run(note_counts(settings, have_contents, have_ambassadors))
                port = free_port()
                counted = f"/tmp/feedbench_{run}_{size}_commands"
                api = ApiProcess("distribution.main",
                                 counting_commands({**env, "DISTRIBUTION_HTTP_PORT": str(port)}, counted), port,
                                 Path(f"/tmp/feedbench_{run}_api.log"), processes=arguments.api_processes)
                api.start()
                try:
                    # The tenant's first feed lists its contents (nothing kept yet): measured apart, so
                    # that the runs show the steady state.
                    started = time.perf_counter()
                    path, token = tokens[0]
                    httpx.get(api.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=600).raise_for_status()
                    print(f"  first (cold) request {1000 * (time.perf_counter() - started):,.0f} ms "
                          f"(load {load_average()})", flush=True)
                    name = f"feed, {size} items, {have_ambassadors} ambassadors"
                    # Each api process lists the contents on its own first request: unmeasured load gets every
                    # process there, so that the runs show the steady state. On a loaded machine one listing
                    # outlasts one warm-up: warm up again while one issued a getMore (only listings do).
                    warm_up(api.url, script, max(clients), counted)
                    before = commands_so_far(counted)
                    results = measure(name, api.url, script, clients, arguments.runs, arguments.seconds, api,
                                      database_cpu(arguments))
                    time.sleep(0.6)
                    print(commands_per_request(commands_so_far(counted) - before,
                                               sum(r.requests for rows in results.values() for r in rows)))
                    p99_at_most[size] = statistics.median(r.p99_ms for r in results[max(clients)])
                    if arguments.profile and size == sizes[-1]:
                        stacks = Path(f"/tmp/feedbench_{run}_stacks.txt")
                        print(profile(api, api.url, script, max(clients), arguments.seconds, keep=stacks))
                        print(f"raw stacks: {stacks}")
                    rss[size] = api.peak_rss_mb()
                    print(f"api peak RSS after the {size}-item runs: {rss[size]:.0f} MB (target < 300)\n", flush=True)
                finally:
                    api.stop()
        if len(sizes) > 1 and p99_at_most[sizes[0]] > 0:
            print(f"p99 at {max(clients)} clients: {sizes[-1]} items / {sizes[0]} items = "
                  f"{p99_at_most[sizes[-1]] / p99_at_most[sizes[0]]:.2f} (target <= 2)")
        print(f"p99 at {max(clients)} clients with {sizes[-1]} items: {p99_at_most[sizes[-1]]:.1f} ms (target < 100); "
              f"peak RSS {max(rss.values()):.0f} MB; load {load_average()}")
    finally:
        server.stop()
        if not arguments.keep:
            asyncio.run(drop_database(settings.mongodb_uri, settings.database))
        else:
            print(f"kept database {database}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", default="500,5000", help="content counts, comma-separated (cumulative)")
    parser.add_argument("--ambassadors", type=int, default=100_000)
    parser.add_argument("--clients", default="1,10,50")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--tokens", type=int, default=3000, help="distinct ambassadors whose tokens wrk cycles over")
    parser.add_argument("--profile", action="store_true")
    add_api_processes_argument(parser)
    parser.add_argument("--keep", action="store_true", help="keep the seeded database")
    parser.add_argument("--db-pid", type=int, action="append", default=[],
                        help="a database process (FerretDB, PostgreSQL's postmaster) whose tree's CPU per request "
                             "is printed; repeat for several")
    parser.add_argument("--pg-database", help="of a --db-pid that is a PostgreSQL postmaster, count only the "
                                              "backends serving this database (a FerretDB of its own)")
    parser.add_argument("--database", help="reuse (or create) this database instead of a fresh one")
    main(parser.parse_args())
