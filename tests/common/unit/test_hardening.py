"""The HTTP hardening every service gets from create_service_app: body, JSON depth, headers, hosts, rate limits."""

import asyncio
import time

import pytest
from fastapi import Depends, Request
from httpx import ASGITransport, AsyncClient

from advocacy_common.auth import Principal, authenticate
from advocacy_common.bounded import BoundedInput, Int64, SaneDate, SaneDatetime
from advocacy_common.hardening import carries_nul, json_depth_exceeds
from advocacy_common.http import create_service_app
from advocacy_common.settings import ServiceSettings

pytestmark = pytest.mark.unit
MIB = 1024 * 1024


class Note(BoundedInput):
    text: str
    at: SaneDatetime | None = None
    day: SaneDate | None = None
    count: Int64 = 0


def make_app(auth_settings, **overrides):
    settings = ServiceSettings(service_name="hardening-test", **{**auth_settings, **overrides})
    app = create_service_app(settings, title="t", description="t")
    app.state.writes = []

    @app.post("/notes")
    async def create(note: Note, principal: Principal = Depends(authenticate)):
        app.state.writes.append(note)
        return {"ok": True}

    @app.post("/raw")
    async def raw(request: Request):
        body = await request.body()
        app.state.writes.append(body)
        return {"length": len(body)}

    @app.get("/items")
    async def items(since: SaneDatetime | None = None, count: Int64 | None = None,
                    principal: Principal = Depends(authenticate)):
        return {"since": since, "count": count}

    @app.post("/connectors/{connector_id}/reports")
    async def report(connector_id: str, principal: Principal = Depends(authenticate)):
        return {"connector": connector_id}

    return app


def client(app, host="t"):
    return AsyncClient(transport=ASGITransport(app), base_url=f"http://{host}")


async def chunks(parts):
    for part in parts:  # no Content-Length: sent as chunks
        yield part


def assert_problem(response, status):
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == status


# --- body limit -------------------------------------------------------------------------------------

async def test_a_body_over_the_limit_is_413_whatever_content_length_says(auth_settings, bearer):
    app = make_app(auth_settings, max_body_bytes=1000)
    async with client(app) as http:
        declared = await http.post("/raw", content=b"x" * 1001)
        chunked = await http.post("/raw", content=chunks([b"[1" + b",1" * 300, b",1" * 300 + b"]"]))
        fits = await http.post("/raw", content=b"[" + b"1," * 400 + b"1]")
    assert_problem(declared, 413)
    assert_problem(chunked, 413)
    assert fits.status_code == 200 and fits.json()["length"] == 803
    assert app.state.writes == [b"[" + b"1," * 400 + b"1]"]  # the refused ones never reached the endpoint


async def test_a_lying_content_length_is_caught_while_reading(auth_settings):
    app = make_app(auth_settings, max_body_bytes=1000)
    sent: list[dict] = []
    chunks = [{"type": "http.request", "body": b"y" * 600, "more_body": True},
              {"type": "http.request", "body": b"y" * 600, "more_body": False}]

    async def receive():
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/raw", "raw_path": b"/raw", "query_string": b"", "root_path": "", "server": ("t", 80),
             "client": ("1.2.3.4", 1), "headers": [(b"host", b"t"), (b"content-length", b"10"),
                                                   (b"content-type", b"application/json")]}
    await app(scope, receive, send)
    assert sent[0]["status"] == 413
    assert app.state.writes == []


@pytest.mark.parametrize("value", ["abc", "-5", "1" * 40, "1e3"])
async def test_a_malformed_content_length_is_400(auth_settings, value):
    app = make_app(auth_settings)
    async with client(app) as http:
        response = await http.post("/raw", content=b"{}", headers={"Content-Length": value})
    assert response.status_code in (400, 413)
    assert app.state.writes == []


# --- JSON depth --------------------------------------------------------------------------------------

def test_the_depth_scanner_counts_brackets_outside_strings_only():
    assert not json_depth_exceeds(b'{"a": "[[[[[[[[[[[[[[[[", "b": [[1]]}', 3)
    assert json_depth_exceeds(b'{"a": [[[1]]]}', 3)
    assert not json_depth_exceeds(b'{"a": "quote \\" [[[[[[", "b": {"c": [1]}}', 3)


