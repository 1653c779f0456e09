"""KPI views built from the stored parts: totals, series, rankings, exports, privacy checks.

The distinct counts are computed when read, from the ambassador projection and
the activity days, so that their arrival order never matters: a share that came
before the opt-in still makes an active ambassador once the opt-in is known.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .models import (
    TENANT_VALUE, AmbassadorStatus, Dimension, Granularity, Period, buckets, engagement_rate_of, kpis, sum_parts,
)
from .ports import MetricsStore


class GroupTooSmall(Exception):
    """A team below the privacy threshold: its figures could single out a person."""

    def __init__(self, team_id: str, minimum: int):
        super().__init__(team_id)
        self.team_id = team_id
        self.minimum = minimum


@dataclass(frozen=True)
class Snapshot:
    """The rows one report needs, read once."""

    dimension: Dimension
    rows: list[dict[str, Any]]  # counter rows {value, day, parts}
    activity: list[dict[str, Any]]
    ambassadors: list[dict[str, Any]]


async def load(store: MetricsStore, tenant: str, dimension: Dimension, value: str | None,
               period: Period) -> Snapshot:
    return Snapshot(dimension, await store.list_counters(tenant, dimension, value, period),
                    await store.list_activity(tenant, period), await store.list_ambassadors(tenant))


def opted_in(ambassadors: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [a for a in ambassadors if a.get("status") == AmbassadorStatus.OPTED_IN.value and not a.get("erased")]


def members(ambassadors: Iterable[Mapping[str, Any]], dimension: Dimension, value: str) -> set[str]:
    """Opted-in ambassadors a dimension value is measured against (its team, its network, or everyone)."""
    people = opted_in(ambassadors)
    if dimension is Dimension.TEAM:
        people = [a for a in people if a.get("team_id") == value]
    elif dimension is Dimension.NETWORK:
        people = [a for a in people if value in (a.get("networks") or [])]
    elif dimension is Dimension.AMBASSADOR:
        people = [a for a in people if a["ambassador_id"] == value]
    return {a["ambassador_id"] for a in people}


_ACTIVITY_SET = {Dimension.CAMPAIGN: "campaigns", Dimension.CONTENT: "contents", Dimension.NETWORK: "networks"}


def active(activity: Iterable[Mapping[str, Any]], among: set[str], dimension: Dimension, value: str,
           period: Period) -> set[str]:
    """Of `among`, who shared in the period (in this campaign, content or network when that is the view)."""
    field = _ACTIVITY_SET.get(dimension)
    return {row["ambassador_id"] for row in activity
            if row["ambassador_id"] in among and period.contains(row["day"])
            and (field is None or value in (row.get(field) or []))}


def kpis_of(snapshot: Snapshot, value: str, period: Period, cpm_by_network: Mapping[str, float]) -> dict[str, Any]:
    parts = sum_parts(row["parts"] for row in snapshot.rows if row["value"] == value and period.contains(row["day"]))
    people = members(snapshot.ambassadors, snapshot.dimension, value)
    return kpis(parts, opted_in=len(people),
                active=len(active(snapshot.activity, people, snapshot.dimension, value, period)),
                cpm_by_network=cpm_by_network)


def series_of(snapshot: Snapshot, value: str, period: Period, granularity: Granularity,
              cpm_by_network: Mapping[str, float]) -> list[dict[str, Any]]:
    return [{"period_start": label, "first_day": part.first_day, "last_day": part.last_day,
             "kpis": kpis_of(snapshot, value, part, cpm_by_network)}
            for label, part in buckets(period, granularity).items()]


def team_size(ambassadors: Iterable[Mapping[str, Any]], team_id: str) -> int:
    return len(members(ambassadors, Dimension.TEAM, team_id))


def require_visible_team(ambassadors: Iterable[Mapping[str, Any]], team_id: str, minimum: int) -> None:
    if team_size(ambassadors, team_id) < minimum:
        raise GroupTooSmall(team_id, minimum)


def visible_values(snapshot: Snapshot, minimum: int) -> list[str]:
    """The dimension values present in the rows; for teams only those above the privacy threshold."""
    values = sorted({row["value"] for row in snapshot.rows})
    if snapshot.dimension is Dimension.TEAM:
        values = [v for v in values if team_size(snapshot.ambassadors, v) >= minimum]
    elif snapshot.dimension is Dimension.TENANT:
        values = [TENANT_VALUE]
    return values


def parts_by_value(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    grouped: dict[str, list[Mapping[str, int]]] = defaultdict(list)
    for row in rows:
        grouped[row["value"]].append(row["parts"])
    return {value: sum_parts(parts) for value, parts in grouped.items()}


def ranked_by_engagement_rate(parts: Mapping[str, Mapping[str, int]], limit: int,
                              min_impressions: int = 1) -> list[dict[str, Any]]:
    """Highest engagement rate first; ties broken by more engagements, then by name."""
    entries = []
    for key, summed in parts.items():
        if summed["impressions"] < min_impressions:
            continue
        engagements = summed["reactions"] + summed["comments"] + summed["reshares"]
        entries.append({"key": key, "engagement_rate": engagement_rate_of(summed), "engagements": engagements,
                        "impressions": summed["impressions"], "shares": summed["shares"]})
    entries.sort(key=lambda e: (-e["engagement_rate"], -e["engagements"], e["key"]))
    return entries[:limit]


def parts_by_topic(content_parts: Mapping[str, Mapping[str, int]],
                   contents: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """A content's parts count once for each of its topics (from the content projection)."""
    topics_of = {c["content_id"]: c.get("topics") or [] for c in contents}
    grouped: dict[str, list[Mapping[str, int]]] = defaultdict(list)
    for content_id, summed in content_parts.items():
        for topic in topics_of.get(content_id, []):
            grouped[topic].append(summed)
    return {topic: sum_parts(parts) for topic, parts in grouped.items()}


def leaderboard(snapshot: Snapshot, period: Period, limit: int) -> list[dict[str, Any]]:
    """Only people who chose to appear, are opted in, and have figures in the period."""
    shown = {a["ambassador_id"] for a in opted_in(snapshot.ambassadors) if a.get("leaderboard_opt_in")}
    parts = parts_by_value(row for row in snapshot.rows if row["value"] in shown and period.contains(row["day"]))
    entries = []
    for ambassador_id, summed in parts.items():
        engagements = summed["reactions"] + summed["comments"] + summed["reshares"]
        if summed["shares"] == 0 and engagements == 0:
            continue
        entries.append({"ambassador_id": ambassador_id, "engagements": engagements,
                        "impressions": summed["impressions"], "shares": summed["shares"],
                        "engagement_rate": engagement_rate_of(summed)})
    entries.sort(key=lambda e: (-e["engagements"], -e["impressions"], e["ambassador_id"]))
    return [{"rank": rank, **entry} for rank, entry in enumerate(entries[:limit], start=1)]
