"""The metrics pipeline against its physical limits: Kafka read rate, envelope decoding, worker catch-up.

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 MONGODB_URI=mongodb://127.0.0.1:27017/ \\
        uv run python bench/pipeline.py [--events 1000000] [--runs 3] [--workers 1] [--max-seconds 1800]

Produces --events envelopes of the metrics workload (the kill test's mix, scaled: ~10 % shares,
~86 % engagements of the ten kinds, ~2.4 % re-sent envelopes, ambassador and content events spread
over the run, engagements often before their share) to fresh topics under a unique prefix, then,
--runs times:

(a) raw: a bare aiokafka consumer (no group) reads every record of the four event topics and only counts;
(b) decode: the same read, plus `envelope.from_kafka` and `events.decode_data` per record, timed apart;
(c) worker: --workers real metrics worker processes (`python -m metrics.main`, one consumer group,
    a fresh group and database per run) catch up on the topics; lag = end offsets minus the group's
    committed offsets, sampled every --sample seconds until it is 0 (or --max-seconds pass).

The worker is used as a black box (process, METRICS_* environment, Kafka offsets), so the figures
stay comparable while its internals change. Extra worker settings: --env NAME=VALUE (repeatable).
Topics and the run databases are deleted at the end (--keep to keep them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError
from pymongo import MongoClient

from advocacy_common import events as ev
from advocacy_common.envelope import from_kafka, to_kafka
from advocacy_common.publishing import envelope_for
from advocacy_common.topics import EVENT_TOPICS, TopicNames, ensure_topics

from http_load import tree_cpu_seconds

TENANT = "bench"
COMMAND_COUNTING = Path(__file__).parent / "command_counting"  # sitecustomize of the worker processes
BASE_DAY = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TEAMS = ["red", "blue", "green", "gold"]
AMBASSADORS = [f"a{n}" for n in range(30)]
CONTENTS = {f"c{n}": f"camp{n % 4}" for n in range(16)}
NETWORKS = [ev.Network.LINKEDIN, ev.Network.X, ev.Network.XING]
KINDS = [ev.EngagementKind.IMPRESSION] * 4 + [ev.EngagementKind.REACTION] * 2 + [
    ev.EngagementKind.COMMENT, ev.EngagementKind.COMMENT_REPLY, ev.EngagementKind.RESHARE, ev.EngagementKind.CLICK,
    ev.EngagementKind.CONVERSION]
# of every 102,500 envelopes of the kill test: 10,000 shares and 2,500 re-sent envelopes
SHARE_SHARE, DUPLICATE_SHARE = 10_000 / 102_500, 2_500 / 102_500


# --- workload ---------------------------------------------------------------------------------

def profile(team: str, networks, leaderboard: bool) -> ev.AmbassadorProfile:
    return ev.AmbassadorProfile(persona=ev.Persona.EXPERT, team_id=team, leaderboard_opt_in=leaderboard,
                                networks=[ev.NetworkPresence(network=n, audience_size=100) for n in networks])


def people_events() -> list[ev.Event]:
    """Opt-ins, team moves, an opt-out and erasures: the ambassador facts of the kill test."""
    people: list[ev.Event] = [
        ev.AmbassadorOptedIn(ambassador_id=a, charter_version=1, opted_in_at=BASE_DAY,
                             profile=profile(TEAMS[n % 4], NETWORKS[: 1 + n % 3], n % 3 == 0))
        for n, a in enumerate(AMBASSADORS)]
    people += [ev.AmbassadorProfileUpdated(ambassador_id=a, updated_at=BASE_DAY, profile=profile("gold", NETWORKS, False))
               for a in AMBASSADORS[:5]]
    people.append(ev.AmbassadorOptedOut(ambassador_id="a7", opted_out_at=BASE_DAY))
    people += [ev.AmbassadorErased(ambassador_id=a, erased_at=BASE_DAY) for a in ("a8", "a9")]
    return people


def content_events() -> list[ev.Event]:
    return [ev.ContentPublished(content_id=c, version=1, campaign_id=campaign, objective=ev.Objective.AWARENESS,
                                title="t", link_url="https://example.com", topics=[f"topic{n % 5}"], language="en",
                                networks=[ev.Network.LINKEDIN], publish_at=BASE_DAY)
            for n, (c, campaign) in enumerate(CONTENTS.items())]


def share_of(n: int, rng: random.Random) -> ev.PostShared:
    ambassador, content = rng.choice(AMBASSADORS), rng.choice(list(CONTENTS))
    return ev.PostShared(share_id=f"s{n}", content_id=content, campaign_id=CONTENTS[content],
                         ambassador_id=ambassador, team_id=TEAMS[int(ambassador[1:]) % 4], network=rng.choice(NETWORKS),
                         personalized=rng.random() < 0.8, similarity_to_suggested=0.2, similarity_to_colleagues=0.1,
                         potential_reach=rng.randint(50, 5000), tracked_link_code=f"Ls{n}",
                         shared_at=BASE_DAY + timedelta(days=rng.randint(0, 2)))


def engagement_of(n: int, share: ev.PostShared, rng: random.Random) -> ev.EngagementReceived:
    kind = rng.choice(KINDS)
    return ev.EngagementReceived(
        engagement_id=f"e{n}", kind=kind, count=rng.randint(0, 40), share_id=share.share_id,
        content_id=share.content_id, campaign_id=share.campaign_id if n % 10 else None,
        ambassador_id=share.ambassador_id, team_id=share.team_id, network=share.network,
        occurred_at=share.shared_at, source="bench", source_event_id=f"e{n}",
        conversion_type=rng.choice(list(ev.ConversionType)) if kind is ev.EngagementKind.CONVERSION else None,
        unique_visitor=rng.random() < 0.5)


def workload(total: int, rng: random.Random):
    """(topic, KafkaRecord) pairs, generated as they are sent (a million envelopes do not fit in memory)."""
    shares = [share_of(n, rng) for n in range(max(1, round(total * SHARE_SHARE)))]
    duplicates = round(total * DUPLICATE_SHARE)
    rare = people_events() + content_events()
    rare_slots = dict(zip(sorted(rng.sample(range(total), min(total, len(rare)))), rare))
    facts = total - duplicates - len(rare_slots)
    unsent_shares = list(range(len(shares)))
    rng.shuffle(unsent_shares)
    recent: list = []
    engagements = 0
    for slot in range(total):
        if slot in rare_slots:
            event = rare_slots[slot]
        elif recent and rng.random() < duplicates / total:
            yield rng.choice(recent)  # a re-sent envelope: same id, same record
            continue
        elif unsent_shares and rng.random() < len(shares) / facts:
            event = shares[unsent_shares.pop()]
        else:
            event = engagement_of(engagements, rng.choice(shares), rng)  # often before its share
            engagements += 1
        item = (event.topic, to_kafka(envelope_for(event, tenant_id=TENANT, source="/bench")))
        recent.append(item) if len(recent) < 10_000 else recent.__setitem__(rng.randrange(10_000), item)
        yield item


async def produce(bootstrap: str, names: TopicNames, total: int, seed: int) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=50,
                                max_batch_size=512 * 1024)
    await producer.start()
    started = time.monotonic()
    items = workload(total, random.Random(seed))
    try:
        while chunk := list(islice(items, 5000)):  # wait for acknowledgements every 5,000 records
            await asyncio.gather(*[await producer.send(names.physical(topic), key=record.key, value=record.value,
                                                       headers=record.headers) for topic, record in chunk])
    finally:
        await producer.stop()
    return time.monotonic() - started


# --- measurements -----------------------------------------------------------------------------

def partitions_of(names: TopicNames, partitions: int) -> list[TopicPartition]:
    return [TopicPartition(names.physical(t), p) for t in EVENT_TOPICS for p in range(partitions)]


async def end_offsets(bootstrap: str, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return await consumer.end_offsets(tps)
    finally:
        await consumer.stop()


async def read_all(bootstrap: str, tps: list[TopicPartition], total: int, decode: bool) -> tuple[float, float]:
    """(seconds to read every record, seconds of that spent decoding) with a bare, group-less consumer."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=32 * 1024 * 1024)
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen, decoding = 0, 0.0
        started = time.monotonic()
        while seen < total:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batches.values():
                seen += len(records)
                if decode:
                    before = time.perf_counter()
                    for record in records:
                        envelope = from_kafka(record.key, record.value, record.headers)
                        ev.decode_data(envelope.type, envelope.data)
                    decoding += time.perf_counter() - before
        return time.monotonic() - started, decoding
    finally:
        await consumer.stop()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process (from /proc; Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def matching_cpu(patterns: list[str]) -> dict[int, float]:
    """CPU seconds per live process whose command line matches one of `patterns` (regular expressions):
    e.g. the PostgreSQL backends of one database, `postgres: postgres fdbpriv`, which are the
    postmaster's children, not the FerretDB's that uses them."""
    ticks = os.sysconf("SC_CLK_TCK")
    found: dict[int, float] = {}
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            line = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if any(re.search(pattern, line) for pattern in patterns):
                fields = (cmdline.parent / "stat").read_text().rsplit(")", 1)[1].split()
                found[int(cmdline.parent.name)] = sum(int(n) for n in fields[11:15]) / ticks
        except OSError:
            continue  # exited meanwhile
    return found


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of every core since boot, from /proc/stat's first line (Linux): their
    difference over an interval says how much of the machine was in use, whoever used it."""
    ticks = os.sysconf("SC_CLK_TCK")
    values = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / ticks, sum(values[:8]) / ticks


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size (VmHWM) of a running process, in MB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class CatchUp:
    seconds: float  # from starting the processes until lag 0 (or the time limit)
    consumed: int
    cpu: float = 0.0  # CPU seconds the worker processes used, all together
    samples: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, consumed)
    finished: bool = True
    commands: Counter[str] = field(default_factory=Counter)  # MongoDB commands sent, per name
    micros: Counter[str] = field(default_factory=Counter)  # their answers' time, per command and collection
    peak_rss_mb: float = 0.0  # the largest peak resident set of the worker processes
    database_cpu: float = 0.0  # CPU seconds of the --db-pid process trees (FerretDB, PostgreSQL) meanwhile
    machine_busy: float = 0.0  # share of all the machine's cores in use meanwhile (anyone's), 0..1

    def time_at(self, consumed: float) -> float:
        """When `consumed` records were committed, interpolated between samples."""
        previous = (0.0, 0)
        for at, done in self.samples:
            if done >= consumed:
                if done == previous[1]:
                    return at
                return previous[0] + (at - previous[0]) * (consumed - previous[1]) / (done - previous[1])
            previous = (at, done)
        return self.samples[-1][0]

    def startup(self) -> float:
        """The last sample with nothing committed yet: process start, imports, group join, first batch."""
        return max((at for at, done in self.samples if done == 0), default=0.0)

    def rate_between(self, low: float, high: float) -> float:
        start = self.startup() if low == 0 else self.time_at(low)
        spent = self.time_at(high) - start
        return (high - low) / spent if spent > 0 else float("nan")


async def group_lag(admin: AIOKafkaAdminClient, group: str, ends: dict[TopicPartition, int]) -> int:
    try:
        committed = await admin.list_consumer_group_offsets(group)
    except GroupCoordinatorNotAvailableError:
        committed = {}  # a fresh cluster still creating __consumer_offsets: nothing committed yet
    return sum(end - (committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0)
               for tp, end in ends.items())


async def catch_up(args: argparse.Namespace, names: TopicNames, ends: dict[TopicPartition, int],
                   database: str, group: str, log: Path) -> CatchUp:
    env = {**os.environ, "METRICS_KAFKA_BOOTSTRAP_SERVERS": args.bootstrap, "METRICS_MONGODB_URI": args.uri,
           "METRICS_DATABASE": database, "METRICS_TOPIC_PREFIX": names.prefix,
           "METRICS_TOPIC_PARTITIONS": str(args.partitions), "METRICS_CONSUMER_GROUP": group,
           "METRICS_LOG_LEVEL": "WARNING", **dict(item.split("=", 1) for item in args.env)}
    counts_prefix = f"/tmp/{group}-commands"
    env["BENCH_COMMAND_COUNTS"] = counts_prefix
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(COMMAND_COUNTING), env.get("PYTHONPATH")]))
    total = sum(ends.values())
    admin = AIOKafkaAdminClient(bootstrap_servers=args.bootstrap)
    await admin.start()
    with log.open("ab") as errors:
        started = time.monotonic()
        database_before, (busy_before, total_before) = tree_cpu_seconds(args.db_pid), machine_busy_seconds()
        matched_before = matching_cpu(args.db_match)
        workers = [subprocess.Popen([sys.executable, "-m", "metrics.main"], env=env, stdout=subprocess.DEVNULL,
                                    stderr=errors) for _ in range(args.workers)]
        result = CatchUp(0.0, 0)
        try:
            while True:
                await asyncio.sleep(args.sample)
                remaining = await group_lag(admin, group, ends)
                result.samples.append((time.monotonic() - started, total - remaining))
                if remaining == 0:
                    break
                if dead := [w.pid for w in workers if w.poll() is not None]:
                    raise RuntimeError(f"worker process(es) {dead} exited; see {log}")
                if time.monotonic() - started > args.max_seconds:
                    result.finished = False
                    break
            result.seconds, result.consumed = result.samples[-1]
            result.database_cpu = tree_cpu_seconds(args.db_pid) - database_before + sum(
                spent - matched_before.get(pid, 0.0) for pid, spent in matching_cpu(args.db_match).items())
            busy_after, total_after = machine_busy_seconds()
            result.machine_busy = (busy_after - busy_before) / max(total_after - total_before, 1e-9)
            result.cpu = sum(cpu_seconds(w.pid) for w in workers)
            result.peak_rss_mb = max(peak_rss_mb(w.pid) for w in workers)
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                try:
                    worker.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    worker.kill()
            await admin.close()
        result.commands = command_counts(counts_prefix, [w.pid for w in workers])
        result.micros = command_counts(counts_prefix, [w.pid for w in workers], suffix=".micros.json")
    return result


def command_counts(prefix: str, pids: list[int], suffix: str = ".json") -> Counter[str]:
    """The MongoDB commands the worker processes sent, per command name, or (suffix ".micros.json") the
    microseconds their answers took per command and collection (see command_counting/)."""
    counts: Counter[str] = Counter()
    for pid in pids:
        path = Path(f"{prefix}.{pid}{suffix}")
        if path.exists():
            counts.update(json.loads(path.read_text()))
            path.unlink()
    return counts


# --- report -------------------------------------------------------------------------------------

def spread(values: list[float], unit: str = "", digits: int = 0) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):,.{digits}f}{unit} ({min(values):,.{digits}f} … {max(values):,.{digits}f})"


async def main(args: argparse.Namespace) -> None:
    names = TopicNames(f"benchpipe{uuid.uuid4().hex[:6]}.")
    await ensure_topics(args.bootstrap, names, partitions=args.partitions)
    tps = partitions_of(names, args.partitions)
    print(f"topics {names.prefix}*, {args.partitions} partitions; database {args.uri}; "
          f"{args.workers} worker process(es); {args.runs} run(s)", flush=True)
    seconds = await produce(args.bootstrap, names, args.events, args.seed)
    ends = await end_offsets(args.bootstrap, tps)
    total = sum(ends.values())
    print(f"produced {total:,} records in {seconds:.1f}s ({total / seconds:,.0f}/s)", flush=True)
    log = Path(f"/tmp/{names.prefix}worker.log")
    databases: list[str] = []
    raw, decode, decode_only, catch, steady, first, last, ratio = [], [], [], [], [], [], [], []
    per_cpu: list[float] = []
    round_trips: list[float] = []
    rss: list[float] = []
    database_ms: list[float] = []
    busy: list[float] = []
    by_command: Counter[str] = Counter()
    waited: Counter[str] = Counter()
    try:
        for run in range(args.runs):
            read_seconds, _ = await read_all(args.bootstrap, tps, total, decode=False)
            decode_seconds, decoding = await read_all(args.bootstrap, tps, total, decode=True)
            raw.append(total / read_seconds)
            decode.append(total / decode_seconds)
            decode_only.append(total / decoding)
            database, group = f"bench_pipe_{uuid.uuid4().hex[:8]}", f"bench-pipe-{uuid.uuid4().hex[:8]}"
            databases.append(database)
            result = await catch_up(args, names, ends, database, group, log)
            rate = result.consumed / result.seconds
            catch.append(rate)
            if result.finished:
                first.append(result.rate_between(0, total * 0.1))
                last.append(result.rate_between(total * 0.9, total))
                steady.append(result.rate_between(0, total))
            ratio.append(rate / raw[-1] * 100)
            per_cpu.append(result.consumed / result.cpu if result.cpu else float("nan"))
            round_trips.append(sum(result.commands.values()) * 1000 / max(result.consumed, 1))
            by_command.update(result.commands)
            waited.update({re.sub(r"_g\d+$", "", target): spent for target, spent in result.micros.items()})
            rss.append(result.peak_rss_mb)
            database_ms.append(result.database_cpu * 1000 * 1000 / max(result.consumed, 1))
            busy.append(result.machine_busy * 100)
            state = "lag 0" if result.finished else f"STOPPED at --max-seconds, {total - result.consumed:,} left"
            state += f"; load average {os.getloadavg()[1]:.1f} over the last 5 min"
            print(f"run {run + 1}: raw {raw[-1]:,.0f}/s, read+decode {decode[-1]:,.0f}/s "
                  f"(decoding alone {decode_only[-1]:,.0f}/s), worker {result.consumed:,} in {result.seconds:.1f}s "
                  f"= {rate:,.0f}/s ({state})"
                  + (f", first tenth {first[-1]:,.0f}/s, last tenth {last[-1]:,.0f}/s" if result.finished else "")
                  + f"; {per_cpu[-1]:,.0f} events per worker CPU-second"
                  + f"; {round_trips[-1]:.1f} database round trips per 1,000 events"
                  + f"; peak RSS {rss[-1]:.0f} MB"
                  + (f"; database CPU {database_ms[-1]:.0f} ms per 1,000 events" if args.db_pid or args.db_match else "")
                  + f"; machine {busy[-1]:.0f} % busy",
                  flush=True)
    finally:
        if not args.keep:
            await cleanup(args, names, databases)
    print(f"\n{total:,} records, {args.workers} worker(s), median (min … max) over {len(raw)} run(s):\n")
    print("| stage | events/s |\n| --- | --- |")
    print(f"| (a) raw aiokafka read, count only | {spread(raw)} |")
    print(f"| (b) read + from_kafka + decode_data | {spread(decode)} |")
    print(f"| (b) decoding alone (CPU of one Python process) | {spread(decode_only)} |")
    print(f"| (c) worker catch-up, start of processes → lag 0 | {spread(catch)} |")
    print(f"| (c) the same after the last lag sample with nothing committed | {spread(steady)} |")
    print(f"| (c) first tenth of the records (from that sample) | {spread(first)} |")
    print(f"| (c) last tenth of the records | {spread(last)} |")
    print(f"| catch-up / raw | {spread(ratio, ' %', 2)} |")
    print(f"| events per CPU-second of the worker process(es), startup included | {spread(per_cpu)} |")
    print(f"| database round trips (MongoDB commands) per 1,000 events | {spread(round_trips, digits=1)} |")
    print(f"| peak RSS of a worker process, MB | {spread(rss)} |")
    worker_ms = [1000 * 1000 / rate for rate in per_cpu]
    print(f"| worker CPU ms per 1,000 events | {spread(worker_ms)} |")
    if args.db_pid or args.db_match:
        print(f"| database CPU ms per 1,000 events (process trees {args.db_pid}, processes matching "
              f"{args.db_match}) | {spread(database_ms)} |")
    print(f"| the machine's {os.cpu_count()} cores busy during the catch-up (anyone's work) | {spread(busy, ' %')} |")
    consumed_all = total * len(raw)
    print("\nDatabase commands per 1,000 events, all runs together: " + ", ".join(
        f"{name} {count * 1000 / consumed_all:.1f}" for name, count in by_command.most_common()))
    print("Time the database took to answer, ms per 1,000 events, per command and collection: " + ", ".join(
        f"{target.strip()} {spent / 1000 * 1000 / consumed_all:.1f}" for target, spent in waited.most_common(12)))


async def cleanup(args: argparse.Namespace, names: TopicNames, databases: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=args.bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(names.all())
    finally:
        await admin.close()
    client = MongoClient(args.uri)
    try:
        for database in databases:
            client.drop_database(database)
    finally:
        client.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="worker processes in the one consumer group")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--max-seconds", type=float, default=1800, help="stop a catch-up that takes longer")
    parser.add_argument("--sample", type=float, default=0.5, help="seconds between lag samples")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="extra worker setting")
    parser.add_argument("--keep", action="store_true", help="keep the topics and databases")
    parser.add_argument("--db-pid", type=int, action="append", default=[],
                        help="a database process whose tree's CPU is counted (repeatable: FerretDB, PostgreSQL)")
    parser.add_argument("--db-match", action="append", default=[], metavar="REGEX",
                        help="also count processes whose command line matches (repeatable), e.g. the PostgreSQL "
                             "backends of a FerretDB of the benchmark's own: 'postgres: postgres fdbpriv'")
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument("--uri", default=os.environ.get("MONGODB_URI", "mongodb://127.0.0.1:27017/"))
    asyncio.run(main(parser.parse_args()))
