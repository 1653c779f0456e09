"""Stream tickets without I/O: what a ticket carries and refuses; the per-caller cap on streams."""

import time

import jwt
import pytest

from advocacy_common.auth import Principal
from advocacy_common.errors import Problem
from advocacy_common.stream_tickets import StreamSlots, TicketSigner

pytestmark = pytest.mark.unit
KEY = "unit-test-stream-ticket-key-32-bytes-long"


def caller(tenant="acme", subject="ann", expires_in=3600) -> Principal:
    return Principal(subject, tenant, frozenset({"analyst"}), {"exp": int(time.time()) + expires_in})


def test_a_ticket_names_its_holder_and_lives_a_minute_at_most():
    signer = TicketSigner(KEY, "metrics-stream", ttl_seconds=60)
    issued = signer.issue(caller())
    assert 59 <= issued.expires_in <= 60
    held = signer.read(issued.ticket)
    assert (held.principal.tenant, held.principal.subject, held.principal.roles) == ("acme", "ann",
                                                                                     frozenset({"analyst"}))
    assert held.principal.claims["exp"] > held.expires_at  # the token outlives the ticket
    assert signer.read(signer.issue(caller()).ticket).ticket_id != held.ticket_id  # each ticket is distinct


def test_a_ticket_never_outlives_its_token():
    signer = TicketSigner(KEY, "metrics-stream", ttl_seconds=60)
    issued = signer.issue(caller(expires_in=5))
    assert issued.expires_in <= 5
    assert signer.read(issued.ticket).expires_at == signer.read(issued.ticket).principal.claims["exp"]


@pytest.mark.parametrize("ticket", [
    TicketSigner("another-key-that-is-also-32-bytes-long", "metrics-stream").issue(caller()).ticket,
    TicketSigner(KEY, "another-stream").issue(caller()).ticket,
    jwt.encode({"jti": "j", "aud": "metrics-stream", "sub": "ann", "tenant": "acme", "exp": 1}, KEY),
    "not-a-ticket",
])
def test_a_forged_misdirected_or_expired_ticket_is_refused(ticket):
    with pytest.raises(Problem) as refused:
        TicketSigner(KEY, "metrics-stream").read(ticket)
    assert refused.value.status == 401


def test_streams_are_capped_per_caller():
    slots = StreamSlots(per_subject=2, retry_after_seconds=7)
    ann, bob = caller(subject="ann"), caller(subject="bob")
    with slots.held(ann), slots.held(ann):
        with pytest.raises(Problem) as capped:
            with slots.held(ann):
                pass
        assert capped.value.status == 429 and capped.value.headers == {"Retry-After": "7"}
        with slots.held(bob), slots.held(caller(tenant="other", subject="ann")):
            assert slots.open_count(bob) == 1
    assert slots.open_count(ann) == 0
    with slots.held(ann):
        assert slots.open_count(ann) == 1
