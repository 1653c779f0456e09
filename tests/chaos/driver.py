"""`make chaos`: the whole system under mixed traffic while its processes crash, then exact checks.

    python -m tests.chaos.driver [--events 200000] [--kills 24] [--seed 1] [--broker-restarts 1] [--db-restarts 1]

Runs its own Kafka and FerretDB (infra/infra.sh, another directory and ports; never the shared 9092/27017
instance), the four services as real processes (api + worker each), drives traffic through their APIs,
injects poison on every event topic, SIGKILLs APIs and workers at random moments, restarts the broker and
the database; then checks that every KPI equals the reference built from acknowledged answers, that no outbox
holds events, that every DLQ holds exactly the poison, and that no consumer group lags. Exit 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from advocacy_common.dev_issuer import DevIssuer, JwksServer
from advocacy_common.topics import TopicNames, ensure_topics

from .checks import Poison, committed_offsets, dead_letter_problems, end_offsets, lags, pending_outboxes
from .client import Api, latency_line
from .processes import REPO_ROOT, SERVICES, Instance, Stack
from .reference import TENANT, Reference
from .traffic import Person, Tenant, Traffic

PROCESSES = [f"{s}-{role}" for s in SERVICES for role in ("api", "worker")]


@dataclass
class Chaos:
    """Kills, restarts and poison, each due at a share of the traffic (acknowledged events / target)."""

    stack: Stack
    instance: Instance
    poison: Poison
    rng: random.Random
    actions: list[tuple[float, str, str]] = field(default_factory=list)
    restarts: dict[str, float] = field(default_factory=dict)  # component -> seconds down
    crashes: Counter = field(default_factory=Counter)  # processes that died without our kill
    _tasks: list[asyncio.Task] = field(default_factory=list)

    def plan(self, kills: int, broker_restarts: int, db_restarts: int, poison_rounds: int = 3) -> None:
        victims = []
        while len(victims) < kills:  # every process once before any twice
            victims += self.rng.sample(PROCESSES, len(PROCESSES))
        self.actions = [(self.rng.uniform(0.03, 0.95), "kill", name) for name in victims[:kills]]
        self.actions += [(0.4, "restart", "kafka")] * broker_restarts + [(0.7, "restart", "ferretdb")] * db_restarts
        self.actions += [((i + 0.5) / poison_rounds, "poison", "") for i in range(poison_rounds)]
        self.actions.sort()

    async def run(self, progress, stopped: asyncio.Event) -> None:
        while self.actions and not stopped.is_set():
            self.revive_crashed()
            while self.actions and self.actions[0][0] <= progress():
                _, kind, target = self.actions.pop(0)
                if kind == "kill":
                    self._tasks.append(asyncio.create_task(
                        self.stack.kill_and_restart(target, pause=self.rng.uniform(0.2, 3.0))))
                elif kind == "restart":
                    self.restarts[target] = await self.instance.restart(target)
                else:
                    self._tasks.append(asyncio.create_task(self.poison.inject_round()))
            await asyncio.sleep(0.2)
        await asyncio.gather(*self._tasks)

    def revive_crashed(self) -> None:
        for name in self.stack.dead():
            self.crashes[name] += 1
            self.stack.start(name)


def tenants_for(rng: random.Random, count: int, people: int) -> list[Tenant]:
    result = []
    for n in range(count):
        name = f"t{n}{uuid.uuid4().hex[:4]}"
        persons = [Person(f"p{i}@{name}.example", f"team{i % 5}", rng.choice(("linkedin", "linkedin", "x")),
                          rng.randint(50, 5000)) for i in range(people)]
        tenant = Tenant(name, persons)
        spare = max(1, people // 20)
        tenant.late, tenant.leaving = persons[:spare], persons[spare:2 * spare]
        result.append(tenant)
    return result


async def kpi_problems(api: Api, reference: Reference, tenants: list[Tenant]) -> tuple[int, list[str]]:
    views, problems = 0, []
    for tenant in tenants:
        analyst = api.auth(tenant.name, "analyst-1", "analyst")
        paths = [("/v1/metrics/overview", TENANT)]
        paths += [(f"/v1/metrics/campaigns/{c}", ("campaign", c)) for c in dict.fromkeys(c for _, c in tenant.contents)]
        paths += [(f"/v1/metrics/contents/{c}", ("content", c)) for c, _ in tenant.contents]
        for path, dimension in paths:
            response = await api.call("metrics", "GET", path, headers=analyst, label="kpis")
            views += 1
            if response.status_code != 200:
                problems.append(f"{tenant.name} {path}: {response.status_code} {response.text[:200]}")
                continue
            problems += [f"{tenant.name} {path}: {p}" for p in
                         reference.compare(tenant.name, dimension, response.json()["kpis"])]
    return views, problems


async def settle(stack: Stack, api: Api, reference: Reference, tenants: list[Tenant], poison: Poison,
                 names: TopicNames, timeout: float) -> dict:
    """Poll until everything agrees (the system converges through Kafka) or time runs out; the last state."""
    deadline = time.monotonic() + timeout
    databases = {s: stack.database(s) for s in SERVICES}
    while True:
        state = {"lags": await lags(stack.instance.bootstrap, names),
                 "outboxes": await pending_outboxes(stack.instance.mongodb_uri, databases)}
        state["views"], state["kpi_problems"] = await kpi_problems(api, reference, tenants)
        groups: dict[str, set[str]] = {}
        for group, offsets in (await committed_offsets(stack.instance.bootstrap, names)).items():
            for partition in offsets:
                groups.setdefault(partition.topic, set()).add(group)
        state["groups"] = groups
        state["dlq_problems"], state["letters"] = await dead_letter_problems(stack.instance.bootstrap, names,
                                                                             poison, groups)
        lagging = {g: n for g, n in state["lags"].items() if n}
        state["ok"] = not (lagging or state["outboxes"] or state["kpi_problems"] or state["dlq_problems"])
        if state["ok"] or time.monotonic() > deadline:
            return state
        await asyncio.sleep(3)


def report(options, state: dict, traffic: Traffic, chaos: Chaos, stack: Stack, poison: Poison, kafka_events: int,
           durations: dict[str, float], api: Api) -> None:
    print("\n===== chaos run summary =====")
    print(f"seed {options.seed}; FerretDB on {options.backend}; target {options.events} events"
          + (f"; traffic STOPPED EARLY, {len(chaos.actions)} planned action(s) not done: {chaos.actions}"
             if traffic.stopped.is_set() else ""))
    seconds = durations["programme + engagement"]
    print(f"events acknowledged: {traffic.events} ({traffic.events / seconds:.0f} events/s over {seconds:.0f} s "
          f"of traffic): domain events, clicks, and the impressions, reactions... the signed reports carry")
    print(f"API operations acknowledged: {traffic.operations} ({traffic.operations / seconds:.1f}/s); records "
          f"on the event topics (poison excluded): {kafka_events} ({kafka_events / seconds:.1f}/s)")
    print("operations: " + ", ".join(f"{k}={v}" for k, v in sorted(traffic.counts.items())))
    print(f"kills ({sum(stack.kills.values())}): " + ", ".join(f"{k}={v}" for k, v in sorted(stack.kills.items())))
    print("restarts: " + (", ".join(f"{k} (down {v:.1f} s)" for k, v in chaos.restarts.items()) or "none"))
    if chaos.crashes:
        print("processes that died WITHOUT being killed: " + ", ".join(f"{k}={v}" for k, v in chaos.crashes.items()))
    print(f"latencies: {latency_line(api.latencies)}")
    print(f"client retries: {dict(api.retries)}; 5xx answers seen: {dict(api.server_errors) or 'none'}")
    print(f"poison injected ({len(poison.injected)}): {dict(poison.by_kind())}; dead letters by topic: "
          f"{dict(state['letters'])}")
    print("consumer groups per topic: " + "; ".join(f"{t}: {sorted(g)}" for t, g in sorted(state["groups"].items())))
    for name, problems in (("DLQ", state["dlq_problems"]), ("KPI", state["kpi_problems"]),
                           ("unexpected answers", traffic.unexpected)):
        print(f"{name} mismatches: {len(problems)}")
        for line in problems[:40]:
            print(f"  {line}")
    print(f"KPI views compared: {state['views']} (tenant overview, each campaign, each content), "
          f"{'all equal' if not state['kpi_problems'] else 'MISMATCH'}")
    print(f"consumer lag: {state['lags']}")
    print(f"documents with unpublished _outbox: {state['outboxes'] or 'none'}")
    print("durations: " + ", ".join(f"{k} {v:.1f} s" for k, v in durations.items()))
    print("RESULT: " + ("OK" if succeeded(state, traffic, chaos) else "FAILED"))


def succeeded(state: dict, traffic: Traffic, chaos: Chaos) -> bool:
    return state["ok"] and not traffic.unexpected and not chaos.crashes and not traffic.stopped.is_set()


async def run(options) -> int:
    rng = random.Random(options.seed)
    durations: dict[str, float] = {}
    started = time.monotonic()
    instance = Instance(Path(options.local).resolve(), options.kafka_port, options.controller_port,
                        options.ferretdb_port, options.backend, options.postgres_port)
    await asyncio.to_thread(instance.fresh)
    durations["infra up"] = time.monotonic() - started
    jwks = JwksServer([]).start()
    issuer = DevIssuer.generate(issuer=jwks.url)
    jwks.issuers.append(issuer)
    run_id = uuid.uuid4().hex[:6]
    logs = instance.local / "runs" / run_id
    logs.mkdir(parents=True)
    stack = Stack(instance, run_id, {"issuer": issuer.issuer, "audience": issuer.audience,
                                     "jwks_url": f"{jwks.url}/.well-known/jwks.json"}, logs,
                  log_level=options.log_level)
    names = TopicNames(stack.topic_prefix)
    print(f"chaos run {run_id}: Kafka {instance.bootstrap}, FerretDB {instance.mongodb_uri} ({instance.backend} "
          f"backend), logs {logs}", flush=True)
    try:
        await ensure_topics(instance.bootstrap, names, partitions=3)
        mark = time.monotonic()
        await stack.start_all()
        durations["services start"] = time.monotonic() - mark
        reference = Reference()
        async with Api({s: stack.url(s) for s in SERVICES}, issuer) as api:
            traffic = Traffic(api, reference, rng, run_id)
            tenants = tenants_for(rng, options.tenants, options.people)
            poison = Poison(names, instance.bootstrap)
            chaos = Chaos(stack, instance, poison, rng)
            chaos.plan(options.kills, options.broker_restarts, options.db_restarts)
            mark = time.monotonic()
            chaos_done = asyncio.create_task(chaos.run(lambda: traffic.events / options.events, traffic.stopped))
            asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, traffic.stopped.set)
            if options.max_traffic_seconds:
                asyncio.get_running_loop().call_later(options.max_traffic_seconds, traffic.stopped.set)
            ticker = asyncio.create_task(progress_ticker(traffic, options.events, stack))
            await asyncio.gather(*(traffic.programme(t, options.campaigns, options.contents_per_campaign,
                                                     options.shares_per_person) for t in tenants))
            durations["programme"] = time.monotonic() - mark
            await traffic.engagement(tenants, options.events, options.concurrency)
            durations["programme + engagement"] = time.monotonic() - mark
            ticker.cancel()
            await chaos_done
            chaos.revive_crashed()
            await asyncio.gather(*(stack.ready(s) for s in SERVICES))
            mark = time.monotonic()
            state = await settle(stack, api, reference, tenants, poison, names, options.settle_timeout)
            durations["settle"] = time.monotonic() - mark
            kafka_events = sum((await end_offsets(instance.bootstrap, names)).values()) - len(poison.injected)
            durations["total"] = time.monotonic() - started
            report(options, state, traffic, chaos, stack, poison, kafka_events, durations, api)
            return 0 if succeeded(state, traffic, chaos) else 1
    finally:
        stack.stop_all()
        jwks.stop()
        if not options.keep_infra:
            instance.stop()


async def progress_ticker(traffic: Traffic, target: int, stack: Stack) -> None:
    started, last = time.monotonic(), 0
    while True:
        await asyncio.sleep(15)
        elapsed = time.monotonic() - started
        print(f"  [{elapsed:6.0f} s] {traffic.events}/{target} events acknowledged "
              f"({(traffic.events - last) / 15:.0f}/s now), kills {sum(stack.kills.values())}", flush=True)
        last = traffic.events


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="acknowledged events to produce")
    parser.add_argument("--kills", type=int, default=24, help="SIGKILLs of APIs and workers, spread over the run")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--broker-restarts", type=int, choices=(0, 1), default=1)
    parser.add_argument("--db-restarts", type=int, choices=(0, 1), default=1)
    parser.add_argument("--tenants", type=int, default=2)
    parser.add_argument("--people", type=int, default=100, help="employees per tenant")
    parser.add_argument("--campaigns", type=int, default=3, help="per tenant")
    parser.add_argument("--contents-per-campaign", type=int, default=2)
    parser.add_argument("--shares-per-person", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=24, help="requests in flight")
    parser.add_argument("--max-traffic-seconds", type=float, default=0,
                        help="stop the traffic after this long and check what was done (also: kill -USR1 <pid>)")
    parser.add_argument("--settle-timeout", type=float, default=300, help="seconds to wait for convergence")
    parser.add_argument("--local", default=str(REPO_ROOT / ".local-chaos"), help="the instance's ADVOCACY_LOCAL")
    parser.add_argument("--kafka-port", type=int, default=9392)
    parser.add_argument("--controller-port", type=int, default=9393)
    parser.add_argument("--ferretdb-port", type=int, default=27047)
    parser.add_argument("--backend", choices=("postgresql", "sqlite"), default="postgresql",
                        help="FerretDB's storage (see tests/chaos/README.md for what each sustains)")
    parser.add_argument("--postgres-port", type=int, default=5435, help="the private PostgreSQL cluster's port")
    parser.add_argument("--log-level", default="WARNING", help="of the service processes (INFO adds access logs)")
    parser.add_argument("--keep-infra", action="store_true", help="leave Kafka and FerretDB running at the end")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a terminated run still stops what it started
    sys.exit(asyncio.run(run(parse(argv))))


if __name__ == "__main__":
    main()
