"""The chaos run's own Kafka and FerretDB (infra/infra.sh with another ADVOCACY_LOCAL and other ports) and the
eight service processes (api + worker of each service), which it kills and restarts."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA = REPO_ROOT / "infra" / "infra.sh"
SERVICES = ("content", "ambassador", "distribution", "metrics")
SHARED_PORTS = {9092, 9093, 27017}  # the instance everyone else uses: never ours


@dataclass(frozen=True)
class Instance:
    """One Kafka + FerretDB pair run by infra/infra.sh from its own directory."""

    local: Path
    kafka_port: int
    controller_port: int
    ferretdb_port: int
    backend: str = "sqlite"  # FerretDB's storage: sqlite, or postgresql (a private cluster on postgres_port)
    postgres_port: int = 5435

    def __post_init__(self) -> None:
        clash = SHARED_PORTS & {self.kafka_port, self.controller_port, self.ferretdb_port}
        if clash:
            raise ValueError(f"ports {sorted(clash)} belong to the shared instance; pick others")

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def mongodb_uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.ferretdb_port}/"

    def env(self) -> dict[str, str]:
        return {**os.environ, "ADVOCACY_LOCAL": str(self.local), "KAFKA_PORT": str(self.kafka_port),
                "KAFKA_CONTROLLER_PORT": str(self.controller_port), "FERRETDB_PORT": str(self.ferretdb_port),
                "FERRETDB_BACKEND": self.backend, "POSTGRES_PORT": str(self.postgres_port)}

    def infra(self, *args: str) -> None:
        subprocess.run(["bash", str(INFRA), *args], env=self.env(), check=True, stdout=subprocess.DEVNULL)

    async def ainfra(self, *args: str) -> None:
        process = await asyncio.create_subprocess_exec("bash", str(INFRA), *args, env=self.env(),
                                                       stdout=asyncio.subprocess.DEVNULL)
        if await process.wait() != 0:
            raise RuntimeError(f"infra.sh {' '.join(args)} failed")

    def fresh(self) -> None:
        """Start from empty data: every run's offsets, DLQs and databases are its own."""
        self.local.mkdir(parents=True, exist_ok=True)
        self.infra("reset")
        self.infra("up")

    def stop(self) -> None:
        self.infra("down")

    async def restart(self, component: str) -> float:
        """Stop the broker (`kafka`) or the database (`ferretdb`, and PostgreSQL under it) and start it again;
        seconds down. SIGTERM for Kafka and FerretDB, SIGINT (fast shutdown: it does not wait for FerretDB's
        connections to close) for PostgreSQL."""
        stops = [(int((self.local / component / f"{component}.pid").read_text().strip()), signal.SIGTERM)]
        if component == "ferretdb" and self.backend == "postgresql":
            postmaster = self.local / "postgresql" / "data" / "postmaster.pid"
            stops.append((int(postmaster.read_text().split()[0]), signal.SIGINT))
        started = time.monotonic()
        for pid, signum in stops:
            os.kill(pid, signum)
        for pid, _ in stops:
            while _alive(pid):
                if time.monotonic() - started > 60:
                    os.kill(pid, signal.SIGKILL)
                await asyncio.sleep(0.2)
        await self.ainfra("up")
        return time.monotonic() - started


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie of ours counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Stack:
    """The services as real processes, started from the workspace's console scripts."""

    instance: Instance
    run_id: str
    auth: dict[str, str]
    logs: Path
    ports: dict[str, int] = field(default_factory=lambda: {s: free_port() for s in SERVICES})
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    kills: Counter = field(default_factory=Counter)
    killing: set[str] = field(default_factory=set)  # down on purpose right now
    log_level: str = "WARNING"

    @property
    def topic_prefix(self) -> str:
        return f"chaos{self.run_id}."

    def database(self, service: str) -> str:
        return f"chaos_{self.run_id}_{service}"

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def env(self, service: str) -> dict[str, str]:
        prefix = service.upper() + "_"
        settings = {
            "KAFKA_BOOTSTRAP_SERVERS": self.instance.bootstrap, "MONGODB_URI": self.instance.mongodb_uri,
            "HTTP_PORT": str(self.ports[service]), "TOPIC_PREFIX": self.topic_prefix, "TOPIC_PARTITIONS": "3",
            "DATABASE": self.database(service), "LOG_LEVEL": self.log_level, "AUTH_ISSUER": self.auth["issuer"],
            "AUTH_AUDIENCE": self.auth["audience"], "AUTH_JWKS_URL": self.auth["jwks_url"],
        }
        if service == "distribution":
            settings["PUBLIC_BASE_URL"] = self.url(service)
        if service == "metrics":  # the reference computes earned media value with the same table
            settings["CPM_BY_NETWORK"] = '{"linkedin": 12.0, "x": 6.0}'
        return {**os.environ, **{prefix + name: value for name, value in settings.items()}}

    def start(self, name: str) -> None:
        service, role = name.split("-")
        script = Path(sys.executable).parent / f"{service}-{role}"
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child from here on
        self.processes[name] = subprocess.Popen([str(script)], env=self.env(service), stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        with open(self.logs / "pids", "a") as pids:  # for kill_leftovers, should this driver die first
            pids.write(f"{self.processes[name].pid} {name}\n")

    async def start_all(self) -> None:
        for service in SERVICES:
            self.start(f"{service}-worker")
            self.start(f"{service}-api")
        await asyncio.gather(*(self.ready(service) for service in SERVICES))

    async def ready(self, service: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=5) as client:
            while time.monotonic() < deadline:
                try:
                    if (await client.get(f"{self.url(service)}/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.3)
        raise RuntimeError(f"{service}-api not ready after {timeout} s (see {self.logs}/{service}-api.log)")

    async def kill_and_restart(self, name: str, pause: float) -> None:
        """SIGKILL, as a crash would: no shutdown hook runs. Then the same process again."""
        if name in self.killing:
            return
        self.killing.add(name)
        try:
            process = self.processes[name]
            process.send_signal(signal.SIGKILL)
            await asyncio.to_thread(process.wait)
            self.kills[name] += 1
            await asyncio.sleep(pause)
            self.start(name)
        finally:
            self.killing.discard(name)

    def dead(self) -> list[str]:
        """Processes that exited although nobody killed them."""
        return [name for name, process in self.processes.items()
                if process.poll() is not None and name not in self.killing]

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def kill_leftovers(local: Path) -> list[str]:
    """SIGKILL the service processes a driver started under `local` and could not stop (it was killed)."""
    killed = []
    for pids in local.glob("runs/*/pids"):
        for line in pids.read_text().splitlines():
            pid, name = line.split()
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except FileNotFoundError:
                continue
            if f"/{name}" in cmdline:  # the same process, not a recycled pid
                os.kill(int(pid), signal.SIGKILL)
                killed.append(name)
    return killed
