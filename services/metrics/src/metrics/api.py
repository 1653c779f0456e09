"""The metrics HTTP API: thin endpoints over `reports`; docstrings are the OpenAPI text."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse

from advocacy_common.auth import Principal, Role, authenticate, require_roles
from advocacy_common.errors import Problem, invalid, not_found
from advocacy_common.events import Network

from . import reports
from .models import TENANT_VALUE, Dimension, Granularity, Period, trailing_days
from .ports import MetricsStore
from .schemas import KpiReport, Leaderboard, Ranking, TeamList, TimeSeries
from .store import Generations

MAX_PERIOD_DAYS = 731
GROUP_TOO_SMALL_TYPE = "https://advocacy.example/problems/group-too-small"

analysts = require_roles(Role.ANALYST, Role.ADMIN)
team_viewers = require_roles(Role.ANALYST, Role.ADMIN, Role.MANAGER)
ambassadors_only = require_roles(Role.AMBASSADOR)

router = APIRouter(prefix="/v1/metrics", tags=["metrics"])


async def current_store(request: Request) -> MetricsStore:
    """The live generation (the rebuild moves a pointer; readers follow it on their next request)."""
    generations: Generations = request.app.state.generations
    return generations.store(await generations.current())


def requested_period(first: Annotated[date | None, Query(alias="from", description="First UTC day (default: 29 days before `to`)")] = None,
                     last: Annotated[date | None, Query(alias="to", description="Last UTC day, included (default: today)")] = None) -> Period:
    last = last or datetime.now(UTC).date()
    period = Period(first, last) if first else trailing_days(last)
    if period.first > period.last:
        raise invalid("from", "must not be after `to`")
    if (period.last - period.first).days >= MAX_PERIOD_DAYS:
        raise invalid("to", f"a period spans at most {MAX_PERIOD_DAYS} days")
    return period


StoreDep = Annotated[MetricsStore, Depends(current_store)]
PeriodDep = Annotated[Period, Depends(requested_period)]


def _settings(request: Request):
    return request.app.state.settings


def _report(snapshot: reports.Snapshot, value: str, period: Period, request: Request) -> KpiReport:
    return KpiReport.model_validate({
        "dimension": snapshot.dimension.value, "value": value,
        "period": {"first_day": period.first, "last_day": period.last},
        "kpis": reports.kpis_of(snapshot, value, period, _settings(request).cpm_by_network)})


async def _visible_snapshot(store: MetricsStore, principal: Principal, dimension: Dimension, value: str,
                            period: Period, request: Request) -> reports.Snapshot:
    """Load one dimension value; 404 when the tenant never saw it; the team threshold for teams."""
    snapshot = await reports.load(store, principal.tenant, dimension, value, period)
    if dimension is Dimension.TEAM:
        if not snapshot.rows and reports.team_size(snapshot.ambassadors, value) == 0 \
                and not await store.list_counters(principal.tenant, dimension, value, Period(date.min, date.max)):
            raise not_found("team")
        _require_visible_team(snapshot, value, request)
    elif dimension in (Dimension.CAMPAIGN, Dimension.CONTENT) and not snapshot.rows:
        if not await _known(store, principal.tenant, dimension, value):
            raise not_found(dimension.value)
    return snapshot


async def _known(store: MetricsStore, tenant: str, dimension: Dimension, value: str) -> bool:
    field = "campaign_id" if dimension is Dimension.CAMPAIGN else "content_id"
    if any(c.get(field) == value for c in await store.list_contents(tenant)):
        return True
    return bool(await store.list_counters(tenant, dimension, value, Period(date.min, date.max)))


def _require_visible_team(snapshot: reports.Snapshot, team_id: str, request: Request) -> None:
    minimum = _settings(request).min_team_size
    try:
        reports.require_visible_team(snapshot.ambassadors, team_id, minimum)
    except reports.GroupTooSmall:
        raise Problem(403, "Group too small",
                      f"Team figures are shown only for teams of at least {minimum} opted-in ambassadors, "
                      "so that no individual can be singled out.",
                      type_=GROUP_TOO_SMALL_TYPE, min_team_size=minimum) from None


@router.get("/overview", response_model=KpiReport)
async def overview(request: Request, store: StoreDep, period: PeriodDep,
                   principal: Principal = Depends(analysts)) -> KpiReport:
    """Every KPI of the whole programme for a period (default: the last 30 days)."""
    snapshot = await reports.load(store, principal.tenant, Dimension.TENANT, TENANT_VALUE, period)
    return _report(snapshot, TENANT_VALUE, period, request)


@router.get("/campaigns/{campaign_id}", response_model=KpiReport)
async def campaign(campaign_id: str, request: Request, store: StoreDep, period: PeriodDep,
                   principal: Principal = Depends(analysts)) -> KpiReport:
    """Every KPI of one campaign for a period."""
    snapshot = await _visible_snapshot(store, principal, Dimension.CAMPAIGN, campaign_id, period, request)
    return _report(snapshot, campaign_id, period, request)


@router.get("/contents/{content_id}", response_model=KpiReport)
async def content(content_id: str, request: Request, store: StoreDep, period: PeriodDep,
                  principal: Principal = Depends(analysts)) -> KpiReport:
    """Every KPI of one content item for a period."""
    snapshot = await _visible_snapshot(store, principal, Dimension.CONTENT, content_id, period, request)
    return _report(snapshot, content_id, period, request)


@router.get("/networks/{network}", response_model=KpiReport)
async def network(network: Network, request: Request, store: StoreDep, period: PeriodDep,
                  principal: Principal = Depends(analysts)) -> KpiReport:
    """Every KPI of one social network for a period (opted-in = ambassadors present on it)."""
    snapshot = await reports.load(store, principal.tenant, Dimension.NETWORK, network.value, period)
    return _report(snapshot, network.value, period, request)


@router.get("/teams", response_model=TeamList)
async def teams(request: Request, store: StoreDep, period: PeriodDep,
                principal: Principal = Depends(team_viewers)) -> TeamList:
    """KPIs of every team at or above the minimum size; smaller teams are only counted."""
    snapshot = await reports.load(store, principal.tenant, Dimension.TEAM, None, period)
    minimum = _settings(request).min_team_size
    every_team = {row["value"] for row in snapshot.rows} | {
        a["team_id"] for a in reports.opted_in(snapshot.ambassadors) if a.get("team_id")}
    shown = sorted(t for t in every_team if reports.team_size(snapshot.ambassadors, t) >= minimum)
    return TeamList(period={"first_day": period.first, "last_day": period.last}, min_team_size=minimum,
                    teams=[_report(snapshot, team, period, request) for team in shown],
                    hidden_teams=len(every_team) - len(shown))


@router.get("/teams/{team_id}", response_model=KpiReport)
async def team(team_id: str, request: Request, store: StoreDep, period: PeriodDep,
               principal: Principal = Depends(team_viewers)) -> KpiReport:
    """Every KPI of one team, if it has at least the minimum number of opted-in ambassadors (else 403 "group too small")."""
    snapshot = await _visible_snapshot(store, principal, Dimension.TEAM, team_id, period, request)
    return _report(snapshot, team_id, period, request)


@router.get("/timeseries", response_model=TimeSeries)
async def timeseries(request: Request, store: StoreDep, period: PeriodDep,
                     dimension: Dimension = Dimension.TENANT, value: str | None = None,
                     granularity: Granularity = Granularity.DAY,
                     principal: Principal = Depends(team_viewers)) -> TimeSeries:
    """KPIs by day, ISO week (starting Monday) or month; buckets are clipped to the period.

    Managers may ask for team series only; the team threshold applies.
    """
    if dimension is Dimension.AMBASSADOR:
        raise invalid("dimension", "individual series are only available to the ambassador, at /v1/metrics/me")
    if principal.roles.isdisjoint({Role.ANALYST, Role.ADMIN}) and dimension is not Dimension.TEAM:
        raise Problem(403, "Forbidden", "Managers see team aggregates only.")
    if dimension is Dimension.TENANT:
        value = TENANT_VALUE
    elif not value:
        raise invalid("value", f"is required for the {dimension.value} dimension")
    snapshot = await _visible_snapshot(store, principal, dimension, value, period, request)
    return TimeSeries.model_validate({
        "dimension": dimension.value, "value": value, "granularity": granularity.value,
        "period": {"first_day": period.first, "last_day": period.last},
        "points": reports.series_of(snapshot, value, period, granularity, _settings(request).cpm_by_network)})


@router.get("/top/contents", response_model=Ranking)
async def top_contents(store: StoreDep, period: PeriodDep,
                       limit: Annotated[int, Query(ge=1, le=100)] = 10,
                       min_impressions: Annotated[int, Query(ge=1)] = 1,
                       principal: Principal = Depends(analysts)) -> Ranking:
    """Content items by engagement rate, highest first (items with fewer impressions than `min_impressions` left out)."""
    rows = await store.list_counters(principal.tenant, Dimension.CONTENT, None, period)
    items = reports.ranked_by_engagement_rate(reports.parts_by_value(rows), limit, min_impressions)
    return Ranking.model_validate({"period": {"first_day": period.first, "last_day": period.last}, "items": items})


@router.get("/top/topics", response_model=Ranking)
async def top_topics(store: StoreDep, period: PeriodDep,
                     limit: Annotated[int, Query(ge=1, le=100)] = 10,
                     min_impressions: Annotated[int, Query(ge=1)] = 1,
                     principal: Principal = Depends(analysts)) -> Ranking:
    """Topics by engagement rate: each content item's figures count for each of its topics."""
    rows = await store.list_counters(principal.tenant, Dimension.CONTENT, None, period)
    by_topic = reports.parts_by_topic(reports.parts_by_value(rows), await store.list_contents(principal.tenant))
    items = reports.ranked_by_engagement_rate(by_topic, limit, min_impressions)
    return Ranking.model_validate({"period": {"first_day": period.first, "last_day": period.last}, "items": items})


