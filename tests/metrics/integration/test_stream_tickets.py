"""The live stream from a browser: single-use tickets instead of the header, a cap per caller, the
stream closing when the token expires; on the real Kafka and database."""

import asyncio
import base64
import json
import time
import uuid

import httpx
import jwt
import pytest
from asgi_lifespan import LifespanManager
from live_server import serving

from advocacy_common.auth import Principal
from advocacy_common.publishing import EventPublisher
from advocacy_common.stream_tickets import TicketSigner
from metrics.bootstrap import STREAM_TICKET_PURPOSE, build_worker, create_app
from metrics.settings import MetricsSettings
from metrics_testkit import envelope, opted_in

pytestmark = pytest.mark.integration
KEY = "test-stream-ticket-key-of-32-bytes-or-more"


@pytest.fixture
def settings(infrastructure, kafka_topics, unique_db_name, auth_settings) -> MetricsSettings:
    return MetricsSettings(kafka_bootstrap_servers=infrastructure.kafka_bootstrap_servers,
                           mongodb_uri=infrastructure.mongodb_uri, database=unique_db_name("tickets"),
                           topic_prefix=kafka_topics.prefix, topic_partitions=3,
                           consumer_group=f"tickets-{uuid.uuid4().hex[:8]}", stream_poll_seconds=0.1,
                           stream_heartbeat_seconds=0.2, stream_ticket_key=KEY, max_streams_per_subject=2,
                           **auth_settings)


@pytest.fixture
async def client(settings):
    app = create_app(settings)
    async with LifespanManager(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://metrics") as http:
            yield http


async def ticket_for(client, headers) -> str:
    response = await client.post("/v1/stream-tickets", headers=headers)
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    assert 0 < response.json()["expires_in"] <= 60
    return response.json()["ticket"]


async def first_update(client, ticket: str) -> dict:
    async with client.stream("GET", "/v1/metrics/stream", params={"ticket": ticket, "max_events": 1}) as sse:
        assert sse.status_code == 200
        body = "".join([chunk async for chunk in sse.aiter_text()])
    return json.loads(body.split("data: ", 1)[1].split("\n", 1)[0])


def claims_of(ticket: str) -> dict:
    payload = ticket.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


async def test_a_ticket_opens_the_stream_once_for_its_holder_only(client, bearer, mint_token):
    analyst = bearer("acme", "ann", "analyst")
    assert (await client.post("/v1/stream-tickets")).status_code == 401
    assert (await client.post("/v1/stream-tickets", headers=bearer("acme", "amb", "ambassador"))).status_code == 403

    ticket = await ticket_for(client, analyst)
    claims = claims_of(ticket)
    assert (claims["tenant"], claims["sub"], claims["roles"], claims["aud"]) == ("acme", "ann", ["analyst"],
                                                                                  STREAM_TICKET_PURPOSE)
    assert claims["exp"] - claims["iat"] == 60 and claims["token_exp"] >= claims["exp"]
    assert (await first_update(client, ticket))["dimension"] == "tenant"

    again = await client.get("/v1/metrics/stream", params={"ticket": ticket, "max_events": 1})
    assert again.status_code == 401 and "used already" in again.json()["detail"]
    assert again.headers["content-type"] == "application/problem+json"

    # Neither a token in place of a ticket, nor a ticket of another purpose, nor a forged one.
    token = mint_token("acme", "ann", "analyst")
    for wrong in (token, TicketSigner(KEY, "content-stream").issue(principal_of(claims)).ticket,
                  TicketSigner("a-guessed-key-that-is-long-enough-to-sign", STREAM_TICKET_PURPOSE).issue(principal_of(claims)).ticket, "x.y.z"):
        refused = await client.get("/v1/metrics/stream", params={"ticket": wrong, "max_events": 1})
        assert refused.status_code == 401, wrong


def principal_of(claims: dict) -> Principal:
    return Principal(claims["sub"], claims["tenant"], frozenset(claims["roles"]), {"exp": claims["token_exp"]})


async def test_a_ticket_expires(settings, bearer):
    settings.stream_ticket_ttl_seconds = 1
    app = create_app(settings)
    async with LifespanManager(app), httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://m") as c:
        ticket = await ticket_for(c, bearer("acme", "ann", "analyst"))
        await asyncio.sleep(1.5)
        expired = await c.get("/v1/metrics/stream", params={"ticket": ticket, "max_events": 1})
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]


