"""Fixtures shared by every service's tests: real infrastructure, this session's topics and
database names, and a local token issuer. Helpers live in tests/support/advocacy_testkit.py.

Each test session uses its own topic prefix and database names, so runs never see each other's data.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from advocacy_testkit import Infrastructure, find_infrastructure

from advocacy_common.dev_issuer import DevIssuer, JwksServer
from advocacy_common.topics import TopicNames, ensure_topics


@pytest.fixture(scope="session")
def infrastructure() -> Iterator[Infrastructure]:
    with find_infrastructure() as found:
        yield found


@pytest.fixture(scope="session")
def run_id() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def topic_names(run_id: str) -> TopicNames:
    return TopicNames(prefix=f"test{run_id}.")


@pytest.fixture(scope="session")
async def kafka_topics(infrastructure: Infrastructure, topic_names: TopicNames) -> TopicNames:
    """The event topics and DLQs under this session's prefix, created on the real broker."""
    await ensure_topics(infrastructure.kafka_bootstrap_servers, topic_names, partitions=3)
    return topic_names


@pytest.fixture(scope="session")
def dev_issuer() -> Iterator[tuple[DevIssuer, JwksServer]]:
    server = JwksServer([]).start()
    issuer = DevIssuer.generate(issuer=server.url)
    server.issuers.append(issuer)
    yield issuer, server
    server.stop()


@pytest.fixture(scope="session")
def auth_settings(dev_issuer: tuple[DevIssuer, JwksServer]) -> dict[str, str]:
    """Settings fields that point a service at the test issuer."""
    issuer, server = dev_issuer
    return {"auth_issuer": issuer.issuer, "auth_audience": issuer.audience,
            "auth_jwks_url": f"{server.url}/.well-known/jwks.json"}


@pytest.fixture(scope="session")
def mint_token(dev_issuer: tuple[DevIssuer, JwksServer]):
    issuer, _ = dev_issuer

    def mint(tenant: str, subject: str, *roles: str, **kwargs) -> str:
        return issuer.mint(tenant=tenant, subject=subject, roles=list(roles), **kwargs)

    return mint


@pytest.fixture(scope="session")
def bearer(mint_token):
    """`bearer(tenant, subject, *roles)` -> headers with a valid token."""

    def headers(tenant: str, subject: str, *roles: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint_token(tenant, subject, *roles)}"}

    return headers


@pytest.fixture
def unique_db_name(run_id: str):
    def name(service: str) -> str:
        return f"{service}_{run_id}_{uuid.uuid4().hex[:6]}"

    return name
