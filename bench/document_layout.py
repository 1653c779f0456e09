"""What a document's layout costs the database: the metrics worker's slices and claims, field by field
(the earlier layout) against packed in a few values (the current one, `metrics.store`).

    uv run python bench/document_layout.py --uri mongodb://127.0.0.1:27017/ --runs 3 \\
        --db-pid $(pgrep -f ferretdb-local) --db-pid $(pgrep -u postgres -f 'bin/postgres -D')

A slice is what one batch adds for one partition: --rows counter rows (tenant, day, dimension, value and
a few parts each, like the pipeline's ~170 for ~1,000 events) and --activity activity rows. Per layout,
--slices slices go through what the worker and its folds do with them: one insert each, one read of
them all, one `delete_many` by `_id` `$in`; and --claims claims through one unordered insert. The
figure is the database processes' CPU (--db-pid trees, from /proc: FerretDB and PostgreSQL) per 1,000
events, with --events-per-slice events per slice and one claim per event; the wall time beside it. It
counts anyone's work on those processes: run it on a quiet machine. Everything happens in a database
named layout_<random>, dropped at the end.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import uuid
from collections.abc import Callable

from pymongo import MongoClient

from metrics.aggregation import CounterKey, Position, Slice
from metrics.models import ActivityDay, Dimension
from metrics.store import _claimed_at, _slice_document

from http_load import tree_cpu_seconds

PARTS = ["shares", "personalized_shares", "potential_reach", "impressions", "reactions", "comments", "clicks"]


def a_slice(rng: random.Random, number: int, rows: int, activity: int, events: int) -> Slice:
    dimensions = list(Dimension)
    counters = {CounterKey("bench", f"2026-03-{1 + n % 28:02d}", dimensions[n % len(dimensions)], f"v{n}"):
                {part: rng.randint(1, 10_000) for part in rng.sample(PARTS, 3)} for n in range(rows)}
    days = tuple(ActivityDay("bench", f"a{n}", "2026-03-02", frozenset({f"camp{n % 4}"}), frozenset({f"c{n % 16}"}),
                             frozenset({"linkedin"})) for n in range(activity))
    return Slice(f"advocacy.engagement-{number % 6}", number * events, number * events + events - 1, counters, days)


def field_by_field(piece: Slice) -> dict:
    """A slice as releases before the packed layout stored it: rows of small subdocuments."""
    return {"_id": f"{piece.partition}|{piece.first}", "p": piece.partition, "first": piece.first, "last": piece.last,
            "counters": [{"t": key.tenant, "d": key.day, "k": key.dimension.value, "v": key.value, "c": dict(parts)}
                         for key, parts in piece.counters.items()],
            "activity": [{"t": row.tenant, "a": row.ambassador_id, "d": row.day, "campaigns": sorted(row.campaigns),
                          "contents": sorted(row.contents), "networks": sorted(row.networks)}
                         for row in piece.activity]}


def a_claim(layout: str, number: int) -> dict:
    position = Position(f"advocacy.engagement-{number % 6}", number)
    if layout == "field by field":
        return {"_id": f"bench|e{number}", "tenant_id": "bench", "p": position.partition, "o": position.offset}
    return {"_id": f"bench|e{number}", "at": _claimed_at(position)}


def measured(db_pids: list[int], action: Callable[[], object]) -> tuple[float, float]:
    """(database CPU seconds, wall seconds) of one action."""
    cpu, wall = tree_cpu_seconds(db_pids), time.perf_counter()
    action()
    return tree_cpu_seconds(db_pids) - cpu, time.perf_counter() - wall


def main(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    slices = [a_slice(rng, n, args.rows, args.activity, args.events_per_slice) for n in range(args.slices)]
    layouts = {"field by field": [field_by_field(piece) for piece in slices],
               "packed": [_slice_document(piece) for piece in slices]}
    client = MongoClient(args.uri)
    database = client[f"layout_{uuid.uuid4().hex[:8]}"]
    figures: dict[tuple[str, str], list[tuple[float, float]]] = {}
    events = args.slices * args.events_per_slice
    try:
        for run in range(args.runs):
            for layout, documents in layouts.items():
                database.drop_collection("slices")
                database.drop_collection("claims")
                database.create_collection("slices")
                database["claims"].insert_one({"_id": "created"})
                steps = {
                    "slice: insert one by one": lambda: [database["slices"].insert_one(dict(d)) for d in documents],
                    "slice: read them all": lambda: list(database["slices"].find()),
                    "slice: delete_many by _id $in": lambda: database["slices"].delete_many(
                        {"_id": {"$in": [d["_id"] for d in documents]}}),
                }
                for step, action in steps.items():
                    cpu, wall = measured(args.db_pid, action)
                    figures.setdefault((layout, step), []).append((cpu * 1e6 / events, wall * 1e6 / events))
                claims = [a_claim(layout, run * args.claims + n) for n in range(args.claims)]
                cpu, wall = measured(args.db_pid, lambda: database["claims"].insert_many(claims, ordered=False))
                figures.setdefault((layout, "claims: unordered insert_many"), []).append(
                    (cpu * 1e6 / args.claims, wall * 1e6 / args.claims))
            print(f"run {run + 1} done", flush=True)
    finally:
        client.drop_database(database.name)
        client.close()
    size = {layout: sum(len(str(d)) for d in documents) // len(documents) for layout, documents in layouts.items()}
    print(f"\n{args.slices} slices of {args.rows} counter rows and {args.activity} activity rows "
          f"({args.events_per_slice} events each), {args.claims} claims; median (min … max) over {args.runs} run(s); "
          f"database processes {args.db_pid}; ms per 1,000 events (one claim per event)\n")
    print("| step | layout | database CPU | wall |\n| --- | --- | --- | --- |")
    for (layout, step), values in sorted(figures.items(), key=lambda item: (item[0][1], item[0][0])):
        cpu = [v[0] for v in values]
        wall = [v[1] for v in values]
        print(f"| {step} | {layout} | {statistics.median(cpu):.1f} ({min(cpu):.1f} … {max(cpu):.1f}) "
              f"| {statistics.median(wall):.1f} ({min(wall):.1f} … {max(wall):.1f}) |")
    print(f"\nrepr size of a slice document: {size}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uri", default="mongodb://127.0.0.1:27017/")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--slices", type=int, default=40)
    parser.add_argument("--rows", type=int, default=170, help="counter rows per slice")
    parser.add_argument("--activity", type=int, default=0, help="activity rows per slice")
    parser.add_argument("--events-per-slice", type=int, default=966)
    parser.add_argument("--claims", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--db-pid", type=int, action="append", default=[], required=True,
                        help="a database process whose tree's CPU is counted (repeatable: FerretDB, PostgreSQL)")
    main(parser.parse_args())
