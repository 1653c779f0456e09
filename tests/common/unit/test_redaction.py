"""Logs carry no personal data or credentials, whichever logger writes them (uvicorn's access log included)."""

import io
import json
import logging

import pytest

from advocacy_common.logs import configure_logging
from advocacy_common.redaction import redact

pytestmark = pytest.mark.unit
TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbm4ifQ.c2lnbmF0dXJl"


@pytest.mark.parametrize("text, secret", [
    ('GET /scim/v2/Users?filter=userName%20eq%20%22ann%40corp.example%22&count=5', "ann"),
    ("GET /cb?code=abc123&state=xyz789", "abc123"),
    ("GET /cb?code=abc123&state=xyz789", "xyz789"),
    ("GET /x?access_token=s3cr3t", "s3cr3t"),
    ("GET /x?token=s3cr3t&limit=5", "s3cr3t"),
    ("user ann.lee+work@corp.example logged in", "ann.lee"),
    ("headers: {'authorization': 'Bearer abc.def.ghi', 'accept': '*/*'}", "abc.def.ghi"),
    ("Authorization: Basic YW5uOnB3", "YW5uOnB3"),
    (f"token {TOKEN} rejected", TOKEN),
])
def test_redact_removes_the_secret(text, secret):
    assert secret not in redact(text)
    assert "[redacted]" in redact(text)


def test_redact_keeps_harmless_parts():
    assert redact("GET /v1/content?limit=5&status=draft 200") == "GET /v1/content?limit=5&status=draft 200"
    assert "count=5" in redact("GET /scim/v2/Users?filter=x&count=5")


@pytest.fixture
def captured_logs():
    stream = io.StringIO()
    configure_logging("INFO", json_format=True)
    handler = logging.getLogger().handlers[0]
    handler.setStream(stream)
    yield stream
    configure_logging("INFO", json_format=True)


def test_the_installed_handler_redacts_uvicorn_access_lines_and_tracebacks(captured_logs):
    access = logging.getLogger("uvicorn.access")
    access.info('%s - "%s %s HTTP/%s" %d', "10.0.0.1:5000", "GET",
                '/scim/v2/Users?filter=userName eq "bob@corp.example"', "1.1", 200)
    try:
        raise ValueError(f"bad header Authorization: Bearer {TOKEN} for carol@corp.example")
    except ValueError:
        logging.getLogger("advocacy.test").exception("failed for %s", "dave@corp.example")
    lines = [json.loads(line) for line in captured_logs.getvalue().splitlines()]
    text = captured_logs.getvalue()
    assert len(lines) == 2
    assert lines[0]["message"].startswith('10.0.0.1:5000 - "GET /scim/v2/Users?filter=[redacted]')
    assert lines[0]["message"].endswith('HTTP/1.1" 200')
    for secret in ("bob@", "carol@", "dave@", TOKEN, "corp.example"):
        assert secret not in text
    assert "ValueError" in lines[1]["exception"]
