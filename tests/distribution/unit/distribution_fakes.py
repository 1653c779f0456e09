"""One in-memory fake per port of distribution (plain Python over domain types), shared by the unit tests.

They keep the contracts the use cases rely on: tenant-scoped reads, at-most-once projection writes per
event, idempotent inserts with fingerprints, compare-and-set saves that refuse a stale version, events
saved with the state change they belong to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from advocacy_common.consuming import Delivery
from advocacy_common.envelope import Envelope
from advocacy_common.events import AmbassadorProfile, EngagementKind
from advocacy_common.repository import AlreadyExists, KeyReused, Page, StaleWrite, UnitOfWork
from advocacy_testkit import FakeExportParts, FakeSubjectHolders
from distribution.models.authenticity import AuthenticityPolicy, BookEntry, SignatureBook, TenantPolicy
from distribution.models.engagement import Click, Connector, Report
from distribution.models.plausibility import ShareTotals
from distribution.models.projections import (
    AmbassadorStatus, AmbassadorView, CharterView, CommentTally, ContentView, Person,
)
from distribution.models.sharing import Share, ShareStatus, TrackedLink
from distribution.ports import Repositories


def of_tenant(item, tenant: str):
    """Another tenant's item is as good as missing."""
    return item if item is not None and item.tenant == tenant else None


def offset_page(items: list, cursor: str | None, limit: int) -> Page:
    """Pages of an ordered list; the cursor is an offset (the adapters' are signed keysets)."""
    start = int(cursor) if cursor else 0
    more = len(items) > start + limit
    return Page(items[start:start + limit], str(start + limit) if more else None)


def replace_person(items: dict, tenant: str, ambassador_id: str, erased: str) -> None:
    for key, item in list(items.items()):
        if item.tenant == tenant and item.ambassador_id == ambassador_id:
            items[key] = item.model_copy(update={"ambassador_id": erased})


class AppliedOnce:
    """Which event (partition and offset) was applied to which key: a redelivery changes nothing."""

    def __init__(self) -> None:
        self._watermarks: dict[tuple[object, str], int] = {}

    def first_time(self, key: object, delivery: Delivery) -> bool:
        mark = (key, delivery.watermark_key)
        if self._watermarks.get(mark, -1) >= delivery.offset:
            return False
        self._watermarks[mark] = delivery.offset
        return True


class FakeContents(AppliedOnce):
    def __init__(self) -> None:
        super().__init__()
        self.items: dict[tuple[str, str], ContentView] = {}
        self.writes: dict[str, int] = {}  # per tenant, as the adapter's change count
        self.listings = 0  # how often `list_unretired` was called (the snapshot's reloads)

    async def get(self, tenant: str, content_id: str) -> ContentView | None:
        return self.items.get((tenant, content_id))

    async def list_unretired(self, tenant: str) -> list[ContentView]:
        self.listings += 1
        return [c for (t, _), c in self.items.items() if t == tenant and not c.retired]

    async def changes(self, tenant: str) -> int:
        return self.writes.get(tenant, 0)

    def _changed(self, tenant: str) -> None:
        self.writes[tenant] = self.writes.get(tenant, 0) + 1

    async def put_if_newer(self, content: ContentView, delivery: Delivery) -> None:
        key = (content.tenant, content.content_id)
        stored = self.items.get(key)
        if (stored is None or stored.version < content.version) and self.first_time(key, delivery):
            self.items[key] = content
        self._changed(content.tenant)

    async def retire(self, tenant: str, content_id: str, version: int, reason: str, delivery: Delivery) -> None:
        key = (tenant, content_id)
        stored = self.items.get(key)
        if (stored is None or stored.version <= version) and self.first_time(key, delivery):
            base = stored or ContentView(tenant=tenant, content_id=content_id, version=version)
            self.items[key] = base.model_copy(update={"retired": True, "version": version})
        self._changed(tenant)


