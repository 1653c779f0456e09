"""Batches of events in, counters and projections out, each event counted exactly once.

Three guards make a batch safe to apply again after a crash, with any boundaries:
claims (one stored first position per fact) drop copies of an envelope published
twice; per-document watermarks skip what a document already holds; activity days
and deletions are idempotent by nature.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from advocacy_common.consuming import Delivery, Handler
from advocacy_common.events import (
    AmbassadorErased, AmbassadorOptedIn, AmbassadorOptedOut, AmbassadorProfileUpdated, ContentPublished,
    ContentUpdated, EngagementReceived, Event, PostShared,
)

from .aggregation import (
    FactId, Fragment, Position, above_watermarks, activity_of, claim_id, counter_fragments, merge_activity, person_of,
    plan_writes, position_of, state_fragment,
)
from .ports import MetricsStore

CONSUMED_EVENTS: tuple[type[Event], ...] = (
    AmbassadorOptedIn, AmbassadorProfileUpdated, AmbassadorOptedOut, AmbassadorErased,
    ContentPublished, ContentUpdated, PostShared, EngagementReceived,
)


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
    first: dict[FactId, Position] = {}
    for delivery in deliveries:
        first.setdefault(claim_id(delivery), position_of(delivery))
    stored = await store.claim(first)
    return [d for d in deliveries if stored.get(claim_id(d)) == position_of(d)]


async def project_batch(store: MetricsStore, deliveries: Sequence[Delivery]) -> None:
    """The batch handler: every event of a batch applied once, whatever was applied before a crash."""
    canonical = await canonical_deliveries(store, deliveries)
    await apply_exactly_once(store, filter(None, (state_fragment(d) for d in canonical)))

    counted = [d for d in canonical if isinstance(d.event, PostShared | EngagementReceived)]
    people = {person_of(d) for d in counted}
    erased = await store.erased_among(people)
    await apply_exactly_once(store, (fragment for d in counted
                                     for fragment in counter_fragments(d, individual=person_of(d) not in erased)))
    await store.add_activity(merge_activity(activity_of(d) for d in counted
                                            if isinstance(d.event, PostShared) and person_of(d) not in erased))

    # Erasure wins: every erasure seen (first time or again) deletes, and so does a batch that
    # wrote personal counters while another consumer was erasing the same person.
    erasures = {person_of(d) for d in deliveries if isinstance(d.event, AmbassadorErased)}
    erasures |= await store.erased_among(people - erased) if people - erased else set()
    for person in sorted(erasures):
        await store.erase_individual(person)


def handlers_for(store: MetricsStore) -> dict[type[Event], Handler]:
    """The registry: every consumed event class goes through the same batch projection."""

    async def handle_one(delivery: Delivery) -> None:
        await project_batch(store, [delivery])

    return dict.fromkeys(CONSUMED_EVENTS, handle_one)
