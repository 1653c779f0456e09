"""Tracked-link redirect under load: requests/s and latency at N connections (wrk), then the time until every
counted click is on the Kafka topic, and the peak RSS of the API and worker processes.

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 MONGODB_URI=mongodb://127.0.0.1:27017/ \\
        uv run python bench/redirect_bench.py [--runs 3] [--seconds 20] [--connections 50] [--threads 2] \\
        [--links 500] [--visitors 5000] [--drain-timeout 300] [--api-processes 1]

Runs the real processes (`distribution.main:run_api` under uvicorn, `run_worker` with the outbox relay) on
fresh topics and a fresh database. Seeds --contents contents (as events, projected by the worker) and --links
tracked links (through the service's own adapter), then --runs times: `wrk` hits GET /r/{code} for --seconds
at --connections with a random link and a random visitor out of --visitors (X-Forwarded-For, a browser user
agent: every answer is a counted click, a visitor's first click on a link is a unique one). When wrk ends,
the engagement topic is polled (end offsets, every 20 ms) until it holds every click answered with a 302:
that is the drain time. The API's /metrics before and after the load give what the redirect asked of the
database: its batches of clicks (two insert commands each, group commit) and its reads past the link cache
(one find each), per click. Needs `wrk` on PATH (Debian: `apt-get install wrk`).
"""

from __future__ import annotations

import argparse
import asyncio
import urllib.request
import os
import random
import re
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from advocacy_common.mongo import create_client
from advocacy_common.repository import Storage
from advocacy_common.topics import ENGAGEMENT

from distribution.adapters.links import MongoLinks
from distribution.models.sharing import _CODE_ALPHABET, CODE_LENGTH, TrackedLink

from http_load import add_api_processes_argument
from distribution_stack import TENANT, Stack, print_table, process_tree, topic_count, tree_cpu_seconds

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
LUA = """
local codes = {%(codes)s}
local visitors = %(visitors)d
local counter = 0
function setup(thread) thread:set("seed", counter); counter = counter + 1 end
function init(args) math.randomseed(os.time() + seed * 7919) end
function request()
  local v = math.random(0, visitors - 1)
  local ip = "10." .. math.floor(v / 65536) .. "." .. (math.floor(v / 256) %% 256) .. "." .. (v %% 256)
  return wrk.format("GET", "/r/" .. codes[math.random(#codes)],
                    {["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) bench", ["X-Forwarded-For"] = ip})
end
"""


REDIRECT_COUNTERS = re.compile(r'^distribution_(click_batches_total\{outcome="written"\}|clicks_written_total|'
                               r'redirect_reads_total\{what="(?:link|content|changes)"\}) ([\d.e+]+)$', re.MULTILINE)


def redirect_counters(url: str) -> dict[str, float]:
    """The redirect's database work so far, from the API's /metrics (absent until it happened once)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
        text = response.read().decode()
    return {name: float(value) for name, value in REDIRECT_COUNTERS.findall(text)}


def commands_per_click(before: dict[str, float], after: dict[str, float]) -> tuple[float, float, float]:
    """(inserts per click, reads per click, clicks per batch) between two scrapes."""
    def delta(prefix: str) -> float:
        return sum(value - before.get(name, 0.0) for name, value in after.items() if name.startswith(prefix))
    clicks, batches = delta("clicks_written"), delta("click_batches")
    return 2 * batches / max(clicks, 1), delta("redirect_reads") / max(clicks, 1), clicks / max(batches, 1)


COUNTS_WRITTEN_EVERY = 0.6  # command_counting/sitecustomize.py writes a process's counts every half second


def per_click_commands(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]],
                       clicks: int) -> dict[str, object]:
    """Per process, its MongoDB commands per click between two readings (all, and by command name)."""
    figures: dict[str, object] = {}
    for process, counts in after.items():
        delta = {name: n - before.get(process, {}).get(name, 0) for name, n in counts.items()}
        delta = {name: n for name, n in sorted(delta.items()) if n}
        figures[f"{process}_commands"] = sum(delta.values()) / max(clicks, 1)
        figures[f"{process}_by_name"] = ", ".join(f"{name} {n / max(clicks, 1):.3f}" for name, n in delta.items())
    return figures


def database_cpu_seconds(args: argparse.Namespace) -> list[float]:
    """CPU seconds of each --db-pid process tree; with --pg-database, of a PostgreSQL postmaster's tree only
    its backends serving that database (another FerretDB on the same PostgreSQL is someone else's load)."""
    return [root_cpu_seconds(root, args.pg_database) for root in args.db_pid]


def root_cpu_seconds(root: int, pg_database: str | None) -> float:
    """A process tree's CPU seconds; a postmaster's (with `pg_database`) only its backends serving it."""
    if not pg_database:
        return tree_cpu_seconds([root])
    total = 0.0
    for pid in process_tree(root):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # exited meanwhile
        if pid == root and not title.startswith("postgres:") and "bin/postgres" not in title:
            return tree_cpu_seconds([root])  # not a postmaster (FerretDB): all of it
        if title.startswith("postgres:") and f" {pg_database} " in f"{title} ":
            total += tree_cpu_seconds([pid])
    return total


def milliseconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * UNITS[unit]


def parse_wrk(output: str) -> dict[str, float]:
    figures = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
               "requests": int(re.search(r"(\d+) requests in", output).group(1))}
    for share, value in re.findall(r"^\s*(50|75|90|99)%\s+([\d.]+(?:us|ms|s|m))", output, re.MULTILINE):
        figures[f"p{share}"] = milliseconds(value)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    figures["non_3xx"] = int(bad.group(1)) if bad else 0
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    figures["socket_errors"] = sum(int(n) for n in errors.groups()) if errors else 0
    return figures


