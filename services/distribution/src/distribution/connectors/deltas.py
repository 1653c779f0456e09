"""Cumulative totals to exact deltas.

Rule for a total that goes down (a network correcting itself, a deleted reaction): no negative delta is
ever emitted (an `engagement.received.v1` count is never negative, and what was counted stays counted).
We keep, per metric, the high-water mark: the highest total already reported. A total at or below it
emits nothing; a total above it emits `total - high_water` and raises the mark. So the sum of a post's
deltas is always the highest total the network ever showed, and a lower total is visible in `last_seen`
(the connection's status) but not subtracted.

Each delta's id is `<share>:<metric>:<total>`: deterministic from share, metric and observed total, and
unique because a metric's reported totals strictly increase.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from advocacy_common.events import EngagementKind

from .models import Delta


def deltas(share_id: str, high_water: Mapping[str, int], totals: Mapping[str, int], kinds: Mapping[str, EngagementKind],
           observed_at: datetime) -> tuple[list[Delta], dict[str, int]]:
    """The deltas of `totals` above the marks, and the new marks. Metrics without a kind are ignored."""
    # BSON keeps milliseconds: a delta read back from its post must be the very report first attempted
    # (the ingestion compares the bodies of a retried report id).
    observed_at = observed_at.replace(microsecond=observed_at.microsecond // 1000 * 1000)
    found: list[Delta] = []
    marks = dict(high_water)
    for metric, total in sorted(totals.items()):
        kind = kinds.get(metric)
        if kind is None or total < 0:
            continue
        previous = marks.get(metric, 0)
        if total > previous:
            found.append(Delta(id=f"{share_id}:{metric}:{total}", metric=metric, kind=kind, count=total - previous,
                               total=total, observed_at=observed_at))
            marks[metric] = total
    return found, marks
