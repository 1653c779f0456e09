"""The garbage collector of long-running processes (api and worker).

Everything alive once a process has started (modules, FastAPI's and pydantic's models, clients,
settings) lives as long as the process. Left in the collector's generations, it is walked by every full
collection: 75-110 ms with the event loop stopped in an api process (the p99 of bench/http_floor.py at
50 connections), and a third of the metrics worker's CPU together with its young-collection rate
(advocacy_common.worker.tune_garbage_collection). Imported by uvicorn's supervisor too: gc only.
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> None:
    """Move everything alive now out of the collector's sight, once per process (tests start many apps
    and workers in one process: freezing again would keep each one's garbage for good)."""
    if not gc.get_freeze_count():
        gc.collect()
        gc.freeze()
