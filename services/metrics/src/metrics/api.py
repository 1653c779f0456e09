"""The metrics HTTP API: parse, call a use case of `service.py`, render; docstrings are the OpenAPI text."""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Security
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sse_starlette import EventSourceResponse, ServerSentEvent

from advocacy_common.bounded import Cursor, PathId, QueryText, SaneDate
from advocacy_common.auth import BEARER, Principal, Role, authenticate, require_roles
from advocacy_common.cursors import CursorCodec
from advocacy_common.errors import Problem, invalid, not_found, problem_response
from advocacy_common.events import Network
from advocacy_common.stream_tickets import MongoTicketLedger, StreamSlots, TicketSigner

from .models import TENANT_VALUE, Dimension, Granularity, Period, trailing_days
from .schemas import KpiReport, Leaderboard, Ranking, StreamTicket, TeamList, TimeSeries, csv_export
from .service import GroupTooSmall, MetricsQueries, UnknownSubject

MAX_PERIOD_DAYS = 731
_RENDERED: dict[tuple[type[BaseModel], int], bytes] = {}


def rendered(schema: type[BaseModel], report: Any) -> Response:
    """A report's JSON, rendered once per report object: the service hands every caller within its window
    the same kept object, and validating and serialising it was most of a kept answer's CPU (90 points of a
    daily series). The rendering is dropped with the object."""
    key = (schema, id(report))
    body = _RENDERED.get(key)
    if body is None:
        body = _RENDERED[key] = schema.model_validate(report).model_dump_json().encode()
        weakref.finalize(report, _RENDERED.pop, key, None)
    return Response(body, media_type="application/json")
SSE_LINE_END = "\n"  # as the stream always sent (the library's default is CRLF)
GROUP_TOO_SMALL_TYPE = "https://advocacy.example/problems/group-too-small"

STREAM_ROLES = (Role.ANALYST, Role.ADMIN)
analysts = require_roles(*STREAM_ROLES)
team_viewers = require_roles(Role.ANALYST, Role.ADMIN, Role.MANAGER)
ambassadors_only = require_roles(Role.AMBASSADOR)

router = APIRouter(prefix="/v1/metrics", tags=["metrics"])
tickets_router = APIRouter(prefix="/v1", tags=["stream"])


@dataclass(frozen=True)
class StreamTiming:
    poll_seconds: float  # how often the stream recomputes the overview
    heartbeat_seconds: float  # how often a comment line keeps idle connections open


@dataclass(frozen=True)
class StreamAccess:
    """How a browser opens the stream: a ticket instead of the header, and a cap per caller."""

    signer: TicketSigner
    ledger: MongoTicketLedger
    slots: StreamSlots


def install_problems(app: FastAPI) -> None:
    """The use cases' refusals as problem documents."""

    @app.exception_handler(UnknownSubject)
    async def _unknown(request: Request, exc: UnknownSubject) -> JSONResponse:
        return problem_response(not_found(exc.dimension.value), request)

    @app.exception_handler(GroupTooSmall)
    async def _too_small(request: Request, exc: GroupTooSmall) -> JSONResponse:
        return problem_response(Problem(
            403, "Group too small",
            f"Team figures are shown only for teams of at least {exc.minimum} opted-in ambassadors, "
            "so that no individual can be singled out.",
            type_=GROUP_TOO_SMALL_TYPE, min_team_size=exc.minimum), request)


def queries(request: Request) -> MetricsQueries:
    # Read from the request, not declared as a dependency: each dependency FastAPI solves costs every
    # request ~10-30 us of CPU, and this one, a plain `def`, ran in its thread pool (bench/README.md).
    return request.app.state.queries


# `async`, though it never awaits: FastAPI runs a plain `def` dependency in its thread pool, a hop that
# cost every request ~0.15 ms of CPU (bench/README.md, "The metrics API's dependencies").
async def requested_period(first: Annotated[SaneDate | None, Query(alias="from", description="First UTC day (default: 29 days before `to`)")] = None,
                           last: Annotated[SaneDate | None, Query(alias="to", description="Last UTC day, included (default: today)")] = None) -> Period:
    last = last or datetime.now(UTC).date()
    period = Period(first, last) if first else trailing_days(last)
    if period.first > period.last:
        raise invalid("from", "must not be after `to`")
    if (period.last - period.first).days >= MAX_PERIOD_DAYS:
        raise invalid("to", f"a period spans at most {MAX_PERIOD_DAYS} days")
    return period


PeriodDep = Annotated[Period, Depends(requested_period)]
Limit = Annotated[int, Query(ge=1, le=100)]
MinImpressions = Annotated[int, Query(ge=1, le=2**63 - 1)]


@router.get("/overview", response_model=KpiReport)
async def overview(request: Request, period: PeriodDep, principal: Principal = Depends(analysts)) -> Response:
    """Every KPI of the whole programme for a period (default: the last 30 days)."""
    return rendered(KpiReport, await queries(request).overview(principal.tenant, period))