@router.get("/me", response_model=TimeSeries)
async def my_statistics(request: Request, store: StoreDep, period: PeriodDep,
                        granularity: Granularity = Granularity.MONTH,
                        principal: Principal = Depends(ambassadors_only)) -> TimeSeries:
    """Your own statistics (reach, engagement, clicks...), by day, week or month. Nobody else can read them."""
    me = principal.ambassador_id  # the id the ambassador service's events carry for the caller
    snapshot = await reports.load(store, principal.tenant, Dimension.AMBASSADOR, me, period)
    return TimeSeries.model_validate({
        "dimension": Dimension.AMBASSADOR.value, "value": me, "granularity": granularity.value,
        "period": {"first_day": period.first, "last_day": period.last},
        "points": reports.series_of(snapshot, me, period, granularity,
                                    _settings(request).cpm_by_network)})


@router.get("/leaderboard", response_model=Leaderboard)
async def leaderboard(store: StoreDep, period: PeriodDep, limit: Annotated[int, Query(ge=1, le=100)] = 20,
                      principal: Principal = Depends(authenticate)) -> Leaderboard:
    """Ambassadors who chose to appear, by engagements in the period. Nobody else is ever listed."""
    snapshot = await reports.load(store, principal.tenant, Dimension.AMBASSADOR, None, period)
    return Leaderboard.model_validate({"period": {"first_day": period.first, "last_day": period.last},
                                       "entries": reports.leaderboard(snapshot, period, limit)})


