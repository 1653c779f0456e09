"""Batches of events in, counters and projections out, each event counted exactly once.

Per batch: claims (one stored first position per fact) drop copies of an envelope
published twice; the ambassador and content projections are watermarked writes;
counters and activity days are summed per partition into one slice each, stored
once under (partition, first offset) as a plain insert. A redelivered batch, with
any boundaries, skips what existing slices hold: it walks the partition's chain
(a taken key answers with the slice stored there). Folds add pending slices to
the rolled-up counters with the same watermarks, so a crash mid-fold neither
loses nor doubles. Activity days and deletions are idempotent by nature.
"""

from __future__ import annotations

import time
from datetime import date
from typing import Any
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from advocacy_common.consuming import Delivery, Handler
from advocacy_common.events import (
    AmbassadorErased, AmbassadorOptedIn, AmbassadorOptedOut, AmbassadorProfileUpdated, ContentPublished,
    ContentUpdated, EngagementReceived, Event, GdprExportRequested, PostShared,
)
from advocacy_common.envelope import utcnow
from advocacy_common.gdpr_export import answer_export_request

from .aggregation import (
    FactId, Fragment, Position, above_watermarks, claim_id, folded_fragments, merge_activity, person_of, plan_writes,
    slice_of, state_fragment,
)
from .models import Dimension, Period, Person
from .ports import MetricsStore

CONSUMED_EVENTS: tuple[type[Event], ...] = (
    AmbassadorOptedIn, AmbassadorProfileUpdated, AmbassadorOptedOut, AmbassadorErased, GdprExportRequested,
    ContentPublished, ContentUpdated, PostShared, EngagementReceived,
)


@dataclass
class FoldSchedule:
    """When a batch also folds pending slices: every `every_seconds` at most, and at most
    `busy_share` of the time (a fold costs one update per rolled-up document it touches,
    whatever the number of events, so folding less often makes it cheaper per event)."""

    every_seconds: float
    busy_share: float = 0.25
    _next: float = field(default=0.0, init=False)

    def due(self) -> bool:
        return time.monotonic() >= self._next

    def folded(self, seconds: float) -> None:
        self._next = time.monotonic() + max(self.every_seconds, seconds * (1 - self.busy_share) / self.busy_share)


async def apply_exactly_once(store: MetricsStore, fragments: Iterable[Fragment]) -> None:
    """Write coalesced fragments; where a document already holds some, write only the rest."""
    pending = plan_writes(fragments)
    while pending:
        refused = await store.write_conditionally(pending)
        if not refused:
            return
        watermarks = await store.read_watermarks([write.target for write in refused])
        pending = plan_writes(fragment for write in refused
                              for fragment in above_watermarks(write, watermarks.get(write.target, {})))


async def canonical_deliveries(store: MetricsStore, deliveries: Sequence[Delivery]) -> list[Delivery]:
    """The deliveries that are the first occurrence of their fact (a redelivery at the same offset still is)."""
    facts = [claim_id(delivery) for delivery in deliveries]  # once per delivery: its key is built from strings
    first: dict[FactId, Position] = {}
    for fact, delivery in zip(facts, deliveries):
        first.setdefault(fact, Position(delivery.watermark_key, delivery.offset))
    stored = await store.claim(first) if first else {}
    return [d for fact, d in zip(facts, deliveries) if stored.get(fact) == (d.watermark_key, d.offset)]


def by_partition(deliveries: Iterable[Delivery]) -> dict[str, list[Delivery]]:
    grouped: dict[str, list[Delivery]] = defaultdict(list)
    for delivery in deliveries:
        grouped[delivery.watermark_key].append(delivery)
    for group in grouped.values():
        group.sort(key=lambda d: d.offset)
    return grouped


async def append_chained(store: MetricsStore, fresh: Mapping[str, list[Delivery]],
                         counted: Mapping[str, list[Delivery]], erased: set[Person]) -> None:
    """One slice per partition, after the slices that already hold some of these offsets.

    A taken key means an earlier attempt (or a consumer that had the partition
    before) stored a slice there: its offsets are skipped and the rest goes after
    it. When a stored slice reaches beyond this batch, the progress records that,
    because the next batch will start inside that slice, not at a key of the chain.
    """
    pending = {partition: group for partition, group in fresh.items() if group}
    while pending:
        slices = [slice_of(group, [d for d in counted.get(partition, ()) if d.offset >= group[0].offset], erased)
                  for partition, group in pending.items()]
        retry: dict[str, list[Delivery]] = {}
        for taken in await store.append_slices(slices):
            group = pending[taken.partition]
            rest = [d for d in group if d.offset > taken.last]
            if rest:
                retry[taken.partition] = rest
            elif taken.last > group[-1].offset:
                await store.raise_progress(taken.partition, taken.last)
        pending = retry


