"""Check docker-compose.yml against the code: every advocacy service builds its own image with the
Dockerfile, runs an entry point its pyproject declares, and sets only environment variables its
settings class reads. (No Docker engine here: the compose file's own syntax is not validated.)"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chart import ROOT, SERVICES, entry_points, env_names, report  # noqa: E402


def main() -> int:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    problems = []
    for name, spec in compose["services"].items():
        service = next((s for s in SERVICES if name.startswith(f"{s}-")), None)
        if service is None:
            continue
        if spec.get("build", {}).get("args", {}).get("SERVICE") != service:
            problems.append(f"{name}: must build the Dockerfile with SERVICE={service}")
        if not str(spec.get("image", "")).startswith(f"advocacy-{service}:"):
            problems.append(f"{name}: image should be advocacy-{service}:<tag>")
        if spec["command"][0] not in entry_points(service):
            problems.append(f"{name}: {spec['command'][0]} is no entry point of {service}")
        unknown = set(spec.get("environment", {})) - env_names(service)
        if unknown:
            problems.append(f"{name}: {sorted(unknown)} are not settings of {service}")
    problems += check_demo(compose["services"])
    return report("docker-compose.yml", problems)


def check_demo(services: dict) -> list[str]:
    """The demo loader's services: a one-shot `demo` that runs the repository's script with a valid command,
    against the api services' own ports, reading the issuer's key volume."""
    if "demo" not in services:
        return ["demo: the one-shot service that loads the demo tenant is missing"]
    problems = []
    demo = services["demo"]
    if demo.get("restart") != "no":
        problems.append("demo: must be one-shot (restart: \"no\")")
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in demo.get("volumes", [])}
    argv = demo.get("entrypoint", [])
    script = next((arg for arg in argv if arg.endswith("demo_tenant.py")), None)
    if script is None or not (ROOT / mounts.get(script, "/nonexistent")).is_file():
        problems.append("demo: must run scripts/demo_tenant.py, mounted from the repository")
    options = dict(zip(argv[2::2], argv[3::2], strict=False))
    key_volume = mounts.get(options.get("--key-file", "").rsplit("/", 1)[0])
    if key_volume is None or not any(v.startswith(f"{key_volume}:") for v in services["issuer"].get("volumes", [])):
        problems.append("demo: --key-file must be on the issuer's key volume")
    for service in SERVICES:
        host, _, port = options.get(f"--{service}", "").removeprefix("http://").partition(":")
        env = services.get(host, {}).get("environment", {})
        if env.get(f"{service.upper()}_HTTP_PORT") != port:
            problems.append(f"demo: --{service} must be the {service} api's address, not {host}:{port}")
    for name, spec in services.items():
        if name.startswith("demo") and spec.get("command", [None])[0] not in ("load", "trickle", "tokens"):
            problems.append(f"{name}: the loader's command is load, trickle or tokens")
    return problems


if __name__ == "__main__":
    sys.exit(main())
