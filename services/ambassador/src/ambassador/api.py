"""HTTP API shared pieces and the employee's own endpoints (`/me`): volunteering, profile, GDPR.

Every endpoint here acts on the caller's own directory entry, found from their
token's `sub`: nobody can opt another person in.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder

from advocacy_common.api_support import (
    etag, fingerprint, idempotency_key, idempotent_id, page_size, require_if_match,
)
from advocacy_common.auth import Principal, Role, require_roles
from advocacy_common.bounded import Cursor, PathId
from advocacy_common.errors import Problem, invalid, not_found, problem_response, problem_responses

from .models import ConsentEntry, DomainError, NotFound, Person, Profile, SelfRecognition, export_status, placement
from .schemas import AmbassadorView, CharterAcceptanceRequest, ConsentView, ErasureView, OptInRequest, \
    OptOutRequest, Page, ProfileView
from .service import AmbassadorService, Precondition

AMBASSADOR = require_roles(Role.AMBASSADOR)
ADMIN = require_roles(Role.ADMIN)
INTERNAL_FIELDS = {"_id", "id", "request_fingerprint", "version", "tenant"}

router = APIRouter(prefix="/me", tags=["me"])


async def service(request: Request) -> AmbassadorService:  # a coroutine: no thread-pool hop per request
    return request.app.state.service


def install_domain_errors(app: FastAPI) -> None:
    """Rules raise domain errors; here they become problem+json answers."""

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError):
        return problem_response(Problem(exc.status, exc.title, exc.detail, **exc.extensions), request)

    @app.exception_handler(NotFound)
    async def _missing(request: Request, exc: NotFound):
        return problem_response(not_found(exc.what), request)

    @app.exception_handler(SelfRecognition)
    async def _to_self(request: Request, exc: SelfRecognition):
        return problem_response(invalid("ambassador_id", "recognition comes from someone else"), request)


def creation_id(request: Request, principal: Principal, scope: str, body: Any) -> tuple[str, str]:
    """The new resource's id (from the Idempotency-Key, if any) and the request's fingerprint."""
    key = idempotency_key(request)
    return idempotent_id(principal.tenant, scope, key), fingerprint(jsonable_encoder(body))


def if_match(request: Request) -> Precondition:
    """The If-Match check, applied to the version each write attempt reads: 412 when it names another."""
    return lambda version: require_if_match(request, version)


def ambassador_view(person: Person, current_charter: int | None) -> AmbassadorView:
    directory = person.directory
    return AmbassadorView(
        id=person.id, user_name=directory.user_name if directory else None,
        display_name=directory.display_name if directory else None,
        active=bool(directory and directory.active), status=person.status, charter_version=person.charter_version,
        current_charter_version=current_charter,
        needs_charter_acceptance=person.is_ambassador and current_charter is not None
        and person.charter_version != current_charter,
        opted_in_at=person.opted_in_at, opted_out_at=person.opted_out_at)


async def view_of(ambassadors: AmbassadorService, person: Person, response: Response) -> AmbassadorView:
    response.headers["ETag"] = etag(person.version)
    return ambassador_view(person, await ambassadors.current_charter_version(person.tenant))


def consent_view(entry: ConsentEntry) -> ConsentView:
    person, consent = entry.person, entry.consent
    return ConsentView(consent_id=consent.consent_id, ambassador_id=person.id,
                       user_name=person.directory.user_name if person.directory else None, kind=consent.kind,
                       charter_version=consent.charter_version, at=consent.at, channel=consent.channel)


def page_of(found, view) -> Page:
    """A page of views from a use case's page of domain objects."""
    return Page(items=[view(item) for item in found.items], next_cursor=found.next_cursor)


def _exported(entity: Any) -> dict[str, Any]:
    # As stored, without what only the infrastructure needs; the id under `_id` as before.
    fields = entity.model_dump(mode="json")
    return {"_id": fields.get("id"), **{k: v for k, v in fields.items() if k not in INTERNAL_FIELDS}}


async def export_person(ambassadors: AmbassadorService, tenant: str, person_id: str) -> dict[str, Any]:
    """Everything held about a person, as JSON (GDPR access and portability)."""
    person, records = await ambassadors.export_person(tenant, person_id)
    return jsonable_encoder({
        "ambassador_id": person.id,
        "exported_at": ambassadors.clock(),
        "person": {k: v for k, v in person.model_dump(mode="json").items() if k not in INTERNAL_FIELDS},
        **{name: [_exported(item) for item in getattr(records, name)] for name in (
            "recognitions_received", "recognitions_given", "training_completions", "signals_reported")},
    })


async def assembled_export(ambassadors: AmbassadorService, tenant: str, person_id: str,
                           export_id: str) -> dict[str, Any]:
    """An export asked for by event: this service's part now, and each other service's part as it arrived
    (`complete` once every service's last page and all pages before it are in)."""
    request, parts = await ambassadors.export(tenant, person_id, export_id)
    complete = export_status(parts)
    services: dict[str, dict[str, Any]] = {}
    for part in parts:
        merged = services.setdefault(part.service, {"complete": complete[part.service], "pages": 0, "sections": {}})
        merged["pages"] += 1
        for kind, records in part.sections.items():
            merged["sections"].setdefault(kind, []).extend(records)
    for service_name, done in complete.items():
        services.setdefault(service_name, {"complete": done, "pages": 0, "sections": {}})
    return jsonable_encoder({
        "export_id": request.id, "requested_at": request.requested_at,
        "status": "complete" if all(complete.values()) else "pending",
        "ambassador": await export_person(ambassadors, tenant, person_id),
        "services": services,
    })