async def project_batch(store: MetricsStore, deliveries: Sequence[Delivery],
                        schedule: FoldSchedule | None = None) -> None:
    """The batch handler: every event of a batch applied once, whatever was applied before a crash."""
    partitions = by_partition(deliveries)
    progress = await store.slice_progress(list(partitions))
    fresh = {p: [d for d in group if d.offset > progress.get(p, -1)] for p, group in partitions.items()}
    canonical = await canonical_deliveries(store, [d for group in fresh.values() for d in group])
    await apply_exactly_once(store, filter(None, (state_fragment(d) for d in canonical)))
    await claim_subjects(store, deliveries)

    counted = [d for d in canonical if isinstance(d.event, PostShared | EngagementReceived)]
    people = {person_of(d) for d in counted}
    erased = await store.erased_among(people)
    await append_chained(store, fresh, by_partition(counted), erased)

    # Erasure wins: every erasure seen (first time or again) deletes, and so does a batch that
    # wrote personal figures while another consumer was erasing the same person.
    erasures = {person_of(d) for d in deliveries if isinstance(d.event, AmbassadorErased)}
    erasures |= await store.erased_among(people - erased) if people - erased else set()
    for person in sorted(erasures):
        await store.erase_individual(person)

    for delivery in deliveries:
        if isinstance(delivery.event, GdprExportRequested):
            # Metrics' part of a GDPR export (advocacy_common.gdpr_export): no call, an event back.
            await answer_export_request(store, delivery, "metrics",
                                        lambda tenant, person: individual_records(store, Person(tenant, person)),
                                        utcnow())

    # After every write of the batch, and again on its redelivery: a report kept by the API is recomputed
    # once this moved (a crash before it leaves the revision to the redelivery, as for the roster's).
    await store.data_changed({d.tenant_id for d in deliveries if d.tenant_id})

    if schedule is not None and schedule.due():
        started = time.monotonic()
        await fold_slices(store, list(partitions))
        schedule.folded(time.monotonic() - started)


ALL_TIME = Period(date(2000, 1, 1), date(2999, 12, 31))


async def individual_records(store: MetricsStore, person: Person) -> dict[str, list[dict[str, Any]]]:
    """The person's own statistics (per day), their activity days and the projection of them. After
    an erasure only the tombstone is left, which is about nobody: nothing is exported."""
    view = next((v for v in await store.list_ambassadors(person.tenant) if v.ambassador_id == person.ambassador_id),
                None)
    if view is None or view.erased:
        return {"ambassador": [], "daily_statistics": [], "activity_days": []}
    counters = await store.list_counters(person.tenant, Dimension.AMBASSADOR, person.ambassador_id, ALL_TIME)
    activity = [row for row in await store.list_activity(person.tenant, ALL_TIME)
                if row.ambassador_id == person.ambassador_id]
    return {
        "ambassador": [{"ambassador_id": view.ambassador_id, "status": view.status, "team_id": view.team_id,
                        "networks": list(view.networks), "leaderboard_opt_in": view.leaderboard_opt_in}],
        "daily_statistics": [{"day": row.day, **row.parts} for row in sorted(counters, key=lambda r: r.day)],
        "activity_days": [{"day": row.day, "campaigns": sorted(row.campaigns), "contents": sorted(row.contents),
                           "networks": sorted(row.networks)} for row in sorted(activity, key=lambda r: r.day)],
    }


async def claim_subjects(store: MetricsStore, deliveries: Sequence[Delivery]) -> None:
    """Whose token names which id: a login provisioned again after an erasure names a new id.
    Every opt-in seen claims again (idempotent: the latest claim wins), redeliveries included."""
    for delivery in deliveries:
        event = delivery.event
        if isinstance(event, AmbassadorOptedIn):
            await store.claim_subject(delivery.tenant_id, event.subject_key or event.ambassador_id,
                                      event.ambassador_id, event.opted_in_at)


async def fold_slices(store: MetricsStore, partitions: Sequence[str] | None) -> int:
    """Add the pending slices of `partitions` (all when None) to the rolled-up documents, then drop them.

    Only the consumer of a partition folds its slices (as it alone writes them), so the
    watermarks of the rolled-up documents see each partition's slices in chain order.
    """
    slices = await store.pending_slices(partitions)
    if not slices:
        return 0
    people = set().union(*(piece.people for piece in slices))
    erased = await store.erased_among(people)
    await apply_exactly_once(store, folded_fragments(slices, erased))
    await store.add_activity(merge_activity(row for piece in slices for row in piece.activity
                                            if row.person not in erased))
    for person in sorted(await store.erased_among(people - erased) if people - erased else ()):
        await store.erase_individual(person)  # erased while this fold ran: erasure wins
    # The progress passes the folded slices before they go: a redelivery of their offsets
    # must not find their keys free and store them again.
    ends: dict[str, int] = {}
    for piece in slices:
        ends[piece.partition] = max(ends.get(piece.partition, -1), piece.last)
    for partition, last in ends.items():
        await store.raise_progress(partition, last)
    await store.delete_slices([piece.span for piece in slices])
    # The totals are the same, but a report computed while the fold ran is computed again.
    await store.data_changed({key.tenant for piece in slices for key in piece.counters}
                             | {row.tenant for piece in slices for row in piece.activity})
    return len(slices)


def handlers_for(store: MetricsStore) -> dict[type[Event], Handler]:
    """The registry: every consumed event class goes through the same batch projection."""

    async def handle_one(delivery: Delivery) -> None:
        await project_batch(store, [delivery])

    return dict.fromkeys(CONSUMED_EVENTS, handle_one)
