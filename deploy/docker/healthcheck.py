"""Docker HEALTHCHECK of a service image: the api answers /livez on the port its settings say.

A worker (or any other entry point, such as the dev issuer) serves no HTTP: its health is that its
process runs, which Docker sees already, so the check passes for it.
"""

import importlib
import os
import sys
import urllib.request
from pathlib import Path

from pydantic_settings import BaseSettings


def running_commands() -> list[str]:
    """Command lines of the container's processes (PID 1 may be an init such as tini)."""
    commands = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            commands.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            pass  # the process ended meanwhile
    return commands


def main() -> int:
    service = os.environ["SERVICE"]
    if not any(f"{service}-api" in command for command in running_commands()):
        return 0
    module = importlib.import_module(f"{service}.settings")
    settings_class = next(value for value in vars(module).values() if isinstance(value, type)
                          and issubclass(value, BaseSettings) and value.__module__ == module.__name__)
    port = settings_class().http_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/livez", timeout=2) as response:
        return 0 if response.status == 200 else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as error:  # any failure is "unhealthy", with the reason in `docker inspect`
        print(f"unhealthy: {error}", file=sys.stderr)
        sys.exit(1)
