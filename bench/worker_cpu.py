"""CPU of the metrics worker's own code per event, without Kafka or a database server.

The pipeline's workload (`pipeline.workload`: the kill test's mix) as raw records, decoded and
projected by the worker's dispatcher and batch handler (`project_batch`, folds included) over the
unit tests' in-memory store. What it prints moves little with the machine's load, unlike the
pipeline's rates: use it to compare two versions of the decoding and aggregation code, then
`pipeline.py` for what the whole worker does against Kafka and the database.

    uv run python bench/worker_cpu.py [--events 100000] [--batch 5000] [--runs 3] [--profile out.txt]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import pstats
import random
import statistics
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "metrics"))
sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "support"))

import pipeline  # noqa: E402  (the workload)
from metrics_testkit import InMemoryStore  # noqa: E402

from advocacy_common.consuming import Dispatcher, RawRecord  # noqa: E402
from advocacy_common.topics import TopicNames  # noqa: E402
from advocacy_common.worker import tune_garbage_collection  # noqa: E402
from metrics.handlers import FoldSchedule, handlers_for, project_batch  # noqa: E402


class NoPublisher:
    async def publish_record(self, *args, **kwargs) -> None:  # a dead letter would be a bug here
        raise AssertionError("the workload has no poison records")


def records(total: int, seed: int) -> list[RawRecord]:
    names = TopicNames("")
    offsets: dict[tuple[str, int], int] = {}
    out = []
    for topic, record in pipeline.workload(total, random.Random(seed)):
        partition = zlib.crc32(record.key or b"") % 6
        offset = offsets[(topic, partition)] = offsets.get((topic, partition), -1) + 1
        out.append(RawRecord(names.physical(topic), partition, offset, record.key, record.value, record.headers))
    return out


async def one_run(batch: list[list[RawRecord]]) -> float:
    store = InMemoryStore()
    dispatcher = Dispatcher(TopicNames(""), NoPublisher(), handlers_for(store))
    handler = functools.partial(project_batch, store, schedule=FoldSchedule(0.0))
    started = time.process_time()
    for records_of_batch in batch:
        await dispatcher.dispatch_batch(records_of_batch, handler)
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--gc-young-threshold", type=int, default=50_000,
                        help="as the worker's ADVOCACY_WORKER_GC_YOUNG_THRESHOLD (0: Python's default)")
    parser.add_argument("--profile", help="write cProfile's top functions (by own time) to this file")
    args = parser.parse_args()
    raw = records(args.events, args.seed)
    tune_garbage_collection(args.gc_young_threshold)
    batches = [raw[start:start + args.batch] for start in range(0, len(raw), args.batch)]
    rates = [args.events / asyncio.run(one_run(batches)) for _ in range(args.runs)]
    print(f"{args.events:,} events in batches of {args.batch:,}: {statistics.median(rates):,.0f} events per CPU-second "
          f"(min {min(rates):,.0f}, max {max(rates):,.0f}, {args.runs} runs)")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(asyncio.run, one_run(batches))
        with open(args.profile, "w") as out:
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(30)
        print(f"profile: {args.profile}")


if __name__ == "__main__":
    main()