CSV_KPIS = ("ambassadors_opted_in", "active_ambassadors", "activation_rate", "shares", "personalization_rate",
            "potential_reach", "impressions", "reactions", "comments", "reshares", "engagement_rate",
            "comment_replies", "comment_response_rate", "clicks", "unique_clicks", "click_through_rate",
            "conversions", "conversion_rate", "earned_media_value")


@router.get("/export.csv", response_class=Response,
            responses={200: {"content": {"text/csv": {}}, "description": "One row per bucket and value"}})
async def export_csv(request: Request, store: StoreDep, period: PeriodDep,
                     dimension: Dimension = Dimension.TENANT, granularity: Granularity = Granularity.DAY,
                     principal: Principal = Depends(analysts)) -> Response:
    """KPIs as CSV, one row per bucket and dimension value (teams below the minimum size left out)."""
    if dimension is Dimension.AMBASSADOR:
        raise invalid("dimension", "individual figures are not exported")
    snapshot = await reports.load(store, principal.tenant, dimension, None, period)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["period_start", "first_day", "last_day", "dimension", "value", *CSV_KPIS])
    for value in reports.visible_values(snapshot, _settings(request).min_team_size):
        for point in reports.series_of(snapshot, value, period, granularity, _settings(request).cpm_by_network):
            writer.writerow([point["period_start"], point["first_day"], point["last_day"], dimension.value, value,
                             *("" if point["kpis"][k] is None else point["kpis"][k] for k in CSV_KPIS)])
    filename = f"kpis-{dimension.value}-{period.first_day}-{period.last_day}.csv"
    return Response(out.getvalue(), media_type="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@router.get("/stream", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}})
async def stream(request: Request, principal: Principal = Depends(analysts),
                 max_events: Annotated[int | None, Query(ge=1, description="Close after this many updates")] = None
                 ) -> StreamingResponse:
    """Server-Sent Events: `event: kpis` with the programme's last-30-day KPIs each time they change,
    and a comment line as heartbeat. Reconnect at will; every update carries the full figures."""
    settings = _settings(request)
    generations: Generations = request.app.state.generations

    async def updates() -> AsyncIterator[str]:
        sent, last, quiet = 0, None, 0.0
        while max_events is None or sent < max_events:
            period = trailing_days(datetime.now(UTC).date())
            store = generations.store(await generations.current())
            snapshot = await reports.load(store, principal.tenant, Dimension.TENANT, TENANT_VALUE, period)
            payload = json.dumps(_report(snapshot, TENANT_VALUE, period, request).model_dump(mode="json"))
            if payload != last:
                sent, last, quiet = sent + 1, payload, 0.0
                yield f"id: {sent}\nevent: kpis\ndata: {payload}\n\n"
                continue
            if quiet >= settings.stream_heartbeat_seconds:
                quiet = 0.0
                yield ": keep-alive\n\n"
            await asyncio.sleep(settings.stream_poll_seconds)
            quiet += settings.stream_poll_seconds

    return StreamingResponse(updates(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

