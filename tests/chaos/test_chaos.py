"""The chaos run, small: the same driver as `make chaos` with CI-sized parameters on its own Kafka and FerretDB.

Ports 9492/9493/27057 (never CI's main instance on 9092/9093/27017); the instance is stopped at the end even
when the run fails or times out.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .processes import REPO_ROOT, Instance, kill_leftovers

pytestmark = [pytest.mark.slow, pytest.mark.integration]

INSTANCE = Instance(REPO_ROOT / ".local-chaos-ci", kafka_port=9492, controller_port=9493, ferretdb_port=27057)
SMALL = ["--events", "20000", "--kills", "6", "--broker-restarts", "1", "--db-restarts", "0", "--people", "20",
         "--seed", os.environ.get("CHAOS_SEED", "7"), "--settle-timeout", "120", "--local", str(INSTANCE.local),
         "--kafka-port", str(INSTANCE.kafka_port), "--controller-port", str(INSTANCE.controller_port),
         "--ferretdb-port", str(INSTANCE.ferretdb_port), "--backend", INSTANCE.backend]


@pytest.mark.timeout(400)
def test_small_chaos_run_keeps_every_count_exact():
    try:
        run = subprocess.run([sys.executable, "-m", "tests.chaos.driver", *SMALL], cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=360)
    finally:
        kill_leftovers(INSTANCE.local)
        INSTANCE.stop()  # the driver stops it too; this covers a driver killed by the timeout
    summary = run.stdout[run.stdout.find("===== chaos run summary"):]
    print(run.stdout[-6000:], run.stderr[-3000:])
    assert run.returncode == 0, summary or run.stderr[-3000:]
    assert "RESULT: OK" in summary and "KPI mismatches: 0" in summary and "DLQ mismatches: 0" in summary
