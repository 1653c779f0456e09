"""Bearer JWT authentication (OIDC access tokens) and role checks.

Tokens are checked for signature (keys from the issuer's JWKS, pinned
algorithms), issuer, audience and expiry (small leeway). An unknown `kid`
triggers one JWKS refresh, so keys rotate without a restart. Claims give the
subject (`sub`), the tenant (`tenant`) and the roles (`roles`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import httpx
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
    """The pseudonymous id that every service uses for one employee.

    Derived from the tenant and the login that the identity provider puts in
    the token's `sub` (and that provisioning gives the ambassador service as the
    SCIM userName or externalId), so each service can name the caller without
    asking another and events never carry the login itself. Prefer an
    immutable, opaque login (Okta user id, Entra object id) over an e-mail.
    """
    return str(uuid.uuid5(AMBASSADOR_ID_NAMESPACE, f"{tenant}\x1f{login.strip().lower()}"))


@dataclass(frozen=True)
class Principal:
    subject: str
    tenant: str
    roles: frozenset[str]
    claims: dict[str, Any]

    def has_any(self, *roles: str) -> bool:
        return any(role in self.roles for role in roles)

    @property
    def ambassador_id(self) -> str:
        """The caller's id as an ambassador (see `ambassador_id_for`)."""
        return ambassador_id_for(self.tenant, self.subject)


def unauthorized(detail: str) -> Problem:
    return Problem(401, "Unauthorized", detail, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


class JwksCache:
    """Signing keys by `kid`, fetched from a JWKS URL; refreshed on an unknown kid, at most every few seconds."""

    def __init__(self, jwks_url: str, min_refresh_seconds: float = 5.0, http: httpx.AsyncClient | None = None):
        self.jwks_url = jwks_url
        self.min_refresh_seconds = min_refresh_seconds
        self._http = http
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def key_for(self, kid: str | None) -> jwt.PyJWK:
        key = self._lookup(kid)
        if key is not None:
            return key
        async with self._lock:
            key = self._lookup(kid)
            if key is None and time.monotonic() - self._fetched_at >= self.min_refresh_seconds:
                await self._refresh()
                key = self._lookup(kid)
        if key is None:
            raise unauthorized("The token was signed with an unknown key.")
        return key

    def _lookup(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    async def _refresh(self) -> None:
        self._fetched_at = time.monotonic()
        try:
            if self._http is not None:
                response = await self._http.get(self.jwks_url)
            else:
                async with httpx.AsyncClient(timeout=5.0) as client:
                    response = await client.get(self.jwks_url)
            response.raise_for_status()
            key_set = jwt.PyJWKSet.from_dict(response.json())
        except (httpx.HTTPError, ValueError, jwt.PyJWKSetError) as error:
            raise Problem(503, "Service Unavailable", "The identity provider's keys could not be fetched.") from error
        self._keys = {key.key_id: key for key in key_set.keys if key.key_id}


class JwtVerifier:
    def __init__(self, issuer: str, audience: str, jwks: JwksCache, algorithms: list[str], leeway_seconds: int = 30):
        self.issuer = issuer
        self.audience = audience
        self.jwks = jwks
        self.algorithms = algorithms
        self.leeway = leeway_seconds

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise unauthorized("The bearer token is malformed.") from None
        if header.get("alg") not in self.algorithms:
            raise unauthorized("The token's algorithm is not accepted.")
        key = await self.jwks.key_for(header.get("kid"))
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
        return Principal(subject=str(claims["sub"]), tenant=tenant, roles=frozenset(map(str, roles)), claims=claims)


# Declared by `authenticate`, so every operation that needs a token says so in the OpenAPI (`security`),
# with the roles it accepts as the requirement's scopes (OpenAPI 3.1 allows role names there). The header
# is read by `authenticate` itself: auto_error=False leaves every refusal to our problem documents.
BEARER = HTTPBearer(scheme_name="bearer", bearerFormat="JWT", auto_error=False,
                    description="An OIDC access token of the tenant's identity provider")


async def authenticate(request: Request, _declared: object = Security(BEARER)) -> Principal:
    """FastAPI dependency: the caller, from `Authorization: Bearer <jwt>`."""
    verifier: JwtVerifier = request.app.state.verifier
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise unauthorized("A bearer token is required.")
    principal = await verifier.verify(token.strip())
    request.state.principal = principal
    return principal


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