async def erasure_view(ambassadors: AmbassadorService, tenant: str, person_id: str) -> ErasureView:
    person = await ambassadors.erase_person(tenant, person_id)
    assert person.erased_at is not None
    return ErasureView(ambassador_id=person.id, erased_at=person.erased_at)


def profile_view(person: Person) -> ProfileView:
    where, directory = placement(person), person.directory
    return ProfileView(ambassador_id=person.id, profile=person.profile, team_id=where.team_id,
                       location=where.location, directory_team_id=directory.team_id if directory else None,
                       directory_location=directory.location if directory else None)


# --- the caller's own person ------------------------------------------------------------------------

async def me(principal: Principal = Depends(AMBASSADOR), ambassadors: AmbassadorService = Depends(service)) -> Person:
    return await ambassadors.person_for_subject(principal.tenant, principal.subject)


@router.get("", response_model=AmbassadorView)
async def get_me(response: Response, person: Person = Depends(me), ambassadors: AmbassadorService = Depends(service)):
    """Your status in the programme: never an ambassador until you opt in yourself."""
    return await view_of(ambassadors, person, response)


@router.post("/opt-in", response_model=AmbassadorView, responses=problem_responses(409))
async def opt_in_me(body: OptInRequest, response: Response, person: Person = Depends(me),
                    ambassadors: AmbassadorService = Depends(service)):
    """Volunteer: accept the current charter version (and optionally set your profile).

    Records an immutable consent (version, time, channel) and emits
    `ambassador.opted_in.v1` and `charter.accepted.v1`, published before this answers.
    Opting in again after an opt-out is allowed. Idempotent: opting in twice changes nothing.
    """
    updated = await ambassadors.opt_in(person, body.charter_version, body.channel, body.profile)
    return await view_of(ambassadors, updated, response)


@router.post("/opt-out", response_model=AmbassadorView)
async def opt_out_me(response: Response, body: OptOutRequest | None = None, person: Person = Depends(me),
                     ambassadors: AmbassadorService = Depends(service)):
    """Leave the programme, effective at once everywhere: `ambassador.opted_out.v1` is on the
    topic when this answers, and nothing is suggested to you after it."""
    updated = await ambassadors.opt_out(person, body.channel if body else "web")
    return await view_of(ambassadors, updated, response)


@router.post("/charter-acceptances", response_model=AmbassadorView, responses=problem_responses(409))
async def accept_current_charter(body: CharterAcceptanceRequest, response: Response, person: Person = Depends(me),
                                 ambassadors: AmbassadorService = Depends(service)):
    """Accept a new charter version; until you do, you receive no new suggestions."""
    updated = await ambassadors.accept_charter(person, body.charter_version, body.channel)
    return await view_of(ambassadors, updated, response)


@router.get("/profile", response_model=ProfileView)
async def get_profile(response: Response, person: Person = Depends(me)):
    """Your persona, topics, languages, team, location, networks and sharing preferences."""
    response.headers["ETag"] = etag(person.version)
    return profile_view(person)


@router.put("/profile", response_model=ProfileView, responses=problem_responses(409, 412))
async def put_profile(profile: Profile, request: Request, response: Response, person: Person = Depends(me),
                      ambassadors: AmbassadorService = Depends(service)):
    """Replace your profile (send If-Match with the ETag you read). Handles stay here; what other
    services see (persona, topics, audience sizes...) goes out as `ambassador.profile_updated.v1`
    while you are opted in. The leaderboard shows you only if `leaderboard_opt_in` is true."""
    updated = await ambassadors.update_profile(person, profile, if_match(request))
    response.headers["ETag"] = etag(updated.version)
    return profile_view(updated)


@router.get("/consents", response_model=Page[ConsentView])
async def my_consents(cursor: Cursor | None = None, limit: int | None = None, person: Person = Depends(me),
                      ambassadors: AmbassadorService = Depends(service)):
    """Your consent records, oldest first: each opt-in, charter acceptance and withdrawal; cursor pagination."""
    return page_of(await ambassadors.consents_of(person, cursor, page_size(limit)), consent_view)


@router.get("/export")
async def export_me(person: Person = Depends(me), ambassadors: AmbassadorService = Depends(service)) -> dict[str, Any]:
    """Everything this service holds about you, as JSON."""
    return await export_person(ambassadors, person.tenant, person.id)


@router.post("/exports", status_code=202)
async def request_my_export(person: Person = Depends(me),
                            ambassadors: AmbassadorService = Depends(service)) -> dict[str, Any]:
    """Ask for everything every service holds about you. The other services answer by event within
    seconds; read the result at `GET /v1/me/exports/{export_id}` until its `status` is `complete`."""
    request = await ambassadors.request_export(person.tenant, person.id)
    return {"export_id": request.id, "status": "pending", "requested_at": request.requested_at}


@router.get("/exports/{export_id}")
async def my_export(export_id: PathId, person: Person = Depends(me),
                    ambassadors: AmbassadorService = Depends(service)) -> dict[str, Any]:
    """Your export, assembled from every service's part (never cached: `Cache-Control: no-store`)."""
    return await assembled_export(ambassadors, person.tenant, person.id, export_id)


@router.post("/erasure", response_model=ErasureView)
async def erase_me(person: Person = Depends(me), ambassadors: AmbassadorService = Depends(service)):
    """Erase your personal data here and, through `ambassador.erased.v1`, in every other service."""
    return await erasure_view(ambassadors, person.tenant, person.id)
