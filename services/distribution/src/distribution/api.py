"""HTTP API of distribution: thin translations to the use cases. Docstrings are the OpenAPI text."""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from advocacy_common.bounded import Cursor, PathId
from advocacy_common.api_support import etag, idempotency_key, page_size, require_if_match
from advocacy_common.auth import Principal, Role, require_roles
from advocacy_common.envelope import utcnow
from advocacy_common.errors import Problem, problem_response, problem_responses

from .feed_rendering import feed_json
from .models.authenticity import AuthenticityPolicy
from .models.engagement import Connector as ConnectorModel
from .models.plausibility import Implausible
from .models.sharing import Refusal, Share as ShareModel, composer_url, post_text
from .options import Options
from .schemas import (
    CommentsAwaitingReply, CommentsAwaitingReplyPage, ConfirmShare, Connector, ConnectorPage, ConversionReport,
    EngagementReport, Feed, NewConnector, PrepareShare, ReportAccepted, Share, SharePage,
)
from .service import Distribution
from .service.engagement import ReportType
from .service.sharing import PolicyChanged


def _distribution(request: Request) -> Distribution:
    return request.app.state.distribution


router = APIRouter(prefix="/v1")
public = APIRouter()
AMBASSADOR = require_roles(Role.AMBASSADOR)
SHARE_ACTORS = require_roles(Role.AMBASSADOR, Role.INTEGRATOR, Role.ADMIN)
CONNECTOR_ADMINS = require_roles(Role.ADMIN, Role.INTEGRATOR)
INTEGRATOR = require_roles(Role.INTEGRATOR)
ADMIN = require_roles(Role.ADMIN)
SIGNED_REPORT = {"parameters": [{"name": "X-Advocacy-Signature", "in": "header", "required": True,
                                 "schema": {"type": "string"},
                                 "description": 't=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">'}]}


@router.get("/feed", response_model=Feed)
async def get_feed(request: Request, limit: int | None = None, cursor: Cursor | None = None,
                   principal: Principal = Depends(AMBASSADOR)) -> Response:
    """Content suggested to me: published, not expired, targeted to my team, location, language, persona and
    topics, on networks I use, not yet shared by me; ranked by topic affinity and freshness. When I may not
    receive suggestions (opted out, charter to accept), the feed is empty and `reason` says why."""
    page = await _distribution(request).sharing.feed(principal, utcnow(), page_size(limit), cursor)
    # Serialised by us: returning the model would make FastAPI dump it, validate the dump against `Feed` and
    # encode that again (0.9 ms against 0.15 ms for a page of 20, measured); the items' bodies are rendered
    # once per content (see feed_rendering.py).
    return Response(feed_json(page), media_type="application/json")


def share_body(share: ShareModel) -> Share:
    return Share.model_validate({**share.model_dump(mode="json"), "share_id": share.id,
                                 "share_composer_url": composer_url(share.network, share.text, share.tracked_link),
                                 "share_text": post_text(share.text, share.tracked_link)})


@router.post("/shares", status_code=201, response_model=Share)
async def prepare(request: Request, body: PrepareShare, principal: Principal = Depends(AMBASSADOR)) -> Share:
    """Prepare a share in my own words. Checks opt-in, charter, content and targeting, network and its length
    limit, the disclosure line, my weekly limit and quiet hours, and that my text is not a near-copy of the
    suggested text nor of colleagues' posts. A refusal is a 422 naming the `rule`, the `score` and the
    `threshold`. Returns my tracked link, the network's share URL and a recommended time slot.
    Send `Idempotency-Key`: the same key returns the same result."""
    share = await _distribution(request).sharing.prepare(principal, body, idempotency_key(request), utcnow())
    return share_body(share)


@router.get("/me/shares", response_model=SharePage)
async def my_shares(request: Request, limit: int | None = None, cursor: Cursor | None = None,
                    principal: Principal = Depends(AMBASSADOR)) -> SharePage:
    """My prepared and confirmed shares, newest first, with cursor pagination."""
    page = await _distribution(request).sharing.mine(principal, cursor, page_size(limit))
    return SharePage(items=[share_body(share) for share in page.items], next_cursor=page.next_cursor)


@router.get("/shares/{share_id}", response_model=Share)
async def get_share(request: Request, share_id: PathId, principal: Principal = Depends(SHARE_ACTORS)) -> Share:
    """One share: mine, or any of my tenant's for admins and connectors."""
    return share_body(await _distribution(request).sharing.get(principal, share_id))


