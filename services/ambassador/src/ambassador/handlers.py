"""Command handlers: a request in, a state change with its events out.

This service consumes no events (EVENT_HANDLERS is empty); its effects come from
HTTP commands. Each handler reads, applies a pure rule from `models`, and writes
the new state with its pending events in one single-document write. The API
then asks the relay to publish a person's events at once (`Context.flush`),
so an opt-out is on the topic when the call returns; the worker's relay is the
safety net.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymongo.errors import DuplicateKeyError

from advocacy_common.auth import ambassador_id_for
from advocacy_common.consuming import Handler
from advocacy_common.envelope import Envelope, utcnow
from advocacy_common.events import CharterPublished, Event, SignalReported
from advocacy_common.publishing import envelope_for

from .models import (
    Change,
    CharterText,
    ConsentRecord,
    DirectoryEntry,
    NotInDirectory,
    Person,
    apply_directory_entry,
    check_signal_transition,
    erase,
    new_person,
)
from .store import AmbassadorStore, StaleWrite

SOURCE = "/ambassador"
MAX_WRITE_ATTEMPTS = 8
EVENT_HANDLERS: dict[type[Event], Handler] = {}
log = logging.getLogger(__name__)

PersonRule = Callable[[Person], Change]


class PersonNotFound(LookupError):
    pass


def now_to_the_millisecond() -> datetime:
    # BSON dates hold milliseconds: times in events and answers then equal what is stored.
    now = utcnow()
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


async def _no_flush(person_id: str) -> None:
    return None


@dataclass
class Context:
    """What command handlers need; built in bootstrap."""

    store: AmbassadorStore
    flush: Callable[[str], Awaitable[Any]] = _no_flush  # publish a person's pending events now
    clock: Callable[[], datetime] = now_to_the_millisecond
    subject_attribute: str = "user_name"
    import_max_rows: int = 5000
    new_id: Callable[[], str] = field(default=lambda: str(uuid.uuid4()))  # when the login is not known yet
    _person_locks: weakref.WeakValueDictionary = field(default_factory=weakref.WeakValueDictionary)

    def person_id_for(self, tenant: str, entry: DirectoryEntry) -> str:
        """The person's id is derived from the login their token will carry (`ambassador_id_for`),
        so the other services name the same person from the token alone."""
        login = entry.external_id if self.subject_attribute == "external_id" else entry.user_name
        return ambassador_id_for(tenant, login) if login else self.new_id()

    def person_lock(self, person_id: str) -> asyncio.Lock:
        """One writer per person in this process.

        The version guard makes concurrent writes safe on MongoDB. FerretDB 1.24 on
        SQLite does not apply an update atomically (measured: of 200 concurrent `$inc`
        on one document, 93 remained), so concurrent updates of one document can lose
        one; serialising them here keeps a person's writes, and the flush of their
        events, whole and in order within an API process.
        """
        lock = self._person_locks.get(person_id)
        if lock is None:
            lock = asyncio.Lock()
            self._person_locks[person_id] = lock
        return lock


def outbox_items(events: list[Event], tenant: str) -> list[tuple[str, Envelope]]:
    return [(event.topic, envelope_for(event, tenant_id=tenant, source=SOURCE)) for event in events]


async def _flush_quietly(ctx: Context, person_id: str) -> None:
    try:
        await ctx.flush(person_id)
    except Exception:
        # The events stay in the outbox; the hint makes the worker's relay publish them at
        # its next poll. (Hints are left only then: after a successful flush, a hint would
        # only make the worker publish again. A crash before the flush is the sweep's job.)
        log.warning("immediate publication failed for %s; left to the relay", person_id, exc_info=True)
        await ctx.store.hint_person(person_id)


async def change_person(ctx: Context, tenant: str, person_id: str, rule: PersonRule) -> Person:
    """Apply `rule` to a person and store the outcome with its events; retried on concurrent writes."""
    async with ctx.person_lock(person_id):
        return await _change_person_now(ctx, tenant, person_id, rule)


async def _change_person_now(ctx: Context, tenant: str, person_id: str, rule: PersonRule) -> Person:
    for _ in range(MAX_WRITE_ATTEMPTS):
        person = await ctx.store.get_person(tenant, person_id)
        if person is None:
            raise PersonNotFound(person_id)
        change = rule(person)
        if not change.changed:
            return person
        stored = change.person.model_copy(update={"version": person.version + 1})
        try:
            await ctx.store.update_person(stored, person, outbox_items(change.events, tenant))
        except StaleWrite:
            continue
        if change.events:
            await _flush_quietly(ctx, person_id)
        return stored
    raise StaleWrite(person_id)


async def person_for_subject(ctx: Context, tenant: str, subject: str) -> Person:
    """The caller's own directory entry: their token's `sub` names it (see settings.subject_attribute)."""
    person = await ctx.store.get_person_by_key(tenant, ctx.subject_attribute, subject)
    if person is None or person.directory is None:
        raise NotInDirectory("You are not in this tenant's employee directory.")
    return person


async def change_own_person(ctx: Context, tenant: str, subject: str, rule: PersonRule) -> Person:
    person = await person_for_subject(ctx, tenant, subject)
    return await change_person(ctx, tenant, person.id, rule)


async def current_charter_version(ctx: Context, tenant: str) -> int | None:
    charter = await ctx.store.get_current_charter(tenant)
    return charter["version"] if charter else None


# --- directory ------------------------------------------------------------------------------

async def provision(ctx: Context, tenant: str, entry: DirectoryEntry) -> tuple[Person, str]:
    """Create or update the directory entry with this userName; returns (person, created|updated|unchanged)."""
    for _ in range(MAX_WRITE_ATTEMPTS):
        existing = await ctx.store.get_person_by_key(tenant, "user_name", entry.user_name)
        if existing is not None:
            updated = await change_person(ctx, tenant, existing.id,
                                          lambda p: apply_directory_entry(p, entry, ctx.clock()))
            return updated, "unchanged" if updated.version == existing.version else "updated"
        try:
            return await create_person(ctx, tenant, entry), "created"
        except DuplicateKeyError:
            continue  # provisioned concurrently: update it instead
    raise StaleWrite(entry.user_name)


async def create_person(ctx: Context, tenant: str, entry: DirectoryEntry) -> Person:
    """A new directory entry; DuplicateKeyError when the userName is taken. Never an ambassador yet."""
    person = new_person(ctx.person_id_for(tenant, entry), tenant, entry, ctx.clock()).model_copy(update={"version": 1})
    try:
        await ctx.store.insert_person(person, [])
    except DuplicateKeyError:
        # The login belonged to someone erased: their anonymised record moves aside.
        if not await ctx.store.archive_erased(tenant, person.id, ctx.new_id()):
            raise
        await ctx.store.insert_person(person, [])
    return person


async def erase_person(ctx: Context, tenant: str, person_id: str) -> Person:
    """GDPR erasure. Related records go first, so a retried request finishes an interrupted one."""
    if await ctx.store.get_person(tenant, person_id) is None:
        raise PersonNotFound(person_id)
    await ctx.store.erase_related(tenant, person_id)
    return await change_person(ctx, tenant, person_id, lambda p: erase(p, ctx.clock()))


# --- charters --------------------------------------------------------------------------------

async def publish_charter(ctx: Context, tenant: str, text: CharterText, document_id: str,
                          request_fingerprint: str, published_by: str) -> tuple[dict[str, Any], bool]:
    """Publish the next charter version; `charter.published.v1` goes out with it."""
    for _ in range(MAX_WRITE_ATTEMPTS):
        version = (await current_charter_version(ctx, tenant) or 0) + 1
        now = ctx.clock()
        document = {"_id": document_id, "tenant": tenant, "version": version, **text.model_dump(mode="python"),
                    "published_at": now, "created_at": now, "published_by": published_by,
                    "request_fingerprint": request_fingerprint}
        event = CharterPublished(charter_id=document_id, version=version, published_at=now,
                                 disclosure_required=text.disclosure_required, disclosure_line=text.disclosure_line)
        try:
            return await ctx.store.insert_idempotent(ctx.store.charters, document, outbox_items([event], tenant))
        except DuplicateKeyError:
            continue  # another version was published at the same moment: take the next number
    raise StaleWrite(document_id)


# --- signals ---------------------------------------------------------------------------------

async def report_signal(ctx: Context, reporter: Person, url: str, note: str | None, severity: str,
                        document_id: str, request_fingerprint: str) -> tuple[dict[str, Any], bool]:
    now = ctx.clock()
    document = {"_id": document_id, "tenant": reporter.tenant, "version": 1, "reporter_id": reporter.id,
                "url": url, "note": note, "severity": severity, "status": "new", "created_at": now,
                "updated_at": now, "request_fingerprint": request_fingerprint}
    event = SignalReported(signal_id=document_id, ambassador_id=reporter.id, url=url, severity=severity,
                           reported_at=now)
    return await ctx.store.insert_idempotent(ctx.store.signals, document, outbox_items([event], reporter.tenant))


async def triage_signal(ctx: Context, signal: dict[str, Any], status: str, triaged_by: str) -> bool:
    """Move a signal along new -> acknowledged -> closed; False when it changed meanwhile."""
    if status == signal["status"]:
        return True
    check_signal_transition(signal["status"], status)
    return await ctx.store.update_versioned(
        ctx.store.signals, signal["tenant"], signal["_id"], signal["version"],
        {"status": status, "updated_at": ctx.clock(), f"{status}_at": ctx.clock(), f"{status}_by": triaged_by})


# --- consent records ----------------------------------------------------------------------------

async def consents_after(ctx: Context, tenant: str, after: tuple[str, int] | None = None,
                         batch: int = 200) -> AsyncIterator[tuple[Person, int, ConsentRecord]]:
    """Every consent record of the tenant in (person id, sequence) order, after position `after`.

    Consents live inside the person document (written in the same update as the
    opt-in they record), so this walks people by id and flattens their records.
    """
    from_id, inclusive = (after[0], True) if after else (None, True)
    while True:
        people = await ctx.store.list_people_with_consents(tenant, from_id, batch, inclusive)
        for person in people:
            for sequence, consent in enumerate(person.consents, start=1):
                if after is None or (person.id, sequence) > after:
                    yield person, sequence, consent
        if len(people) < batch:
            return
        from_id, inclusive = people[-1].id, False


async def consent_page(ctx: Context, tenant: str, after: tuple[str, int] | None, limit: int,
                       charter_version: int | None = None):
    """One page of consent records and the position to continue from (None on the last page)."""
    found: list[tuple[Person, int, ConsentRecord]] = []
    async for person, sequence, consent in consents_after(ctx, tenant, after):
        if charter_version is not None and consent.charter_version != charter_version:
            continue
        if len(found) == limit:
            last_person, last_sequence, _ = found[-1]
            return found, (last_person.id, last_sequence)
        found.append((person, sequence, consent))
    return found, None