@router.get("/campaigns/{campaign_id}", response_model=KpiReport)
async def campaign(campaign_id: PathId, request: Request, period: PeriodDep,
                   principal: Principal = Depends(analysts)) -> Response:
    """Every KPI of one campaign for a period."""
    return rendered(KpiReport, await queries(request).report(principal.tenant, Dimension.CAMPAIGN, campaign_id, period))


@router.get("/contents/{content_id}", response_model=KpiReport)
async def content(content_id: PathId, request: Request, period: PeriodDep,
                  principal: Principal = Depends(analysts)) -> Response:
    """Every KPI of one content item for a period."""
    return rendered(KpiReport, await queries(request).report(principal.tenant, Dimension.CONTENT, content_id, period))


@router.get("/networks/{network}", response_model=KpiReport)
async def network(network: Network, request: Request, period: PeriodDep,
                  principal: Principal = Depends(analysts)) -> Response:
    """Every KPI of one social network for a period (opted-in = ambassadors present on it)."""
    report = await queries(request).report(principal.tenant, Dimension.NETWORK, network.value, period)
    return rendered(KpiReport, report)


@router.get("/teams", response_model=TeamList)
async def teams(request: Request, period: PeriodDep, limit: Limit = 50, cursor: Cursor | None = None,
                principal: Principal = Depends(team_viewers)) -> TeamList:
    """KPIs of every team at or above the minimum size, by team id, paged; smaller teams are only counted."""
    listing = TeamList.model_validate(await queries(request).teams(principal.tenant, period))
    return _paged(listing, request, "teams", principal, period, cursor, limit)


@router.get("/teams/{team_id}", response_model=KpiReport)
async def team(team_id: PathId, request: Request, period: PeriodDep,
               principal: Principal = Depends(team_viewers)) -> Response:
    """Every KPI of one team, if it has at least the minimum number of opted-in ambassadors (else 403 "group too small")."""
    return rendered(KpiReport, await queries(request).report(principal.tenant, Dimension.TEAM, team_id, period))


@router.get("/timeseries", response_model=TimeSeries)
async def timeseries(request: Request, period: PeriodDep,
                     dimension: Dimension = Dimension.TENANT, value: QueryText | None = None,
                     granularity: Granularity = Granularity.DAY,
                     principal: Principal = Depends(team_viewers)) -> Response:
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
    return rendered(TimeSeries, await queries(request).series(principal.tenant, dimension, value, period, granularity))


@router.get("/top/contents", response_model=Ranking)
async def top_contents(request: Request, period: PeriodDep, limit: Limit = 10,
                       min_impressions: MinImpressions = 1, cursor: Cursor | None = None,
                       principal: Principal = Depends(analysts)) -> Ranking:
    """Content items with their titles by engagement rate, highest first, paged (items with fewer impressions
    than `min_impressions` left out)."""
    ranking = Ranking.model_validate(
        await queries(request).top_contents(principal.tenant, period, MAX_RANKED, min_impressions))
    return _paged(ranking, request, f"top/contents:{min_impressions}", principal, period, cursor, limit)


@router.get("/top/topics", response_model=Ranking)
async def top_topics(request: Request, period: PeriodDep, limit: Limit = 10,
                     min_impressions: MinImpressions = 1, cursor: Cursor | None = None,
                     principal: Principal = Depends(analysts)) -> Ranking:
    """Topics by engagement rate, paged: each content item's figures count for each of its topics."""
    ranking = Ranking.model_validate(
        await queries(request).top_topics(principal.tenant, period, MAX_RANKED, min_impressions))
    return _paged(ranking, request, f"top/topics:{min_impressions}", principal, period, cursor, limit)


@router.get("/me", response_model=TimeSeries)
async def my_statistics(request: Request, period: PeriodDep, granularity: Granularity = Granularity.MONTH,
                        principal: Principal = Depends(ambassadors_only)) -> TimeSeries:
    """Your own statistics (reach, engagement, clicks...), by day, week or month. Nobody else can read them."""
    use = queries(request)
    return TimeSeries.model_validate(await use.my_series(await use.me(principal), period, granularity))


@router.get("/leaderboard", response_model=Leaderboard)
async def leaderboard(request: Request, period: PeriodDep, limit: Limit = 20,
                      cursor: Cursor | None = None, principal: Principal = Depends(authenticate)) -> Leaderboard:
    """Ambassadors who chose to appear, by engagements in the period, paged. Nobody else is ever listed."""
    board = Leaderboard.model_validate(await queries(request).leaderboard(principal.tenant, period, MAX_RANKED))
    return _paged(board, request, "leaderboard", principal, period, cursor, limit)


# Rankings, the leaderboard and the team list are computed whole from the period's rolled-up rows (a
# bounded number of documents), so they page by position: the cursor is signed and bound to the list,
# its parameters, the caller and the period (another list's or period's cursor is a 400).
MAX_RANKED = 10_000


