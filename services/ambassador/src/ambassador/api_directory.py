"""The employee directory, as HR/IT systems feed it: bulk import and SCIM 2.0 `/Users`.

Being in the directory never makes anyone an ambassador. Deactivating an
ambassador (SCIM `active=false`, or `active` false in an import) opts them out
in the same write.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response, Security
from fastapi.responses import JSONResponse

from advocacy_common.auth import BEARER, Principal, Role, authenticate, require_roles
from advocacy_common.errors import Problem, invalid

from .api import service
from .directory_import import parse_rows, rows_from_csv
from .models import DirectoryEntry, Person, PersonNotFound
from .ports import AlreadyExists, StaleWrite
from .schemas import ImportReport, ImportRequest, ImportRowError
from .scim import SCIM_JSON, SERVICE_PROVIDER_CONFIG, USER_SCHEMA, ScimError, apply_patch, entry_from_resource, \
    list_response, parse_filter, parse_patch, user_resource

from .service import AmbassadorService

INTEGRATION = require_roles(Role.INTEGRATOR, Role.ADMIN)
SCIM_MAX_COUNT = 200
SCIM_MAX_INDEX = 2**31 - 1
SCIM_BASE = "/scim/v2"
_SCIM_CONTENT = {SCIM_JSON: {"schema": {"type": "object"}}}
# SCIM answers, errors included, in application/scim+json (RFC 7644), as Okta and Entra expect.
SCIM_ERRORS = {status: {"description": text, "content": _SCIM_CONTENT} for status, text in {
    400: "invalidSyntax, invalidFilter or invalidValue", 401: "Missing or invalid bearer token",
    403: "The integrator role is required", 404: "No such user in the tenant",
    409: "uniqueness, or a concurrent change",
    413: "Request body too large", 429: "Too many requests"}.items()}
SCIM_BODY = {"requestBody": {"required": True, "content": _SCIM_CONTENT}}


def scim_responses(status: int | None = 200) -> dict[int | str, dict]:
    ok = {} if status is None else {status: {"description": "OK", "content": _SCIM_CONTENT}}
    return {**ok, **SCIM_ERRORS}

router = APIRouter(tags=["directory"])
scim_router = APIRouter(prefix=SCIM_BASE, tags=["scim"])


# --- bulk import --------------------------------------------------------------------------------------

IMPORT_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": ImportRequest.model_json_schema()},
    "text/csv": {"schema": {"type": "string", "description": "Header row, then one employee a row: user_name, "
                                                            "external_id, given_name, family_name, display_name, "
                                                            "title, email, team_id, location, active"}}}}}


async def _import_rows(request: Request) -> list[Any]:
    media_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    raw = await request.body()
    try:
        if media_type == "text/csv":
            return rows_from_csv(raw.decode("utf-8-sig"))
        if media_type == "application/json":
            parsed = json.loads(raw or b"null")
            if not isinstance(parsed, dict) or not isinstance(parsed.get("employees"), list):
                raise invalid("employees", "must be a list of rows")
            return parsed["employees"]
    except (UnicodeDecodeError, json.JSONDecodeError, csv.Error):
        raise invalid("body", "is not valid UTF-8 CSV or JSON") from None
    raise Problem(415, "Unsupported Media Type", "Send application/json or text/csv.")


@router.post("/directory/import", response_model=ImportReport, openapi_extra=IMPORT_BODY)
async def import_directory(request: Request, principal: Principal = Depends(INTEGRATION),
                           ambassadors: AmbassadorService = Depends(service)):
    """Create or update employees by `user_name`, from JSON (`{"employees": [...]}`) or CSV.

    Valid rows are applied, invalid ones are reported one error per row (row number,
    field, message); the same file imported twice changes nothing. Nobody becomes an
    ambassador by being imported; a row with `active` false opts that person out.
    """
    rows = await _import_rows(request)
    if len(rows) > ambassadors.import_max_rows:
        raise Problem(413, "Content Too Large", f"At most {ambassadors.import_max_rows} rows per request.")
    entries, errors = parse_rows(rows)
    outcomes = await ambassadors.import_directory(principal.tenant, [entry for _, entry in entries])
    return ImportReport(created=outcomes["created"], updated=outcomes["updated"], unchanged=outcomes["unchanged"],
                        errors=[ImportRowError(**vars(error)) for error in errors])


# --- SCIM 2.0 ------------------------------------------------------------------------------------------

def install_scim_errors(app: FastAPI) -> None:
    @app.exception_handler(ScimError)
    async def _scim(request: Request, exc: ScimError) -> JSONResponse:
        headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'} if exc.status == 401 else None
        return JSONResponse(exc.body(), status_code=exc.status, media_type=SCIM_JSON, headers=headers)


SCIM_ROLES = (Role.INTEGRATOR, Role.ADMIN)


async def scim_caller(request: Request, _declared: object = Security(BEARER, scopes=list(SCIM_ROLES))) -> Principal:
    """The integrator's token, with errors in the SCIM format Okta and Entra expect."""
    try:
        principal = await authenticate(request)
    except Problem as problem:
        if problem.status == 429:
            raise  # as a problem document, with its Retry-After
        raise ScimError(problem.status, problem.detail or problem.title) from None
    if not principal.has_any(*SCIM_ROLES):
        raise ScimError(403, "This requires the integrator role.")
    return principal


def scim_json(body: Any, status: int = 200, person: Person | None = None) -> JSONResponse:
    headers = {"ETag": f'W/"{person.version}"'} if person else None
    return JSONResponse(body, status_code=status, media_type=SCIM_JSON, headers=headers)


async def _body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ScimError(400, "The body is not JSON.", "invalidSyntax") from None


