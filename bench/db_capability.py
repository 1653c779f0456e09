"""What the database server itself can do, with bare PyMongo (no service code): the ceiling any
storage adapter of ours works under.

    uv run python bench/db_capability.py --uri mongodb://127.0.0.1:27017/ [--runs 3] [--docs 10000] ...

Every figure is the median over --runs runs, with the slowest and fastest run beside it. Everything
happens in one database named dbcap_<random>, dropped at the end. Measured:

* insert_many of small documents (docs/s);
* `$inc` upserts by `_id` on a few hot documents, one client, then --threads concurrent clients;
* `$set` by bare `_id` on a --small-document and on a --docs-document collection (does the
  collection's size change the cost of a single-document update?);
* find by bare `_id` on both collections, by a non-`_id` field on --docs documents (the cost of a
  scan), by `_id` plus other fields (is that pushed down like a bare `_id`?) and by `_id` `$in`
  a list of --in-ids (how a batch looks up what it has seen);
* one `update` command of --statements statements on documents with --wide-fields fields each;
* an unordered insert_many of --bulk small documents with deterministic `_id`s, --dup-ratio of them
  already present (claiming "seen" markers as inserts and letting duplicates fail).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from pymongo import MongoClient, UpdateOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError


@dataclass
class Figure:
    name: str
    unit: str
    rates: list[float]  # operations (or documents) per second, one per run
    per_op_ms: list[float]

    def row(self) -> str:
        rate, ms = statistics.median(self.rates), statistics.median(self.per_op_ms)
        return (f"| {self.name} | {rate:,.0f} {self.unit} | {min(self.rates):,.0f} … {max(self.rates):,.0f} "
                f"| {ms:.2f} |")


def timed(count: int, action: Callable[[], None]) -> tuple[float, float]:
    """(operations per second, milliseconds per operation) of `action`, which does `count` operations."""
    started = time.perf_counter()
    action()
    seconds = time.perf_counter() - started
    return count / seconds, seconds * 1000 / count


def small_doc(n: int) -> dict:
    return {"_id": f"d{n}", "tenant": "t1", "version": 1, "kind": f"k{n % 50}", "n": n, "label": f"label {n}"}


def fill(collection: Collection, count: int) -> None:
    collection.drop()
    for start in range(0, count, 1000):
        collection.insert_many([small_doc(n) for n in range(start, min(start + 1000, count))])


class Bench:
    def __init__(self, client: MongoClient, database: str, args: argparse.Namespace) -> None:
        self.db = client[database]
        self.args = args
        self.rng = random.Random(11)
        self.figures: list[Figure] = []

    def record(self, name: str, unit: str, run: Callable[[int], tuple[float, float]]) -> None:
        results = [run(n) for n in range(self.args.runs)]
        self.figures.append(Figure(name, unit, [r for r, _ in results], [ms for _, ms in results]))
        print(self.figures[-1].row(), flush=True)

    def insert_many(self) -> None:
        collection, count = self.db.inserts, self.args.docs

        def run(_: int) -> tuple[float, float]:
            collection.drop()
            collection.insert_one({"_id": "exists"})  # time the inserts, not the collection's creation
            documents = [small_doc(n) for n in range(count)]
            return timed(count, lambda: collection.insert_many(documents))
        self.record(f"insert_many {count:,} small docs", "docs/s", run)

    def upserts(self, threads: int) -> None:
        collection, count, keys = self.db.counters, self.args.upserts, self.args.hot_keys

        def work(ops: int, seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(ops):
                collection.update_one({"_id": f"c{rng.randrange(keys)}"}, {"$inc": {"n": 1}}, upsert=True)

        def run(n: int) -> tuple[float, float]:
            collection.drop()
            pool = [threading.Thread(target=work, args=(count // threads, n * 100 + t)) for t in range(threads)]

            def go() -> None:
                for thread in pool:
                    thread.start()
                for thread in pool:
                    thread.join()
            rate, ms = timed(count // threads * threads, go)
            total = sum(d["n"] for d in collection.find({}, {"n": 1}))
            assert total == count // threads * threads, f"lost updates: {total} of {count // threads * threads}"
            return rate, ms
        self.record(f"$inc upsert by _id, {keys} hot docs, {threads} client(s)", "ops/s", run)

    def updates_by_id(self, size: int) -> None:
        collection, ops = self.db[f"by_id_{size}"], self.args.ops
        fill(collection, size)

        def run(n: int) -> tuple[float, float]:
            ids = [f"d{self.rng.randrange(size)}" for _ in range(ops)]
            return timed(ops, lambda: [collection.update_one({"_id": i}, {"$set": {"run": n}}) for i in ids])
        self.record(f"update_one $set by bare _id, {size:,} docs", "ops/s", run)

    def finds_by_id(self, size: int) -> None:
        collection, finds = self.db[f"by_id_{size}"], self.args.id_finds  # filled by updates_by_id

        def run(_: int) -> tuple[float, float]:
            ids = [f"d{self.rng.randrange(size)}" for _ in range(finds)]
            return timed(finds, lambda: [collection.find_one({"_id": i}) for i in ids])
        self.record(f"find_one by bare _id, {size:,} docs", "ops/s", run)

    def finds(self) -> None:
        size, collection = self.args.docs, self.db[f"by_id_{self.args.docs}"]

        def scan(_: int) -> tuple[float, float]:
            values = [self.rng.randrange(size) for _ in range(self.args.finds)]
            return timed(len(values), lambda: [collection.find_one({"n": v}) for v in values])

        def by_id(_: int) -> tuple[float, float]:
            values = [self.rng.randrange(size) for _ in range(self.args.id_finds)]
            return timed(len(values), lambda: [collection.find_one({"_id": f"d{v}", "tenant": "t1", "version": 1})
                                               for v in values])
        def by_id_list(_: int) -> tuple[float, float]:
            batches = [[f"d{self.rng.randrange(size)}" for _ in range(self.args.in_ids)] for _ in range(self.args.finds)]
            return timed(len(batches), lambda: [list(collection.find({"_id": {"$in": ids}})) for ids in batches])
        self.record(f"find_one by non-_id field, {size:,} docs", "ops/s", scan)
        self.record(f"find by _id $in {self.args.in_ids} ids, {size:,} docs", "finds/s", by_id_list)
        self.record(f"find_one by _id + tenant + version, {size:,} docs", "ops/s", by_id)

    def wide_update_command(self) -> None:
        statements, fields = self.args.statements, self.args.wide_fields
        collection = self.db.wide
        collection.drop()
        collection.insert_many([{"_id": f"w{n}", **{f"f{k}": k for k in range(fields)}} for n in range(statements)])

        def run(n: int) -> tuple[float, float]:
            # one `update` command: PyMongo sends a bulk of UpdateOne as a single command
            requests = [UpdateOne({"_id": f"w{s}"}, {"$inc": {f"f{(s + n) % fields}": 1}}) for s in range(statements)]
            return timed(statements, lambda: collection.bulk_write(requests, ordered=True))
        self.record(f"update command of {statements} stmts on {fields:,}-field docs", "stmts/s", run)

    def claims_with_duplicates(self) -> None:
        bulk, duplicates = self.args.bulk, int(self.args.bulk * self.args.dup_ratio)
        collection = self.db.claims

        def run(n: int) -> tuple[float, float]:
            collection.drop()
            ids = [f"r{n}-{k}" for k in range(bulk)]
            collection.insert_many([{"_id": i} for i in self.rng.sample(ids, duplicates)])
            failed = []

            def insert() -> None:
                try:
                    collection.insert_many([{"_id": i, "at": n} for i in ids], ordered=False)
                except BulkWriteError as error:
                    failed.extend(error.details["writeErrors"])
            rate, ms = timed(bulk, insert)
            assert len(failed) == duplicates and collection.count_documents({}) == bulk, (len(failed), duplicates)
            return rate, ms
        self.record(f"unordered insert of {bulk:,} by _id, {duplicates} duplicates", "docs/s", run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uri", default="mongodb://127.0.0.1:27017/")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--docs", type=int, default=10_000, help="documents of the large collections")
    parser.add_argument("--small", type=int, default=500, help="documents of the small collection")
    parser.add_argument("--ops", type=int, default=150, help="update_one calls per run")
    parser.add_argument("--finds", type=int, default=20, help="finds by a non-_id field per run")
    parser.add_argument("--id-finds", type=int, default=50, help="finds by _id (alone, or with other fields) per run")
    parser.add_argument("--in-ids", type=int, default=50, help="ids of one find by {_id: {$in: [...]}}")
    parser.add_argument("--upserts", type=int, default=1_000, help="$inc upserts per run")
    parser.add_argument("--hot-keys", type=int, default=20, help="distinct documents the upserts hit")
    parser.add_argument("--threads", type=int, default=8, help="concurrent clients of the second upsert figure")
    parser.add_argument("--statements", type=int, default=50, help="statements of the one update command (<100!)")
    parser.add_argument("--wide-fields", type=int, default=1_000)
    parser.add_argument("--bulk", type=int, default=1_000)
    parser.add_argument("--dup-ratio", type=float, default=0.1)
    args = parser.parse_args()

    client = MongoClient(args.uri, maxPoolSize=max(16, args.threads * 2))
    database = f"dbcap_{uuid.uuid4().hex[:8]}"
    info = client.server_info()
    print(f"server {args.uri} reports version {info.get('version')}; database {database}; {args.runs} runs\n")
    print("| measurement | median | slowest … fastest run | ms per op (wall time / ops, median) |\n| --- | --- | --- | --- |")
    bench = Bench(client, database, args)
    started = time.monotonic()
    try:
        bench.insert_many()
        bench.upserts(1)
        bench.upserts(args.threads)
        bench.updates_by_id(args.small)
        bench.updates_by_id(args.docs)
        bench.finds_by_id(args.small)
        bench.finds_by_id(args.docs)
        bench.finds()
        bench.wide_update_command()
        bench.claims_with_duplicates()
    finally:
        client.drop_database(database)
        client.close()
    print(f"\n{time.monotonic() - started:.0f} s in all; load average {os.getloadavg()[1]:.1f} over the last 5 min "
          f"({os.cpu_count()} CPUs): other processes' load changes these figures a lot")


if __name__ == "__main__":
    main()
