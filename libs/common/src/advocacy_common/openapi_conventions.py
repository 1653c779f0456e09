"""What every service's OpenAPI states about the conventions the shared code enforces, so that the document
says what the code does without each route repeating it:

* an operation that declares 412 honours `If-Match` (`api_support.require_if_match`): the header is
  declared as a parameter (clients and schemathesis then send it), with 428 where the operation
  declares the header required;
* every 401 carries `WWW-Authenticate` (the `Bearer` challenge, or the scheme of the credential that
  failed, such as a webhook signature) and every 429 `Retry-After`: declared as response headers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from .api_support import MAX_IF_MATCH_LENGTH

IF_MATCH = {
    "name": "If-Match", "in": "header", "required": False,
    "description": "The ETag you read (or `*`); the write is refused with 412 if the resource changed since.",
    "schema": {"type": "string", "maxLength": MAX_IF_MATCH_LENGTH},
}
CHALLENGE = {"WWW-Authenticate": {"description": "The authentication scheme to use (RFC 9110 §11.6.1)",
                                  "required": True, "schema": {"type": "string"}}}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again", "required": True,
                               "schema": {"type": "integer", "minimum": 1}}}
RESPONSE_HEADERS = {"401": CHALLENGE, "429": RETRY_AFTER}


def with_conventions(schema: dict[str, Any]) -> dict[str, Any]:
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            if "412" in responses:
                parameters = operation.setdefault("parameters", [])
                declared = next((p for p in parameters if p.get("in") == "header"
                                 and p.get("name", "").lower() == "if-match"), None)
                if declared is None:
                    parameters.append(dict(IF_MATCH))
                elif declared.get("required") and "428" not in responses:
                    responses["428"] = {"description": "If-Match is required",
                                        "content": {"application/problem+json": {"schema": {"type": "object"}}}}
            for status, headers in RESPONSE_HEADERS.items():
                if status in responses:
                    responses[status] = {**responses[status], "headers": {**headers,
                                                                          **responses[status].get("headers", {})}}
    return schema


def install_openapi_conventions(app: FastAPI) -> None:
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = with_conventions(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
