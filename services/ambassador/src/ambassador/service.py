"""Use cases of the ambassador service: a command in, a domain result out.

Each use case that changes something reads, applies a pure rule from
`models`, and saves the new state with its events in one single-document
write through a `UnitOfWork`. Saves are compare-and-set on the version read:
when another writer (this process or another replica) got there first, the
use case reads again and re-applies its rule (`StaleWrite` is retried), unless
the caller named the version it read (If-Match), in which case the precondition
refuses the newer version (412). A person's events are then published at once
(`publish_now`), so an opt-out is on the topic when the call returns; the
worker's relay is the safety net (the write left it a hint).

The only events this service consumes are the parts of GDPR exports it asked for (handlers.py).
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from advocacy_common.auth import ambassador_id_for
from advocacy_common.envelope import utcnow
from advocacy_common.events import CharterPublished, Event, GdprExportRequested, SignalReported
from advocacy_common.repository import AlreadyExists, Page, StaleWrite, UnitOfWork

from .models import (
    Change,
    NotAPeer,
    Charter,
    CharterText,
    ConsentEntry,
    DirectoryEntry,
    ExportPart,
    ExportRequest,
    NotFound,
    NotInDirectory,
    NotOptedIn,
    OptOutReason,
    Person,
    PersonNotFound,
    PersonRecords,
    Profile,
    Recognition,
    RecognitionKind,
    SelfRecognition,
    Severity,
    Signal,
    SignalStatus,
    Status,
    TrainingCompletion,
    TrainingModule,
    TrainingModuleText,
    accept_charter,
    apply_directory_entry,
    erase,
    new_person,
    opt_in,
    opt_out,
    triage,
    update_profile,
)
from .ports import (
    CharterRepository,
    LookupAttribute,
    PersonRepository,
    ExportRepository,
    PublishNow,
    RecognitionRepository,
    SignalRepository,
    TrainingCompletionRepository,
    TrainingModuleRepository,
)

SOURCE = "/ambassador"
MAX_WRITE_ATTEMPTS = 16
RETRY_PAUSE_SECONDS = 0.005  # times the attempt number, jittered: concurrent writers spread out
IMPORT_CONCURRENCY = 8
log = logging.getLogger(__name__)

T = TypeVar("T")
PersonRule = Callable[[Person], Change]
# Called with the version a write attempt read; raises to refuse it (the API's If-Match).
Precondition = Callable[[int], None]


def now_to_the_millisecond() -> datetime:
    # BSON dates hold milliseconds: times in events and answers then equal what is stored.
    now = utcnow()
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


async def _nothing_to_publish(person_id: str) -> None:
    return None


def _unit_of_work(tenant: str, events: list[Event]) -> UnitOfWork:
    uow = UnitOfWork(tenant, SOURCE)
    for event in events:
        uow.record(event)
    return uow


def found(entity: T | None, what: str, identifier: object = None) -> T:
    """The entity, or NotFound (404) naming what was looked for."""
    if entity is None:
        raise NotFound(what, identifier)
    return entity


async def retrying(attempt: Callable[[], Awaitable[T]]) -> T:
    """Run `attempt` (read, decide, save) again while another writer wins the compare-and-set."""
    for number in range(1, MAX_WRITE_ATTEMPTS + 1):
        try:
            return await attempt()
        except StaleWrite:
            if number == MAX_WRITE_ATTEMPTS:
                raise
            await asyncio.sleep(random.uniform(0, RETRY_PAUSE_SECONDS * number))
    raise AssertionError("unreachable")


@dataclass
class AmbassadorService:
    people: PersonRepository
    charters: CharterRepository
    signals: SignalRepository
    recognitions: RecognitionRepository
    modules: TrainingModuleRepository
    completions: TrainingCompletionRepository
    exports: ExportRepository
    publish_now: PublishNow = _nothing_to_publish
    clock: Callable[[], datetime] = now_to_the_millisecond
    subject_attribute: LookupAttribute = "user_name"
    import_max_rows: int = 5000
    new_id: Callable[[], str] = field(default=lambda: str(uuid.uuid4()))  # when the login is not known yet

    # --- people ---------------------------------------------------------------------------------

    def subject_key_for(self, tenant: str, entry: DirectoryEntry) -> str | None:
        """The pseudonym of the login this person's token will carry (`ambassador_id_for`)."""
        login = entry.external_id if self.subject_attribute == "external_id" else entry.user_name
        return ambassador_id_for(tenant, login) if login else None

    async def person_id_for(self, tenant: str, entry: DirectoryEntry) -> str:
        """A login's first holder gets the subject key as their id, so that other services name them from
        the token alone. An id is never given twice: when a person document (erased, or renamed away)
        holds that id already, the newcomer gets a new random id, and other services learn whose token
        names it from the subject key in `ambassador.opted_in.v1`. Nothing of the erased person (their
        consents, tombstones elsewhere, tracked links, statistics) can then attach to the newcomer."""
        subject_key = self.subject_key_for(tenant, entry)
        if subject_key is None or await self.people.get(tenant, subject_key) is not None:
            return self.new_id()
        return subject_key

    async def person(self, tenant: str, person_id: str) -> Person:
        person = await self.people.get(tenant, person_id)
        if person is None:
            raise PersonNotFound(person_id)
        return person

    async def person_for_subject(self, tenant: str, subject: str) -> Person:
        """The caller's own directory entry: their token's `sub` names it (see settings.subject_attribute)."""
        person = await self.people.find_by_key(tenant, self.subject_attribute, subject)
        if person is None or person.directory is None:
            raise NotInDirectory("You are not in this tenant's employee directory.")
        return person

    async def change_person(self, tenant: str, person_id: str, rule: PersonRule,
                            precondition: Precondition | None = None) -> Person:
        """Apply `rule` to the person and store the outcome with its events; re-applied on a lost race."""

        async def attempt() -> Person:
            person = await self.person(tenant, person_id)
            if precondition is not None:
                precondition(person.version)
            change = rule(person)
            if not change.changed:
                return person
            saved = await self.people.save(change.person, _unit_of_work(tenant, change.events), previous=person)
            if change.events:
                await self._publish_quietly(person_id)
            return saved

        return await retrying(attempt)

    async def _publish_quietly(self, person_id: str) -> None:
        try:
            await self.publish_now(person_id)
        except Exception:
            # The events stay pending and the write left the relay a hint: the worker publishes them.
            log.warning("immediate publication failed for %s; left to the relay", person_id, exc_info=True)

    async def list_people(self, tenant: str, status: Status | None, cursor: str | None, limit: int) -> Page[Person]:
        return await self.people.list_by_status(tenant, status, cursor, limit)

    # --- volunteering -------------------------------------------------------------------------------

    async def current_charter_version(self, tenant: str) -> int | None:
        charter = await self.charters.current(tenant)
        return charter.version if charter else None

    async def opt_in(self, person: Person, charter_version: int, channel: str, profile: Profile | None) -> Person:
        current = await self.current_charter_version(person.tenant)

        def rule(p: Person) -> Change:
            now = self.clock()
            start = update_profile(p, profile, now) if profile is not None else Change.none(p)
            directory = start.person.directory
            subject_key = self.subject_key_for(p.tenant, directory) if directory is not None else None
            return start.then(lambda q: opt_in(q, current, charter_version, channel, now, subject_key))

        return await self.change_person(person.tenant, person.id, rule)

    async def opt_out(self, person: Person, channel: str) -> Person:
        return await self.change_person(person.tenant, person.id,
                                        lambda p: opt_out(p, OptOutReason.SELF, channel, self.clock()))

    async def accept_charter(self, person: Person, charter_version: int, channel: str) -> Person:
        current = await self.current_charter_version(person.tenant)
        return await self.change_person(person.tenant, person.id,
                                        lambda p: accept_charter(p, current, charter_version, channel, self.clock()))

    async def update_profile(self, person: Person, profile: Profile,
                             precondition: Precondition | None = None) -> Person:
        return await self.change_person(person.tenant, person.id,
                                        lambda p: update_profile(p, profile, self.clock()), precondition)

    # --- directory ------------------------------------------------------------------------------------

    async def create_person(self, tenant: str, entry: DirectoryEntry) -> Person:
        """A new directory entry, never an ambassador yet; AlreadyExists when the userName is taken."""
        person = new_person(await self.person_id_for(tenant, entry), tenant, entry, self.clock()) \
            .model_copy(update={"version": 1})
        await self.people.add(person)
        return person

    async def provision(self, tenant: str, entry: DirectoryEntry) -> tuple[Person, str]:
        """Create or update the entry with this userName; (person, created|updated|unchanged)."""
        for _ in range(MAX_WRITE_ATTEMPTS):
            existing = await self.people.find_by_key(tenant, "user_name", entry.user_name)
            if existing is not None:
                updated = await self.change_person(tenant, existing.id,
                                                   lambda p: apply_directory_entry(p, entry, self.clock()))
                return updated, "unchanged" if updated.version == existing.version else "updated"
            try:
                return await self.create_person(tenant, entry), "created"
            except AlreadyExists:
                continue  # provisioned concurrently: update it instead
        raise StaleWrite(entry.user_name)

    async def import_directory(self, tenant: str, entries: list[DirectoryEntry]) -> Counter[str]:
        """Provision every entry (a few at a time); how many were created, updated, unchanged."""
        outcomes: Counter[str] = Counter()
        gate = asyncio.Semaphore(IMPORT_CONCURRENCY)

        async def apply(entry: DirectoryEntry) -> None:
            async with gate:
                _, outcome = await self.provision(tenant, entry)
                outcomes[outcome] += 1

        await asyncio.gather(*(apply(entry) for entry in entries))
        return outcomes

    async def directory_person(self, tenant: str, person_id: str) -> Person:
        """A person still in the directory (erased people are not)."""
        person = await self.person(tenant, person_id)
        if person.directory is None:
            raise PersonNotFound(person_id)
        return person

    async def change_directory_entry(self, tenant: str, person_id: str,
                                     new_entry: Callable[[Person], DirectoryEntry]) -> Person:
        """Provisioning replaced or patched the entry (computed from the person as read, on each attempt)."""

        def rule(person: Person) -> Change:
            if person.directory is None:
                raise PersonNotFound(person_id)
            return apply_directory_entry(person, new_entry(person), self.clock())

        return await self.change_person(tenant, person_id, rule)

    async def list_directory(self, tenant: str, match: dict[LookupAttribute, str], start_index: int,
                             count: int) -> tuple[int, list[Person]]:
        """SCIM's listing: everyone in the directory, or the one person a filter names."""
        if match:
            ((attribute, value),) = match.items()
            person = await self.people.find_by_key(tenant, attribute, value)
            found = [person] if person is not None else []
            return len(found), found[start_index - 1:start_index - 1 + count]
        return await self.people.directory_page(tenant, start_index, count)

    # --- GDPR -------------------------------------------------------------------------------------------

    async def export_person(self, tenant: str, person_id: str) -> tuple[Person, PersonRecords]:
        """Everything held about a person."""
        person = await self.person(tenant, person_id)
        return person, PersonRecords(
            recognitions_received=await self.recognitions.received_by(tenant, person_id),
            recognitions_given=await self.recognitions.given_by(tenant, person_id),
            training_completions=await self.completions.of_person(tenant, person_id),
            signals_reported=await self.signals.reported_by(tenant, person_id))

    async def request_export(self, tenant: str, person_id: str) -> ExportRequest:
        """Ask every other service for its part: `gdpr.export_requested.v1` (relayed by the worker); each
        answers with `gdpr.export_part_written.v1` pages, which `receive_export_part` keeps."""
        await self.person(tenant, person_id)
        request = ExportRequest(id=self.new_id(), tenant=tenant, person_id=person_id, requested_at=self.clock())
        uow = _unit_of_work(tenant, [GdprExportRequested(export_id=request.id, ambassador_id=person_id,
                                                         requested_at=request.requested_at)])
        await self.exports.add(request, uow)
        return request

    async def export(self, tenant: str, person_id: str, export_id: str) -> tuple[ExportRequest, list[ExportPart]]:
        """The request and the parts received so far (another person's export is not found)."""
        request = await self.exports.get(tenant, export_id)
        if request is None or request.person_id != person_id:
            raise NotFound("export", export_id)
        return request, await self.exports.parts(tenant, export_id)

    async def receive_export_part(self, tenant: str, part: ExportPart) -> bool:
        """Keep a page of a part of an export we asked for (anything else is dropped)."""
        if await self.exports.get(tenant, part.export_id) is None:
            return False
        return await self.exports.add_part(tenant, part)

    async def erase_person(self, tenant: str, person_id: str) -> Person:
        """GDPR erasure. Related records go first, so a retried request finishes an interrupted one."""
        await self.person(tenant, person_id)
        await self.exports.forget_person(tenant, person_id)
        await self.people.erase_lookup_keys(tenant, person_id)
        await self.recognitions.forget_person(tenant, person_id)
        await self.completions.forget_person(tenant, person_id)
        await self.signals.forget_reporter(tenant, person_id)
        return await self.change_person(tenant, person_id, lambda p: erase(p, self.clock()))

    # --- charters and consent records -------------------------------------------------------------------

    async def publish_charter(self, tenant: str, text: CharterText, charter_id: str, fingerprint: str,
                              published_by: str) -> Charter:
        """Publish the next version; `charter.published.v1` goes out with it (relayed by the worker)."""

        async def attempt() -> Charter:
            now = self.clock()
            charter = Charter(**text.model_dump(), id=charter_id, tenant=tenant,
                              version=(await self.current_charter_version(tenant) or 0) + 1,
                              published_at=now, created_at=now, published_by=published_by)
            event = CharterPublished(charter_id=charter_id, version=charter.version, published_at=now,
                                     disclosure_required=text.disclosure_required,
                                     disclosure_line=text.disclosure_line)
            try:
                stored, _ = await self.charters.add_idempotent(charter, fingerprint, _unit_of_work(tenant, [event]))
            except AlreadyExists:
                raise StaleWrite(charter_id) from None  # that number was just published: take the next
            return stored

        return await retrying(attempt)

    async def current_charter(self, tenant: str) -> Charter:
        return found(await self.charters.current(tenant), "charter")

    async def charter(self, tenant: str, version: int) -> Charter:
        return found(await self.charters.get_version(tenant, version), "charter", version)

    async def list_charters(self, tenant: str, cursor: str | None, limit: int) -> Page[Charter]:
        return await self.charters.newest_first(tenant, cursor, limit)

    async def consent_page(self, tenant: str, cursor: str | None, limit: int,
                           charter_version: int | None = None) -> Page[ConsentEntry]:
        return await self.people.consent_page(tenant, cursor, limit, charter_version)

    def consents(self, tenant: str) -> AsyncIterator[ConsentEntry]:
        """Every consent record of the tenant (the auditors' export)."""
        return self.people.consents_after(tenant)

    # --- recognition --------------------------------------------------------------------------------------

    async def recognise(self, tenant: str, recipient_id: str, giver_subject: str, giver_role: str,
                        kind: RecognitionKind, badge: str | None, reason: str, recognition_id: str,
                        fingerprint: str) -> Recognition:
        """Kudos or a badge for an ambassador, from someone else."""
        recipient = await self.people.get(tenant, recipient_id)
        if recipient is None or not recipient.is_ambassador:
            raise PersonNotFound(recipient_id)
        giver = await self.people.find_by_key(tenant, self.subject_attribute, giver_subject)
        if giver is not None and giver.id == recipient.id:
            raise SelfRecognition(recipient_id)
        if giver_role != "admin" and (giver is None or not giver.is_ambassador):
            # The ambassador role alone is not enough: a token holder outside the directory, or an
            # employee who never opted in, is nobody's peer in the programme.
            raise NotAPeer("Recognition comes from programme admins or from ambassadors who opted in.")
        recognition = Recognition(id=recognition_id, tenant=tenant, recipient_id=recipient.id,
                                  giver_id=giver.id if giver else None, giver_role=giver_role, kind=kind,
                                  badge=badge, reason=reason, created_at=self.clock())
        stored, _ = await self.recognitions.add_idempotent(recognition, fingerprint)
        return stored

    async def recognitions_received(self, tenant: str, person_id: str, cursor: str | None,
                                    limit: int) -> Page[Recognition]:
        await self.person(tenant, person_id)  # another tenant's person is not found, not an empty list
        return await self.recognitions.page_received(tenant, person_id, cursor, limit)

    # --- training -------------------------------------------------------------------------------------------

    async def create_module(self, tenant: str, text: TrainingModuleText, module_id: str,
                            fingerprint: str) -> TrainingModule:
        module = TrainingModule(**text.model_dump(), id=module_id, tenant=tenant, created_at=self.clock())
        stored, _ = await self.modules.add_idempotent(module, fingerprint)
        return stored

    async def module(self, tenant: str, module_id: str) -> TrainingModule:
        return found(await self.modules.get(tenant, module_id), "training module", module_id)

    async def list_modules(self, tenant: str, cursor: str | None, limit: int) -> Page[TrainingModule]:
        return await self.modules.newest_first(tenant, cursor, limit)

    async def replace_module(self, tenant: str, module_id: str, text: TrainingModuleText,
                             precondition: Precondition | None = None) -> TrainingModule:
        async def attempt() -> TrainingModule:
            module = await self.module(tenant, module_id)
            if precondition is not None:
                precondition(module.version)
            return await self.modules.save(module.model_copy(update=text.model_dump()))

        return await retrying(attempt)

    async def complete_module(self, person: Person, module_id: str) -> TrainingCompletion:
        """Record a completion once; a repeat answers the first one."""
        await self.module(person.tenant, module_id)
        completion = TrainingCompletion(id=f"{person.tenant}:{person.id}:{module_id}", tenant=person.tenant,
                                        person_id=person.id, module_id=module_id, completed_at=self.clock())
        try:
            await self.completions.add(completion)
        except AlreadyExists:
            return found(await self.completions.get(person.tenant, completion.id), "completion", completion.id)
        return completion

    async def completions_of(self, tenant: str, person_id: str, cursor: str | None,
                             limit: int) -> Page[TrainingCompletion]:
        await self.person(tenant, person_id)  # another tenant's person is not found, not an empty list
        return await self.completions.page_of_person(tenant, person_id, cursor, limit)

    async def consents_of(self, person: Person, cursor: str | None, limit: int) -> Page[ConsentEntry]:
        """A person's own consent records, oldest first."""
        return await self.people.consents_of(person.tenant, person.id, cursor, limit)

    # --- signals ----------------------------------------------------------------------------------------------

    async def report_signal(self, reporter: Person, url: str, note: str | None, severity: Severity,
                            signal_id: str, fingerprint: str) -> Signal:
        """`signal.reported.v1` carries the URL and severity, never the note."""
        if not reporter.is_ambassador:
            raise NotOptedIn("Signals are reported by ambassadors; opt in first.")
        now = self.clock()
        signal = Signal(id=signal_id, tenant=reporter.tenant, reporter_id=reporter.id, url=url, note=note,
                        severity=severity, created_at=now, updated_at=now)
        event = SignalReported(signal_id=signal_id, ambassador_id=reporter.id, url=url, severity=severity,
                               reported_at=now)
        stored, _ = await self.signals.add_idempotent(signal, fingerprint, _unit_of_work(reporter.tenant, [event]))
        return stored

    async def signal(self, tenant: str, signal_id: str) -> Signal:
        return found(await self.signals.get(tenant, signal_id), "signal", signal_id)

    async def list_signals(self, tenant: str, status: SignalStatus | None, cursor: str | None,
                           limit: int) -> Page[Signal]:
        return await self.signals.list_by_status(tenant, status, cursor, limit)

    async def triage_signal(self, tenant: str, signal_id: str, status: SignalStatus, triaged_by: str,
                            precondition: Precondition | None = None) -> Signal:
        """new -> acknowledged -> closed, or new -> closed."""

        async def attempt() -> Signal:
            signal = await self.signal(tenant, signal_id)
            if precondition is not None:
                precondition(signal.version)
            moved = triage(signal, status, triaged_by, self.clock())
            return signal if moved is None else await self.signals.save(moved)

        return await retrying(attempt)
