"""The authorisation matrix, derived from the OpenAPI so that a new endpoint is covered without anyone
remembering to: every operation x every role (and none) x own / other tenant, and every operation with
each kind of bad token.

Who may call an operation is what its auth dependency declares (the scopes of its `bearer` security
requirement: `require_roles` puts its roles there); an operation without a requirement must say
`security: []` (public) or this test fails.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from advocacy_common.auth import Role
from advocacy_common.dev_issuer import DevIssuer

pytestmark = [pytest.mark.contract]

ROLES = [role.value for role in Role] + ["none"]
ROLE_REFUSAL = "This requires"  # how a refusal by role begins (require_roles, scim_caller)
FIXED_QUERY = {"max_events": "1"}  # a stream ends after its first update only when asked to


def media_type(response) -> str:
    return response.headers.get("content-type", "").split(";")[0].strip().lower()


def declared_media_types(operation, status: int) -> set[str]:
    return set(operation.definition["responses"].get(str(status), {}).get("content", {})) or \
        {"application/problem+json"}


def request_for(operation, objects) -> tuple[str, dict]:
    url = operation.path
    for name in operation.path_parameters:
        value = objects.by_parameter.get(name, objects.values.get(name))
        assert value is not None, \
            f"{operation.label}: no tenant-A object for path parameter {name!r}; create one in tenant_a_objects"
        url = url.replace("{" + name + "}", value)
    names = {p["name"] for p in operation.definition.get("parameters", []) if p["in"] == "query"}
    kwargs: dict = {"params": {k: v for k, v in FIXED_QUERY.items() if k in names}}
    if operation.has_body:
        kwargs["json"] = {}
    return url, kwargs


def refused_before_lookup(operation, response) -> bool:
    """Answers that say nothing about the object: the (empty) body is invalid, or the caller may not use
    the operation at all for a reason of their own (e.g. not opted in)."""
    if operation.has_body and response.status_code in (400, 422):
        return True
    return response.status_code == 403 and ROLE_REFUSAL not in response.text


def token_for(bearer, tenant: str, role: str, objects) -> dict[str, str]:
    if role == "none":
        return bearer(tenant, "matrix-nobody")
    return bearer(tenant, objects.ambassador_login if role == "ambassador" else f"matrix-{role}", role)


async def test_every_operation_by_every_role_in_both_tenants(services, operations, tenant_a_objects, bearer,
                                                             capsys):
    objects, failures, counted = tenant_a_objects, [], 0
    protected = [op for op in operations if not op.public]
    for operation in protected:
        client = services[operation.service].client
        url, kwargs = request_for(operation, objects)
        anonymous = await client.request(operation.method.upper(), url, **kwargs)
        counted += 1
        if anonymous.status_code != 401 or media_type(anonymous) not in declared_media_types(operation, 401):
            failures.append(f"{operation.label} without a token: {anonymous.status_code} {media_type(anonymous)}")
        for tenant in (objects.tenant, objects.other_tenant):
            other = tenant != objects.tenant
            names_object = any(name in objects.by_parameter for name in operation.path_parameters)
            for role in ROLES:
                if not other and operation.allows(role) and operation.method != "get":
                    continue  # writes by an allowed role are the fuzzer's; the matrix must not spend the objects
                counted += 1
                response = await client.request(operation.method.upper(), url, **kwargs,
                                                headers=token_for(bearer, tenant, role, objects))
                status, text = response.status_code, response.text
                where = f"{operation.label} as {role} of the {'other' if other else 'own'} tenant"
                if not operation.allows(role):
                    if status != 403 and not (other and status == 404):
                        failures.append(f"{where}: {status}, expected 403")
                elif 200 <= status < 300 and other and names_object:
                    failures.append(f"{where}: {status} on tenant A's object: {text[:200]}")
                elif other and names_object and status != 404 and not refused_before_lookup(operation, response):
                    failures.append(f"{where}: {status}, expected 404: {text[:200]}")
                elif status == 401 or (status == 403 and ROLE_REFUSAL in text):
                    failures.append(f"{where}: refused ({status}) although the role is allowed: {text[:200]}")
                elif not other and names_object and status == 404:
                    failures.append(f"{where}: tenant A's own object not found: {text[:200]}")
    with capsys.disabled():
        print(f"\nauthorisation matrix: {len(protected)} protected operations x {len(ROLES)} roles x 2 tenants "
              f"(+ anonymous) = {counted} requests; {len(operations) - len(protected)} public operations")
    assert not failures, "\n".join(failures)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def bad_tokens(dev_issuer, tenant: str) -> dict[str, str]:
    """Each way a token must be refused; every one carries every role, so only the token is at fault."""
    issuer, _ = dev_issuer
    roles = [role.value for role in Role]
    now = int(time.time())
    claims = {"iss": issuer.issuer, "aud": issuer.audience, "sub": "mallory", "tenant": tenant, "roles": roles,
              "iat": now, "exp": now + 600}
    public_pem = issuer.private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = f"{_b64(json.dumps({'alg': 'HS256', 'typ': 'JWT', 'kid': issuer.kid}).encode())}." \
                    f"{_b64(json.dumps(claims).encode())}"
    hs256_signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    hs256_with_public_key = f"{signing_input}.{_b64(hs256_signature)}"
    outsider = DevIssuer.generate(issuer=issuer.issuer)  # a key the JWKS does not hold
    return {
        "expired": issuer.mint(tenant=tenant, subject="mallory", roles=roles, ttl_seconds=-3600),
        "wrong audience": issuer.mint(tenant=tenant, subject="mallory", roles=roles, audience="someone-else"),
        "wrong issuer": issuer.mint(tenant=tenant, subject="mallory", roles=roles, issuer="https://evil.example"),
        "alg none": jwt.encode(claims, None, algorithm="none", headers={"kid": issuer.kid}),
        "HS256 with the public key": hs256_with_public_key,
        "unknown kid": jwt.encode(claims, issuer.private_key, algorithm="RS256", headers={"kid": uuid.uuid4().hex}),
        "key outside the JWKS": jwt.encode(claims, outsider.private_key, algorithm="RS256",
                                           headers={"kid": issuer.kid}),
        "not a JWT": "not-a-jwt",
    }


async def test_every_bad_token_is_refused_everywhere(services, operations, tenant_a_objects, dev_issuer, capsys):
    tokens = bad_tokens(dev_issuer, tenant_a_objects.tenant)
    protected = [op for op in operations if not op.public]
    failures = []
    for operation in protected:
        client = services[operation.service].client
        url, kwargs = request_for(operation, tenant_a_objects)
        for name, token in tokens.items():
            response = await client.request(operation.method.upper(), url, **kwargs,
                                            headers={"Authorization": f"Bearer {token}"})
            if response.status_code != 401 or media_type(response) not in declared_media_types(operation, 401):
                failures.append(f"{operation.label} with {name}: {response.status_code} {response.text[:160]}")
    with capsys.disabled():
        print(f"\nbad tokens: {len(protected)} operations x {len(tokens)} kinds = "
              f"{len(protected) * len(tokens)} requests")
    assert not failures, "\n".join(failures)


async def test_public_operations_check_their_own_credentials(services, operations, tenant_a_objects, bearer):
    """Public means no bearer token: the tracked link redirects anyone; health answers anyone; a connector's
    report carries the integrator's token and the connector's signature, and a bad signature is a 401."""
    public = {op.label for op in operations if op.public}
    assert public == {"distribution GET /r/{code}", "distribution HEAD /r/{code}"}, public
    sharing = services["distribution"].client
    link = await sharing.get(f"/r/{tenant_a_objects.by_parameter['code']}")
    assert link.status_code == 302 and link.headers["location"].startswith("https://a.example/lab")
    unknown = await sharing.get("/r/no-such-code")
    assert unknown.status_code == 404 and media_type(unknown) == "text/html"
    for service in services.values():
        assert (await service.client.get("/livez")).status_code == 200

    objects = tenant_a_objects
    url = f"/v1/connectors/{objects.by_parameter['connector_id']}/engagements"
    integrator = bearer(objects.tenant, "scim-a", "integrator")
    # Engagement is plausible only on a posted share, after it was posted: confirm it (again, if the matrix did).
    posted = await sharing.post(f"/v1/shares/{objects.by_parameter['share_id']}/confirm", json={}, headers=integrator)
    assert posted.status_code == 200, posted.text
    body = json.dumps({"id": f"r-{uuid.uuid4().hex[:6]}", "kind": "impression", "count": 10,
                       "occurred_at": datetime.now(UTC).isoformat(),
                       "share_id": objects.by_parameter["share_id"]}).encode()

    def signed(secret: str) -> dict[str, str]:
        timestamp = str(int(time.time()))
        digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        return {**integrator, "content-type": "application/json", "X-Advocacy-Signature": f"t={timestamp},v1={digest}"}

    for headers in (signed("not-the-secret"), {**integrator, "content-type": "application/json"}):
        refused = await sharing.post(url, content=body, headers=headers)
        assert refused.status_code == 401 and media_type(refused) == "application/problem+json", refused.text
    accepted = await sharing.post(url, content=body, headers=signed(objects.connector_secret))
    assert accepted.status_code == 202, accepted.text
