"""HTTP API of the content service: thin translation between HTTP and the service layer."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from advocacy_common.api_support import etag, idempotency_key, key_reused_with_other_body, page_size, require_if_match
from advocacy_common.auth import Principal, Role, require_roles
from advocacy_common.bounded import Cursor, QueryText, SaneDate, SaneDatetime
from advocacy_common.errors import Problem, conflict, invalid, problem_response, problem_responses


from .models import (
    Action, FourEyesViolation, InvalidTransition, ItemFilter, KeyUsedForAnotherAction, RuleViolation, Status,
)
from .schemas import (
    Calendar, CalendarDay, CalendarEntry, CampaignIn, CampaignOut, CampaignPatch, Comment, ContentIn, ContentOut,
    ContentPatch, FromDomain, Page, PublishedContentOut, Rejection, TenantSettingsIn, TenantSettingsOut,
)
from .ports import StaleWrite
from .service import ContentService

MAX_CALENDAR_DAYS = 92
MAX_CALENDAR_ITEMS = 2000

router = APIRouter(prefix="/v1")
STALE = problem_responses(412)  # If-Match names another version
CONFLICTS = problem_responses(409, 412)  # and the resource's state forbids the change
staff = require_roles(Role.EDITOR, Role.REVIEWER, Role.ADMIN)
editors = require_roles(Role.EDITOR)
campaign_writers = require_roles(Role.EDITOR, Role.ADMIN)
reviewers = require_roles(Role.REVIEWER)
withdrawers = require_roles(Role.EDITOR, Role.REVIEWER)
ambassadors = require_roles(Role.AMBASSADOR)
admins = require_roles(Role.ADMIN)


def service_of(request: Request) -> ContentService:
    return request.app.state.service


# --- campaigns ---------------------------------------------------------------------------

@router.post("/campaigns", status_code=201, response_model=CampaignOut, tags=["campaigns"])
async def create_campaign(body: CampaignIn, request: Request, response: Response,
                          principal: Principal = Depends(campaign_writers)) -> CampaignOut:
    """Create a campaign with one objective, its period and an optional disclosure line.

    Send an `Idempotency-Key` to make retries safe: the same key and body return the
    campaign created first; the same key with another body is refused (422).
    """
    campaign, created = await service_of(request).create_campaign(principal, body, idempotency_key(request))
    return _created(response, CampaignOut.from_domain(campaign), campaign, created, "campaigns")


@router.get("/campaigns", response_model=Page[CampaignOut], tags=["campaigns"])
async def list_campaigns(request: Request, cursor: Cursor | None = None, limit: int | None = None,
                         principal: Principal = Depends(staff)) -> Page[CampaignOut]:
    """The tenant's campaigns, newest first, one page at a time."""
    page = await service_of(request).list_campaigns(principal.tenant, cursor, page_size(limit))
    return _page(page, CampaignOut)


@router.get("/campaigns/{campaign_id}", response_model=CampaignOut, tags=["campaigns"])
async def get_campaign(campaign_id: str, request: Request, response: Response,
                       principal: Principal = Depends(staff)) -> CampaignOut:
    """One campaign; its `ETag` is what `If-Match` expects on update."""
    campaign = await service_of(request).get_campaign(principal.tenant, campaign_id)
    return _tagged(response, CampaignOut.from_domain(campaign), campaign)


@router.patch("/campaigns/{campaign_id}", response_model=CampaignOut, tags=["campaigns"], responses=STALE)
async def update_campaign(campaign_id: str, patch: CampaignPatch, request: Request, response: Response,
                          principal: Principal = Depends(campaign_writers)) -> CampaignOut:
    """Change some fields of a campaign. With `If-Match`, answers 412 if it changed since you read it."""
    service = service_of(request)
    campaign = await service.get_campaign(principal.tenant, campaign_id)
    require_if_match(request, campaign.version)
    campaign = await service.update_campaign(principal, campaign, patch)
    return _tagged(response, CampaignOut.from_domain(campaign), campaign)


# --- content items ------------------------------------------------------------------------------

@router.post("/content", status_code=201, response_model=ContentOut, tags=["content"])
async def create_content(body: ContentIn, request: Request, response: Response,
                         principal: Principal = Depends(editors)) -> ContentOut:
    """Write a content item; it starts as a draft.

    Suggested texts must fit each network's length limit, be for allowed networks and
    carry the campaign's disclosure line. `Idempotency-Key` makes retries safe.
    """
    item, created = await service_of(request).create_item(principal, body, idempotency_key(request))
    return _created(response, ContentOut.from_domain(item), item, created, "content")


