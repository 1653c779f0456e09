"""Plausibility of engagement reports: the one set of rules every connector's report passes.

Webhooks and the connectors we run (pollers of the networks' APIs) hand their observations to one entry
point (`service.engagement.Engagement.ingest`), which applies these rules before anything is recorded or
published. A report that breaks one is refused with `Implausible` (a 422 on the webhook) and counted
nowhere. Pure: the state they need (the share, the person, the share's comment totals) is passed in.

The rules, in the order they are checked:
- `count` between 1 and the bound of its kind (`MAX_COUNT`): nothing negative, nothing absurd.
- `occurred_at` carries a time zone, is not later than now plus the clock skew, and not earlier than the
  share's confirmation minus the clock skew (the post did not exist before).
- the post is a known share that was confirmed (a prepared share, or a tracked link never confirmed, has no
  post to engage with).
- replies never exceed the comments received on the share (`ShareTotals`), so the comment response rate
  cannot pass 1.
Documented policies (not refusals): an erased person's posts stay online, and what is reported about them
is counted anonymously (`ambassador_id` "erased", even before the erasure reached the share); an opted-out
person's earlier posts are counted as before.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, Field

from advocacy_common.events import EngagementKind

from .projections import ERASED, AmbassadorStatus, AmbassadorView
from .sharing import Share, ShareStatus

# The most one report may count, per kind: far above any single post's figures in an interval a
# connector reports (a viral LinkedIn post has a few million impressions in total), far below overflow.
MAX_COUNT: dict[EngagementKind, int] = {
    EngagementKind.IMPRESSION: 10_000_000, EngagementKind.MEMBERS_REACHED: 10_000_000,
    EngagementKind.REACTION: 1_000_000, EngagementKind.COMMENT: 100_000,
    EngagementKind.COMMENT_REPLY: 100_000, EngagementKind.RESHARE: 1_000_000, EngagementKind.CONVERSION: 10_000,
}
# How many recent reports a share's totals remember, so a retried report is counted in them once.
RECENT_REPORTS_KEPT = 100
TOTAL_KINDS = (EngagementKind.COMMENT, EngagementKind.COMMENT_REPLY)


class Implausible(Exception):
    """A report that cannot be true: which rule (`reason`), which field, in plain words."""

    def __init__(self, reason: str, field: str, message: str):
        super().__init__(message)
        self.reason, self.field, self.message = reason, field, message


def check_count(kind: EngagementKind, count: int) -> None:
    bound = MAX_COUNT.get(kind)
    if bound is None:
        raise Implausible("kind_not_reportable", "kind", f"{kind.value} is not reported by connectors")
    if not 1 <= count <= bound:
        raise Implausible("count_out_of_range", "count", f"must be between 1 and {bound:,} for {kind.value} "
                          "(send the increase since your last report)")


def check_occurred_at(occurred_at: datetime, now: datetime, confirmed_at: datetime | None,
                      clock_skew: timedelta, backfill: timedelta = timedelta(0)) -> None:
    """Inside the share's life: after its confirmation, not in the future (both up to the clock skew; and
    `backfill` earlier, only where history is loaded on purpose)."""
    if occurred_at.tzinfo is None or occurred_at.utcoffset() is None:
        raise Implausible("timestamp_without_time_zone", "occurred_at", "needs a time zone (RFC 3339, e.g. "
                          "2026-03-02T09:30:00Z)")
    if occurred_at > now + clock_skew:
        raise Implausible("occurred_in_the_future", "occurred_at", f"is later than now (more than "
                          f"{clock_skew.total_seconds():.0f} s of clock skew)")
    if confirmed_at is not None and occurred_at < confirmed_at - clock_skew - backfill:
        raise Implausible("occurred_before_the_share", "occurred_at", "is earlier than the moment the post was "
                          "shared")


def check_confirmed(share: Share | None, field: str) -> Share:
    """The post reported on: a share that was confirmed (posted)."""
    if share is None:
        raise Implausible("unknown_post", field, "matches no share")
    if share.status is not ShareStatus.CONFIRMED or share.confirmed_at is None:
        raise Implausible("share_not_confirmed", field, "matches a share that was never confirmed as posted")
    return share


def reported_ambassador(share: Share, ambassador: AmbassadorView | None) -> str:
    """Who the event names: nobody once the person was erased, even before the erasure reached the share."""
    if share.ambassador_id == ERASED or (ambassador is not None and ambassador.status is AmbassadorStatus.ERASED):
        return ERASED
    return share.ambassador_id


class ShareTotals(BaseModel):
    """Comments and replies reported on one share so far (one document, compare-and-set on `version`).

    `recent` holds the ids of the last reports counted, so a report retried after a crash is counted once.
    """

    tenant: str
    share_id: str
    comments: int = 0
    replies: int = 0
    version: int = 0  # 0: nothing counted yet (no document)
    recent: list[str] = Field(default_factory=list)

    def counting(self, kind: EngagementKind, count: int, engagement_id: str) -> ShareTotals | None:
        """The totals with this report counted; None when it is counted already. A reply beyond the
        comments received is Implausible."""
        if engagement_id in self.recent:
            return None
        comments, replies = self.comments, self.replies
        if kind is EngagementKind.COMMENT:
            comments += count
        elif kind is EngagementKind.COMMENT_REPLY:
            replies += count
            if replies > comments:
                raise Implausible("replies_exceed_comments", "count", f"{replies} replies would exceed the "
                                  f"{comments} comments reported on this post; report the comments first")
        return self.model_copy(update={"comments": comments, "replies": replies,
                                       "recent": [*self.recent, engagement_id][-RECENT_REPORTS_KEPT:]})