async def test_a_ticket_is_bound_to_its_tenant(settings, client, bearer):
    worker = build_worker(settings)
    await worker.start()
    publisher = EventPublisher(settings.kafka_bootstrap_servers, settings.topics, client_id="tickets-test")
    await publisher.start()
    try:
        tenant, other = f"t-{uuid.uuid4().hex[:6]}", f"o-{uuid.uuid4().hex[:6]}"
        await publisher.publish_many([(e.topic, envelope(e, tenant)) for e in [opted_in("a1", "red"),
                                                                             opted_in("a2", "red")]])
        deadline = time.monotonic() + 20
        while (await first_update(client, await ticket_for(client, bearer(tenant, "ann", "analyst"))))[
                "kpis"]["ambassadors_opted_in"] != 2:
            assert time.monotonic() < deadline, "the opt-ins never reached the stream"
            await asyncio.sleep(0.3)
        theirs = await ticket_for(client, bearer(other, "ann", "analyst"))  # same subject, other tenant
        assert (await first_update(client, theirs))["kpis"]["ambassadors_opted_in"] == 0
        # Rewriting the tenant in a ticket breaks its signature.
        header, payload, signature = (await ticket_for(client, bearer(other, "ann", "analyst"))).split(".")
        forged_claims = {**claims_of(f"{header}.{payload}.{signature}"), "tenant": tenant}
        forged_payload = base64.urlsafe_b64encode(json.dumps(forged_claims).encode()).rstrip(b"=").decode()
        forged = await client.get("/v1/metrics/stream",
                                  params={"ticket": f"{header}.{forged_payload}.{signature}", "max_events": 1})
        assert forged.status_code == 401
    finally:
        await publisher.stop()
        await worker.stop()


async def test_concurrent_streams_are_capped_per_subject(settings, bearer):
    analyst = bearer("acme", "ann", "analyst")
    release = asyncio.Event()
    opened: list[int] = []

    async def hold_open(http) -> None:
        async with http.stream("GET", "/v1/metrics/stream", headers=analyst) as sse:
            opened.append(sse.status_code)
            await release.wait()

    # Streams held open at once need a real server (the ASGI transport answers when a body is complete).
    async with serving(create_app(settings)) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        holders = [asyncio.create_task(hold_open(http)) for _ in range(2)]
        while len(opened) < 2:
            await asyncio.sleep(0.05)
        third = await http.get("/v1/metrics/stream", params={"ticket": await ticket_for(http, analyst)})
        assert third.status_code == 429 and third.headers["retry-after"] == "10"
        assert third.headers["content-type"] == "application/problem+json" and "At most 2" in third.json()["detail"]
        # Another caller of the same tenant is not affected.
        other = await http.get("/v1/metrics/stream", headers=bearer("acme", "bob", "analyst"),
                               params={"max_events": 1})
        assert other.status_code == 200
        release.set()
        await asyncio.gather(*holders)
        assert opened == [200, 200]
        # The slots came back when the streams closed.
        again = await http.get("/v1/metrics/stream", headers=analyst, params={"max_events": 1})
        assert again.status_code == 200


async def test_the_stream_closes_when_the_token_expires(client, mint_token):
    token = mint_token("acme", "ann", "analyst", ttl_seconds=2)
    ticket = await ticket_for(client, {"Authorization": f"Bearer {token}"})
    assert claims_of(ticket)["exp"] <= jwt.decode(token, options={"verify_signature": False})["exp"]
    started = time.monotonic()
    async with client.stream("GET", "/v1/metrics/stream", params={"ticket": ticket}) as sse:
        body = await asyncio.wait_for(_read_all(sse), timeout=10)
    assert time.monotonic() - started < 4
    assert body.startswith("id: 1\nevent: kpis\n") and "event: expired" in body.split("\n\n")[-2]
    # The same with the header: the stream ends at the token's expiry too.
    short = mint_token("acme", "ann", "analyst", ttl_seconds=2)
    async with client.stream("GET", "/v1/metrics/stream", headers={"Authorization": f"Bearer {short}"}) as sse:
        body = await asyncio.wait_for(_read_all(sse), timeout=10)
    assert "event: expired" in body


async def _read_all(sse) -> str:
    return "".join([chunk async for chunk in sse.aiter_text()])
