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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
COMMAND_COUNTING = Path(__file__).parent / "command_counting"  # a sitecustomize counting MongoDB commands


def counting_commands(env: dict[str, str], prefix: str) -> dict[str, str]:
    """`env` for a process whose MongoDB commands `command_counting/` counts into `<prefix>.<pid>.json`."""
    return {**env, "BENCH_COMMAND_COUNTS": prefix,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(COMMAND_COUNTING),
                                                        env.get("PYTHONPATH", os.environ.get("PYTHONPATH"))]))}


def commands_so_far(prefix: str) -> Counter[str]:
    """The commands counted so far by every process counting into `prefix` (written every half second)."""
    counts: Counter[str] = Counter()
    for path in Path(prefix).parent.glob(f"{Path(prefix).name}.*.json"):
        if path.name.endswith(".micros.json"):
            continue  # the answers' times beside the counts (command_counting/sitecustomize.py)
        try:
            counts.update(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # being replaced
    return counts


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_tree(root: int) -> list[int]:
    """`root` and all its live descendants."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError):
            continue  # exited meanwhile
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += [child for child, parent in parents.items() if parent == pid]
    return tree


def tree_cpu_seconds(roots: list[int]) -> float:
    """CPU seconds (user + system, with reaped children's) of the processes `roots` and all their descendants:
    an api and its uvicorn workers, a FerretDB and its PostgreSQL postmaster with the backends it forks."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in {pid for root in roots for pid in process_tree(root)}:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        total += sum(int(n) for n in fields[11:15]) / ticks  # utime stime cutime cstime
    return total


def peak_rss_mb(pid: int) -> float:
    """The process's high-water mark of resident memory (VmHWM), in MB; 0 once it has exited."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def workers_settled(root: int, workers: int, timeout: float = 300) -> bool:
    """True once `root` has at least `workers` descendants and the whole tree used under 0.1 core over 1 s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = tree_cpu_seconds([root])
        time.sleep(1.0)
        if len(process_tree(root)) > workers and tree_cpu_seconds([root]) - before < 0.1:
            return True
    return False


def add_api_processes_argument(parser) -> None:
    parser.add_argument("--api-processes", type=int, default=1, metavar="N",
                        help="uvicorn worker processes of the api (<SERVICE>_HTTP_WORKERS); CPU and RSS summed")


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class ApiProcess:
    """`python -c 'from <module> import run_api; run_api()'`: the service's own entry point (uvicorn), with
    `processes` worker processes (`<PREFIX>_HTTP_WORKERS`, prefix from the module's package unless given).

    With several, uvicorn's supervisor is the process started here and the workers are its children: CPU
    is summed over the whole tree, peak RSS summed over its processes (each one's high-water mark: an upper
    bound of the tree's peak, the workers share no memory since they are spawned, not forked)."""

    def __init__(self, module: str, env: dict[str, str], port: int, log: Path, processes: int = 1,
                 prefix: str | None = None):
        prefix = prefix or module.split(".")[0].upper()
        self.module, self.port, self.log, self.processes = module, port, log, processes
        self.env = {**env, f"{prefix}_HTTP_WORKERS": str(processes)}
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
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200 and self._all_workers_up():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"api not ready after {timeout} s; see {self.log}")

    def _all_workers_up(self) -> bool:
        """One answer proves one worker; the others may still be importing: wait until they are all there
        and the tree is idle, so their start-up is not counted as the first run's CPU."""
        assert self.process is not None
        return self.processes == 1 or workers_settled(self.process.pid, self.processes)

    def pids(self) -> list[int]:
        assert self.process is not None
        return process_tree(self.process.pid)

    def peak_rss_mb(self) -> float:
        """VmHWM (peak resident set since start), summed over the process and its workers."""
        return sum(peak_rss_mb(pid) for pid in self.pids())

    def largest_rss_mb(self) -> float:
        return max(peak_rss_mb(pid) for pid in self.pids())

    def cpu_seconds(self) -> float:
        """User + system CPU time the process and its workers have used so far."""
        assert self.process is not None
        return tree_cpu_seconds([self.process.pid])

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
    db_cpu_ms_per_request: float | None = None  # of the database processes given to `measure`, if any


def wrk_script(paths_and_tokens: list[tuple[str, str]], directory: Path) -> Path:
    """A wrk Lua script cycling over (path, bearer token) pairs, each thread from its own offset; an empty
    token sends no Authorization header."""
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
  if e[2] == "" then return wrk.format("GET", e[1]) end
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
            api: ApiProcess, database_cpu: Callable[[], float] | None = None) -> dict[int, list[WrkResult]]:
    """`runs` wrk runs per client count, printed as they finish, then one Markdown row per count.
    `database_cpu`: CPU seconds so far of the database processes (FerretDB, PostgreSQL), read around each run."""
    results: dict[int, list[WrkResult]] = {c: [] for c in clients}
    for run in range(runs):
        for count in clients:
            cpu_before = api.cpu_seconds()
            db_before = database_cpu() if database_cpu else 0.0
            result = run_wrk(url, script, count, seconds)
            result.cpu_ms_per_request = 1000 * (api.cpu_seconds() - cpu_before) / max(1, result.requests)
            if database_cpu:
                result.db_cpu_ms_per_request = 1000 * (database_cpu() - db_before) / max(1, result.requests)
            results[count].append(result)
            db = f"database CPU {result.db_cpu_ms_per_request:.2f} ms/request " if database_cpu else ""
            print(f"  {name} run {run + 1} c={count}: p50 {result.p50_ms:.1f} ms p99 {result.p99_ms:.1f} ms "
                  f"{result.requests_per_s:.0f} req/s ({result.requests} requests, {result.errors} errors) "
                  f"api CPU {result.cpu_ms_per_request:.2f} ms/request {db}"
                  f"load {load_average()} rss {api.peak_rss_mb():.0f} MB", flush=True)
            if result.errors:
                raise RuntimeError(f"{result.errors} failed requests: see the api log {api.log}")
    print(f"\n| {name} | clients | p50 ms | p99 ms | requests/s | api CPU ms/request |\n"
          "| --- | --- | --- | --- | --- | --- |")
    for count, rows in results.items():
        print(f"| | {count} | {spread([r.p50_ms for r in rows])} | {spread([r.p99_ms for r in rows])} "
              f"| {spread([r.requests_per_s for r in rows], 0)} | {spread([r.cpu_ms_per_request for r in rows], 2)} |")
    return results