@pytest.mark.parametrize("content_type", ["application/json", "application/scim+json", "text/plain", None])
async def test_json_nested_1000_deep_is_a_400_before_any_parser(auth_settings, bearer, content_type):
    app = make_app(auth_settings)
    deep = b"[" * 1000 + b"]" * 1000
    headers = {"Content-Type": content_type} if content_type else {}
    async with client(app) as http:
        raw = await http.post("/raw", content=deep, headers=headers)
        model = await http.post("/notes", content=b'{"text": ' + deep + b"}",
                                headers={**headers, **bearer("t1", "u1", "editor")})
        shallow = await http.post("/raw", content=b"[" * 32 + b"]" * 32, headers=headers)
    assert_problem(raw, 400)
    assert_problem(model, 400)
    assert shallow.status_code == 200
    assert app.state.writes == [b"[" * 32 + b"]" * 32]


async def test_a_csv_body_is_not_scanned_as_json(auth_settings):
    app = make_app(auth_settings)
    async with client(app) as http:
        response = await http.post("/raw", content=b"[" * 100, headers={"Content-Type": "text/csv"})
    assert response.status_code == 200
    assert app.state.writes == [b"[" * 100]  # reached the endpoint: CSV is the endpoint's to parse


def test_the_nul_scanner_finds_raw_and_escaped_nul_but_not_an_escaped_backslash():
    assert carries_nul(b"ann,\x00\n") and carries_nul(b'{"a": "x\\u0000"}') and carries_nul(b'"\\\\\\u0000"')
    assert not carries_nul(b'{"a": "x\\\\u0000"}') and not carries_nul(b'{"a": "\\u0001"}')


@pytest.mark.parametrize("body, content_type", [(b"user_name,title\nann,\x00\n", "text/csv"),
                                                (b'{"text": "a\\u0000b"}', "application/json")])
async def test_a_body_with_nul_is_a_400_that_reaches_no_endpoint(auth_settings, bearer, body, content_type):
    app = make_app(auth_settings)
    async with client(app) as http:
        raw = await http.post("/raw", content=body, headers={"Content-Type": content_type})
        fine = await http.post("/raw", content=b'{"text": "a\\\\u0000b"}', headers={"Content-Type": content_type})
    assert_problem(raw, 400)
    assert fine.status_code == 200 and app.state.writes == [b'{"text": "a\\\\u0000b"}']


async def test_a_refusal_on_a_scim_path_is_a_scim_error(auth_settings):
    app = make_app(auth_settings)
    async with client(app) as http:
        response = await http.post("/scim/v2/Users", content=b'{"userName": "a\\u0000"}',
                                   headers={"Content-Type": "application/scim+json"})
    assert response.status_code == 400 and response.headers["content-type"] == "application/scim+json"
    assert response.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert response.json()["status"] == "400"


async def test_a_nul_in_the_path_or_query_is_a_400(auth_settings, bearer):
    app = make_app(auth_settings)
    async with client(app) as http:
        in_query = await http.get("/items?count=1%00", headers=bearer("t1", "u1", "editor"))
        in_path = await http.post("/connectors/a%00b/reports", headers=bearer("t1", "u1", "editor"))
    assert_problem(in_query, 400)
    assert_problem(in_path, 400)


# --- headers, URL and host -------------------------------------------------------------------------------

async def test_oversized_headers_and_urls_are_refused(auth_settings, bearer):
    app = make_app(auth_settings)
    async with client(app) as http:
        header = await http.get("/items", headers={"If-Match": '"1",' * 5000, **bearer("t1", "u1", "editor")})
        url = await http.get("/items?cursor=" + "a" * 10_000, headers=bearer("t1", "u1", "editor"))
    assert_problem(header, 431)
    assert_problem(url, 414)