def _paged(listing, request: Request, scope: str, principal: Principal, period: Period, cursor: str | None,
           limit: int):
    codec: CursorCodec = request.app.state.cursors
    bound = "\x1f".join(("metrics", scope, principal.tenant, principal.subject, period.first_day, period.last_day))
    decoded = codec.decode(bound, cursor, (int,))
    offset = decoded[0] if decoded else 0
    if offset < 0:
        raise invalid("cursor", "is not a cursor this list returned")
    end = offset + limit
    more = end < len(listing.items)
    return listing.model_copy(update={"items": listing.items[offset:end],
                                      "next_cursor": codec.encode(bound, (end,)) if more else None})


@router.get("/export.csv", response_class=Response,
            responses={200: {"content": {"text/csv": {}}, "description": "One row per bucket and value"}})
async def export_csv(request: Request, period: PeriodDep,
                     dimension: Dimension = Dimension.TENANT, granularity: Granularity = Granularity.DAY,
                     principal: Principal = Depends(analysts)) -> Response:
    """KPIs as CSV, one row per bucket and dimension value (teams below the minimum size left out)."""
    if dimension is Dimension.AMBASSADOR:
        raise invalid("dimension", "individual figures are not exported")
    rows = await queries(request).export(principal.tenant, dimension, period, granularity)
    filename = f"kpis-{dimension.value}-{period.first_day}-{period.last_day}.csv"
    return Response(csv_export(rows), media_type="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@tickets_router.post("/stream-tickets", response_model=StreamTicket, status_code=201)
async def issue_stream_ticket(request: Request, response: Response,
                              principal: Principal = Depends(analysts)) -> StreamTicket:
    """A ticket that opens `/v1/metrics/stream?ticket=...` once, within a minute, for you only.

    For browsers, whose `EventSource` cannot send the `Authorization` header: ask for a ticket with
    your bearer token, then open the stream with it. Never put the token itself in a URL."""
    access: StreamAccess = request.app.state.stream_access
    issued = access.signer.issue(principal)
    response.headers["Cache-Control"] = "no-store"  # a credential, however short-lived
    return StreamTicket(ticket=issued.ticket, expires_in=issued.expires_in)


async def stream_caller(request: Request, ticket: Annotated[str | None, Query(
        description="A ticket from POST /v1/stream-tickets, for clients that cannot send the header")] = None,
                        _declared: object = Security(BEARER, scopes=list(STREAM_ROLES))) -> Principal:
    """The caller of the stream: from a single-use ticket when one is given, else from the bearer token."""
    if ticket is None:
        principal = await authenticate(request)
    else:
        access: StreamAccess = request.app.state.stream_access
        principal = await access.ledger.redeem(access.signer.read(ticket))
    if not principal.has_any(*STREAM_ROLES):
        raise Problem(403, "Forbidden", f"This requires one of the roles: {', '.join(sorted(STREAM_ROLES))}.")
    return principal


@router.get("/stream", response_class=EventSourceResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"},
                       429: {"description": "Too many open streams for this caller"}})
async def stream(request: Request, principal: Principal = Depends(stream_caller),
                 max_events: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="Close after this many updates")] = None
                 ) -> EventSourceResponse:
    """Server-Sent Events: `event: kpis` with the programme's last-30-day KPIs each time they change,
    and a comment line as heartbeat. Reconnect at will; every update carries the full figures.

    Authenticate with the `Authorization` header or, from a browser, `?ticket=` (see `POST /v1/stream-tickets`).
    When the token expires the stream sends `event: expired` and closes: reconnect with a fresh token."""
    timing: StreamTiming = request.app.state.stream_timing
    slots: StreamSlots = request.app.state.stream_access.slots
    token_expiry = float(principal.claims["exp"])

    async def updates() -> AsyncIterator[ServerSentEvent | None]:
        sent = 0
        with slots.held(principal):
            yield None  # the slot is taken: see below
            async with aclosing(queries(request).overview_changes(principal.tenant, timing.poll_seconds)) as changes:
                while (remaining := token_expiry - time.time()) > 0:
                    try:
                        report = await asyncio.wait_for(anext(changes), remaining)
                    except TimeoutError:
                        break
                    sent += 1
                    payload = json.dumps(KpiReport.model_validate(report).model_dump(mode="json"))
                    yield ServerSentEvent(payload, event="kpis", id=str(sent), sep=SSE_LINE_END)
                    if max_events is not None and sent >= max_events:
                        return
            yield ServerSentEvent("{}", event="expired", sep=SSE_LINE_END)

    events = updates()
    # Run up to the first `yield` now: a full cap answers 429 before the response starts, and once the
    # generator has started its `finally` gives the slot back however the stream ends.
    await anext(events)
    return EventSourceResponse(events, sep=SSE_LINE_END, ping=timing.heartbeat_seconds,
                               ping_message_factory=lambda: ServerSentEvent(comment="keep-alive", sep=SSE_LINE_END),
                               headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