async def seed_links(stack: Stack, links: int, contents: int) -> list[str]:
    client = create_client(stack.uri, "bench-seed")
    try:
        repository = MongoLinks(await Storage.open(client[stack.database], "bench"))
        rng = random.Random(7)
        codes = ["".join(rng.choices(_CODE_ALPHABET, k=CODE_LENGTH)) for _ in range(links)]
        for n, code in enumerate(codes):
            await repository.ensure(TrackedLink(code=code, tenant=TENANT, ambassador_id=f"amb{n % 97}",
                                                content_id=f"c{n % contents}", campaign_id="camp", network="linkedin",
                                                team_id="ops", link_url="https://example.com/fallback",
                                                confirmed_share_id=f"s{n}", created_at=datetime.now(UTC)))
        return codes
    finally:
        await client.close()


async def drain(stack: Stack, target: int, timeout: float) -> tuple[float, int]:
    """Seconds until the engagement topic holds `target` records (or the timeout), and the count then."""
    started = time.monotonic()
    topic = stack.names.physical(ENGAGEMENT)
    while True:
        count = await topic_count(stack.bootstrap, topic)
        if count >= target or time.monotonic() - started > timeout:
            return time.monotonic() - started, count
        await asyncio.sleep(0.02)


def profile(stack: Stack, prefix: str, seconds: int) -> list[subprocess.Popen]:
    """py-spy on the API and the worker during the load (raw collapsed stacks in <prefix>api.txt, ...)."""
    return [subprocess.Popen(["py-spy", "record", "--nonblocking", "-p", str(process.pid), "-d", str(seconds - 1),
                              "-f", "raw", "-o", f"{prefix}{name}.txt",
                              *(["--subprocesses"] if stack.api_processes > 1 else [])], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL) for name, process in stack.processes.items()]


def spread(values: list[float], digits: int = 0) -> str:
    return f"{statistics.median(values):,.{digits}f} ({min(values):,.{digits}f} … {max(values):,.{digits}f})"


