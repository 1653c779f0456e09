"""The verifier remembers tokens it verified (VerifiedTokens) without ever accepting one it would refuse."""

import time

import jwt
import pytest

from advocacy_common.auth import JwksCache, JwtVerifier
from advocacy_common.dev_issuer import DevIssuer, JwksServer
from advocacy_common.errors import Problem

pytestmark = pytest.mark.unit


def verifier_for(issuer: DevIssuer, server: JwksServer, **options) -> JwtVerifier:
    return JwtVerifier(issuer.issuer, "advocacy", JwksCache(server.url + "/.well-known/jwks.json",
                                                            min_refresh_seconds=0), ["RS256"], **options)


@pytest.fixture
def signature_checks(monkeypatch):
    """How many times PyJWT checked a signature."""
    calls = []
    decode = jwt.decode

    def counted(*args, **kwargs):
        calls.append(1)
        return decode(*args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counted)
    return calls


async def refused(verifier: JwtVerifier, token: str) -> Problem:
    with pytest.raises(Problem) as error:
        await verifier.verify(token)
    assert error.value.status == 401
    return error.value


async def test_a_token_is_verified_once_then_served_from_the_cache(issuer_and_server, signature_checks):
    issuer, server = issuer_and_server
    verifier = verifier_for(issuer, server)
    token = issuer.mint(tenant="acme", subject="alice", roles=["editor"])
    first = await verifier.verify(token)
    again = [await verifier.verify(token) for _ in range(5)]
    assert len(signature_checks) == 1
    assert all(p is first for p in again) and first.tenant == "acme" and first.subject == "alice"


async def test_another_tenants_token_is_never_answered_from_the_cache(issuer_and_server, signature_checks):
    issuer, server = issuer_and_server
    verifier = verifier_for(issuer, server)
    acme = issuer.mint(tenant="acme", subject="alice", roles=["admin"])
    other = issuer.mint(tenant="other", subject="alice", roles=["ambassador"])
    assert (await verifier.verify(acme)).tenant == "acme"
    principal = await verifier.verify(other)
    assert principal.tenant == "other" and principal.roles == {"ambassador"}
    assert len(signature_checks) == 2  # each token verified on its own
    assert (await verifier.verify(acme)).tenant == "acme"


async def test_a_token_differing_from_a_cached_one_is_verified_and_refused(issuer_and_server):
    issuer, server = issuer_and_server
    verifier = verifier_for(issuer, server)
    token = issuer.mint(tenant="acme", subject="alice", roles=["editor"])
    await verifier.verify(token)
    header, payload, signature = token.split(".")
    forged_signature = signature[:-4] + ("AAAA" if not signature.endswith("AAAA") else "BBBB")
    await refused(verifier, f"{header}.{payload}.{forged_signature}")
    impostor = DevIssuer(issuer.issuer, DevIssuer.generate(issuer.issuer).private_key)
    impostor.kid = issuer.kid  # same kid and claims, signed by another key
    await refused(verifier, impostor.mint(tenant="acme", subject="alice", roles=["admin"]))


async def test_an_expired_token_is_refused_though_it_was_cached(issuer_and_server):
    issuer, server = issuer_and_server
    verifier = verifier_for(issuer, server, leeway_seconds=0)
    token = issuer.mint(tenant="acme", subject="alice", roles=["editor"], ttl_seconds=1)
    assert (await verifier.verify(token)).subject == "alice"
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    time.sleep(max(0.0, exp - time.time()) + 0.05)
    problem = await refused(verifier, token)
    assert "expired" in problem.detail
    assert len(verifier.verified) == 0  # the stale entry is gone, and the refusal was not kept


async def test_a_key_withdrawn_by_a_rotation_is_refused_once_the_new_key_set_is_fetched(issuer_and_server):
    issuer, server = issuer_and_server
    verifier = verifier_for(issuer, server)
    old = issuer.mint(tenant="acme", subject="alice", roles=["editor"])
    assert (await verifier.verify(old)).subject == "alice"
    rotated = DevIssuer.generate(issuer.issuer)  # the issuer's new key; the old one is withdrawn
    server.issuers[:] = [rotated]
    new = rotated.mint(tenant="acme", subject="bob", roles=["editor"])
    assert (await verifier.verify(new)).subject == "bob"  # its unknown kid made the verifier fetch the keys
    problem = await refused(verifier, old)
    assert "unknown key" in problem.detail


async def test_refusals_are_not_cached_and_the_cache_is_bounded(issuer_and_server, signature_checks):
    issuer, server = issuer_and_server
    verifier = verifier_for(issuer, server, cache_size=10)
    wrong_audience = issuer.mint(tenant="acme", subject="a", roles=["editor"], audience="other")
    for _ in range(3):
        await refused(verifier, wrong_audience)
    assert len(signature_checks) == 3 and len(verifier.verified) == 0
    for n in range(50):
        await verifier.verify(issuer.mint(tenant="acme", subject=f"s{n}", roles=["editor"]))
    assert len(verifier.verified) <= 10


async def test_no_cache_verifies_every_time(issuer_and_server, signature_checks):
    issuer, server = issuer_and_server
    verifier = verifier_for(issuer, server, cache_size=0)
    token = issuer.mint(tenant="acme", subject="alice", roles=["editor"])
    for _ in range(3):
        await verifier.verify(token)
    assert len(signature_checks) == 3


async def test_the_shared_claims_are_read_only(issuer_and_server):
    issuer, server = issuer_and_server
    verifier = verifier_for(issuer, server)
    principal = await verifier.verify(issuer.mint(tenant="acme", subject="alice", roles=["editor"]))
    with pytest.raises(TypeError):
        principal.claims["tenant"] = "other"  # type: ignore[index]
    assert (await verifier.verify(issuer.mint(tenant="acme", subject="alice", roles=["editor"]))).tenant == "acme"
