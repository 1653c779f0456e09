"""Programme admins: charters, consent records, ambassadors, GDPR requests made on a person's behalf."""

from __future__ import annotations

import csv
import io
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse

from advocacy_common.api_support import decode_cursor, encode_cursor, page_size
from advocacy_common.auth import Principal, Role, require_roles
from advocacy_common.errors import invalid, not_found

from . import handlers
from .api import ADMIN, ambassador_view, consent_view, context, creation_id, erasure_view, export_person, page_of
from .handlers import Context, PersonNotFound
from .models import Status
from .schemas import AmbassadorView, CharterRequest, CharterView, ConsentView, ErasureView, ExportFormat, Page

router = APIRouter(tags=["admin"])
CHARTER_READERS = require_roles(Role.ADMIN, Role.AMBASSADOR)
CONSENT_COLUMNS = list(ConsentView.model_fields)


def charter_view(document: dict[str, Any]) -> CharterView:
    return CharterView.model_validate({**document, "charter_id": document["_id"]})


# --- charters -------------------------------------------------------------------------------------

@router.post("/charters", status_code=201, response_model=CharterView, tags=["charters"])
async def publish_charter(body: CharterRequest, request: Request, response: Response,
                          principal: Principal = Depends(ADMIN), ctx: Context = Depends(context)):
    """Publish the next version of the programme's charter (red lines, disclosure rule, tone).

    Versions are immutable. Emits `charter.published.v1`; ambassadors who have not
    accepted the new version get no new suggestions until they do. Send an
    `Idempotency-Key` to make retries safe.
    """
    document_id, request_fingerprint = creation_id(request, principal, "charter", body)
    document, _ = await handlers.publish_charter(ctx, principal.tenant, body, document_id, request_fingerprint,
                                                 principal.subject)
    response.headers["Location"] = f"/charters/{document['version']}"
    return charter_view(document)


@router.get("/charters", response_model=Page[CharterView], tags=["charters"])
async def list_charters(cursor: str | None = None, limit: int | None = None,
                        principal: Principal = Depends(CHARTER_READERS), ctx: Context = Depends(context)):
    """Every published version, newest first."""
    return page_of(await ctx.store.list_charters(principal.tenant, cursor, page_size(limit)), charter_view)


@router.get("/charters/current", response_model=CharterView, tags=["charters"])
async def current_charter(principal: Principal = Depends(CHARTER_READERS), ctx: Context = Depends(context)):
    """The version an employee accepts when opting in."""
    document = await ctx.store.get_current_charter(principal.tenant)
    if document is None:
        raise not_found("charter")
    return charter_view(document)


@router.get("/charters/{version}", response_model=CharterView, tags=["charters"])
async def get_charter(version: int, principal: Principal = Depends(CHARTER_READERS),
                      ctx: Context = Depends(context)):
    """One charter version."""
    document = await ctx.store.get_charter(principal.tenant, version)
    if document is None:
        raise not_found("charter")
    return charter_view(document)


# --- consent records --------------------------------------------------------------------------------

def _consent_position(cursor: str | None) -> tuple[str, int] | None:
    values = decode_cursor(cursor)
    if values is None:
        return None
    if len(values) != 2 or not isinstance(values[0], str) or not isinstance(values[1], int):
        raise invalid("cursor", "is not a cursor this API returned")
    return values[0], values[1]


@router.get("/consents", response_model=Page[ConsentView], tags=["consents"])
async def list_consents(cursor: str | None = None, limit: int | None = None, charter_version: int | None = None,
                        principal: Principal = Depends(ADMIN), ctx: Context = Depends(context)):
    """The audit trail: every opt-in, charter acceptance and withdrawal (who, version, when, channel).
    Records of erased people stay, without any name."""
    found, position = await handlers.consent_page(ctx, principal.tenant, _consent_position(cursor),
                                                  page_size(limit), charter_version)
    return Page(items=[consent_view(person, consent) for person, _, consent in found],
                next_cursor=encode_cursor(list(position)) if position else None)


@router.get("/consents/export", tags=["consents"])
async def export_consents(format: ExportFormat = "csv", principal: Principal = Depends(ADMIN),
                          ctx: Context = Depends(context)):
    """All consent records of the tenant as CSV or JSON lines, for auditors."""

    async def lines():
        if format == "csv":
            yield ",".join(CONSENT_COLUMNS) + "\r\n"
        async for person, _, consent in handlers.consents_after(ctx, principal.tenant):
            view = consent_view(person, consent)
            if format == "csv":
                buffer = io.StringIO()
                csv.writer(buffer).writerow([view.model_dump(mode="json")[c] for c in CONSENT_COLUMNS])
                yield buffer.getvalue()
            else:
                yield view.model_dump_json() + "\n"

    media_type = "text/csv" if format == "csv" else "application/x-ndjson"
    return StreamingResponse(lines(), media_type=media_type,
                             headers={"Content-Disposition": f'attachment; filename="consents.{format}"'})


# --- ambassadors ---------------------------------------------------------------------------------------

@router.get("/ambassadors", response_model=Page[AmbassadorView], tags=["ambassadors"])
async def list_ambassadors(status: Status | None = Status.OPTED_IN, cursor: str | None = None,
                           limit: int | None = None, principal: Principal = Depends(ADMIN),
                           ctx: Context = Depends(context)):
    """People in the programme (by default those opted in), newest first."""
    current = await handlers.current_charter_version(ctx, principal.tenant)
    return page_of(await ctx.store.list_people(principal.tenant, status, cursor, page_size(limit)),
                   lambda person: ambassador_view(person, current))


@router.get("/ambassadors/{ambassador_id}", response_model=AmbassadorView, tags=["ambassadors"])
async def get_ambassador(ambassador_id: str, principal: Principal = Depends(ADMIN),
                         ctx: Context = Depends(context)):
    """One person's programme status."""
    person = await ctx.store.get_person(principal.tenant, ambassador_id)
    if person is None:
        raise PersonNotFound(ambassador_id)
    return ambassador_view(person, await handlers.current_charter_version(ctx, principal.tenant))


@router.get("/ambassadors/{ambassador_id}/export", tags=["gdpr"])
async def export_ambassador(ambassador_id: str, principal: Principal = Depends(ADMIN),
                            ctx: Context = Depends(context)) -> dict[str, Any]:
    """Everything held about a person (GDPR access request handled by an admin)."""
    return await export_person(ctx, principal.tenant, ambassador_id)


@router.post("/ambassadors/{ambassador_id}/erasure", response_model=ErasureView, tags=["gdpr"])
async def erase_ambassador(ambassador_id: str, principal: Principal = Depends(ADMIN),
                           ctx: Context = Depends(context)):
    """Erase a person's personal data (GDPR erasure request handled by an admin); emits
    `ambassador.erased.v1`. Safe to repeat: a repeated call completes an interrupted one."""
    return await erasure_view(ctx, principal.tenant, ambassador_id)
