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
    return report("docker-compose.yml", problems)


if __name__ == "__main__":
    sys.exit(main())
