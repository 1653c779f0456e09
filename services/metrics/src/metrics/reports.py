"""KPI views built from the stored parts: totals, series, rankings, exports, privacy checks. Pure, no I/O.

The distinct counts are computed when read, from the ambassador projection and
the activity days, so that their arrival order never matters: a share that came
before the opt-in still makes an active ambassador once the opt-in is known.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from itertools import accumulate
from typing import Any

from .models import (
    ACTIVITY_SETS, TENANT_VALUE, ActivityDay, AmbassadorStatus, AmbassadorView, ContentView, CounterRow, Dimension,
    Granularity, Period, buckets, engagement_rate_of, kpis, sum_parts,
)


class GroupTooSmall(Exception):
    """A team below the privacy threshold: its figures could single out a person."""

    def __init__(self, team_id: str, minimum: int):
        super().__init__(team_id)
        self.team_id = team_id
        self.minimum = minimum


@dataclass(frozen=True)
class Snapshot:
    """The rows one report needs, read once, and indexed once: by value and by day.

    The indexes make a report cost what its period holds: a daily series of 90 days looks at
    each activity row once (in its own day), not at every row once per day.
    """

    dimension: Dimension
    rows: list[CounterRow]
    activity: list[ActivityDay]
    ambassadors: list[AmbassadorView]
    built_roster: Roster | None = field(default=None, compare=False, repr=False)  # one kept with `ambassadors`

    @cached_property
    def roster(self) -> Roster:
        return self.built_roster or Roster(self.ambassadors)

    @cached_property
    def _rows_by_value(self) -> dict[str, list[CounterRow]]:
        grouped: dict[str, list[CounterRow]] = defaultdict(list)
        for row in self.rows:
            grouped[row.value].append(row)
        return grouped

    @cached_property
    def _activity_by_day(self) -> tuple[list[str], list[list[ActivityDay]]]:
        grouped: dict[str, list[ActivityDay]] = defaultdict(list)
        for row in self.activity:
            grouped[row.day].append(row)
        days = sorted(grouped)
        return days, [grouped[day] for day in days]

    def rows_in(self, value: str, period: Period) -> list[CounterRow]:
        first, last = period.first_day, period.last_day
        return [row for row in self._rows_by_value.get(value, ()) if first <= row.day <= last]

    def activity_in(self, period: Period) -> list[ActivityDay]:
        """The activity rows of the period's days (a bisection, then only those days' rows)."""
        days, rows = self._activity_by_day
        start, end = bisect_left(days, period.first_day), bisect_right(days, period.last_day)
        return [row for day_rows in rows[start:end] for row in day_rows]


@dataclass(frozen=True)
class SeriesPoint:
    period_start: str  # the bucket's label (the day, the ISO week's Monday, the month's first day)
    period: Period  # the bucket, clipped to the asked period
    kpis: dict[str, Any]

    @property
    def first_day(self) -> str:
        return self.period.first_day

    @property
    def last_day(self) -> str:
        return self.period.last_day


@dataclass(frozen=True)
class RankedItem:
    key: str  # the content id or the topic
    engagement_rate: float
    engagements: int
    impressions: int
    shares: int
    title: str | None = None  # a content item's, from the content projection


@dataclass(frozen=True)
class LeaderboardEntry:
    rank: int
    ambassador_id: str
    engagements: int
    impressions: int
    shares: int
    engagement_rate: float | None
    display_name: str | None = None  # the name the person chose to show


# --- who counted as opted in on a given day ------------------------------------------------

@dataclass(frozen=True)
class Standing:
    """A person's standing at the end of a day: opted in or not, and where they counted."""

    opted_in: bool
    team_id: str | None
    networks: tuple[str, ...]

    def counts_in(self, dimension: Dimension, value: str, ambassador_id: str) -> bool:
        if not self.opted_in:
            return False
        if dimension is Dimension.TEAM:
            return self.team_id == value
        if dimension is Dimension.NETWORK:
            return value in self.networks
        if dimension is Dimension.AMBASSADOR:
            return ambassador_id == value
        return True


def standings(view: AmbassadorView) -> list[tuple[str, Standing]]:
    """The person's standing from each day on which it changed, from their events' own days.

    Days are made non-decreasing in event order (a clock behind never reorders what the
    person did), so the last standing is always the current one. A projection whose history
    does not end where the projection stands (written before histories were kept: a rebuild
    fills them) counts with its current standing on every day.
    """
    current = Standing(view.opted_in, view.team_id, view.networks)
    day, status, team, networks = "", None, None, ()
    found: list[tuple[str, Standing]] = []
    for change in view.history:
        day = max(day, change.day)
        if change.status is not None and status is not AmbassadorStatus.ERASED:  # the tombstone is never lifted
            status = change.status
        if change.networks is not None:
            team, networks = change.team_id, change.networks
        standing = Standing(status is AmbassadorStatus.OPTED_IN, team, networks)
        if found and found[-1][0] == day:
            found[-1] = (day, standing)
        else:
            found.append((day, standing))
    if not found or found[-1][1].opted_in != current.opted_in:
        return [("", current)]
    return found


