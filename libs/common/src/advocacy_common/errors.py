"""RFC 9457 problem details for every error; never a stack trace."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger(__name__)


class Problem(Exception):
    """Raise from anywhere in a request to answer with a problem document."""

    def __init__(self, status: int, title: str, detail: str | None = None, *, type_: str | None = None,
                 headers: dict[str, str] | None = None, **extensions: Any):
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type_ or "about:blank"
        self.headers = headers
        self.extensions = extensions

    def body(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status}
        if self.detail:
            body["detail"] = self.detail
        if instance:
            body["instance"] = instance
        body.update(self.extensions)
        return body


def not_found(what: str = "resource") -> Problem:
    # Another tenant's object answers exactly like a missing one.
    return Problem(404, "Not Found", f"No such {what}.")


def forbidden(detail: str = "Your role does not allow this.") -> Problem:
    return Problem(403, "Forbidden", detail)


def conflict(detail: str, **extensions: Any) -> Problem:
    return Problem(409, "Conflict", detail, **extensions)


def invalid(field: str, message: str, **extensions: Any) -> Problem:
    """A 422 naming the offending field, in the same shape as request validation errors."""
    return Problem(422, "Unprocessable Content", f"{field}: {message}",
                   errors=[{"field": field, "message": message}], **extensions)


def bad_request(field: str, message: str) -> Problem:
    """A 400 for input that is not even of the right form (a tampered cursor, an unparsable header)."""
    return Problem(400, "Bad Request", f"{field}: {message}", errors=[{"field": field, "message": message}])


HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
PROBLEM_STATUSES = {409: "Conflict with the resource's state", 412: "If-Match names another version",
                    415: "Unsupported media type", 428: "If-Match is required"}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the problems an operation answers beyond those every operation may."""
    return {status: {"description": PROBLEM_STATUSES[status], "content": {PROBLEM_JSON: {"schema": {"type": "object"}}}}
            for status in statuses}


def allowed_methods(request: Request) -> str:
    """Every method some route of the application serves on this path: Starlette names only those of the
    first route whose path matched, and a path often has several routes (GET here, POST there)."""
    return ", ".join(method for method in HTTP_METHODS if any(
        route.matches({**request.scope, "method": method})[0] is Match.FULL for route in request.app.router.routes))


# RFC 9110 §15.5.2: a 401 names how to authenticate. Bearer unless the code raised a more specific challenge.
DEFAULT_CHALLENGE = 'Bearer error="invalid_token"'


def problem_response(problem: Problem, request: Request | None = None) -> JSONResponse:
    headers = problem.headers
    if problem.status == 401 and not any(name.lower() == "www-authenticate" for name in headers or {}):
        headers = {**(headers or {}), "WWW-Authenticate": DEFAULT_CHALLENGE}
    return JSONResponse(problem.body(str(request.url.path) if request else None), status_code=problem.status,
                        media_type=PROBLEM_JSON, headers=headers)


def _field_name(location: tuple[Any, ...]) -> str:
    parts = [str(p) for p in location if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or (str(location[0]) if location else "request")


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc, request)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _field_name(tuple(e.get("loc", ()))), "message": e.get("msg", "invalid")}
                  for e in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem_response(Problem(422, "Unprocessable Content", detail, errors=errors), request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = HTTPStatus(exc.status_code).phrase if exc.status_code in HTTPStatus._value2member_map_ else "Error"
        detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else None
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": allowed_methods(request)}
        return problem_response(Problem(exc.status_code, title, detail, headers=headers), request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(Problem(500, "Internal Server Error", "An unexpected error occurred."), request)
