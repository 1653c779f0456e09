"""What the API benchmarks share: an api process run like the service runs it (its own uvicorn process),
wrk as the load tool, peak RSS from /proc, py-spy profiles, and the median / spread of repeated runs.

Not a benchmark itself: `feed_bench.py` and `metrics_api_bench.py` import it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class ApiProcess:
    """`python -c 'from <module> import run_api; run_api()'`: the service's own entry point (uvicorn)."""

    def __init__(self, module: str, env: dict[str, str], port: int, log: Path):
        self.module, self.env, self.port, self.log = module, env, port, log
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> None:
        handle = self.log.open("w")
        self.process = subprocess.Popen([sys.executable, "-c", f"from {self.module} import run_api; run_api()"],
                                        env={**os.environ, **self.env}, stdout=handle, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"api exited with {self.process.returncode}; see {self.log}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"api not ready after {timeout} s; see {self.log}")

    def peak_rss_mb(self) -> float:
        """VmHWM: the process's peak resident set since it started."""
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM")

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far."""
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class WrkResult:
    p50_ms: float
    p99_ms: float
    requests_per_s: float
    requests: int
    errors: int  # non-2xx answers plus socket errors
    cpu_ms_per_request: float = 0.0  # of the api process: what a request costs it, whatever the machine's load


def wrk_script(paths_and_tokens: list[tuple[str, str]], directory: Path) -> Path:
    """A wrk Lua script cycling over (path, bearer token) pairs, each thread from its own offset."""
    script = directory / "requests.lua"
    entries = ",\n".join(f"{{{json.dumps(p)}, {json.dumps(t)}}}" for p, t in paths_and_tokens)
    script.write_text(f"""
local entries = {{
{entries}
}}
local i = 0
function init(args)
  math.randomseed(os.time() + tonumber(tostring({{}}):sub(8), 16))
  i = math.random(#entries)
end
function request()
  i = i % #entries + 1
  local e = entries[i]
  return wrk.format("GET", e[1], {{["Authorization"] = "Bearer " .. e[2]}})
end
""")
    return script


def run_wrk(url: str, script: Path, connections: int, seconds: float) -> WrkResult:
    """wrk is closed-loop: each of `connections` sends its next request as soon as the last is answered."""
    threads = max(1, min(2, connections))
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s", "--latency",
                          "--timeout", "30s", "-s", str(script), url], capture_output=True, text=True, check=True).stdout

    requests = int(re.search(r"(\d+) requests in", out).group(1))

    def millis(label: str) -> float:
        if requests == 0:
            return float("inf")  # not one answer within the run
        found = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
        if not found:
            raise RuntimeError(f"no {label}% in wrk output:\n{out}")
        return float(found.group(1)) * UNITS[found.group(2)]

    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = int(non_2xx.group(1)) if non_2xx else 0
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return WrkResult(millis("50"), millis("99"), rate, requests, errors)


def spread(values: list[float], digits: int = 1) -> str:
    """median (min … max)"""
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f} … {max(values):.{digits}f})"


def measure(name: str, url: str, script: Path, clients: list[int], runs: int, seconds: float,
            api: ApiProcess) -> dict[int, list[WrkResult]]:
    """`runs` wrk runs per client count, printed as they finish, then one Markdown row per count."""
    results: dict[int, list[WrkResult]] = {c: [] for c in clients}
    for run in range(runs):
        for count in clients:
            cpu_before = api.cpu_seconds()
            result = run_wrk(url, script, count, seconds)
            result.cpu_ms_per_request = 1000 * (api.cpu_seconds() - cpu_before) / max(1, result.requests)
            results[count].append(result)
            print(f"  {name} run {run + 1} c={count}: p50 {result.p50_ms:.1f} ms p99 {result.p99_ms:.1f} ms "
                  f"{result.requests_per_s:.0f} req/s ({result.requests} requests, {result.errors} errors) "
                  f"api CPU {result.cpu_ms_per_request:.1f} ms/request "
                  f"load {load_average()} rss {api.peak_rss_mb():.0f} MB", flush=True)
            if result.errors:
                raise RuntimeError(f"{result.errors} failed requests: see the api log {api.log}")
    print(f"\n| {name} | clients | p50 ms | p99 ms | requests/s | api CPU ms/request |\n"
          "| --- | --- | --- | --- | --- | --- |")
    for count, rows in results.items():
        print(f"| | {count} | {spread([r.p50_ms for r in rows])} | {spread([r.p99_ms for r in rows])} "
              f"| {spread([r.requests_per_s for r in rows], 0)} | {spread([r.cpu_ms_per_request for r in rows])} |")
    return results


def py_spy_command() -> list[str] | None:
    found = shutil.which("py-spy")
    if found:
        return [found]
    uv = shutil.which("uv")
    return [uv, "tool", "run", "py-spy"] if uv else None


def profile(api: ApiProcess, url: str, script: Path, connections: int, seconds: float, top: int = 15) -> str:
    """py-spy samples the api process while wrk loads it; the frames where most samples were, by own time
    and by total time (the whole stack counts once per sample)."""
    command = py_spy_command()
    if command is None:
        return "py-spy not available"
    assert api.process is not None
    with tempfile.TemporaryDirectory() as directory:
        raw = Path(directory) / "stacks.txt"
        spy = subprocess.Popen([*command, "record", "--pid", str(api.process.pid), "--duration", f"{seconds + 2:.0f}",
                                "--rate", "200", "--function", "--format", "raw", "--output", str(raw), "--nonblocking"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(2)
        run_wrk(url, script, connections, seconds)
        _, err = spy.communicate(timeout=120)
        if not raw.exists():
            return f"py-spy failed: {err.decode()[-500:]}"
        own, total, samples = Counter(), Counter(), 0
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames = [short(f) for f in stack.split(";") if f]
            if not frames:
                continue
            n = int(count)
            samples += n
            own[frames[-1]] += n
            for frame in set(frames):
                total[frame] += n
    lines = [f"{samples} samples at 200 Hz, {connections} clients"]
    lines += ["own time:"] + [f"  {100 * n / samples:5.1f} %  {f}" for f, n in own.most_common(top)]
    lines += ["total time (frame on the stack):"] + [f"  {100 * n / samples:5.1f} %  {f}"
                                                     for f, n in total.most_common(top + 10)]
    return "\n".join(lines)


def short(frame: str) -> str:
    """`function (path/to/file.py:12)` -> `function (file.py:12)`, package prefix kept for our code."""
    match = re.match(r"(.*) \((.*):(\d+)\)$", frame)
    if not match:
        return frame
    function, path, line = match.groups()
    parts = Path(path).parts
    where = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{function} ({where}:{line})"


# --- what the api benchmarks share around the load itself ------------------------------------------

def start_dev_issuer():
    """A local JWKS server and a dev issuer registered on it (stop the server when done)."""
    from advocacy_common.dev_issuer import DevIssuer, JwksServer

    server = JwksServer([]).start()
    issuer = DevIssuer.generate(issuer=server.url)
    server.issuers.append(issuer)
    return server, issuer


def service_environment(prefix: str, database: str, topic_prefix: str, server, issuer) -> dict[str, str]:
    """The environment of a service's api process (`prefix`: DISTRIBUTION, METRICS...) against the local
    infrastructure named by KAFKA_BOOTSTRAP_SERVERS / MONGODB_URI and the dev issuer."""
    return {f"{prefix}_KAFKA_BOOTSTRAP_SERVERS": os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            f"{prefix}_MONGODB_URI": os.environ.get("MONGODB_URI", "mongodb://127.0.0.1:27017/"),
            f"{prefix}_DATABASE": database, f"{prefix}_TOPIC_PREFIX": topic_prefix,
            f"{prefix}_AUTH_ISSUER": issuer.issuer, f"{prefix}_AUTH_AUDIENCE": issuer.audience,
            f"{prefix}_AUTH_JWKS_URL": f"{server.url}/.well-known/jwks.json", f"{prefix}_LOG_LEVEL": "WARNING"}


async def drop_database(uri: str, name: str) -> None:
    from pymongo import AsyncMongoClient

    client = AsyncMongoClient(uri)
    try:
        await client.drop_database(name)
    finally:
        await client.close()