async def test_hosts_outside_the_allow_list_are_400_but_probes_answer(auth_settings):
    app = make_app(auth_settings, allowed_hosts=["api.example.com", "*.internal.example"])
    async with client(app, "evil.example") as evil, client(app, "api.example.com") as good, \
            client(app, "x.internal.example:8443") as sub:
        assert_problem(await evil.post("/raw", content=b"{}"), 400)
        assert (await evil.get("/livez")).status_code == 200
        assert (await good.post("/raw", content=b"{}")).status_code == 200
        assert (await sub.post("/raw", content=b"{}")).status_code == 200
    assert app.state.writes == [b"{}", b"{}"]


async def test_security_headers_everywhere_and_no_store_on_authenticated_answers(auth_settings, bearer):
    app = make_app(auth_settings, hsts_seconds=31536000)
    async with client(app) as http:
        authenticated = await http.get("/items", headers=bearer("t1", "u1", "editor"))
        anonymous = await http.get("/livez")
        refused = await http.post("/raw", content=b"[" * 100, headers=bearer("t1", "u1", "editor"))
        docs = await http.get("/docs")
    for response in (authenticated, anonymous, refused, docs):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["strict-transport-security"].startswith("max-age=31536000")
        assert "server" not in response.headers
    assert authenticated.headers["cache-control"] == "no-store"
    assert refused.headers["cache-control"] == "no-store"
    assert "cache-control" not in anonymous.headers
    assert "default-src 'none'" in authenticated.headers["content-security-policy"]
    assert "cdn.jsdelivr.net" in docs.headers["content-security-policy"]  # Swagger UI still loads


async def test_hsts_is_off_by_default(auth_settings):
    async with client(make_app(auth_settings)) as http:
        assert "strict-transport-security" not in (await http.get("/livez")).headers


# --- bounded values ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    {"text": "x", "at": "0001-01-01T00:00:00+05:00"},
    {"text": "x", "at": "9999-12-31T23:59:59-05:00"},
    {"text": "x", "at": "2024-01-01T00:00:00"},  # no offset
    {"text": "x", "day": "0001-01-01"},
    {"text": "x", "count": 2**64},
    {"text": "x", "count": -(2**63) - 1},
    {"text": "x" * 70_000},
])
async def test_values_beyond_sane_bounds_are_422(auth_settings, bearer, body):
    app = make_app(auth_settings)
    async with client(app) as http:
        response = await http.post("/notes", json=body, headers=bearer("t1", "u1", "editor"))
    assert_problem(response, 422)
    assert app.state.writes == []


@pytest.mark.parametrize("query", ["since=0001-01-01T00:00:00%2B05:00", "since=9999-12-31T23:59:59-05:00",
                                   "count=" + "9" * 30, "count=" + "9" * 5000])
async def test_query_values_beyond_bounds_are_422(auth_settings, bearer, query):
    async with client(make_app(auth_settings)) as http:
        response = await http.get(f"/items?{query}", headers=bearer("t1", "u1", "editor"))
    assert_problem(response, 422)


async def test_a_20_mb_string_is_413(auth_settings, bearer):
    app = make_app(auth_settings)
    async with client(app) as http:
        response = await http.post("/notes", content=b'{"text": "' + b"x" * (20 * MIB) + b'"}',
                                   headers={**bearer("t1", "u1", "editor"), "Content-Type": "application/json"})
    assert_problem(response, 413)


# --- malformed credentials and headers ------------------------------------------------------------------------

@pytest.mark.parametrize("authorization", [
    "Bearer " + "9" * 5000, "Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6WzFdfQ.e30.sig",  # kid is a list
    "Bearer eyJhbGciOlsiUlMyNTYiXX0.e30.sig",  # alg is a list
    "Bearer \u00e9\u00e9", "Basic YTpi", "Bearer", "bearer  ",
])
async def test_malformed_authorization_is_401(auth_settings, authorization):
    async with client(make_app(auth_settings)) as http:
        response = await http.get("/items", headers={"Authorization": authorization.encode("latin-1")})
    assert_problem(response, 401)


# --- rate limits -----------------------------------------------------------------------------------------------

