"""Counts the MongoDB commands of a process the benchmarks start, without changing its code.

`pipeline.py` puts this directory on the worker's PYTHONPATH and names a file prefix in
BENCH_COMMAND_COUNTS: Python imports `sitecustomize` at start-up, which registers a PyMongo
command listener (every client of the process reports to it) and writes the counts per command
name to `<prefix>.<pid>.json` every half second and at exit. One command is one round trip.
Beside them, `<prefix>.<pid>.micros.json` holds the time the server took to answer, in microseconds,
per command and collection (`insert claims_g1`): where the database's time goes.
"""

import atexit
import json
import os
import threading
from collections import Counter

PREFIX = os.environ.get("BENCH_COMMAND_COUNTS")
# With BENCH_COMMAND_COUNTS_BY_COLLECTION set, counted per "command collection" (bucket collections
# `name_00` ... `name_ff` as `name_xx`): which collection a process's commands go to.
BY_COLLECTION = bool(os.environ.get("BENCH_COMMAND_COUNTS_BY_COLLECTION"))


def _target(command_name: str, collection: object) -> str:
    """`command collection`, bucket collections `name_00` ... `name_ff` as `name_xx`."""
    if not isinstance(collection, str):
        return command_name
    stem, _, suffix = collection.rpartition("_")
    bucket = stem and len(suffix) == 2 and all(c in "0123456789abcdef" for c in suffix)
    return f"{command_name} {stem + '_xx' if bucket else collection}"


if PREFIX:
    from pymongo import monitoring

    counts: Counter[str] = Counter()
    micros: Counter[str] = Counter()
    targets: dict[int, str] = {}  # request id -> "command collection", until the answer

    class _Counting(monitoring.CommandListener):
        def started(self, event: monitoring.CommandStartedEvent) -> None:
            target = _target(event.command_name, event.command.get(event.command_name))
            counts[target if BY_COLLECTION else event.command_name] += 1
            targets[event.request_id] = target

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            micros[targets.pop(event.request_id, event.command_name)] += event.duration_micros

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            micros[targets.pop(event.request_id, event.command_name)] += event.duration_micros

    monitoring.register(_Counting())

    def _write() -> None:
        path = f"{PREFIX}.{os.getpid()}.json"
        with open(path + ".tmp", "w") as out:
            json.dump(dict(counts), out)
        os.replace(path + ".tmp", path)
        with open(path + ".micros.tmp", "w") as out:
            json.dump(dict(micros), out)
        os.replace(path + ".micros.tmp", f"{PREFIX}.{os.getpid()}.micros.json")

    def _every_half_second() -> None:
        while not stop.wait(0.5):
            _write()

    stop = threading.Event()
    threading.Thread(target=_every_half_second, daemon=True, name="bench-command-counts").start()
    atexit.register(_write)