class FakeAmbassadors(AppliedOnce, FakeSubjectHolders):
    def __init__(self) -> None:
        FakeSubjectHolders.__init__(self)
        super().__init__()
        self.items: dict[tuple[str, str], AmbassadorView] = {}
        self.shared: FakeSharedContents | None = None  # what `person` reads beside the projection
        self.person_reads = 0

    async def get(self, tenant: str, ambassador_id: str) -> AmbassadorView | None:
        return self.items.get((tenant, ambassador_id))

    async def person(self, tenant: str, subject_key: str) -> Person:
        self.person_reads += 1
        holder = await self.subject_holder(tenant, subject_key) or subject_key
        shared = await self.shared.of(tenant, holder) if self.shared is not None else set()
        return Person(holder, self.items.get((tenant, holder)), frozenset(shared))

    def _change(self, tenant: str, ambassador_id: str, delivery: Delivery, unless_erased: bool, **changes) -> None:
        key = (tenant, ambassador_id)
        stored = self.items.get(key) or AmbassadorView(tenant=tenant, ambassador_id=ambassador_id)
        if unless_erased and stored.status is AmbassadorStatus.ERASED:
            return
        if self.first_time(key, delivery):
            self.items[key] = stored.model_copy(update=changes)

    async def opt_in(self, tenant: str, ambassador_id: str, profile: AmbassadorProfile, charter_version: int,
                     delivery: Delivery) -> None:
        stored = self.items.get((tenant, ambassador_id))
        accepted = max(charter_version, stored.accepted_charter_version if stored else 0)
        self._change(tenant, ambassador_id, delivery, False, status=AmbassadorStatus.OPTED_IN, profile=profile,
                     accepted_charter_version=accepted)

    async def update_profile(self, tenant: str, ambassador_id: str, profile: AmbassadorProfile,
                             delivery: Delivery) -> None:
        self._change(tenant, ambassador_id, delivery, True, profile=profile)

    async def opt_out(self, tenant: str, ambassador_id: str, delivery: Delivery) -> None:
        self._change(tenant, ambassador_id, delivery, True, status=AmbassadorStatus.OPTED_OUT)

    async def accept_charter(self, tenant: str, ambassador_id: str, charter_version: int,
                             delivery: Delivery) -> None:
        stored = self.items.get((tenant, ambassador_id))
        accepted = max(charter_version, stored.accepted_charter_version if stored else 0)
        self._change(tenant, ambassador_id, delivery, True, accepted_charter_version=accepted)

    async def erase(self, tenant: str, ambassador_id: str, delivery: Delivery) -> None:
        self._change(tenant, ambassador_id, delivery, False, status=AmbassadorStatus.ERASED, profile=None)


class FakeCharters(AppliedOnce):
    def __init__(self) -> None:
        super().__init__()
        self.items: dict[str, CharterView] = {}

    async def current(self, tenant: str) -> CharterView:
        return self.items.get(tenant, CharterView())

    async def publish(self, tenant: str, charter: CharterView, delivery: Delivery) -> None:
        if (await self.current(tenant)).current_version < charter.current_version and self.first_time(tenant, delivery):
            self.items[tenant] = charter


class FakeComments(AppliedOnce):
    def __init__(self) -> None:
        super().__init__()
        self.items: dict[tuple[str, str], CommentTally] = {}

    async def count(self, tally: CommentTally, kind: EngagementKind, count: int, delivery: Delivery) -> None:
        key = (tally.tenant, tally.share_id)
        if not self.first_time(key, delivery):
            return
        stored = self.items.get(key, tally)
        field_name = "comments" if kind is EngagementKind.COMMENT else "replies"
        self.items[key] = tally.model_copy(update={"comments": stored.comments, "replies": stored.replies,
                                                   field_name: getattr(stored, field_name) + count})

    async def awaiting_reply(self, tenant: str, ambassador_id: str, cursor: str | None,
                             limit: int) -> Page[CommentTally]:
        return offset_page(sorted((t for t in self.items.values()
                                   if t.tenant == tenant and t.ambassador_id == ambassador_id and t.awaiting > 0),
                                  key=lambda t: t.share_id), cursor, limit)

    async def anonymise(self, tenant: str, ambassador_id: str, erased: str) -> None:
        replace_person(self.items, tenant, ambassador_id, erased)