class Roster:
    """Who counted as opted in (in a team, on a network) at the end of any day.

    Counts are prefix sums of the days people joined and left a dimension value, so a
    series costs one lookup per bucket, not one pass over the people per bucket.
    """

    def __init__(self, ambassadors: Iterable[AmbassadorView],
                 found: Mapping[str, list[tuple[str, Standing]]] | None = None):
        """`found`: the people's `standings`, when the caller computed them already (a step at a time)."""
        self._standings = dict(found) if found is not None else {view.ambassador_id: standings(view)
                                                                 for view in ambassadors}
        self._days = {person: [day for day, _ in found] for person, found in self._standings.items()}
        self._counts: dict[tuple[Dimension, str], tuple[list[str], list[int]]] = {}
        self._entries: dict[tuple[Dimension, str], tuple[dict[str, str], frozenset[str]]] = {}

    def counts_on(self, ambassador_id: str, dimension: Dimension, value: str, day: str) -> bool:
        days = self._days.get(ambassador_id)
        if not days:
            return False
        index = bisect_right(days, day)
        return bool(index) and self._standings[ambassador_id][index - 1][1].counts_in(dimension, value, ambassador_id)

    def counted_among(self, people: Iterable[str], dimension: Dimension, value: str, day: str) -> set[str]:
        """Those of `people` who counted in the dimension value at the end of `day` (`counts_on` for each).

        Most people enter a value once and stay (an opt-in, a team): for them it is one comparison
        with the day they entered (kept per value), not a bisection of their standings per person and
        bucket (10,736 of those made a third of a 90-day series' CPU)."""
        entered, others = self._entered(dimension, value)
        return {person for person in people
                if ((since := entered.get(person)) is not None and since <= day)
                or (person in others and self.counts_on(person, dimension, value, day))}

    def _entered(self, dimension: Dimension, value: str) -> tuple[dict[str, str], frozenset[str]]:
        """Per person who entered the value once for good: that day; and who went in and out again."""
        if (dimension, value) not in self._entries:
            entered: dict[str, str] = {}
            others: set[str] = set()
            for person, found in self._standings.items():
                inside = [standing.counts_in(dimension, value, person) for _, standing in found]
                if any(inside):
                    first = inside.index(True)
                    if all(inside[first:]):
                        entered[person] = found[first][0]
                    else:
                        others.add(person)
            self._entries[(dimension, value)] = (entered, frozenset(others))
        return self._entries[(dimension, value)]

    def count(self, dimension: Dimension, value: str, day: str) -> int:
        if (dimension, value) not in self._counts:
            changes: dict[str, int] = defaultdict(int)
            for person, found in self._standings.items():
                inside = False
                for since, standing in found:
                    now_inside = standing.counts_in(dimension, value, person)
                    if now_inside != inside:
                        changes[since] += 1 if now_inside else -1
                        inside = now_inside
            days = sorted(changes)
            self._counts[(dimension, value)] = (days, list(accumulate(changes[d] for d in days)))
        days, totals = self._counts[(dimension, value)]
        index = bisect_right(days, day)
        return totals[index - 1] if index else 0


def opted_in(ambassadors: Iterable[AmbassadorView]) -> list[AmbassadorView]:
    return [a for a in ambassadors if a.opted_in]


def members(ambassadors: Iterable[AmbassadorView], dimension: Dimension, value: str) -> set[str]:
    """Opted-in ambassadors a dimension value is measured against (its team, its network, or everyone)."""
    people = opted_in(ambassadors)
    if dimension is Dimension.TEAM:
        people = [a for a in people if a.team_id == value]
    elif dimension is Dimension.NETWORK:
        people = [a for a in people if value in a.networks]
    elif dimension is Dimension.AMBASSADOR:
        people = [a for a in people if a.ambassador_id == value]
    return {a.ambassador_id for a in people}


def _activity_set(row: ActivityDay, dimension: Dimension) -> frozenset[str] | None:
    name = ACTIVITY_SETS.get(dimension)
    return getattr(row, name) if name else None


def active(activity: Iterable[ActivityDay], among: set[str], dimension: Dimension, value: str,
           period: Period) -> set[str]:
    """Of `among`, who shared in the period (in this campaign, content or network when that is the view)."""
    # The set's name looked up once, not per row: a daily series runs this once per day over every row.
    name = ACTIVITY_SETS.get(dimension)
    first, last = period.first_day, period.last_day
    return {row.ambassador_id for row in activity
            if first <= row.day <= last and row.ambassador_id in among
            and (name is None or value in getattr(row, name))}


