import pytest
from fastapi import Depends, FastAPI
from httpx import ASGITransport, AsyncClient

from advocacy_common.auth import JwksCache, JwtVerifier, Principal, require_roles
from advocacy_common.dev_issuer import DevIssuer, JwksServer
from advocacy_common.errors import Problem, install_problem_handlers

pytestmark = pytest.mark.unit


def make_app(issuer: DevIssuer, server: JwksServer) -> FastAPI:
    app = FastAPI()
    app.state.verifier = JwtVerifier(issuer.issuer, "advocacy", JwksCache(server.url + "/.well-known/jwks.json",
                                                                          min_refresh_seconds=0),
                                     ["RS256"], leeway_seconds=5)
    install_problem_handlers(app)

    @app.get("/editors-only")
    async def editors_only(principal: Principal = Depends(require_roles("editor"))):
        return {"sub": principal.subject, "tenant": principal.tenant, "roles": sorted(principal.roles)}

    return app


async def call(app, headers=None):
    async with AsyncClient(transport=ASGITransport(app), base_url="http://t") as client:
        return await client.get("/editors-only", headers=headers or {})


async def test_valid_token_yields_principal(issuer_and_server):
    issuer, server = issuer_and_server
    token = issuer.mint(tenant="acme", subject="alice", roles=["editor", "reviewer"])
    response = await call(make_app(issuer, server), {"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json() == {"sub": "alice", "tenant": "acme", "roles": ["editor", "reviewer"]}


@pytest.mark.parametrize("case", ["missing", "expired", "wrong_audience", "wrong_issuer", "garbage", "alg_none",
                                  "no_tenant"])
async def test_bad_tokens_are_401_problems(issuer_and_server, case):
    issuer, server = issuer_and_server
    tokens = {
        "missing": None,
        "expired": issuer.mint(tenant="acme", subject="a", roles=["editor"], ttl_seconds=-60),
        "wrong_audience": issuer.mint(tenant="acme", subject="a", roles=["editor"], audience="other"),
        "wrong_issuer": issuer.mint(tenant="acme", subject="a", roles=["editor"], issuer="https://evil"),
        "garbage": "not.a.jwt",
        "alg_none": "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIiwidGVuYW50IjoiYWNtZSJ9.",
        "no_tenant": issuer.mint(tenant="", subject="a", roles=["editor"]),
    }
    token = tokens[case]
    response = await call(make_app(issuer, server), {"Authorization": f"Bearer {token}"} if token else {})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == 401


async def test_missing_role_is_403(issuer_and_server):
    issuer, server = issuer_and_server
    token = issuer.mint(tenant="acme", subject="bob", roles=["ambassador"])
    response = await call(make_app(issuer, server), {"Authorization": f"Bearer {token}"})
    assert response.status_code == 403
    assert "editor" in response.json()["detail"]


async def test_rotated_key_is_fetched_on_unknown_kid(issuer_and_server):
    issuer, server = issuer_and_server
    app = make_app(issuer, server)
    first = issuer.mint(tenant="acme", subject="a", roles=["editor"])
    assert (await call(app, {"Authorization": f"Bearer {first}"})).status_code == 200
    rotated = DevIssuer.generate(issuer.issuer)
    server.issuers.append(rotated)  # the IdP publishes a new key; the service is not restarted
    second = rotated.mint(tenant="acme", subject="a", roles=["editor"])
    assert (await call(app, {"Authorization": f"Bearer {second}"})).status_code == 200


async def test_token_signed_by_unknown_key_is_refused(issuer_and_server):
    issuer, server = issuer_and_server
    impostor = DevIssuer.generate(issuer.issuer)
    token = impostor.mint(tenant="acme", subject="a", roles=["editor"])
    response = await call(make_app(issuer, server), {"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


def test_ambassador_id_is_a_stable_pseudonym_of_tenant_and_login():
    from advocacy_common.auth import ambassador_id_for

    principal = Principal(subject="Alice@Corp.example", tenant="acme", roles=frozenset(), claims={})
    assert principal.subject_key == ambassador_id_for("acme", "alice@corp.example")
    assert principal.subject_key != ambassador_id_for("other", "alice@corp.example")
    assert "alice" not in principal.subject_key


class CountedIssuers(list):
    """The JWKS server's issuer list, counting how often the key set was served."""

    reads = 0

    def __iter__(self):
        self.reads += 1
        return super().__iter__()


async def test_random_kids_cannot_make_the_service_hammer_the_issuer(issuer_and_server):
    issuer, server = issuer_and_server
    server.issuers = CountedIssuers(server.issuers)
    verifier = JwtVerifier(issuer.issuer, "advocacy", JwksCache(server.url + "/.well-known/jwks.json",
                                                                min_refresh_seconds=60), ["RS256"])
    genuine = issuer.mint(tenant="acme", subject="a", roles=["editor"])
    assert (await verifier.verify(genuine)).subject == "a"
    impostors = [DevIssuer.generate(issuer.issuer).mint(tenant="acme", subject="x", roles=["admin"])
                 for _ in range(10)]
    for token in impostors:  # each with a kid the issuer never published
        with pytest.raises(Problem) as refused:
            await verifier.verify(token)
        assert refused.value.status == 401
    assert (await verifier.verify(genuine)).subject == "a"  # served from the cache meanwhile
    assert server.issuers.reads == 1  # the first fetch only: unknown kids wait for the cooldown


async def test_an_unreachable_issuer_is_a_503_problem():
    cache = JwksCache("http://127.0.0.1:9/.well-known/jwks.json", timeout_seconds=1)
    with pytest.raises(Problem) as failed:
        await cache.key_for("any")
    assert failed.value.status == 503


class UnavailableIssuers(list):
    """An issuer whose JWKS endpoint fails, counting the attempts."""

    reads = 0

    def __iter__(self):
        self.reads += 1
        raise RuntimeError("the identity provider is down")


async def test_a_failed_key_fetch_is_not_retried_before_the_cooldown(issuer_and_server):
    issuer, server = issuer_and_server
    server.issuers = UnavailableIssuers()
    cache = JwksCache(server.url + "/.well-known/jwks.json", min_refresh_seconds=60, timeout_seconds=2)
    for _ in range(5):
        with pytest.raises(Problem) as failed:
            await cache.key_for(issuer.kid)
        assert failed.value.status == 503
    assert server.issuers.reads == 1


@pytest.mark.parametrize("case", ["junk_in_signature", "junk_in_payload", "header_not_an_object", "one_segment",
                                  "header_not_base64", "tampered_header_alg", "header_nested_deeply"])
async def test_tokens_malformed_anywhere_are_401_problems_although_the_header_is_read_alone(issuer_and_server, case):
    # Only the header is decoded to pick the key; the whole token is then checked strictly by PyJWT.
    import base64
    import json

    issuer, server = issuer_and_server
    header, payload, signature = issuer.mint(tenant="acme", subject="a", roles=["editor"]).split(".")
    hs256 = base64.urlsafe_b64encode(json.dumps({**json.loads(base64.urlsafe_b64decode(header + "==")),
                                                 "alg": "HS256"}).encode()).rstrip(b"=").decode()
    tokens = {
        "junk_in_signature": f"{header}.{payload}.{signature[:-4]}!!!!",
        "junk_in_payload": f"{header}.{payload[:10]}$${payload[12:]}.{signature}",
        "header_not_an_object": f"{base64.urlsafe_b64encode(b'[1]').decode().rstrip('=')}.{payload}.{signature}",
        "one_segment": header,
        "header_not_base64": f"%%%.{payload}.{signature}",
        "tampered_header_alg": f"{hs256}.{payload}.{signature}",
        # JSON nested deeper than Python's recursion limit: a RecursionError, not a ValueError, when decoded.
        "header_nested_deeply": f"{base64.urlsafe_b64encode(b'[' * 3000).decode().rstrip('=')}.{payload}.{signature}",
    }
    response = await call(make_app(issuer, server), {"Authorization": f"Bearer {tokens[case]}"})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
