"""What the use cases and handlers need from storage and transport: one Protocol per repository.

Domain types in and out, never documents or query dicts. The MongoDB implementations are in `adapters/`;
the unit tests have one in-memory fake of each (tests/distribution/unit/fakes.py).

Projection writes take the `Delivery` of the event that causes them: an adapter applies an event to a
document at most once (per-partition watermark written with the effect), so redelivery changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from advocacy_common.consuming import Delivery
from advocacy_common.envelope import Envelope
from advocacy_common.events import AmbassadorProfile, EngagementKind
from advocacy_common.repository import Page, UnitOfWork
from advocacy_common.subjects import SubjectHolders
from advocacy_common.gdpr_export import ExportParts

from .models.authenticity import AuthenticityPolicy, BookEntry, SignatureBook, TenantPolicy
from .models.engagement import Click, Connector, Report
from .models.plausibility import ShareTotals
from .models.projections import AmbassadorView, CharterView, CommentTally, ContentView, Person
from .models.sharing import Share, TrackedLink


# --- projections of other services' events ----------------------------------------------------

class ContentProjection(Protocol):
    async def get(self, tenant: str, content_id: str) -> ContentView | None: ...

    async def list_unretired(self, tenant: str) -> list[ContentView]:
        """Not retired, published or scheduled (publication, expiry and targeting are the caller's rules)."""
        ...

    async def changes(self, tenant: str) -> int:
        """How many content writes the tenant had: it moves on after each write of `put_if_newer` or
        `retire` (also a repeated one), so a listing made after reading it holds every write it counts."""
        ...

    async def put_if_newer(self, content: ContentView, delivery: Delivery) -> None:
        """Store this version unless a newer one is stored already."""
        ...

    async def retire(self, tenant: str, content_id: str, version: int, reason: str, delivery: Delivery) -> None:
        """Mark retired unless a newer version is stored."""
        ...


class AmbassadorProjection(SubjectHolders, Protocol):
    """Opted-in people as their events describe them, and which ambassador id holds each login now."""

    async def person(self, tenant: str, subject_key: str) -> Person:
        """The current holder of the login `subject_key` (its first holder's id, the key, when nobody else
        claimed it), their projection and their `SharedContents`, as one read: what a feed request needs."""
        ...

    async def get(self, tenant: str, ambassador_id: str) -> AmbassadorView | None: ...

    async def opt_in(self, tenant: str, ambassador_id: str, profile: AmbassadorProfile, charter_version: int,
                     delivery: Delivery) -> None:
        """Opted in with this profile; the accepted charter version only ever grows."""
        ...

    async def update_profile(self, tenant: str, ambassador_id: str, profile: AmbassadorProfile,
                             delivery: Delivery) -> None:
        """New profile, unless the person was erased."""
        ...

    async def opt_out(self, tenant: str, ambassador_id: str, delivery: Delivery) -> None:
        """Opted out, unless the person was erased."""
        ...

    async def accept_charter(self, tenant: str, ambassador_id: str, charter_version: int,
                             delivery: Delivery) -> None:
        """The accepted version becomes the highest seen, in any order with the opt-in (unless erased)."""
        ...

    async def erase(self, tenant: str, ambassador_id: str, delivery: Delivery) -> None:
        """Status erased, profile dropped."""
        ...


class CharterProjection(Protocol):
    async def current(self, tenant: str) -> CharterView:
        """The tenant's current charter (version 0 when none was published)."""
        ...

    async def publish(self, tenant: str, charter: CharterView, delivery: Delivery) -> None:
        """Becomes current unless a higher version is."""
        ...


class CommentTallies(Protocol):
    async def count(self, tally: CommentTally, kind: EngagementKind, count: int, delivery: Delivery) -> None:
        """Add `count` comments or replies (by `kind`) to the share's tally; `tally` says whose share it is."""
        ...

    async def awaiting_reply(self, tenant: str, ambassador_id: str, cursor: str | None,
                             limit: int) -> Page[CommentTally]:
        """One page of my tallies with more comments than replies, by share id."""
        ...

    async def anonymise(self, tenant: str, ambassador_id: str, erased: str) -> None: ...


# --- this service's own state ------------------------------------------------------------------

class Shares(Protocol):
    async def get(self, tenant: str, share_id: str) -> Share | None: ...

    async def get_retry(self, tenant: str, share_id: str, fingerprint: str) -> Share | None:
        """The share an earlier request with this key created; KeyReused if its body differed."""
        ...

    async def add_prepared(self, share: Share, fingerprint: str) -> Share:
        """Insert a prepared share under its key-derived id: the stored one (a concurrent retry may have won)."""
        ...

    async def confirm(self, share: Share, uow: UnitOfWork) -> Share:
        """Save the confirmation with its events if the share is still prepared at the version read;
        StaleWrite (nothing written) otherwise."""
        ...

    async def page_of(self, tenant: str, ambassador_id: str, cursor: str | None, limit: int) -> Page[Share]:
        """My shares, newest first."""
        ...

    async def find_by_post_url(self, tenant: str, post_url: str) -> Share | None: ...

    async def count_confirmed_since(self, tenant: str, ambassador_id: str, since: datetime) -> int:
        """The person's shares confirmed at or after `since`, of those entered in their `SharedContents`
        (every confirmation enters its share there before saving it, `fill_shared` the older ones)."""
        ...

    async def slots_held_from(self, tenant: str, content_id: str, moment: datetime,
                              held_since: datetime) -> set[datetime]:
        """Recommended times at or after `moment` of this content's shares that still hold them: confirmed
        shares, and prepared ones created at or after `held_since` (older prepares gave their slot back)."""
        ...

    async def confirmed_outside_shared(self, limit: int) -> list[Share]:
        """Confirmed shares (of any tenant) not yet entered in their person's `SharedContents`: those
        confirmed before it existed. Empty once `fill_shared` has run."""
        ...

    async def mark_in_shared(self, tenant: str, share_id: str) -> None: ...

    async def confirmed_outside_books(self, limit: int) -> list[Share]:
        """Confirmed shares (of any tenant) not yet entered in their content's signature book: those
        confirmed before the books existed. Empty once `fill_books` has run."""
        ...

    async def mark_in_book(self, tenant: str, share_id: str) -> None: ...

    async def anonymise(self, tenant: str, ambassador_id: str, erased: str) -> None:
        """Drop the person's id, text and post URL from their shares (counts stay)."""
        ...


class SharedContents(Protocol):
    """Per person, the contents they confirmed a share of: what the feed leaves out, one read by id.

    Entered by the confirmation before it saves the share (like the link's claim), so the person's next
    feed already leaves the content out; taken out again when the confirmation does not go through."""

    async def of(self, tenant: str, ambassador_id: str) -> set[str]:
        """Content ids of my confirmed shares (empty when none)."""
        ...

    async def add(self, tenant: str, ambassador_id: str, share_id: str, content_id: str,
                  confirmed_at: datetime | None = None) -> None:
        """Enter the share, confirmed at `confirmed_at` (idempotent: entered once however often called; the
        time of the last call is kept)."""
        ...

    async def remove(self, tenant: str, ambassador_id: str, share_id: str, content_id: str) -> None:
        """Take this share's entry out (another share of the same content stays)."""
        ...

    async def forget(self, tenant: str, ambassador_id: str) -> None:
        """Drop the person's entries (erasure)."""
        ...


class SignatureBooks(Protocol):
    """Per content, the signatures of its confirmed shares: what the near-copy check compares with."""

    async def read(self, tenant: str, content_id: str) -> SignatureBook:
        """The whole book (empty at version 0 when no share of the content was confirmed)."""
        ...

    async def add(self, book: SignatureBook, entry: BookEntry) -> None:
        """Append if the book is still as read; StaleWrite or AlreadyExists (nothing written) when another
        confirmation got there first."""
        ...

    async def remove(self, tenant: str, content_id: str, share_id: str) -> None:
        """Take a share's entry out again (its confirmation did not go through)."""
        ...


class Links(Protocol):
    async def get(self, tenant: str, code: str) -> TrackedLink | None: ...

    async def by_code(self, code: str) -> TrackedLink | None:
        """By code alone: the public redirect has no tenant; the link says whose it is."""
        ...

    async def ensure(self, link: TrackedLink) -> None:
        """Create the link once; later preparations of the same triple leave it unchanged."""
        ...

    async def claim(self, tenant: str, code: str, share_id: str) -> bool:
        """One confirmed share per link: the first confirmation claims it (a retry of it still does)."""
        ...

    async def anonymise(self, tenant: str, ambassador_id: str, erased: str) -> None: ...

    async def changes(self, tenant: str) -> int:
        """A count of the tenant's link changes (claims, erasures), moved on after each change's write:
        what a reader of links checks to know whether what it read may be stale."""
        ...

    async def of_ambassador(self, tenant: str, ambassador_id: str) -> list[TrackedLink]:
        """Every tracked link of one person (their GDPR export)."""
        ...


class Clicks(Protocol):
    async def claim_visitors(self, claims: Sequence[tuple[str, str]]) -> set[str]:
        """Claim (tenant, visitor key) pairs, keys distinct: the keys claimed now for the first time (new
        visitors on their link), a fresh set; the others were claimed before (one insert for all)."""
        ...

    async def record_many(self, clicks: Sequence[tuple[Click, UnitOfWork]]) -> None:
        """Store counted clicks with their events, all durable when this returns (one insert for all, a
        document per tenant and up to 100 clicks). Click ids are random, never taken: writing the same clicks
        again (a retry) stores each once."""
        ...

    async def unique_visitors_by_code(self, tenant: str, codes: list[str]) -> dict[str, int]:
        """Clicks recorded on each of these links (absent: none)."""
        ...


class Connectors(Protocol):
    async def register(self, connector: Connector, fingerprint: str) -> Connector:
        """Insert under its key-derived id; a retry with the same body finds the first (KeyReused with
        another body, AlreadyExists when the name is taken)."""
        ...

    async def get(self, tenant: str, connector_id: str) -> Connector | None: ...

    async def list(self, tenant: str) -> list[Connector]:
        """Oldest first."""
        ...

    async def page_of(self, tenant: str, cursor: str | None, limit: int) -> Page[Connector]:
        """One page of `list`, oldest first."""
        ...


class Reports(Protocol):
    async def get(self, tenant: str, report_id: str) -> Report | None: ...

    async def record(self, report: Report) -> bool:
        """False (nothing written) when a report with this id exists already."""
        ...

    async def acknowledge(self, tenant: str, report_id: str) -> None:
        """Kafka has the event: mark it and drop the kept envelope."""
        ...


class EngagementTotals(Protocol):
    """Per-share running totals of reported comments and replies, checked and updated at ingestion."""

    async def get(self, tenant: str, share_id: str) -> ShareTotals:
        """The share's totals, or empty ones at version 0."""
        ...

    async def save(self, totals: ShareTotals) -> ShareTotals:
        """Store them if the stored version is still `totals.version` (the saved totals carry version + 1);
        StaleWrite or AlreadyExists (nothing written) when another writer got there first."""
        ...


class Policies(Protocol):
    async def current(self, tenant: str) -> TenantPolicy:
        """The stored policy, or the defaults at version 0."""
        ...

    async def replace(self, tenant: str, policy: AuthenticityPolicy, expected_version: int) -> TenantPolicy:
        """Store it if the stored version is still `expected_version`: the saved policy (version + 1);
        StaleWrite or AlreadyExists (nothing written) when another writer got there first."""
        ...


class Publisher(Protocol):
    """Publishing with Kafka's acknowledgement (the signed reports answer only after it)."""

    async def publish(self, logical_topic: str, envelope: Envelope) -> None: ...


@dataclass(frozen=True)
class Repositories:
    """Every port the use cases and handlers of distribution work with."""

    contents: ContentProjection
    ambassadors: AmbassadorProjection
    charters: CharterProjection
    comments: CommentTallies
    shares: Shares
    shared: SharedContents
    books: SignatureBooks
    links: Links
    clicks: Clicks
    connectors: Connectors
    reports: Reports
    totals: EngagementTotals
    policies: Policies
    exports: ExportParts
