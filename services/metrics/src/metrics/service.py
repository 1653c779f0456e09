"""Use cases of the metrics service: the KPI queries of the API and the rebuild.

Metrics publishes no events: it only reads the topics (see handlers.py for
the projection), so no use case here records anything in a unit of work.
Every query reads the live generation, which the rebuild moves with one
pointer write; readers follow on their next call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from advocacy_common.auth import Principal
from advocacy_common.subjects import ambassador_id_of
from advocacy_common.refreshing import RefreshingCache

from .models import TENANT_VALUE, AmbassadorView, Dimension, Granularity, Period, Person, Revisions, trailing_days
from .ports import Generations, MetricsStore
from .reports import (
    GroupTooSmall, LeaderboardEntry, RankedItem, Roster, SeriesPoint, Snapshot, every_team, kpis_of, leaderboard,
    parts_by_topic, parts_by_value, ranked_by_engagement_rate, require_visible_team, series_of, series_points, standings,
    team_size, visible_values,
)
from .turns import Turns

ALL_TIME = Period(date.min, date.max)
ROSTER_SECONDS = 30.0  # how long a tenant's ambassador projection is kept under one roster revision
ROSTERS_KEPT = 64  # tenants whose projection is kept, the least recently used dropped first
# A kept report whose tenant's data revision did not move is reused past its window, but computed again
# after this long all the same: a bound on what a lost raise of the revision could hide (the worker raises
# it after every batch, redelivered ones too, so none is expected). Not shorter: each such recomputation
# reads the period's activity, and at 50 clients it showed as a tail (p99 104-120 ms instead of 32-46 ms,
# benchmark 4 with 30 s here; bench/README.md).
RECOMPUTE_SECONDS = 300.0

__all__ = ["GroupTooSmall", "MetricsQueries", "ReportPolicy", "UnknownSubject", "load_snapshot",
           "rebuild_generation"]


class UnknownSubject(Exception):
    """The tenant never saw this campaign, content item or team (another tenant's answers the same)."""

    def __init__(self, dimension: Dimension):
        super().__init__(dimension.value)
        self.dimension = dimension


@dataclass(frozen=True)
class ReportPolicy:
    min_team_size: int  # privacy threshold of team views
    cpm_by_network: Mapping[str, float]  # for earned media value


@dataclass(frozen=True)
class KpiReport:
    dimension: Dimension
    value: str
    period: Period
    kpis: dict


@dataclass(frozen=True)
class Series:
    dimension: Dimension
    value: str
    granularity: Granularity
    period: Period
    points: list[SeriesPoint]


@dataclass(frozen=True)
class TeamReports:
    period: Period
    min_team_size: int
    items: list[KpiReport]  # the teams at or above the threshold
    hidden_teams: int  # how many were left out


@dataclass(frozen=True)
class Ranking:
    period: Period
    items: list[RankedItem]


@dataclass(frozen=True)
class Leaderboard:
    period: Period
    items: list[LeaderboardEntry]


@dataclass(frozen=True)
class ExportRow:
    dimension: Dimension
    value: str
    point: SeriesPoint
    granularity: Granularity
    title: str | None = None  # a content item's


KeptRoster = Callable[[], Awaitable[tuple[list[AmbassadorView], Roster]]]


async def load_snapshot(store: MetricsStore, tenant: str, dimension: Dimension, value: str | None,
                        period: Period, kept: KeptRoster | None = None) -> Snapshot:
    """Everything one report needs, read once and at once: its counters, the activity its view needs
    (one document per day on the store), and the ambassadors (from `kept` when given: a kept copy, with
    its `Roster` built once)."""
    async def ambassadors() -> tuple[list[AmbassadorView], Roster | None]:
        return await kept() if kept else (await store.list_ambassadors(tenant), None)

    rows, activity, (people, roster) = await asyncio.gather(
        store.list_counters(tenant, dimension, value, period), store.list_activity(tenant, period, dimension, value),
        ambassadors())
    return Snapshot(dimension, rows, activity, people, roster)


async def _with_roster(load: Callable[[], Awaitable[list[AmbassadorView]]]) -> tuple[list[AmbassadorView], Roster]:
    people = await load()
    found, turns = {}, Turns()
    for view in people:  # ~5 us a person: thousands of them, with the other requests going on meanwhile
        found[view.ambassador_id] = standings(view)
        await turns.take()
    return people, Roster(people, found)


ReportKey = tuple[int, str, int, str, Dimension, str | None, Period, Granularity | None]
"""(generation, tenant, roster revision, view, dimension, value, period, granularity) of a computed report."""


class _Refused:
    """A refusal (unknown subject, team too small) kept like an answer, so that it is computed once too."""

    def __init__(self, error: UnknownSubject | GroupTooSmall):
        self.error = error


async def _outcome(compute: Callable[[], Awaitable[object]]) -> object:
    try:
        return await compute()
    except (UnknownSubject, GroupTooSmall) as error:
        return _Refused(error)


@dataclass(frozen=True)
class _Computed:
    """A kept report's outcome, the tenant's data revision its computation read under, and when it started."""

    outcome: object
    data_revision: int
    computed_at: float


class _InFlight:
    """Concurrent callers of one key share the call under way, so that 50 requests arriving together make one
    read, not 50 (each read of the live pointer is a round trip FerretDB pays CPU for). A caller never gets
    an answer older than the call it joined, which started at most one round trip before it."""

    def __init__(self) -> None:
        self._calls: dict[Hashable, asyncio.Task[Any]] = {}

    async def run(self, key: Hashable, call: Callable[[], Awaitable[Any]]) -> Any:
        task = self._calls.get(key)
        if task is None or task.done():
            task = asyncio.get_running_loop().create_task(call())
            self._calls[key] = task
            task.add_done_callback(lambda done: self._calls.pop(key, None) if self._calls.get(key) is done else None)
        return await asyncio.shield(task)


class MetricsQueries:
    """The KPI views, each scoped to the caller's tenant, with the privacy rules of team and individual figures.

    `reports` (optional) keeps each COMPUTED aggregate report a moment per process (see `RefreshingCache`):
    on FerretDB 1.x reading its rows is a scan and computing it walks the period's activity, and
    dashboards ask for the same report again and again; one computation per key however many requests
    wait for it. The key holds the generation and the tenant's roster revision (both read on every
    request: a rebuild's switch, an opt-in, an opt-out or an erasure is seen at once; new counts show
    within the window) and the tenant; individual figures (`my_series`, the leaderboard) are never kept.
    """

    def __init__(self, generations: Generations, policy: ReportPolicy,
                 reports: RefreshingCache[ReportKey, _Computed] | None = None, roster_seconds: float = ROSTER_SECONDS,
                 recompute_seconds: float = RECOMPUTE_SECONDS):
        self.generations = generations
        self.recompute_seconds = recompute_seconds
        self.policy = policy
        self.reports = reports or RefreshingCache(0)
        # The ambassador projection of a tenant, kept under its roster revision: exact whatever the window
        # (each change raises the revision), which only bounds how long a raise the worker did not get to
        # (killed between the write and the raise; its redelivery raises it) could go unseen.
        self.rosters: RefreshingCache[tuple[int, str, int], tuple[list[AmbassadorView], Roster]] = RefreshingCache(
            roster_seconds if self.reports.fresh_seconds > 0 else 0, capacity=ROSTERS_KEPT)
        self._pointers = _InFlight()
        self._roster_revisions: dict[tuple[int, str], int] = {}  # the revision whose projection is kept

    async def _live(self) -> MetricsStore:
        return self.generations.store(await self.generations.current())

    async def _live_revision(self, tenant: str) -> tuple[int, Revisions]:
        """The live generation and the tenant's revisions in it: read on every request (joined by the
        requests arriving while it runs), so that a switch or a roster change is seen at once."""
        generation = await self.generations.current()
        return generation, await self.generations.store(generation).revisions(tenant)

    async def _kept(self, tenant: str, view: str, dimension: Dimension, value: str | None, period: Period,
                    granularity: Granularity | None,
                    compute: Callable[[MetricsStore, KeptRoster], Awaitable[object]]) -> Any:
        """An aggregate report of the live generation, computed at most once per key and freshness window."""
        if dimension is Dimension.AMBASSADOR:
            raise ValueError("individual figures are never kept across callers")
        generation, (revision, data_revision) = await self._pointers.run(tenant, lambda: self._live_revision(tenant))
        store = self.generations.store(generation)

        async def roster() -> tuple[list[AmbassadorView], Roster]:
            previous = self._roster_revisions.get((generation, tenant))
            if previous != revision:
                # The projection under an older revision may hold an erased person's chosen name: not kept.
                if previous is not None:
                    self.rosters.discard((generation, tenant, previous))
                self._roster_revisions[(generation, tenant)] = revision
            return await self.rosters.get((generation, tenant, revision),
                                          lambda: _with_roster(lambda: store.list_ambassadors(tenant)))

        key = (generation, tenant, revision, view, dimension, value, period, granularity)

        async def computed() -> _Computed:
            # Past its window, a report is computed again only if the tenant's figures were written since
            # (the worker raises the data revision after each write): a dashboard over figures nobody adds
            # to costs the database nothing per window. Reused at most `recompute_seconds` all the same.
            kept, now = self.reports.peek(key), self.reports.now()
            if isinstance(kept, _Computed) and kept.data_revision == data_revision \
                    and now - kept.computed_at < self.recompute_seconds:
                return kept
            return _Computed(await _outcome(lambda: compute(store, roster)), data_revision, now)

        outcome = (await self.reports.get(key, computed)).outcome
        if isinstance(outcome, _Refused):
            raise outcome.error.with_traceback(None)  # shared by every waiter: no traceback piles up on it
        return outcome

    def _report(self, snapshot: Snapshot, value: str, period: Period) -> KpiReport:
        return KpiReport(snapshot.dimension, value, period,
                         kpis_of(snapshot, value, period, self.policy.cpm_by_network))

    async def _series(self, snapshot: Snapshot, value: str, period: Period, granularity: Granularity) -> Series:
        points, turns = [], Turns()
        for point in series_points(snapshot, value, period, granularity, self.policy.cpm_by_network):
            points.append(point)
            await turns.take()  # a 90-day series is 90 reports: the other requests go on between them
        return Series(snapshot.dimension, value, granularity, period, points)

    async def _visible_snapshot(self, store: MetricsStore, roster: KeptRoster, tenant: str, dimension: Dimension,
                                value: str, period: Period) -> Snapshot:
        """One dimension value; UnknownSubject when the tenant never saw it (a campaign, content item or
        team); the threshold for teams."""
        snapshot = await load_snapshot(store, tenant, dimension, value, period, roster)
        if dimension is Dimension.TEAM:
            if not snapshot.rows and team_size(snapshot.ambassadors, value) == 0 \
                    and not await store.list_counters(tenant, dimension, value, ALL_TIME):
                raise UnknownSubject(dimension)
            require_visible_team(snapshot.ambassadors, value, self.policy.min_team_size)
        elif dimension in (Dimension.CAMPAIGN, Dimension.CONTENT) and not snapshot.rows:
            if not await self._known(store, tenant, dimension, value):
                raise UnknownSubject(dimension)
        return snapshot

    @staticmethod
    async def _known(store: MetricsStore, tenant: str, dimension: Dimension, value: str) -> bool:
        contents = await store.list_contents(tenant)
        seen = {c.campaign_id if dimension is Dimension.CAMPAIGN else c.content_id for c in contents}
        return value in seen or bool(await store.list_counters(tenant, dimension, value, ALL_TIME))

    # --- the views ------------------------------------------------------------------------

    async def overview(self, tenant: str, period: Period) -> KpiReport:
        return await self.report(tenant, Dimension.TENANT, TENANT_VALUE, period)

    async def report(self, tenant: str, dimension: Dimension, value: str, period: Period) -> KpiReport:
        """One campaign, content item, network or team (teams only at or above the threshold); the tenant."""
        async def compute(store: MetricsStore, roster: KeptRoster) -> KpiReport:
            snapshot = await self._visible_snapshot(store, roster, tenant, dimension, value, period)
            return self._report(snapshot, value, period)

        return await self._kept(tenant, "report", dimension, value, period, None, compute)

    async def teams(self, tenant: str, period: Period) -> TeamReports:
        async def compute(store: MetricsStore, roster: KeptRoster) -> TeamReports:
            snapshot = await load_snapshot(store, tenant, Dimension.TEAM, None, period, roster)
            minimum = self.policy.min_team_size
            teams = every_team(snapshot)
            shown = sorted(t for t in teams if team_size(snapshot.ambassadors, t) >= minimum)
            return TeamReports(period, minimum, [self._report(snapshot, team, period) for team in shown],
                               len(teams) - len(shown))

        return await self._kept(tenant, "teams", Dimension.TEAM, None, period, None, compute)

    async def series(self, tenant: str, dimension: Dimension, value: str, period: Period,
                     granularity: Granularity) -> Series:
        """KPIs per bucket of one dimension value (never an individual's: see `my_series`)."""
        async def compute(store: MetricsStore, roster: KeptRoster) -> Series:
            snapshot = await self._visible_snapshot(store, roster, tenant, dimension, value, period)
            return await self._series(snapshot, value, period, granularity)

        return await self._kept(tenant, "series", dimension, value, period, granularity, compute)

    async def me(self, principal: Principal) -> Person:
        """The caller as an ambassador: the id holding their login now (never an erased predecessor's)."""
        return Person(principal.tenant, await ambassador_id_of(await self._live(), principal))

    async def my_series(self, me: Person, period: Period, granularity: Granularity) -> Series:
        """The caller's own figures; nobody else's can be asked for."""
        snapshot = await load_snapshot(await self._live(), me.tenant, Dimension.AMBASSADOR, me.ambassador_id, period)
        return await self._series(snapshot, me.ambassador_id, period, granularity)

    async def top_contents(self, tenant: str, period: Period, limit: int, min_impressions: int) -> Ranking:
        """Ranked content items with their titles, from the content projection (never a call to content)."""
        store = await self._live()
        rows = await store.list_counters(tenant, Dimension.CONTENT, None, period)
        return Ranking(period, ranked_by_engagement_rate(parts_by_value(rows), limit, min_impressions,
                                                         await self._titles(store, tenant)))

    @staticmethod
    async def _titles(store: MetricsStore, tenant: str) -> dict[str, str | None]:
        return {c.content_id: c.title for c in await store.list_contents(tenant)}

    async def top_topics(self, tenant: str, period: Period, limit: int, min_impressions: int) -> Ranking:
        """A content item's figures count for each of its topics."""
        store = await self._live()
        rows = await store.list_counters(tenant, Dimension.CONTENT, None, period)
        by_topic = parts_by_topic(parts_by_value(rows), await store.list_contents(tenant))
        return Ranking(period, ranked_by_engagement_rate(by_topic, limit, min_impressions))

    async def leaderboard(self, tenant: str, period: Period, limit: int) -> Leaderboard:
        snapshot = await load_snapshot(await self._live(), tenant, Dimension.AMBASSADOR, None, period)
        return Leaderboard(period, leaderboard(snapshot, period, limit))

    async def export(self, tenant: str, dimension: Dimension, period: Period,
                     granularity: Granularity) -> list[ExportRow]:
        """One row per bucket and value; teams below the threshold left out (never individuals: see the API).
        Content rows carry the item's title."""
        store = await self._live()
        snapshot = await load_snapshot(store, tenant, dimension, None, period)
        titles = await self._titles(store, tenant) if dimension is Dimension.CONTENT else {}
        return [ExportRow(dimension, value, point, granularity, titles.get(value))
                for value in visible_values(snapshot, self.policy.min_team_size)
                for point in series_of(snapshot, value, period, granularity, self.policy.cpm_by_network)]

    async def overview_changes(self, tenant: str, poll_seconds: float) -> AsyncIterator[KpiReport]:
        """The last-30-day overview, now and each time it changes (polled every `poll_seconds`)."""
        last: KpiReport | None = None
        while True:
            report = await self.overview(tenant, trailing_days(datetime.now(UTC).date()))
            if report != last:
                last = report
                yield report
                continue
            await asyncio.sleep(poll_seconds)


async def rebuild_generation(generations: Generations,
                             replay: Callable[[int, MetricsStore], Awaitable[int]]) -> tuple[int, int]:
    """Fill a fresh generation with `replay` (every topic from the start), then make it live.

    Returns the generation and how many records were replayed. The old
    generation stays untouched, so a switch back is one pointer write.
    """
    generation = await generations.allocate()
    store = await generations.prepare(generation, empty=True)
    applied = await replay(generation, store)
    await generations.switch_to(generation)
    return generation, applied
