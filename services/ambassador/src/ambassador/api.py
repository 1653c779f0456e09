"""HTTP API shared pieces and the employee's own endpoints (`/me`): volunteering, profile, GDPR.

Every endpoint here acts on the caller's own directory entry, found from their
token's `sub`: nobody can opt another person in.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder

from advocacy_common.api_support import etag, fingerprint, idempotency_key, idempotent_id, \
    key_reused_with_other_body, require_if_match
from advocacy_common.auth import Principal, Role, require_roles
from advocacy_common.errors import Problem, not_found, problem_response

from . import handlers
from .handlers import Context, PersonNotFound, PersonRule
from .models import Change, DomainError, OptOutReason, Person, Profile, accept_charter, opt_in, opt_out, \
    update_profile
from .schemas import AmbassadorView, CharterAcceptanceRequest, ConsentView, ErasureView, OptInRequest, \
    OptOutRequest, Page, ProfileView
from .store import KeyReused, StaleWrite

AMBASSADOR = require_roles(Role.AMBASSADOR)
ADMIN = require_roles(Role.ADMIN)
INTERNAL_FIELDS = {"_outbox", "request_fingerprint", "version", "tenant"}

router = APIRouter(prefix="/me", tags=["me"])


def context(request: Request) -> Context:
    return request.app.state.context


def install_domain_errors(app: FastAPI) -> None:
    """Rules raise domain errors; here they become problem+json answers."""

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError):
        return problem_response(Problem(exc.status, exc.title, exc.detail, **exc.extensions), request)

    @app.exception_handler(PersonNotFound)
    async def _missing(request: Request, exc: PersonNotFound):
        return problem_response(not_found("ambassador"), request)

    @app.exception_handler(KeyReused)
    async def _reused(request: Request, exc: KeyReused):
        return problem_response(key_reused_with_other_body(), request)

    @app.exception_handler(StaleWrite)
    async def _stale(request: Request, exc: StaleWrite):
        return problem_response(Problem(409, "Conflict", "The resource is being changed by another request; retry."),
                                request)


def creation_id(request: Request, principal: Principal, scope: str, body: Any) -> tuple[str, str]:
    """The new resource's id (from the Idempotency-Key, if any) and the request's fingerprint."""
    key = idempotency_key(request)
    return idempotent_id(principal.tenant, scope, key), fingerprint(jsonable_encoder(body))


def checking_if_match(request: Request, rule: PersonRule) -> PersonRule:
    # Checked against the version read in each write attempt, so If-Match holds for the write itself.
    def checked(person: Person) -> Change:
        require_if_match(request, person.version)
        return rule(person)

    return checked


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


async def view_of(ctx: Context, person: Person, response: Response) -> AmbassadorView:
    response.headers["ETag"] = etag(person.version)
    return ambassador_view(person, await handlers.current_charter_version(ctx, person.tenant))


def consent_view(person: Person, consent) -> ConsentView:
    return ConsentView(consent_id=consent.consent_id, ambassador_id=person.id,
                       user_name=person.directory.user_name if person.directory else None, kind=consent.kind,
                       charter_version=consent.charter_version, at=consent.at, channel=consent.channel)


def page_of(found: tuple[list[Any], str | None], view) -> Page:
    """A page of views from a store query's (documents, next cursor)."""
    documents, next_cursor = found
    return Page(items=[view(d) for d in documents], next_cursor=next_cursor)


def _plain(document: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in document.items() if key not in INTERNAL_FIELDS}


async def export_person(ctx: Context, tenant: str, person_id: str) -> dict[str, Any]:
    """Everything held about a person, as JSON (GDPR access and portability)."""
    person = await ctx.store.get_person(tenant, person_id)
    if person is None:
        raise PersonNotFound(person_id)
    related = await ctx.store.list_for_export(tenant, person_id)
    return jsonable_encoder({
        "ambassador_id": person.id,
        "exported_at": ctx.clock(),
        "person": _plain(person.model_dump(mode="json", exclude={"id"})),
        **{name: [_plain(doc) for doc in documents] for name, documents in related.items()},
    })


async def erasure_view(ctx: Context, tenant: str, person_id: str) -> ErasureView:
    person = await handlers.erase_person(ctx, tenant, person_id)
    assert person.erased_at is not None
    return ErasureView(ambassador_id=person.id, erased_at=person.erased_at)