def py_spy_command() -> list[str] | None:
    found = shutil.which("py-spy")
    if found:
        return [found]
    uv = shutil.which("uv")
    return [uv, "tool", "run", "py-spy"] if uv else None


def profile(api: ApiProcess, url: str, script: Path, connections: int, seconds: float, top: int = 15,
            keep: Path | None = None) -> str:
    """py-spy samples the api process while wrk loads it; the frames where most samples were, by own time
    and by total time (the whole stack counts once per sample). `keep`: where to copy the raw stacks."""
    command = py_spy_command()
    if command is None:
        return "py-spy not available"
    assert api.process is not None
    with tempfile.TemporaryDirectory() as directory:
        raw = Path(directory) / "stacks.txt"
        spy = subprocess.Popen([*command, "record", "--pid", str(api.process.pid), "--duration", f"{seconds + 2:.0f}",
                                "--rate", "200", "--function", "--format", "raw", "--output", str(raw), "--nonblocking",
                                *(["--subprocesses"] if api.processes > 1 else [])],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(2)
        run_wrk(url, script, connections, seconds)
        _, err = spy.communicate(timeout=120)
        if not raw.exists():
            return f"py-spy failed: {err.decode()[-500:]}"
        if keep is not None:
            shutil.copy(raw, keep)
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
