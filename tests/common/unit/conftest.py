"""Fixtures of the common library's unit tests."""

import pytest

from advocacy_common.dev_issuer import DevIssuer, JwksServer


@pytest.fixture
def issuer_and_server():
    """A dev issuer of its own, on a JWKS server of its own (a test may rotate its keys)."""
    server = JwksServer([]).start()
    issuer = DevIssuer.generate(server.url)
    server.issuers.append(issuer)
    yield issuer, server
    server.stop()