def kpis_of(snapshot: Snapshot, value: str, period: Period, cpm_by_network: Mapping[str, float]) -> dict[str, Any]:
    """The KPIs of one value over a period; the distinct counts are those of the period's last day
    (opted in at its end, and of those, who shared in the period): each day has its own.

    Exact: the distinct people are a union over the period's own activity rows, never a sum of
    daily counts. Only the period's rows are looked at (`Snapshot.activity_in`)."""
    parts = sum_parts(row.parts for row in snapshot.rows_in(value, period))
    roster, dimension, last = snapshot.roster, snapshot.dimension, period.last_day
    activity = snapshot.activity_in(period)
    people = roster.counted_among({row.ambassador_id for row in activity}, dimension, value, last)
    # A view without an activity set (the tenant, a team) counts who shared at all: every one of `people`
    # shared in the period, so the pass of `active` would give `people` back.
    shared = people if ACTIVITY_SETS.get(dimension) is None else active(activity, people, dimension, value, period)
    return kpis(parts, opted_in=roster.count(dimension, value, last), active=len(shared),
                cpm_by_network=cpm_by_network)


def series_points(snapshot: Snapshot, value: str, period: Period, granularity: Granularity,
                  cpm_by_network: Mapping[str, float]) -> Iterator[SeriesPoint]:
    """One point per bucket, computed as it is asked for (the api yields to its event loop between them)."""
    for label, part in buckets(period, granularity).items():
        yield SeriesPoint(label, part, kpis_of(snapshot, value, part, cpm_by_network))


def series_of(snapshot: Snapshot, value: str, period: Period, granularity: Granularity,
              cpm_by_network: Mapping[str, float]) -> list[SeriesPoint]:
    return list(series_points(snapshot, value, period, granularity, cpm_by_network))


def team_size(ambassadors: Iterable[AmbassadorView], team_id: str) -> int:
    return len(members(ambassadors, Dimension.TEAM, team_id))


def require_visible_team(ambassadors: Iterable[AmbassadorView], team_id: str, minimum: int) -> None:
    if team_size(ambassadors, team_id) < minimum:
        raise GroupTooSmall(team_id, minimum)


def every_team(snapshot: Snapshot) -> set[str]:
    """Teams with figures in the period or opted-in members."""
    return {row.value for row in snapshot.rows} | {a.team_id for a in opted_in(snapshot.ambassadors) if a.team_id}


def visible_values(snapshot: Snapshot, minimum: int) -> list[str]:
    """The dimension values present in the rows; for teams only those above the privacy threshold."""
    values = sorted({row.value for row in snapshot.rows})
    if snapshot.dimension is Dimension.TEAM:
        values = [v for v in values if team_size(snapshot.ambassadors, v) >= minimum]
    elif snapshot.dimension is Dimension.TENANT:
        values = [TENANT_VALUE]
    return values


def parts_by_value(rows: Iterable[CounterRow]) -> dict[str, dict[str, int]]:
    grouped: dict[str, list[Mapping[str, int]]] = defaultdict(list)
    for row in rows:
        grouped[row.value].append(row.parts)
    return {value: sum_parts(parts) for value, parts in grouped.items()}


def _engagements(summed: Mapping[str, int]) -> int:
    return summed["reactions"] + summed["comments"] + summed["reshares"]


def ranked_by_engagement_rate(parts: Mapping[str, Mapping[str, int]], limit: int,
                              min_impressions: int = 1, titles: Mapping[str, str | None] | None = None
                              ) -> list[RankedItem]:
    """Highest engagement rate first; ties broken by more engagements, then by name."""
    titles = titles or {}
    entries = [RankedItem(key, engagement_rate_of(summed) or 0.0, _engagements(summed), summed["impressions"],
                          summed["shares"], titles.get(key))
               for key, summed in parts.items() if summed["impressions"] >= min_impressions]
    entries.sort(key=lambda e: (-e.engagement_rate, -e.engagements, e.key))
    return entries[:limit]


def parts_by_topic(content_parts: Mapping[str, Mapping[str, int]],
                   contents: Iterable[ContentView]) -> dict[str, dict[str, int]]:
    """A content's parts count once for each of its topics (from the content projection)."""
    topics_of = {c.content_id: c.topics for c in contents}
    grouped: dict[str, list[Mapping[str, int]]] = defaultdict(list)
    for content_id, summed in content_parts.items():
        for topic in topics_of.get(content_id, ()):
            grouped[topic].append(summed)
    return {topic: sum_parts(parts) for topic, parts in grouped.items()}


def leaderboard(snapshot: Snapshot, period: Period, limit: int) -> list[LeaderboardEntry]:
    """Only people who chose to appear, are opted in, and have figures in the period, with the name they chose."""
    names = {a.ambassador_id: a.leaderboard_name for a in opted_in(snapshot.ambassadors) if a.leaderboard_opt_in}
    shown = set(names)
    parts = parts_by_value(row for row in snapshot.rows if row.value in shown and period.contains(row.day))
    ranked = sorted(((ambassador_id, summed) for ambassador_id, summed in parts.items()
                     if summed["shares"] or _engagements(summed)),
                    key=lambda item: (-_engagements(item[1]), -item[1]["impressions"], item[0]))
    return [LeaderboardEntry(rank, ambassador_id, _engagements(summed), summed["impressions"], summed["shares"],
                             engagement_rate_of(summed), names[ambassador_id])
            for rank, (ambassador_id, summed) in enumerate(ranked[:limit], start=1)]