async def main(args: argparse.Namespace) -> None:
    stack = Stack(args.bootstrap, args.uri, Path(tempfile.gettempdir()) / f"redirect_bench_{os.getpid()}.log",
                  api_processes=args.api_processes, database_prefix=args.database_prefix, count_commands=True)
    await stack.start()
    try:
        await stack.publish_people_and_contents(ambassadors=0, contents=args.contents)
        codes = await seed_links(stack, args.links, args.contents)
        script = Path(tempfile.mkstemp(suffix=".lua")[1])
        script.write_text(LUA % {"codes": ", ".join(f'"{c}"' for c in codes), "visitors": args.visitors})
        topic = stack.names.physical(ENGAGEMENT)
        print(f"{args.links} links, {args.visitors} visitors, {args.connections} connections × {args.seconds} s, "
              f"{args.runs} run(s); API {stack.url}, database {args.uri}", flush=True)
        runs: list[dict[str, float]] = []
        for run in range(args.runs):
            before = await topic_count(stack.bootstrap, topic)
            counters_before = redirect_counters(stack.url)
            commands_before = stack.command_counts()
            cpu_before, db_before = stack.cpu_seconds(), database_cpu_seconds(args)
            profilers = profile(stack, args.profile, args.seconds) if args.profile and run == args.runs - 1 else []
            output = subprocess.run(["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.seconds}s",
                                     "--latency", "--timeout", "10s", "-s", str(script), stack.url], capture_output=True, text=True,
                                    check=True).stdout
            for profiler in profilers:
                profiler.wait()
            if args.verbose:
                print(output, flush=True)
            figures = parse_wrk(output)
            counted = figures["requests"] - figures["non_3xx"]
            cpu_after = stack.cpu_seconds()
            figures["inserts"], figures["reads"], figures["batch"] = commands_per_click(
                counters_before, redirect_counters(stack.url))
            figures["drain"], on_topic = await drain(stack, before + counted, args.drain_timeout)
            cpu_drained, db_after = stack.cpu_seconds(), database_cpu_seconds(args)
            await asyncio.sleep(COUNTS_WRITTEN_EVERY)
            figures.update(per_click_commands(commands_before, stack.command_counts(), counted))
            figures["api_ms"] = (cpu_after["api"] - cpu_before["api"]) * 1000 / max(counted, 1)
            figures["worker_ms"] = (cpu_drained["worker"] - cpu_before["worker"]) * 1000 / max(counted, 1)
            by_pid = [(after - before) * 1000 / max(counted, 1) for before, after in zip(db_before, db_after)]
            figures["db_ms"] = sum(by_pid)
            figures["db_by_pid"] = " + ".join(f"{pid} {ms:.2f}" for pid, ms in zip(args.db_pid, by_pid))
            figures["drained"] = on_topic - before >= counted
            figures["load"] = os.getloadavg()[0]
            runs.append(figures)
            print(f"run {run + 1}: {figures['rps']:,.0f} req/s, p50 {figures['p50']:.1f} ms, p99 {figures['p99']:.1f} ms, "
                  f"{counted:,} clicks counted ({figures['non_3xx']} non-3xx, {figures['socket_errors']} socket "
                  f"errors), on the topic {figures['drain']:.2f} s after the load "
                  f"({'all' if figures['drained'] else f'ONLY {on_topic - before:,}'}); load average "
                  f"{figures['load']:.1f}; CPU ms per click: api {figures['api_ms']:.2f}, worker {figures['worker_ms']:.2f}, "
                  f"database {figures['db_ms']:.2f} ({figures['db_by_pid']}); API database commands per click: inserts "
                  f"{figures['inserts']:.3f} ({figures['batch']:.1f} clicks per batch), reads {figures['reads']:.3f}",
                  flush=True)
            for process in ("api", "worker"):
                print(f"  {process} MongoDB commands per click: {figures[f'{process}_commands']:.3f} "
                      f"({figures[f'{process}_by_name']})", flush=True)
        rss = stack.peak_rss()
    finally:
        await stack.stop()
    rows = [("requests/s", spread([r["rps"] for r in runs]), ">= 1,000"),
            ("p50 ms", spread([r["p50"] for r in runs], 1), ""),
            ("p99 ms", spread([r["p99"] for r in runs], 1), "< 50"),
            ("clicks on the topic, s after the load", spread([r["drain"] for r in runs], 2), "<= 2"),
            ("CPU ms per click, API process", spread([r["api_ms"] for r in runs], 2), ""),
            ("CPU ms per click, worker (relay) until drained", spread([r["worker_ms"] for r in runs], 2), ""),
            ("API MongoDB commands per click (all)", spread([r["api_commands"] for r in runs], 3), ""),
            ("worker MongoDB commands per click (all, until drained)", spread([r["worker_commands"] for r in runs], 3),
             ""),
            ("API insert commands per click", spread([r["inserts"] for r in runs], 3), ""),
            ("clicks per batch", spread([r["batch"] for r in runs], 1), ""),
            ("API reads (find) per click, past the link cache", spread([r["reads"] for r in runs], 3), "")]
    if args.db_pid:
        rows.append((f"CPU ms per click, database processes {args.db_pid}", spread([r["db_ms"] for r in runs], 2), ""))
    print_table(f"median (min … max) over {len(runs)} run(s), {args.connections} connections:", rows, rss)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--links", type=int, default=500)
    parser.add_argument("--contents", type=int, default=20)
    parser.add_argument("--visitors", type=int, default=5000)
    parser.add_argument("--database-prefix", default="distribution_bench_",
                        help="the fresh database is named this plus a random run id (dropped at the end)")
    parser.add_argument("--drain-timeout", type=float, default=300)
    parser.add_argument("--db-pid", type=int, action="append", default=[],
                        help="a database server process (FerretDB, PostgreSQL's postmaster) whose CPU, with its "
                             "children's, is counted per click; repeatable (useful on a private instance)")
    parser.add_argument("--pg-database", help="of a --db-pid that is a PostgreSQL postmaster, count only the "
                        "backends serving this database (FerretDB's, e.g. `ferretdb`), not the whole instance's")
    parser.add_argument("--profile", metavar="PREFIX", help="py-spy the processes during the last run's load (with "
                        "--runs 2 or more, past the first run's reads of every link)")
    add_api_processes_argument(parser)
    parser.add_argument("--verbose", action="store_true", help="print wrk's own report too")
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument("--uri", default=os.environ.get("MONGODB_URI", "mongodb://127.0.0.1:27017/"))
    asyncio.run(main(parser.parse_args()))
