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

if PREFIX:
    from pymongo import monitoring

    counts: Counter[str] = Counter()
    micros: Counter[str] = Counter()
    targets: dict[int, str] = {}  # request id -> "command collection", until the answer

    class _Counting(monitoring.CommandListener):
        def started(self, event: monitoring.CommandStartedEvent) -> None:
            counts[event.command_name] += 1
            collection = event.command.get(event.command_name)
            targets[event.request_id] = f"{event.command_name} {collection if isinstance(collection, str) else ''}"

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
