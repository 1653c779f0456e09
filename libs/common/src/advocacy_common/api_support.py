"""Conventions shared by every HTTP API: page sizes, ETags, idempotency keys (cursors: `cursors.py`)."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from fastapi import Request

from .errors import Problem, bad_request, invalid

IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1c3c52-8d0e-4a36-9f7c-3e5c5d8a2b11")
MAX_PAGE_SIZE = 200
DEFAULT_PAGE_SIZE = 50
MAX_IF_MATCH_LENGTH = 1024  # declared in every OpenAPI (openapi_conventions.IF_MATCH)


# --- pages (cursors: see cursors.py) -----------------------------------------------------

def page_size(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_PAGE_SIZE
    if limit < 1 or limit > MAX_PAGE_SIZE:
        raise invalid("limit", f"must be between 1 and {MAX_PAGE_SIZE}")
    return limit


# --- optimistic concurrency --------------------------------------------------------

def etag(version: int) -> str:
    return f'"{version}"'


def require_if_match(request: Request, current_version: int, required: bool = False) -> None:
    """412 when If-Match names another version; 428 when it is required and absent."""
    header = request.headers.get("if-match")
    if header is not None and len(header) > MAX_IF_MATCH_LENGTH:
        raise bad_request("If-Match", f"may have at most {MAX_IF_MATCH_LENGTH} characters")
    if header is None:
        if required:
            raise Problem(428, "Precondition Required", "Send If-Match with the ETag you read.")
        return
    candidates = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    if "*" not in candidates and etag(current_version) not in candidates:
        raise Problem(412, "Precondition Failed",
                      f"The resource changed since you read it (current ETag {etag(current_version)}).",
                      current_etag=etag(current_version))


# --- idempotency keys --------------------------------------------------------------

def idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    # Printable ASCII only, as the IETF draft's structured-field string: no control characters to log or store.
    if key is not None and not (1 <= len(key) <= 200 and key.isascii() and key.isprintable()):
        raise invalid("Idempotency-Key", "must be 1 to 200 printable ASCII characters")
    return key


def idempotent_id(tenant: str, scope: str, key: str | None) -> str:
    """A resource id derived from the idempotency key, so a retried POST hits the same document.

    Without a key, a fresh random id. Storing the created resource under this id
    makes creation and its idempotency record one single-document write.
    """
    if key is None:
        return str(uuid.uuid4())
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{tenant}\x1f{scope}\x1f{key}"))


def fingerprint(payload: Any) -> str:
    """A stable hash of a request body, to refuse reuse of a key with another body."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def key_reused_with_other_body() -> Problem:
    return Problem(422, "Unprocessable Content",
                   "This Idempotency-Key was already used with a different request body.",
                   errors=[{"field": "Idempotency-Key", "message": "already used with a different body"}])