# --- the caller's own person ------------------------------------------------------------------------

async def me(principal: Principal = Depends(AMBASSADOR), ctx: Context = Depends(context)) -> Person:
    return await handlers.person_for_subject(ctx, principal.tenant, principal.subject)


@router.get("", response_model=AmbassadorView)
async def get_me(response: Response, person: Person = Depends(me), ctx: Context = Depends(context)):
    """Your status in the programme: never an ambassador until you opt in yourself."""
    return await view_of(ctx, person, response)


@router.post("/opt-in", response_model=AmbassadorView)
async def opt_in_me(body: OptInRequest, response: Response, person: Person = Depends(me),
                    ctx: Context = Depends(context)):
    """Volunteer: accept the current charter version (and optionally set your profile).

    Records an immutable consent (version, time, channel) and emits
    `ambassador.opted_in.v1` and `charter.accepted.v1`, published before this answers.
    Opting in again after an opt-out is allowed. Idempotent: opting in twice changes nothing.
    """
    current = await handlers.current_charter_version(ctx, person.tenant)

    def rule(p: Person) -> Change:
        now = ctx.clock()
        start = update_profile(p, body.profile, now) if body.profile is not None else Change.none(p)
        return start.then(lambda q: opt_in(q, current, body.charter_version, body.channel, now))

    updated = await handlers.change_person(ctx, person.tenant, person.id, rule)
    return await view_of(ctx, updated, response)


@router.post("/opt-out", response_model=AmbassadorView)
async def opt_out_me(response: Response, body: OptOutRequest | None = None, person: Person = Depends(me),
                     ctx: Context = Depends(context)):
    """Leave the programme, effective at once everywhere: `ambassador.opted_out.v1` is on the
    topic when this answers, and nothing is suggested to you after it."""
    channel = body.channel if body else "web"
    updated = await handlers.change_person(
        ctx, person.tenant, person.id, lambda p: opt_out(p, OptOutReason.SELF, channel, ctx.clock()))
    return await view_of(ctx, updated, response)


@router.post("/charter-acceptances", response_model=AmbassadorView)
async def accept_current_charter(body: CharterAcceptanceRequest, response: Response, person: Person = Depends(me),
                                 ctx: Context = Depends(context)):
    """Accept a new charter version; until you do, you receive no new suggestions."""
    current = await handlers.current_charter_version(ctx, person.tenant)
    updated = await handlers.change_person(
        ctx, person.tenant, person.id,
        lambda p: accept_charter(p, current, body.charter_version, body.channel, ctx.clock()))
    return await view_of(ctx, updated, response)


@router.get("/profile", response_model=ProfileView)
async def get_profile(response: Response, person: Person = Depends(me)):
    """Your persona, topics, languages, team, location, networks and sharing preferences."""
    response.headers["ETag"] = etag(person.version)
    return ProfileView(ambassador_id=person.id, profile=person.profile)


@router.put("/profile", response_model=ProfileView)
async def put_profile(profile: Profile, request: Request, response: Response, person: Person = Depends(me),
                      ctx: Context = Depends(context)):
    """Replace your profile (send If-Match with the ETag you read). Handles stay here; what other
    services see (persona, topics, audience sizes...) goes out as `ambassador.profile_updated.v1`
    while you are opted in. The leaderboard shows you only if `leaderboard_opt_in` is true."""
    updated = await handlers.change_person(
        ctx, person.tenant, person.id,
        checking_if_match(request, lambda p: update_profile(p, profile, ctx.clock())))
    response.headers["ETag"] = etag(updated.version)
    return ProfileView(ambassador_id=updated.id, profile=updated.profile)


@router.get("/consents", response_model=list[ConsentView])
async def my_consents(person: Person = Depends(me)):
    """Your consent records: each opt-in, charter acceptance and withdrawal."""
    return [consent_view(person, consent) for consent in person.consents]


@router.get("/export")
async def export_me(person: Person = Depends(me), ctx: Context = Depends(context)) -> dict[str, Any]:
    """Everything this service holds about you, as JSON."""
    return await export_person(ctx, person.tenant, person.id)


@router.post("/erasure", response_model=ErasureView)
async def erase_me(person: Person = Depends(me), ctx: Context = Depends(context)):
    """Erase your personal data here and, through `ambassador.erased.v1`, in every other service."""
    return await erasure_view(ctx, person.tenant, person.id)
