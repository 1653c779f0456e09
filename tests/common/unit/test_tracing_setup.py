"""What `configure_tracing` instruments, in a fresh interpreter each (it configures a process once)."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

PROBE = """
from pymongo import monitoring
from advocacy_common.telemetry import configure_tracing, kafka_instrumented, pymongo_instrumented
configure_tracing("probe", export={export})
print(pymongo_instrumented(), kafka_instrumented(), len(monitoring._LISTENERS.command_listeners))
"""


def probe(export: bool) -> list[str]:
    done = subprocess.run([sys.executable, "-c", PROBE.format(export=export)], capture_output=True, text=True,
                          timeout=120, env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "PATH": ""})
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_without_export_pymongo_has_no_command_listener_and_kafka_still_carries_the_trace():
    # No listener: PyMongo builds no event per command and no span nobody would see.
    assert probe(export=False) == ["False", "True", "0"]


def test_with_export_every_pymongo_command_is_a_client_span():
    assert probe(export=True) == ["True", "True", "1"]