@dataclass
class FakeShares:
    items: dict[str, Share] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)
    events: dict[str, list[Envelope]] = field(default_factory=dict)  # saved with the share they belong to
    in_book: set[str] = field(default_factory=set)  # confirmed by this release: entered in their book
    in_shared: set[str] = field(default_factory=set)  # confirmed by this release: in the person's shared contents

    async def get(self, tenant: str, share_id: str) -> Share | None:
        return of_tenant(self.items.get(share_id), tenant)

    async def get_retry(self, tenant: str, share_id: str, fingerprint: str) -> Share | None:
        share = await self.get(tenant, share_id)
        if share is not None and self.fingerprints[share_id] != fingerprint:
            raise KeyReused(share_id)
        return share

    async def add_prepared(self, share: Share, fingerprint: str) -> Share:
        if share.id in self.items:
            return await self.get_retry(share.tenant, share.id, fingerprint) or share
        self.items[share.id], self.fingerprints[share.id] = share, fingerprint
        return share

    async def confirm(self, share: Share, uow: UnitOfWork) -> Share:
        stored = self.items.get(share.id)
        if stored is None or stored.version != share.version or stored.status is not ShareStatus.PREPARED:
            raise StaleWrite(share.id)
        saved = share.model_copy(update={"version": share.version + 1})
        self.items[share.id] = saved
        self.in_book.add(share.id)
        self.in_shared.add(share.id)
        self.events.setdefault(share.id, []).extend(envelope for _, envelope in uow.pending)
        return saved

    def _of(self, tenant: str, ambassador_id: str) -> list[Share]:
        return [s for s in self.items.values() if s.tenant == tenant and s.ambassador_id == ambassador_id]

    async def page_of(self, tenant: str, ambassador_id: str, cursor: str | None, limit: int) -> Page[Share]:
        newest_first = sorted(self._of(tenant, ambassador_id), key=lambda s: (s.created_at, s.id), reverse=True)
        return offset_page(newest_first, cursor, limit)

    async def find_by_post_url(self, tenant: str, post_url: str) -> Share | None:
        return next((s for s in self.items.values() if s.tenant == tenant and s.post_url == post_url), None)

    async def count_confirmed_since(self, tenant: str, ambassador_id: str, since: datetime) -> int:
        return sum(1 for s in self._of(tenant, ambassador_id)
                   if s.status is ShareStatus.CONFIRMED and s.confirmed_at and s.confirmed_at >= since)

    async def slots_held_from(self, tenant: str, content_id: str, moment: datetime,
                              held_since: datetime) -> set[datetime]:
        return {s.recommended_at for s in self.items.values()
                if s.tenant == tenant and s.content_id == content_id and s.recommended_at >= moment
                and (s.status is ShareStatus.CONFIRMED or s.created_at >= held_since)}

    async def confirmed_outside_books(self, limit: int) -> list[Share]:
        return [s for s in self.items.values()
                if s.status is ShareStatus.CONFIRMED and s.id not in self.in_book][:limit]

    async def mark_in_book(self, tenant: str, share_id: str) -> None:
        self.in_book.add(share_id)

    async def confirmed_outside_shared(self, limit: int) -> list[Share]:
        return [s for s in self.items.values()
                if s.status is ShareStatus.CONFIRMED and s.id not in self.in_shared][:limit]

    async def mark_in_shared(self, tenant: str, share_id: str) -> None:
        self.in_shared.add(share_id)

    async def anonymise(self, tenant: str, ambassador_id: str, erased: str) -> None:
        for share in self._of(tenant, ambassador_id):
            self.items[share.id] = share.model_copy(update={"ambassador_id": erased, "text": None, "post_url": None,
                                                            "version": share.version + 1})


@dataclass
class FakeSharedContents:
    """Per (tenant, person), their entries {share id: content id}."""

    items: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)

    async def of(self, tenant: str, ambassador_id: str) -> set[str]:
        return set(self.items.get((tenant, ambassador_id), {}).values())

    async def add(self, tenant: str, ambassador_id: str, share_id: str, content_id: str,
                  confirmed_at: datetime | None = None) -> None:
        self.items.setdefault((tenant, ambassador_id), {})[share_id] = content_id

    async def remove(self, tenant: str, ambassador_id: str, share_id: str, content_id: str) -> None:
        self.items.get((tenant, ambassador_id), {}).pop(share_id, None)

    async def forget(self, tenant: str, ambassador_id: str) -> None:
        self.items.pop((tenant, ambassador_id), None)


