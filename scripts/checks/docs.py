"""Check the hand-written docs against the code: docs/events.md names every event type, topic and
dead-letter topic; docs/kpis.md every KPI the metrics service computes; docs/webhooks.md's worked
example carries the signature the distribution service computes; nothing in docs/ or deploy/ points
outside the repository."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from advocacy_common.events import EVENT_CLASSES
from advocacy_common.topics import TopicNames
from distribution.models.engagement import sign
from metrics.models import COUNTER_PARTS, kpis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chart import report  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def webhook_example_problems(text: str) -> list[str]:
    secret = re.search(r"\| secret \| `([^`]+)` \|", text)
    timestamp = re.search(r"\| t \| `(\d+)`", text)
    body = re.search(r"\| body \| `([^`]+)` \|", text)
    header = re.search(r"\| header \| `([^`]+)` \|", text)
    if not (secret and timestamp and body and header):
        return ["webhooks.md: the worked example table (secret, t, body, header) is missing"]
    expected = sign(secret.group(1), int(timestamp.group(1)), body.group(1).encode())
    return [] if header.group(1) == expected else [f"webhooks.md: the example header should be {expected}"]


def main() -> int:
    events, kpi_doc = (DOCS / "events.md").read_text(), (DOCS / "kpis.md").read_text()
    problems = [f"events.md does not name {name}" for name in
                [cls.type_name for cls in EVENT_CLASSES] + TopicNames().all() if f"`{name}`" not in events]
    zero = dict.fromkeys(COUNTER_PARTS, 0)
    problems += [f"kpis.md does not define {name}" for name in kpis(zero, opted_in=0, active=0, cpm_by_network={})
                 if f"`{name}`" not in kpi_doc]
    problems += webhook_example_problems((DOCS / "webhooks.md").read_text())
    for path in [*DOCS.rglob("*.md"), *(ROOT / "deploy").rglob("*")]:
        if path.is_file() and re.search(r"\.\./shared|/work/shared|shared/(DESIGN|DOMAIN|STYLE)", path.read_text()):
            problems.append(f"{path.relative_to(ROOT)} points outside the repository")
    return report("docs", problems)


if __name__ == "__main__":
    sys.exit(main())
