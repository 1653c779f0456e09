"""Generate docs/openapi/<service>.json from each service's FastAPI application.

    uv run python scripts/openapi.py           # (re)write the four documents
    uv run python scripts/openapi.py --check   # exit 1 and show a diff if one differs from the code

Each app is built by its composition root (`<service>.bootstrap.create_app`) with default settings
and never started: building an app does no I/O (the database and Kafka are opened by its lifespan).
Settings come from `model_construct()`, so no environment variable can change the documents.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import json
import sys
from pathlib import Path

from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parent.parent
OUTPUT_DIR = ROOT / "docs" / "openapi"
SERVICES = ("content", "ambassador", "distribution", "metrics")


def settings_class(service: str) -> type[BaseSettings]:
    module = importlib.import_module(f"{service}.settings")
    classes = [value for value in vars(module).values()
               if isinstance(value, type) and issubclass(value, BaseSettings) and value.__module__ == module.__name__]
    if len(classes) != 1:
        raise SystemExit(f"{service}.settings should define one settings class, found {len(classes)}")
    return classes[0]


def openapi_document(service: str) -> str:
    bootstrap = importlib.import_module(f"{service}.bootstrap")
    app = bootstrap.create_app(settings_class(service).model_construct())
    return json.dumps(app.openapi(), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a checked-in document differs")
    parser.add_argument("services", nargs="*", default=list(SERVICES))
    args = parser.parse_args()
    stale = []
    for service in args.services:
        path = OUTPUT_DIR / f"{service}.json"
        text = openapi_document(service)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            continue
        current = path.read_text() if path.exists() else ""
        if current != text:
            stale.append(path)
            sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), text.splitlines(True),
                                                       str(path), "generated from the code"))
    if stale:
        print(f"\n{', '.join(map(str, stale))} not what the code says: run `make openapi` and commit.",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
