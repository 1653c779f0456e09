"""Cross-origin access for browser front ends (Starlette's CORSMiddleware), from an allow-list.

No origin is allowed unless the settings name it (`cors_allowed_origins`): a
front end on another origin must be listed by its exact scheme, host and port.
Bearer tokens travel in the `Authorization` header, so requests are not
credentialed (no cookies) unless `cors_allow_credentials` is set for cookie auth.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from .settings import ServiceSettings

ALLOWED_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
# What our APIs read from a request, beyond the CORS-safelisted headers.
ALLOWED_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "If-Match", "If-None-Match", "Last-Event-ID"]
# What a front end may read from a response: concurrency tokens, created resources, back-off.
EXPOSED_HEADERS = ["ETag", "Location", "Retry-After"]
PREFLIGHT_CACHE_SECONDS = 600


class WildcardWithCredentials(ValueError):
    """Browsers refuse `*` with credentials; naming every origin is the safe form anyway."""


def install_cors(app: FastAPI, settings: ServiceSettings) -> None:
    """Answer preflights and add the CORS headers for the allowed origins (nothing when none is)."""
    origins = list(settings.cors_allowed_origins)
    if not origins:
        return
    if settings.cors_allow_credentials and "*" in origins:
        raise WildcardWithCredentials("cors_allowed_origins must name the origins when credentials are allowed")
    app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=ALLOWED_METHODS,
                       allow_headers=ALLOWED_HEADERS, expose_headers=EXPOSED_HEADERS,
                       allow_credentials=settings.cors_allow_credentials, max_age=PREFLIGHT_CACHE_SECONDS)