@dataclass
class FakeBooks:
    """One list of entries per content, with a version: an addition to a book read before another's fails."""

    items: dict[tuple[str, str], SignatureBook] = field(default_factory=dict)

    async def read(self, tenant: str, content_id: str) -> SignatureBook:
        return self.items.get((tenant, content_id), SignatureBook(tenant=tenant, content_id=content_id))

    async def add(self, book: SignatureBook, entry: BookEntry) -> None:
        stored = await self.read(book.tenant, book.content_id)
        if stored.last_version != book.last_version:
            raise StaleWrite(book.content_id) if book.last_version else AlreadyExists(book.content_id)
        self.items[(book.tenant, book.content_id)] = stored.model_copy(update={
            "entries": [*stored.entries, entry], "last_version": stored.last_version + 1,
            "last_chunk_size": stored.last_chunk_size + 1})

    async def remove(self, tenant: str, content_id: str, share_id: str) -> None:
        stored = await self.read(tenant, content_id)
        self.items[(tenant, content_id)] = stored.model_copy(update={
            "entries": [e for e in stored.entries if e.share_id != share_id], "last_version": stored.last_version + 1})


@dataclass
class FakeLinks:
    items: dict[str, TrackedLink] = field(default_factory=dict)
    change_counts: dict[str, int] = field(default_factory=dict)
    reads: int = 0  # by_code calls: what the redirect's cache saves

    async def get(self, tenant: str, code: str) -> TrackedLink | None:
        return of_tenant(self.items.get(code), tenant)

    async def by_code(self, code: str) -> TrackedLink | None:
        self.reads += 1
        return self.items.get(code)

    async def changes(self, tenant: str) -> int:
        return self.change_counts.get(tenant, 0)

    def _changed(self, tenant: str) -> None:
        self.change_counts[tenant] = self.change_counts.get(tenant, 0) + 1

    async def of_ambassador(self, tenant: str, ambassador_id: str) -> list[TrackedLink]:
        return [link for link in self.items.values() if link.tenant == tenant and link.ambassador_id == ambassador_id]

    async def ensure(self, link: TrackedLink) -> None:
        self.items.setdefault(link.code, link)

    async def claim(self, tenant: str, code: str, share_id: str) -> bool:
        link = await self.get(tenant, code)
        if link is None or link.confirmed_share_id not in (None, share_id):
            return False
        self.items[code] = link.model_copy(update={"confirmed_share_id": share_id})
        self._changed(tenant)
        return True

    async def anonymise(self, tenant: str, ambassador_id: str, erased: str) -> None:
        replace_person(self.items, tenant, ambassador_id, erased)
        self._changed(tenant)


@dataclass
class FakeClicks:
    items: dict[str, Click] = field(default_factory=dict)
    events: dict[str, list[Envelope]] = field(default_factory=dict)
    visitors: set[str] = field(default_factory=set)

    writes: list[str] = field(default_factory=list)  # "claims" / "clicks", one per insert command
    failing: Exception | None = None  # raised by the next insert of clicks (nothing of it is stored)

    async def claim_visitors(self, claims: Sequence[tuple[str, str]]) -> set[str]:
        self.writes.append("claims")
        keys = [key for _, key in claims]
        assert len(set(keys)) == len(keys), "the keys of one insert are distinct"
        new = {key for key in keys if key not in self.visitors}
        self.visitors.update(new)
        return new

    async def record_many(self, clicks: Sequence[tuple[Click, UnitOfWork]]) -> None:
        self.writes.append("clicks")
        await asyncio.sleep(0)  # a real write lets other requests run meanwhile
        if self.failing is not None:
            failing, self.failing = self.failing, None
            raise failing
        for click, uow in clicks:
            assert click.id not in self.items, "click ids are random: never taken"
            self.items[click.id] = click
            self.events[click.id] = [envelope for _, envelope in uow.pending]

    async def unique_visitors_by_code(self, tenant: str, codes: list[str]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for key in self.visitors:
            code = key.split("/", 1)[0]
            if code in codes:
                counts[code] = counts.get(code, 0) + 1
        return counts

    @property
    def all_events(self) -> list[Envelope]:
        return [envelope for envelopes in self.events.values() for envelope in envelopes]


@dataclass
class FakeConnectors:
    items: dict[str, Connector] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)

    async def register(self, connector: Connector, fingerprint: str) -> Connector:
        existing = self.items.get(connector.id)
        if existing is not None:
            if existing.tenant != connector.tenant:
                raise AlreadyExists(connector.id)
            if self.fingerprints[connector.id] != fingerprint:
                raise KeyReused(connector.id)
            return existing
        if any(c.tenant == connector.tenant and c.name == connector.name for c in self.items.values()):
            raise AlreadyExists(connector.name)
        self.items[connector.id], self.fingerprints[connector.id] = connector, fingerprint
        return connector

    async def get(self, tenant: str, connector_id: str) -> Connector | None:
        return of_tenant(self.items.get(connector_id), tenant)

    async def list(self, tenant: str) -> list[Connector]:
        return sorted((c for c in self.items.values() if c.tenant == tenant), key=lambda c: c.created_at)

    async def page_of(self, tenant: str, cursor: str | None, limit: int) -> Page[Connector]:
        return offset_page(await self.list(tenant), cursor, limit)


