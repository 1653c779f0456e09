"""When a tracked post is polled next: a pure rule over its link time, its last change and the settings.

Default: every hour for the first 48 hours after the post was linked, then once a day until 14 days
after the last change of any total; then the post is finished. A post whose totals keep moving keeps
being polled daily. Each post gets a fixed offset inside the first part of its interval (from its id),
so posts linked in the same minute do not all call the network in the same second.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class PollSchedule:
    early_interval: timedelta = timedelta(hours=1)
    early_period: timedelta = timedelta(hours=48)
    late_interval: timedelta = timedelta(days=1)
    quiet_period: timedelta = timedelta(days=14)  # after the last change
    spread: float = 0.1  # of the interval, at most, added as a per-post offset

    def next_poll(self, post_id: str, linked_at: datetime, last_change_at: datetime,
                  now: datetime) -> datetime | None:
        """The next poll time after `now`, or None when the post is finished."""
        if now >= last_change_at + self.quiet_period and now >= linked_at + self.early_period:
            return None
        interval = self.early_interval if now < linked_at + self.early_period else self.late_interval
        return now + interval + self.offset(post_id, interval)

    def offset(self, post_id: str, interval: timedelta) -> timedelta:
        fraction = int.from_bytes(hashlib.sha256(post_id.encode()).digest()[:4], "big") / 2**32
        return timedelta(seconds=round(interval.total_seconds() * self.spread * fraction))


def backoff(failures: int, retry_after: float | None, *, base: timedelta = timedelta(minutes=1),
            ceiling: timedelta = timedelta(hours=6)) -> timedelta:
    """How long to leave a post (and its network) alone after a 429 or an error: the network's
    Retry-After when it gives one, else 1, 2, 4 ... minutes, never above `ceiling`."""
    if retry_after is not None and retry_after >= 0:
        return min(timedelta(seconds=retry_after), ceiling)
    return min(base * (2 ** max(failures - 1, 0)), ceiling)