@router.get("/content", response_model=Page[ContentOut], tags=["content"])
async def list_content(request: Request, status: Status | None = None, campaign_id: QueryText | None = None,
                       topic: QueryText | None = None, language: QueryText | None = None,
                       publish_from: SaneDatetime | None = Query(None, description="publish_at at or after"),
                       publish_to: SaneDatetime | None = Query(None, description="publish_at before"),
                       cursor: Cursor | None = None, limit: int | None = None,
                       principal: Principal = Depends(staff)) -> Page[ContentOut]:
    """Content items, newest first, filtered by status, campaign, topic, language and publication range."""
    filters = ItemFilter(status=status, campaign_id=campaign_id, topic=topic.lower() if topic else None,
                         language=language.lower() if language else None,
                         publish_from=publish_from, publish_to=publish_to)
    page = await service_of(request).list_items(principal.tenant, filters, cursor, page_size(limit))
    return _page(page, ContentOut)


@router.get("/content/{item_id}", response_model=ContentOut, tags=["content"])
async def get_content(item_id: str, request: Request, response: Response,
                      principal: Principal = Depends(staff)) -> ContentOut:
    """One item with its workflow history; its `ETag` is what `If-Match` expects."""
    item = await service_of(request).get_item(principal.tenant, item_id)
    return _tagged(response, ContentOut.from_domain(item), item)


@router.patch("/content/{item_id}", response_model=ContentOut, tags=["content"], responses=CONFLICTS)
async def update_content(item_id: str, patch: ContentPatch, request: Request, response: Response,
                         principal: Principal = Depends(editors)) -> ContentOut:
    """Edit an item. An approved item returns to review; a published one emits `content.updated.v1`.

    Retired items cannot change (409). With `If-Match`, 412 if it changed since you read it.
    """
    service = service_of(request)
    item = await service.get_item(principal.tenant, item_id)
    require_if_match(request, item.version)
    item = await service.edit_item(principal, item, patch)
    return _tagged(response, ContentOut.from_domain(item), item)


@router.post("/content/{item_id}/submit", response_model=ContentOut, tags=["workflow"], responses=CONFLICTS)
async def submit_content(item_id: str, request: Request, response: Response,
                         principal: Principal = Depends(editors)) -> ContentOut:
    """Send a draft to review (it needs `publish_at` and at least one suggested text)."""
    return await _act(request, response, principal, item_id, Action.SUBMIT)


@router.post("/content/{item_id}/approve", response_model=ContentOut, tags=["workflow"], responses=CONFLICTS)
async def approve_content(item_id: str, request: Request, response: Response, body: Comment | None = None,
                          principal: Principal = Depends(reviewers)) -> ContentOut:
    """Approve an item in review; it then publishes itself at `publish_at`.

    Four-eyes: unless the tenant turned it off, nobody approves an item they wrote or edited (403).
    """
    return await _act(request, response, principal, item_id, Action.APPROVE, body.comment if body else None)


@router.post("/content/{item_id}/reject", response_model=ContentOut, tags=["workflow"], responses=CONFLICTS)
async def reject_content(item_id: str, body: Rejection, request: Request, response: Response,
                         principal: Principal = Depends(reviewers)) -> ContentOut:
    """Send an item in review back to draft, with a comment for its author."""
    return await _act(request, response, principal, item_id, Action.REJECT, body.comment)


@router.post("/content/{item_id}/withdraw", response_model=ContentOut, tags=["workflow"], responses=CONFLICTS)
async def withdraw_content(item_id: str, request: Request, response: Response, body: Comment | None = None,
                           principal: Principal = Depends(withdrawers)) -> ContentOut:
    """Retire an item now; if it was published, `content.retired.v1` (reason `withdrawn`) follows."""
    return await _act(request, response, principal, item_id, Action.WITHDRAW, body.comment if body else None)


@router.get("/calendar", response_model=Calendar, tags=["content"])
async def editorial_calendar(request: Request, start: SaneDate, end: SaneDate,
                             principal: Principal = Depends(staff)) -> Calendar:
    """The editorial calendar: items by day of `publish_at` (UTC), from `start` to `end` inclusive."""
    if end < start:
        raise invalid("end", "must not be before start")
    if (end - start).days >= MAX_CALENDAR_DAYS:
        raise invalid("end", f"the range may cover at most {MAX_CALENDAR_DAYS} days")
    lower = datetime.combine(start, time.min, tzinfo=UTC)
    upper = datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC)
    items = await service_of(request).calendar(principal.tenant, lower, upper, MAX_CALENDAR_ITEMS)
    days: dict[date, list[CalendarEntry]] = defaultdict(list)
    for item in items:
        if item.publish_at is not None:
            days[item.publish_at.astimezone(UTC).date()].append(CalendarEntry.from_domain(item))
    return Calendar(start=start, end=end, days=[CalendarDay(date=day, items=entries) for day, entries in days.items()])