@router.post("/shares/{share_id}/confirm", response_model=Share)
async def confirm(request: Request, share_id: PathId, body: ConfirmShare | None = None,
                  principal: Principal = Depends(SHARE_ACTORS)) -> Share:
    """Confirm the post is online (by me, or by a connector), optionally with its URL. The authenticity rules
    are checked again against what colleagues confirmed since the preparation (a near-copy is a 422 as at
    preparation). Emits `post.shared.v1` with the personalisation scores and my audience on that network;
    confirming again changes nothing. When the network is read by a connector (my LinkedIn account is
    connected, or the tenant has an X app), the URL must be a post of mine (else 422, nothing confirmed)
    and the post's figures are then polled."""
    distribution, post_url = _distribution(request), body.post_url if body else None
    checked = None
    if post_url:
        checked = await distribution.connections.check_post(await distribution.sharing.get(principal, share_id),
                                                            post_url)
    share = await distribution.sharing.confirm(principal, share_id, post_url, utcnow())
    if checked:
        await distribution.connections.track(share, *checked, utcnow())
    return share_body(share)


@router.get("/me/comments-awaiting-reply", response_model=CommentsAwaitingReplyPage)
async def comments_awaiting_reply(request: Request, limit: int | None = None, cursor: Cursor | None = None,
                                  principal: Principal = Depends(AMBASSADOR)) -> CommentsAwaitingReplyPage:
    """My posts with comments I have not replied to yet: answering keeps the conversation (and reach) alive.
    By share id, with cursor pagination."""
    page = await _distribution(request).engagement.comments_awaiting_reply(principal, cursor, page_size(limit))
    items = [CommentsAwaitingReply(share_id=a.tally.share_id, content_id=a.tally.content_id, network=a.tally.network,
                                   post_url=a.post_url, comments=a.tally.comments, replies=a.tally.replies,
                                   awaiting=a.tally.awaiting) for a in page.items]
    return CommentsAwaitingReplyPage(items=items, next_cursor=page.next_cursor)


def connector_body(connector: ConnectorModel, options: Options, with_secret: bool = False) -> Connector:
    base = f"{options.public_base_url}/v1/connectors/{connector.id}"
    return Connector(connector_id=connector.id, name=connector.name, created_at=connector.created_at,
                     engagement_webhook=f"{base}/engagements", conversion_postback=f"{base}/conversions",
                     secret=connector.secret if with_secret else None)


@router.post("/connectors", status_code=201, response_model=Connector)
async def register_connector(request: Request, response: Response, body: NewConnector,
                             principal: Principal = Depends(CONNECTOR_ADMINS)) -> Connector:
    """Register a connector (a tool that reports engagement). The response carries its signing secret, once
    (a retry with the same `Idempotency-Key` returns it again), and `Cache-Control: no-store`. Sign each
    report with it."""
    response.headers["Cache-Control"] = "no-store"  # the body carries a secret: no cache may keep it
    distribution = _distribution(request)
    connector = await distribution.engagement.register_connector(principal, body, idempotency_key(request), utcnow())
    return connector_body(connector, distribution.options, with_secret=True)


@router.get("/connectors", response_model=ConnectorPage)
async def list_connectors(request: Request, limit: int | None = None, cursor: Cursor | None = None,
                          principal: Principal = Depends(CONNECTOR_ADMINS)) -> ConnectorPage:
    """My tenant's connectors, oldest first, without their secrets; cursor pagination."""
    distribution = _distribution(request)
    page = await distribution.engagement.connectors(principal.tenant, cursor, page_size(limit))
    return ConnectorPage(items=[connector_body(c, distribution.options) for c in page.items],
                         next_cursor=page.next_cursor)


async def _ingest(request: Request, principal: Principal, connector_id: PathId, report_type: ReportType) -> ReportAccepted:
    engagement_id = await _distribution(request).engagement.ingest_report(
        principal, connector_id, report_type, await request.body(), request.headers.get("x-advocacy-signature"),
        utcnow())
    return ReportAccepted(engagement_id=engagement_id)


@router.post("/connectors/{connector_id}/engagements", status_code=202, response_model=ReportAccepted,
             responses=problem_responses(409),
             openapi_extra={**SIGNED_REPORT, "requestBody": {"content": {"application/json": {
                 "schema": EngagementReport.model_json_schema()}}}})
async def report_engagement(request: Request, connector_id: PathId,
                            principal: Principal = Depends(INTEGRATOR)) -> ReportAccepted:
    """A connector reports impressions, reactions, comments, comment replies or reshares of one post (by
    `share_id`, `post_url` or `tracked_link_code`). Signed (HMAC-SHA256, 5-minute window). Answers 202 once
    Kafka acknowledged the `engagement.received.v1`; an `id` already received is refused (409). An implausible
    report (a share never confirmed, `occurred_at` outside the post's life, a count out of bounds, replies
    beyond the comments) is a 422 with its `reason` that records and counts nothing."""
    return await _ingest(request, principal, connector_id, EngagementReport)


@router.post("/connectors/{connector_id}/conversions", status_code=202, response_model=ReportAccepted,
             responses=problem_responses(409),
             openapi_extra={**SIGNED_REPORT, "requestBody": {"content": {"application/json": {
                 "schema": ConversionReport.model_json_schema()}}}})
