"""Counts the MongoDB commands of a process the benchmarks start, without changing its code.

`pipeline.py` puts this directory on the worker's PYTHONPATH and names a file prefix in
BENCH_COMMAND_COUNTS: Python imports `sitecustomize` at start-up, which registers a PyMongo
command listener (every client of the process reports to it) and writes the counts per command
name to `<prefix>.<pid>.json` every half second and at exit. One command is one round trip.
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

if PREFIX:
    from pymongo import monitoring

    counts: Counter[str] = Counter()

    class _Counting(monitoring.CommandListener):
        def started(self, event: monitoring.CommandStartedEvent) -> None:
            name = event.command_name
            if BY_COLLECTION:
                target = event.command.get(name)
                if isinstance(target, str):
                    stem, _, suffix = target.rpartition("_")
                    bucket = stem and len(suffix) == 2 and all(c in "0123456789abcdef" for c in suffix)
                    name = f"{name} {stem + '_xx' if bucket else target}"
            counts[name] += 1

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            pass

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            pass

    monitoring.register(_Counting())

    def _write() -> None:
        path = f"{PREFIX}.{os.getpid()}.json"
        with open(path + ".tmp", "w") as out:
            json.dump(dict(counts), out)
        os.replace(path + ".tmp", path)

    def _every_half_second() -> None:
        while not stop.wait(0.5):
            _write()

    stop = threading.Event()
    threading.Thread(target=_every_half_second, daemon=True, name="bench-command-counts").start()
    atexit.register(_write)