async def test_writes_beyond_the_subject_quota_are_429_with_retry_after(auth_settings, bearer):
    app = make_app(auth_settings, rate_limit_subject_writes="3/minute", rate_limit_tenant_writes="5/minute")
    alice, bob, carol = (bearer("t1", name, "editor") for name in ("alice", "bob", "carol"))
    other_tenant = bearer("t2", "alice", "editor")
    async with client(app) as http:
        statuses = [(await http.post("/notes", json={"text": str(i)}, headers=alice)).status_code for i in range(4)]
        limited = await http.post("/notes", json={"text": "late"}, headers=alice)
        reads = [(await http.get("/items", headers=alice)).status_code for _ in range(5)]
        bob_statuses = [(await http.post("/notes", json={"text": "b"}, headers=bob)).status_code for _ in range(3)]
        carol_status = (await http.post("/notes", json={"text": "c"}, headers=carol)).status_code
        elsewhere = await http.post("/notes", json={"text": "t2"}, headers=other_tenant)
    assert statuses == [200, 200, 200, 429]
    assert_problem(limited, 429)
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert reads == [200] * 5
    assert bob_statuses == [200, 200, 429]  # the tenant's 5 writes are spent
    assert carol_status == 429
    assert elsewhere.status_code == 200  # another tenant is not affected
    assert [note.text for note in app.state.writes] == ["0", "1", "2", "b", "b", "t2"]


async def test_webhook_sources_have_their_own_quota(auth_settings, bearer):
    app = make_app(auth_settings, rate_limit_source_writes="2/minute")
    integrator = bearer("t1", "connector-app", "integrator")
    async with client(app) as http:
        first = [(await http.post("/connectors/c1/reports", headers=integrator)).status_code for _ in range(3)]
        second = (await http.post("/connectors/c2/reports", headers=integrator)).status_code
    assert first == [200, 200, 429]
    assert second == 200


async def test_a_quota_frees_up_as_the_window_moves(auth_settings, bearer):
    app = make_app(auth_settings, rate_limit_subject_writes="2/second")
    headers = bearer("t1", "u1", "editor")
    async with client(app) as http:
        burst = [(await http.post("/notes", json={"text": "x"}, headers=headers)).status_code for _ in range(3)]
        started = time.monotonic()
        await asyncio.sleep(1.1)
        later = (await http.post("/notes", json={"text": "y"}, headers=headers)).status_code
    assert burst == [200, 200, 429] and later == 200 and time.monotonic() - started < 5


async def test_the_hostile_input_probe_reports_a_route_that_fails(auth_settings, bearer):
    from advocacy_testkit import server_errors_on_hostile_input

    app = make_app(auth_settings)

    @app.post("/fragile")
    async def fragile(request: Request):
        return {"version": int(request.headers.get("if-match", "0").strip('"'))}  # a 500 on a hostile If-Match

    async with client(app) as http:
        failures = await server_errors_on_hostile_input(http, app, bearer("t1", "u1", "editor"))
    assert failures and all(failure.startswith("POST /fragile") for failure in failures)
    assert any("If-Match" in failure for failure in failures)


async def test_a_client_that_disconnects_mid_body_gets_nothing_and_changes_nothing(auth_settings):
    app = make_app(auth_settings)
    sent: list[dict] = []
    messages = [{"type": "http.request", "body": b'{"a": ', "more_body": True}, {"type": "http.disconnect"}]

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/raw", "raw_path": b"/raw", "query_string": b"", "root_path": "", "server": ("t", 80),
             "client": ("1.2.3.4", 1), "headers": [(b"host", b"t"), (b"content-type", b"application/json")]}
    await app(scope, receive, send)
    assert sent == [] and app.state.writes == []


@pytest.mark.parametrize("key", ["k" * 201, "tab\there", "caf\u00e9", "bell\x07"])
async def test_malformed_idempotency_keys_are_422(auth_settings, key):
    app = make_app(auth_settings)

    @app.post("/keyed")
    async def keyed(request: Request):
        from advocacy_common.api_support import idempotency_key

        return {"key": idempotency_key(request)}

    async with client(app) as http:
        response = await http.post("/keyed", headers={"Idempotency-Key": key.encode("latin-1")})
        accepted = await http.post("/keyed", headers={"Idempotency-Key": "order-42 retry"})
    assert_problem(response, 422)
    assert accepted.json() == {"key": "order-42 retry"}