def _location(request: Request, person_id: str) -> str:
    # From the configured public URL, never from the request's Host (a client chooses that one).
    return request.app.state.settings.public_url + f"{SCIM_BASE}/Users/{person_id}"


def _resource(request: Request, person: Person) -> dict[str, Any]:
    return user_resource(person, _location(request, person.id))


async def _directory_person(ambassadors: AmbassadorService, tenant: str, person_id: str) -> Person:
    try:
        return await ambassadors.directory_person(tenant, person_id)
    except PersonNotFound:
        raise ScimError(404, f"User {person_id} not found.") from None


def _int_param(request: Request, name: str, default: int, minimum: int) -> int:
    raw = request.query_params.get(name)
    try:
        value = max(minimum, int(raw)) if raw is not None else default
    except ValueError:
        raise ScimError(400, f"{name} must be an integer.", "invalidValue") from None
    if value > SCIM_MAX_INDEX:  # beyond what the database can skip (and any directory's size)
        raise ScimError(400, f"{name} must be at most {SCIM_MAX_INDEX}.", "invalidValue")
    return value


@scim_router.get("/Users", responses=scim_responses())
async def scim_list_users(request: Request, principal: Principal = Depends(scim_caller),
                          ambassadors: AmbassadorService = Depends(service)):
    """List users; `filter=userName eq "..."` (or externalId), `startIndex` (1-based) and `count`."""
    match = parse_filter(request.query_params.get("filter"))
    start_index = _int_param(request, "startIndex", 1, 1)
    count = min(_int_param(request, "count", 100, 0), SCIM_MAX_COUNT)
    total, people = await ambassadors.list_directory(principal.tenant, match, start_index, count)
    return scim_json(list_response([_resource(request, p) for p in people], total, start_index))


@scim_router.post("/Users", status_code=201, responses=scim_responses(201), openapi_extra=SCIM_BODY)
async def scim_create_user(request: Request, principal: Principal = Depends(scim_caller),
                           ambassadors: AmbassadorService = Depends(service)):
    """Provision a user; 409 `uniqueness` when the userName exists."""
    entry = entry_from_resource(await _body(request))
    try:
        person = await ambassadors.create_person(principal.tenant, entry)
    except AlreadyExists:
        raise ScimError(409, f"userName {entry.user_name} is already provisioned.", "uniqueness") from None
    response = scim_json(_resource(request, person), 201, person)
    response.headers["Location"] = _location(request, person.id)
    return response


@scim_router.get("/Users/{person_id}", responses=scim_responses())
async def scim_get_user(person_id: str, request: Request, principal: Principal = Depends(scim_caller),
                        ambassadors: AmbassadorService = Depends(service)):
    """One user."""
    person = await _directory_person(ambassadors, principal.tenant, person_id)
    return scim_json(_resource(request, person), person=person)


async def _change_entry(request: Request, ambassadors: AmbassadorService, tenant: str, person_id: str,
                        new_entry: Callable[[Person], DirectoryEntry]) -> JSONResponse:
    try:
        person = await ambassadors.change_directory_entry(tenant, person_id, new_entry)
    except AlreadyExists:
        raise ScimError(409, "That userName belongs to another user.", "uniqueness") from None
    except PersonNotFound:
        raise ScimError(404, f"User {person_id} not found.") from None
    except StaleWrite:
        raise ScimError(409, "The user is being changed by other requests; retry.") from None
    return scim_json(_resource(request, person), person=person)


@scim_router.put("/Users/{person_id}", responses=scim_responses(), openapi_extra=SCIM_BODY)
async def scim_replace_user(person_id: str, request: Request, principal: Principal = Depends(scim_caller),
                            ambassadors: AmbassadorService = Depends(service)):
    """Replace a user; `active: false` deactivates (and opts out an ambassador)."""
    entry = entry_from_resource(await _body(request))
    return await _change_entry(request, ambassadors, principal.tenant, person_id, lambda _: entry)


@scim_router.patch("/Users/{person_id}", responses=scim_responses(), openapi_extra=SCIM_BODY)
async def scim_patch_user(person_id: str, request: Request, principal: Principal = Depends(scim_caller),
                          ambassadors: AmbassadorService = Depends(service)):
    """PatchOp add/replace/remove, as Okta (`{"active": false}`) and Entra (`path: active`) send it.
    The operations are applied to the user as each write attempt reads it, so concurrent patches
    of different attributes are all kept."""
    patch = parse_patch(await _body(request))
    return await _change_entry(request, ambassadors, principal.tenant, person_id,
                               lambda person: entry_from_resource(apply_patch(_resource(request, person), patch)))


@scim_router.delete("/Users/{person_id}", status_code=204, responses=scim_responses(None))
async def scim_delete_user(person_id: str, principal: Principal = Depends(scim_caller),
                           ambassadors: AmbassadorService = Depends(service)):
    """Deprovision: the person's data is erased as for a GDPR request (see README), and
    `ambassador.erased.v1` tells the other services."""
    await _directory_person(ambassadors, principal.tenant, person_id)
    await ambassadors.erase_person(principal.tenant, person_id)
    return Response(status_code=204)


@scim_router.get("/ServiceProviderConfig", responses=scim_responses())
async def scim_service_provider_config(principal: Principal = Depends(scim_caller)):
    """What this SCIM endpoint supports."""
    return scim_json(SERVICE_PROVIDER_CONFIG)


@scim_router.get("/ResourceTypes", responses=scim_responses())
async def scim_resource_types(principal: Principal = Depends(scim_caller)):
    """The one resource type: User."""
    user_type = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"], "id": "User", "name": "User",
                 "endpoint": "/Users", "schema": USER_SCHEMA}
    return scim_json(list_response([user_type], 1, 1))
