"""Stream tickets: how a browser opens a Server-Sent Events stream without putting its token in a URL.

`EventSource` cannot send an `Authorization` header. So the page first asks,
with its bearer token, for a ticket (`POST /v1/stream-tickets`), then opens
`...?ticket=<ticket>`. A ticket is

- short-lived (`ttl_seconds`, never past the token's own expiry),
- single-use (its id is recorded on first use, in the service's database, so
  every replica refuses a second use),
- single-purpose (its audience names the one stream it opens),
- bound to the caller: tenant, subject, roles and the token's expiry travel in
  it, HMAC-signed (HS256, PyJWT) with a key from the settings.

A stream opened with a ticket (or a token) closes when the token would have
expired: the client then asks for a new ticket with a fresh token.
`StreamSlots` caps the concurrent streams of one subject (per process).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import jwt
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from .auth import Principal, unauthorized
from .errors import Problem

TICKET_ALGORITHM = "HS256"
PURGE_EVERY_SECONDS = 60.0


@dataclass(frozen=True)
class IssuedTicket:
    ticket: str
    expires_in: int  # seconds


@dataclass(frozen=True)
class RedeemableTicket:
    ticket_id: str
    expires_at: float  # epoch seconds: the ticket's own expiry (its id can be forgotten after it)
    principal: Principal  # claims carry the token's `exp`, so the stream knows when to close


class TicketSigner:
    """Issues and checks the tickets of one purpose (e.g. "metrics-stream")."""

    def __init__(self, key: str, purpose: str, ttl_seconds: int = 60):
        self.key = key
        self.purpose = purpose
        self.ttl_seconds = ttl_seconds

    def issue(self, principal: Principal) -> IssuedTicket:
        now = int(time.time())
        token_expiry = int(principal.claims["exp"])  # the verifier requires it
        expires_at = min(now + self.ttl_seconds, token_expiry)
        claims = {"jti": uuid.uuid4().hex, "aud": self.purpose, "iat": now, "exp": expires_at,
                  "sub": principal.subject, "tenant": principal.tenant, "roles": sorted(principal.roles),
                  "token_exp": token_expiry}
        return IssuedTicket(jwt.encode(claims, self.key, algorithm=TICKET_ALGORITHM), max(0, expires_at - now))

    def read(self, ticket: str) -> RedeemableTicket:
        """The ticket's holder, if the signature, purpose and expiry hold (no leeway: it lives a minute)."""
        try:
            claims = jwt.decode(ticket, self.key, algorithms=[TICKET_ALGORITHM], audience=self.purpose,
                                options={"require": ["jti", "exp", "sub", "aud"]})
        except jwt.ExpiredSignatureError:
            raise unauthorized("The stream ticket has expired; ask for a new one.") from None
        except jwt.InvalidTokenError:
            raise unauthorized("The stream ticket is not valid for this stream.") from None
        principal = Principal(subject=str(claims["sub"]), tenant=str(claims["tenant"]),
                              roles=frozenset(map(str, claims.get("roles", []))),
                              claims={"sub": claims["sub"], "tenant": claims["tenant"], "exp": claims["token_exp"]})
        return RedeemableTicket(str(claims["jti"]), float(claims["exp"]), principal)


class MongoTicketLedger:
    """The ids of used tickets, one document each (`_id` = ticket id: the insert is cheap and atomic).

    FerretDB 1.x has no TTL indexes, so used ids past their expiry are deleted
    here, at most once a minute per process (a scan of a small collection); on
    MongoDB a TTL index on `expires_at` would do the same.
    """

    def __init__(self, database: AsyncDatabase, collection: str = "stream_tickets"):
        self.collection = database[collection]
        self._purged_at = 0.0

    async def redeem(self, ticket: RedeemableTicket) -> Principal:
        """The ticket's holder, the first time only."""
        await self._purge_expired()
        try:
            await self.collection.insert_one({"_id": ticket.ticket_id, "expires_at": ticket.expires_at})
        except DuplicateKeyError:
            raise unauthorized("The stream ticket was used already; ask for a new one.") from None
        return ticket.principal

    async def _purge_expired(self) -> None:
        now = time.time()
        if now - self._purged_at < PURGE_EVERY_SECONDS:
            return
        self._purged_at = now
        await self.collection.delete_many({"expires_at": {"$lt": now}})


class StreamSlots:
    """At most `per_subject` open streams per (tenant, subject) in this process; 429 beyond."""

    def __init__(self, per_subject: int, retry_after_seconds: int = 10):
        self.per_subject = per_subject
        self.retry_after_seconds = retry_after_seconds
        self._open: Counter[tuple[str, str]] = Counter()

    def open_count(self, principal: Principal) -> int:
        return self._open[(principal.tenant, principal.subject)]

    @contextmanager
    def held(self, principal: Principal) -> Iterator[None]:
        """One of the caller's slots while the block runs; 429 if all are taken."""
        key = (principal.tenant, principal.subject)
        if self._open[key] >= self.per_subject:
            raise Problem(429, "Too Many Requests",
                          f"At most {self.per_subject} streams may be open at once; close one first.",
                          headers={"Retry-After": str(self.retry_after_seconds)})
        self._open[key] += 1
        try:
            yield
        finally:
            self._open[key] -= 1
            if self._open[key] <= 0:
                del self._open[key]