@dataclass
class FakeReports:
    items: dict[str, Report] = field(default_factory=dict)

    async def get(self, tenant: str, report_id: str) -> Report | None:
        return of_tenant(self.items.get(report_id), tenant)

    async def record(self, report: Report) -> bool:
        if report.id in self.items:
            return False
        self.items[report.id] = report
        return True

    async def acknowledge(self, tenant: str, report_id: str) -> None:
        report = await self.get(tenant, report_id)
        if report is not None:
            self.items[report_id] = report.model_copy(update={"acknowledged": True, "envelope": None})


@dataclass
class FakeTotals:
    items: dict[tuple[str, str], ShareTotals] = field(default_factory=dict)

    async def get(self, tenant: str, share_id: str) -> ShareTotals:
        return self.items.get((tenant, share_id), ShareTotals(tenant=tenant, share_id=share_id))

    async def save(self, totals: ShareTotals) -> ShareTotals:
        stored = await self.get(totals.tenant, totals.share_id)
        if stored.version != totals.version:
            raise StaleWrite(totals.share_id) if totals.version else AlreadyExists(totals.share_id)
        saved = totals.model_copy(update={"version": totals.version + 1})
        self.items[(totals.tenant, totals.share_id)] = saved
        return saved


@dataclass
class FakePolicies:
    items: dict[str, TenantPolicy] = field(default_factory=dict)

    async def current(self, tenant: str) -> TenantPolicy:
        return self.items.get(tenant, TenantPolicy(tenant=tenant))

    async def replace(self, tenant: str, policy: AuthenticityPolicy, expected_version: int) -> TenantPolicy:
        stored = self.items.get(tenant)
        if stored is None and expected_version != 0:
            raise StaleWrite(tenant)
        if stored is not None and stored.version != expected_version:
            raise StaleWrite(tenant) if expected_version else AlreadyExists(tenant)
        saved = TenantPolicy(tenant=tenant, policy=policy, version=expected_version + 1)
        self.items[tenant] = saved
        return saved


@dataclass
class FakePublisher:
    """Kafka as the signed reports see it: acknowledges, or fails while `failing` is set."""

    published: list[tuple[str, Envelope]] = field(default_factory=list)
    failing: bool = False

    async def publish(self, logical_topic: str, envelope: Envelope) -> None:
        if self.failing:
            raise ConnectionError("broker unreachable")
        self.published.append((logical_topic, envelope))


def fake_repositories() -> Repositories:
    ambassadors, shared = FakeAmbassadors(), FakeSharedContents()
    ambassadors.shared = shared  # one document per person in the adapters: `person` reads both
    return Repositories(contents=FakeContents(), ambassadors=ambassadors, charters=FakeCharters(),
                        comments=FakeComments(), shares=FakeShares(), shared=shared, books=FakeBooks(), links=FakeLinks(),
                        clicks=FakeClicks(), connectors=FakeConnectors(), reports=FakeReports(), totals=FakeTotals(),
                        policies=FakePolicies(), exports=FakeExportParts())