# --- ambassadors --------------------------------------------------------------------------------

@router.post("/proposals", status_code=201, response_model=ContentOut, tags=["ambassadors"])
async def propose_content(body: ContentIn, request: Request, response: Response,
                          principal: Principal = Depends(ambassadors)) -> ContentOut:
    """An opted-in ambassador proposes content; it lands in review. `Idempotency-Key` makes retries safe."""
    item, created = await service_of(request).propose(principal, body, idempotency_key(request))
    return _created(response, ContentOut.from_domain(item), item, created, "content")


@router.get("/published", response_model=Page[PublishedContentOut], tags=["ambassadors"])
async def list_published(request: Request, cursor: Cursor | None = None, limit: int | None = None,
                         principal: Principal = Depends(ambassadors)) -> Page[PublishedContentOut]:
    """Published items targeted to the calling ambassador (team, location, languages, persona), newest first."""
    page = await service_of(request).feed(principal, cursor, page_size(limit))
    return _page(page, PublishedContentOut)


@router.get("/published/{item_id}", response_model=PublishedContentOut, tags=["ambassadors"])
async def get_published(item_id: str, request: Request,
                        principal: Principal = Depends(ambassadors)) -> PublishedContentOut:
    """One published item, if it is targeted to the calling ambassador (else 404)."""
    return PublishedContentOut.from_domain(await service_of(request).get_published(principal, item_id))


# --- tenant settings ------------------------------------------------------------------------------

@router.get("/settings", response_model=TenantSettingsOut, tags=["settings"])
async def get_settings(request: Request, response: Response,
                       principal: Principal = Depends(admins)) -> TenantSettingsOut:
    """The tenant's editorial settings (four-eyes approval is on unless turned off)."""
    current = await service_of(request).get_tenant_settings(principal.tenant)
    return _tagged(response, TenantSettingsOut.from_domain(current), current)


@router.put("/settings", response_model=TenantSettingsOut, tags=["settings"], responses=STALE)
async def put_settings(body: TenantSettingsIn, request: Request, response: Response,
                       principal: Principal = Depends(admins)) -> TenantSettingsOut:
    """Replace the tenant's editorial settings. With `If-Match`, 412 if they changed since you read them."""
    service = service_of(request)
    current = await service.get_tenant_settings(principal.tenant)
    require_if_match(request, current.version)
    saved = await service.save_tenant_settings(current, body.four_eyes)
    return _tagged(response, TenantSettingsOut.from_domain(saved), saved)


# --- translation helpers ---------------------------------------------------------------------------

async def _act(request: Request, response: Response, principal: Principal, item_id: str, action: Action,
               comment: str | None = None) -> ContentOut:
    service = service_of(request)
    item = await service.get_item(principal.tenant, item_id)
    require_if_match(request, item.version)
    item = await service.act(principal, item, action, comment, idempotency_key(request))
    return _tagged(response, ContentOut.from_domain(item), item)


def _tagged(response: Response, body: Any, entity: Any) -> Any:
    response.headers["ETag"] = etag(entity.version)
    return body


def _created(response: Response, body: Any, entity: Any, created: bool, collection: str) -> Any:
    response.headers["Location"] = f"/v1/{collection}/{entity.id}"
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return _tagged(response, body, entity)


def _page(page: Any, model: type[FromDomain]) -> Page:
    return Page(items=[model.from_domain(entity) for entity in page.items], next_cursor=page.next_cursor)


def install_domain_errors(app: FastAPI) -> None:
    """Domain exceptions become problem documents: 422 naming the field, 409, 403, 412.

    A write that lost a race (StaleWrite) answers 412 here, not the platform's 409: the
    content API's contract is that a change made since your read is a failed precondition.
    """
    mapping = {
        RuleViolation: lambda error: invalid(error.field, error.message),
        InvalidTransition: lambda error: conflict(str(error), current_status=error.status.value),
        FourEyesViolation: lambda error: Problem(403, "Forbidden", str(error)),
        KeyUsedForAnotherAction: lambda error: key_reused_with_other_body(),
        StaleWrite: lambda error: Problem(412, "Precondition Failed",
                                          "The resource changed while your request ran; read it again."),
    }
    for error_class, to_problem in mapping.items():
        async def handle(request: Request, error: Exception, to_problem=to_problem) -> Any:
            return problem_response(to_problem(error), request)

        app.add_exception_handler(error_class, handle)
