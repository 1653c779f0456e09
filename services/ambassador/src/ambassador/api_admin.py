"""Programme admins: charters, consent records, ambassadors, GDPR requests made on a person's behalf."""

from __future__ import annotations

import csv
import io
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse

from advocacy_common.api_support import page_size
from advocacy_common.auth import Principal, Role, require_roles
from advocacy_common.bounded import Cursor, NonNegativeInt64, PathId

from .api import (
    ADMIN, ambassador_view, assembled_export, consent_view, creation_id, erasure_view, export_person, page_of, service,
)
from .models import Charter, Status
from .schemas import AmbassadorView, CharterRequest, CharterView, ConsentView, ErasureView, ExportFormat, Page
from .service import AmbassadorService

router = APIRouter(tags=["admin"])
CHARTER_READERS = require_roles(Role.ADMIN, Role.AMBASSADOR)
CONSENT_COLUMNS = list(ConsentView.model_fields)


def charter_view(charter: Charter) -> CharterView:
    return CharterView.model_validate({**charter.model_dump(), "charter_id": charter.id})


# --- charters -------------------------------------------------------------------------------------

@router.post("/charters", status_code=201, response_model=CharterView, tags=["charters"])
async def publish_charter(body: CharterRequest, request: Request, response: Response,
                          principal: Principal = Depends(ADMIN), ambassadors: AmbassadorService = Depends(service)):
    """Publish the next version of the programme's charter (red lines, disclosure rule, tone).

    Versions are immutable. Emits `charter.published.v1`; ambassadors who have not
    accepted the new version get no new suggestions until they do. Send an
    `Idempotency-Key` to make retries safe.
    """
    charter_id, request_fingerprint = creation_id(request, principal, "charter", body)
    charter = await ambassadors.publish_charter(principal.tenant, body, charter_id, request_fingerprint,
                                                principal.subject)
    response.headers["Location"] = f"/charters/{charter.version}"
    return charter_view(charter)


@router.get("/charters", response_model=Page[CharterView], tags=["charters"])
async def list_charters(cursor: Cursor | None = None, limit: int | None = None,
                        principal: Principal = Depends(CHARTER_READERS),
                        ambassadors: AmbassadorService = Depends(service)):
    """Every published version, newest first."""
    return page_of(await ambassadors.list_charters(principal.tenant, cursor, page_size(limit)), charter_view)


@router.get("/charters/current", response_model=CharterView, tags=["charters"])
async def current_charter(principal: Principal = Depends(CHARTER_READERS),
                          ambassadors: AmbassadorService = Depends(service)):
    """The version an employee accepts when opting in."""
    return charter_view(await ambassadors.current_charter(principal.tenant))


@router.get("/charters/{version}", response_model=CharterView, tags=["charters"])
async def get_charter(version: NonNegativeInt64, principal: Principal = Depends(CHARTER_READERS),
                      ambassadors: AmbassadorService = Depends(service)):
    """One charter version."""
    return charter_view(await ambassadors.charter(principal.tenant, version))


# --- consent records --------------------------------------------------------------------------------

@router.get("/consents", response_model=Page[ConsentView], tags=["consents"])
async def list_consents(cursor: Cursor | None = None, limit: int | None = None, charter_version: NonNegativeInt64 | None = None,
                        principal: Principal = Depends(ADMIN), ambassadors: AmbassadorService = Depends(service)):
    """The audit trail: every opt-in, charter acceptance and withdrawal (who, version, when, channel).
    Records of erased people stay, without any name."""
    found = await ambassadors.consent_page(principal.tenant, cursor, page_size(limit), charter_version)
    return page_of(found, consent_view)


@router.get("/consents/export", tags=["consents"], response_class=StreamingResponse, responses={200: {
    "description": "One consent record a row (CSV) or a line (JSON lines)",
    "content": {"text/csv": {"schema": {"type": "string"}}, "application/x-ndjson": {"schema": {"type": "string"}}}}})
async def export_consents(format: ExportFormat = "csv", principal: Principal = Depends(ADMIN),
                          ambassadors: AmbassadorService = Depends(service)):
    """All consent records of the tenant as CSV or JSON lines, for auditors."""

    async def lines():
        if format == "csv":
            yield ",".join(CONSENT_COLUMNS) + "\r\n"
        async for entry in ambassadors.consents(principal.tenant):
            view = consent_view(entry)
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
async def list_ambassadors(status: Status | None = Status.OPTED_IN, cursor: Cursor | None = None,
                           limit: int | None = None, principal: Principal = Depends(ADMIN),
                           ambassadors: AmbassadorService = Depends(service)):
    """People in the programme (by default those opted in), newest first."""
    current = await ambassadors.current_charter_version(principal.tenant)
    return page_of(await ambassadors.list_people(principal.tenant, status, cursor, page_size(limit)),
                   lambda person: ambassador_view(person, current))


@router.get("/ambassadors/{ambassador_id}", response_model=AmbassadorView, tags=["ambassadors"])
async def get_ambassador(ambassador_id: str, principal: Principal = Depends(ADMIN),
                         ambassadors: AmbassadorService = Depends(service)):
    """One person's programme status."""
    person = await ambassadors.person(principal.tenant, ambassador_id)
    return ambassador_view(person, await ambassadors.current_charter_version(principal.tenant))


@router.get("/ambassadors/{ambassador_id}/export", tags=["gdpr"])
async def export_ambassador(ambassador_id: str, principal: Principal = Depends(ADMIN),
                            ambassadors: AmbassadorService = Depends(service)) -> dict[str, Any]:
    """Everything held about a person (GDPR access request handled by an admin)."""
    return await export_person(ambassadors, principal.tenant, ambassador_id)


@router.post("/ambassadors/{ambassador_id}/exports", status_code=202, tags=["gdpr"])
async def request_ambassador_export(ambassador_id: PathId, principal: Principal = Depends(ADMIN),
                                    ambassadors: AmbassadorService = Depends(service)) -> dict[str, Any]:
    """Ask every service for what it holds about a person (also after their erasure, to prove it is gone)."""
    request = await ambassadors.request_export(principal.tenant, ambassador_id)
    return {"export_id": request.id, "status": "pending", "requested_at": request.requested_at}


@router.get("/ambassadors/{ambassador_id}/exports/{export_id}", tags=["gdpr"])
async def ambassador_export(ambassador_id: PathId, export_id: PathId, principal: Principal = Depends(ADMIN),
                            ambassadors: AmbassadorService = Depends(service)) -> dict[str, Any]:
    """A person's export, assembled from every service's part."""
    return await assembled_export(ambassadors, principal.tenant, ambassador_id, export_id)


@router.post("/ambassadors/{ambassador_id}/erasure", response_model=ErasureView, tags=["gdpr"])
async def erase_ambassador(ambassador_id: str, principal: Principal = Depends(ADMIN),
                           ambassadors: AmbassadorService = Depends(service)):
    """Erase a person's personal data (GDPR erasure request handled by an admin); emits
    `ambassador.erased.v1`. Safe to repeat: a repeated call completes an interrupted one."""
    return await erasure_view(ambassadors, principal.tenant, ambassador_id)
