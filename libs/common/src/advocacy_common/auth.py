"""Bearer JWT authentication (OIDC access tokens) and role checks.

Tokens are checked for signature (keys from the issuer's JWKS, pinned
algorithms), issuer, audience and expiry (small leeway). An unknown `kid`
triggers a JWKS refresh (rate-bounded), so keys rotate without a restart. Claims give the
subject (`sub`), the tenant (`tenant`) and the roles (`roles`).

A token verified once is remembered, by its exact text, for its remaining life and only while
the issuer's key set it was checked against is the one in use (`VerifiedTokens`): a client
sends the same token with every request, and the checks (three base64 segments validated
character by character in Python, the RSA signature, the claims) were a third of a cheap
request's CPU (bench/http_floor.py).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from enum import StrEnum
from typing import Any

import jwt
from fastapi import Request, Security
from fastapi.security import HTTPBearer

from .errors import Problem


class Role(StrEnum):
    ADMIN = "admin"
    EDITOR = "editor"
    REVIEWER = "reviewer"
    ANALYST = "analyst"
    MANAGER = "manager"
    AMBASSADOR = "ambassador"
    INTEGRATOR = "integrator"


AMBASSADOR_ID_NAMESPACE = uuid.UUID("0b8f4a52-6d2e-4c1f-9a57-2f0c8e6d1b34")


def ambassador_id_for(tenant: str, login: str) -> str:
    """The subject key: a pseudonym of one login, the same in every service.

    Derived from the tenant and the login that the identity provider puts in
    the token's `sub` (and that provisioning gives the ambassador service as the
    SCIM userName or externalId), so each service can name the caller without
    asking another and events never carry the login itself. Prefer an
    immutable, opaque login (Okta user id, Entra object id) over an e-mail.

    It is also the ambassador id of the login's first holder. A person
    provisioned with the same login after an erasure gets a new ambassador id,
    and `ambassador.opted_in.v1` carries this key beside it: services resolve a
    token to the current holder through `advocacy_common.subjects`.
    """
    return str(uuid.uuid5(AMBASSADOR_ID_NAMESPACE, f"{tenant}\x1f{login.strip().lower()}"))


@dataclass(frozen=True)
class Principal:
    subject: str
    tenant: str
    roles: frozenset[str]
    claims: Mapping[str, Any]  # read-only when it comes from a verified token: requests share it

    def has_any(self, *roles: str) -> bool:
        return any(role in self.roles for role in roles)

    @property
    def subject_key(self) -> str:
        """The pseudonym of the caller's login (see `ambassador_id_for`). Not necessarily their ambassador
        id: resolve it with `advocacy_common.subjects.ambassador_id_of`."""
        return ambassador_id_for(self.tenant, self.subject)


def unauthorized(detail: str) -> Problem:
    return Problem(401, "Unauthorized", detail, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


def signature_unauthorized(detail: str, header: str = "X-Advocacy-Signature") -> Problem:
    """401 for a body whose signature (a webhook's HMAC-SHA256 in `header`) was refused: the challenge names
    that scheme, not Bearer, since the bearer token was fine."""
    return Problem(401, "Unauthorized", detail, headers={
        "WWW-Authenticate": f'Advocacy-Signature realm="webhooks", header="{header}", algorithm="hmac-sha256", '
                            'error="invalid_signature"'})


def keys_unavailable() -> Problem:
    return Problem(503, "Service Unavailable", "The identity provider's keys could not be fetched.")


class JwksCache:
    """Signing keys by `kid`, from the issuer's JWKS, kept by PyJWT's `PyJWKClient`.

    A known `kid` is answered from the cached key set without leaving the event loop.
    An unknown one (or an expired cache, after `lifetime_seconds`) makes the client
    fetch the set again, in a worker thread because `PyJWKClient` is synchronous:
    keys rotate without a restart. The client refetches for an unknown `kid` at most
    once per `min_refresh_seconds` (its cooldown), a failed fetch is not retried
    sooner either, and misses are handled one at a time, so tokens with random kids
    cannot hammer the issuer.
    """

    def __init__(self, jwks_url: str, min_refresh_seconds: float = 5.0, lifetime_seconds: float = 300.0,
                 timeout_seconds: float = 5.0):
        self.jwks_url = jwks_url
        self.min_refresh_seconds = min_refresh_seconds
        self._failed_at = -math.inf
        self._client = jwt.PyJWKClient(jwks_url, cache_jwk_set=True, lifespan=lifetime_seconds,
                                       cooldown_duration=min_refresh_seconds, timeout=timeout_seconds)
        self._miss = asyncio.Lock()

    async def key_for(self, kid: str | None) -> jwt.PyJWK:
        key = self._cached(kid)
        if key is None:
            async with self._miss:  # one fetch at a time; those waiting find its result cached
                key = self._cached(kid) or await self._fetch_in_thread(kid)
        if key is None:
            raise unauthorized("The token was signed with an unknown key.")
        return key

    def current_key_set(self) -> jwt.PyJWKSet | None:
        """The key set in use; the same object until it is fetched again (a rotation, its lifetime), None
        once expired."""
        cache = self._client.jwk_set_cache
        return cache.get() if cache is not None else None

    def _cached(self, kid: str | None) -> jwt.PyJWK | None:
        key_set = self.current_key_set()
        if key_set is None:
            return None
        return _match([key for key in key_set.keys if key.key_id and key.public_key_use in ("sig", None)], kid)

    async def _fetch_in_thread(self, kid: str | None) -> jwt.PyJWK | None:
        if time.monotonic() - self._failed_at < self.min_refresh_seconds:
            raise keys_unavailable()  # PyJWKClient's cooldown starts only after a success
        try:
            return await asyncio.to_thread(self._fetch, kid)
        except Problem:
            self._failed_at = time.monotonic()
            raise

    def _fetch(self, kid: str | None) -> jwt.PyJWK | None:
        try:
            if kid is None:
                return _match(self._client.get_signing_keys(), None)
            return self._client.get_signing_key(kid)  # refreshes once if the kid is unknown, cooldown permitting
        except (jwt.PyJWKClientConnectionError, jwt.PyJWKSetError, ValueError) as error:
            raise keys_unavailable() from error
        except jwt.PyJWKClientError:
            return None  # the kid is not in the issuer's current key set


def _match(keys: list[jwt.PyJWK], kid: str | None) -> jwt.PyJWK | None:
    """The key named `kid`; a token without `kid` is accepted only when the issuer has a single key."""
    if kid is None:
        return keys[0] if len(keys) == 1 else None
    return next((key for key in keys if key.key_id == kid), None)


def unverified_header(token: str) -> dict[str, Any]:
    """The token's JOSE header, to choose the key: its first segment decoded, nothing else.

    Not `jwt.get_unverified_header`, which decodes and checks all three segments (in Python, character by
    character: a fifth of a first request's verification) only for `jwt.decode` to do it again. Nothing
    here is trusted: `jwt.decode` then checks the whole token strictly (its header included, the algorithm
    pinned), so a header this lenient decoding accepted from a malformed token is refused there."""
    segment, dot, _ = token.partition(".")
    if not dot or not segment or len(segment) > 4096:
        raise unauthorized("The bearer token is malformed.")
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error, RecursionError):  # RecursionError: JSON nested a thousand deep
        raise unauthorized("The bearer token is malformed.") from None
    if not isinstance(header, dict):
        raise unauthorized("The bearer token is malformed.")
    return header


@dataclass(frozen=True)
class _Verified:
    principal: Principal
    valid_from: float  # nbf - leeway (epoch seconds), -inf without nbf
    valid_until: float  # exp + leeway: when PyJWT would call it expired
    key_set: jwt.PyJWKSet  # the issuer's keys it was verified with


class VerifiedTokens:
    """Principals of tokens already verified, by the token's exact text, at most `max_entries`.

    A hit needs the very same text (another tenant's token, a token with one character changed, is
    another key: verified afresh), a clock within the token's own nbf/exp window (leeway as in PyJWT),
    and the very key set object it was verified with: once the JWKS is fetched again (a rotation
    noticed by an unknown kid, the set's lifetime) every entry is stale, so a token signed by a key
    the issuer withdrew is refused as soon as the verifier would refuse it. Refusals are never kept.
    Per process (each uvicorn worker has its own).
    """

    def __init__(self, max_entries: int = 10_000):
        self.max_entries = max_entries
        self._entries: dict[str, _Verified] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, token: str, key_set: jwt.PyJWKSet | None) -> Principal | None:
        entry = self._entries.get(token)
        if entry is None:
            return None
        now = time.time()
        if entry.key_set is not key_set or not entry.valid_from <= now < entry.valid_until:
            del self._entries[token]
            return None
        return entry.principal

    def put(self, token: str, entry: _Verified) -> None:
        if self.max_entries <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._make_room()
        self._entries[token] = entry

    def _make_room(self) -> None:
        """Drop the expired; if that frees less than a tenth, the oldest tenth too (amortised O(1) a put)."""
        now = time.time()
        for token in [t for t, e in self._entries.items() if e.valid_until <= now]:
            del self._entries[token]
        excess = len(self._entries) - int(self.max_entries * 0.9)
        for token in list(self._entries)[:max(0, excess)]:  # dicts keep insertion order: oldest first
            del self._entries[token]


class JwtVerifier:
    def __init__(self, issuer: str, audience: str, jwks: JwksCache, algorithms: list[str], leeway_seconds: int = 30,
                 cache_size: int = 10_000):
        self.issuer = issuer
        self.audience = audience
        self.jwks = jwks
        self.algorithms = algorithms
        self.leeway = leeway_seconds
        self.verified = VerifiedTokens(cache_size)

    async def verify(self, token: str) -> Principal:
        known = self.verified.get(token, self.jwks.current_key_set())
        if known is not None:
            return known
        principal = await self._verify(token)
        key_set = self.jwks.current_key_set()  # the set `key` came from: no await since it was looked up
        if key_set is not None:
            claims = principal.claims
            nbf = claims.get("nbf")
            self.verified.put(token, _Verified(
                principal, float(nbf) - self.leeway if isinstance(nbf, int | float) else -math.inf,
                float(claims["exp"]) + self.leeway, key_set))
        return principal

    async def _verify(self, token: str) -> Principal:
        header = unverified_header(token)
        algorithm, kid = header.get("alg"), header.get("kid")
        if not isinstance(algorithm, str) or algorithm not in self.algorithms:
            raise unauthorized("The token's algorithm is not accepted.")
        if kid is not None and not isinstance(kid, str):
            raise unauthorized("The token's key id is not a string.")
        key = await self.jwks.key_for(kid)
        try:
            claims = jwt.decode(token, key=key, algorithms=self.algorithms, audience=self.audience,
                                issuer=self.issuer, leeway=self.leeway,
                                options={"require": ["exp", "iss", "aud", "sub"]})
        except jwt.ExpiredSignatureError:
            raise unauthorized("The token has expired.") from None
        except jwt.InvalidTokenError as error:
            raise unauthorized(f"The token is not valid: {error}.") from None
        tenant = claims.get("tenant")
        roles = claims.get("roles") or []
        if not isinstance(tenant, str) or not tenant:
            raise unauthorized("The token carries no tenant.")
        if isinstance(roles, str):
            roles = roles.split()
        return Principal(subject=str(claims["sub"]), tenant=tenant, roles=frozenset(map(str, roles)),
                         claims=MappingProxyType(claims))


# Declared by `authenticate`, so every operation that needs a token says so in the OpenAPI (`security`),
# with the roles it accepts as the requirement's scopes (OpenAPI 3.1 allows role names there). The header
# is read by `authenticate` itself: auto_error=False leaves every refusal to our problem documents. Endpoints
# that authenticate in their own code (SCIM, streams) declare this one.
BEARER_DESCRIPTION = "An OIDC access token of the tenant's identity provider"
BEARER = HTTPBearer(scheme_name="bearer", bearerFormat="JWT", auto_error=False, description=BEARER_DESCRIPTION)


class BearerAuthentication(HTTPBearer):
    """The `bearer` security scheme that also authenticates: `Depends(authenticate)` (or `await
    authenticate(request)`) gives the caller, from `Authorization: Bearer <jwt>`.

    A scheme itself rather than a function depending on one, so the OpenAPI is the same (a `bearer`
    requirement, the roles of `require_roles` as its scopes) and FastAPI solves one dependency less per
    request: each level of its dependency tree costs a few microseconds of bookkeeping per request
    (cache keys, scopes, classification of the callable), a tenth of an authenticated request's floor
    (bench/http_floor.py)."""

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        verifier: JwtVerifier = request.app.state.verifier
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise unauthorized("A bearer token is required.")
        principal = await verifier.verify(token.strip())
        request.state.principal = principal
        limiter = getattr(request.app.state, "rate_limiter", None)  # installed by advocacy_common.hardening
        if limiter is not None:
            await limiter.check(request, principal.tenant, principal.subject)
        return principal


authenticate = BearerAuthentication(scheme_name="bearer", bearerFormat="JWT", auto_error=False,
                                    description=BEARER_DESCRIPTION)
"""FastAPI dependency: the caller, from `Authorization: Bearer <jwt>` (see `BearerAuthentication`)."""


def require_roles(*roles: str):
    """FastAPI dependency factory: the caller must hold at least one of `roles`.

    The roles become the scopes of the operation's `bearer` security requirement in the OpenAPI,
    so the document (and the authorisation tests derived from it) say who may call what.
    """

    async def dependency(principal: Principal = Security(authenticate, scopes=list(roles))) -> Principal:
        if not principal.has_any(*roles):
            raise Problem(403, "Forbidden", f"This requires one of the roles: {', '.join(sorted(roles))}.")
        return principal

    return dependency