async def report_conversion(request: Request, connector_id: PathId,
                            principal: Principal = Depends(INTEGRATOR)) -> ReportAccepted:
    """Conversion postback (application, download, lead, sign-up) attributed by tracked-link code. Signed like
    engagement reports; answers 202 once Kafka acknowledged; the same plausibility rules (422 with `reason`)."""
    return await _ingest(request, principal, connector_id, ConversionReport)


@router.get("/settings/authenticity", response_model=AuthenticityPolicy)
async def get_policy(request: Request, response: Response,
                     principal: Principal = Depends(ADMIN)) -> AuthenticityPolicy:
    """The tenant's authenticity thresholds (defaults until an admin changes them), with its ETag."""
    stored = await _distribution(request).sharing.policy(principal.tenant)
    response.headers["ETag"] = etag(stored.version)
    return stored.policy


@router.put("/settings/authenticity", response_model=AuthenticityPolicy, responses=problem_responses(412))
async def put_policy(request: Request, response: Response, body: AuthenticityPolicy,
                     principal: Principal = Depends(ADMIN)) -> AuthenticityPolicy:
    """Replace the thresholds (0..1 similarity above which a text counts as a near-copy) and whether a
    near-copy is refused or only flagged. Send `If-Match` with the ETag you read (412 if it changed)."""
    try:
        stored = await _distribution(request).sharing.replace_policy(
            principal.tenant, body, precondition=lambda version: require_if_match(request, version))
    except PolicyChanged:
        # The contract of this resource: a lost race is a failed precondition, like a stale If-Match.
        raise Problem(412, "Precondition Failed", "The settings changed meanwhile; read them again.") from None
    response.headers["ETag"] = etag(stored.version)
    return stored.policy


NOT_FOUND_PAGE = ("<!doctype html><html lang=en><meta charset=utf-8><title>Link not found</title>"
                  "<h1>This link does not exist</h1><p>Check the address, or ask who shared it.</p></html>")


def client_ip(request: Request) -> str:
    forwarded = request.headers.get("x-forwarded-for")
    if forwarded:
        return forwarded.split(",")[0].strip()
    return request.client.host if request.client else ""


REDIRECT_RESPONSES = {302: {"description": "To the content, with UTM parameters"},
                      404: {"description": "Unknown link: a page for people", "content": {"text/html": {}}}}


async def _redirect(request: Request, code: str, count: bool) -> Response:
    target = await _distribution(request).tracking.follow(code, client_ip(request), request.headers.get("user-agent"),
                                                          utcnow(), count=count)
    if target is None:
        return HTMLResponse(NOT_FOUND_PAGE, status_code=404)
    return RedirectResponse(target, status_code=302, headers={"Cache-Control": "no-store",
                                                              "Referrer-Policy": "no-referrer-when-downgrade"})


def without_body(response: Response) -> Response:
    """HEAD: the GET's status and headers (Content-Length included), no body. Starlette sends the body it is
    given whatever the method (servers drop it, in-process transports do not), so we give it none."""
    return Response(status_code=response.status_code, headers=dict(response.headers))


@public.get("/r/{code}", response_class=RedirectResponse, status_code=302, openapi_extra={"security": []},
            responses=REDIRECT_RESPONSES)
async def redirect(request: Request, code: PathId) -> Response:
    """Public tracked link: redirects to the content and counts the click (link-preview bots are not counted;
    visitors are counted once per link through a salted hash, no IP is stored)."""
    return await _redirect(request, code, count=True)


@public.head("/r/{code}", response_class=RedirectResponse, status_code=302, openapi_extra={"security": []},
             responses=REDIRECT_RESPONSES)
async def redirect_head(request: Request, code: PathId) -> Response:
    """The same status and headers as GET (where the link leads), without a body and without counting a click:
    link checkers and unfurlers probe with HEAD."""
    return without_body(await _redirect(request, code, count=False))


def install(app: FastAPI) -> None:
    @app.exception_handler(Refusal)
    async def refused(request: Request, refusal: Refusal) -> JSONResponse:
        extensions = {"rule": refusal.rule, "score": refusal.score, "threshold": refusal.threshold}
        problem = Problem(422, "Share refused", refusal.message, type_=f"urn:advocacy:share-refused:{refusal.rule}",
                          **extensions)
        return problem_response(problem, request)

    @app.exception_handler(Implausible)
    async def implausible(request: Request, error: Implausible) -> JSONResponse:
        problem = Problem(422, "Report refused", f"{error.field}: {error.message}",
                          type_=f"urn:advocacy:report-refused:{error.reason}", reason=error.reason,
                          errors=[{"field": error.field, "message": error.message}])
        return problem_response(problem, request)

    app.include_router(router)
    app.include_router(public)
