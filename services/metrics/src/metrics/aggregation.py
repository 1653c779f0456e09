"""The aggregation core: what each event adds to which document, slices, and watermarks. Pure, no I/O.

Counters and activity days of a batch are summed in memory per topic
partition into a `Slice`: what the partition's deliveries [first, last] add,
written once as one insert whose key is (partition, first). Slices of a
partition form a chain (each starts at the delivery after the previous one's
last), so a redelivered batch, whatever its boundaries, finds the slices that
already hold its offsets (see handlers.py). A fold later adds pending slices
to the rolled-up counter documents; reads add the pending slices that a
rolled-up document has not folded yet (`counter_rows`).

An event's effect on one document is a `Fragment` (counter increments, or a
change of the ambassador or content projection) at a Kafka position; how a
document is laid out and updated is the storage adapter's business. Fragments are coalesced into one conditional
write per document: "if this document's watermark for partition p is below the
lowest offset I carry for p, apply the sum and raise the watermark to the
highest". When the condition fails (the worker was killed after writing this
document, and the batch came back with other boundaries), the caller reads
the watermarks and keeps only the fragments above them: each event is applied
to each document exactly once, in offset order per partition.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from advocacy_common.consuming import Delivery
from advocacy_common.events import (
    AmbassadorErased, AmbassadorOptedIn, AmbassadorOptedOut, AmbassadorProfileUpdated, ContentSnapshot,
    EngagementReceived, EngagementKind, PostShared,
)

from .models import (
    ENGAGEMENT_PART, SELF_REPORTED_KINDS, TENANT_VALUE, ActivityDay, AmbassadorStatus, AmbassadorView, ContentView,
    CounterRow, Dimension, MembershipChange, Person, day_of,
)


class Position(NamedTuple):
    """Where a delivery was read. A tuple of a string and an int: the claims a worker remembers (hundreds of
    thousands) are then objects the garbage collector stops tracking, where dataclass instances made every
    full collection walk them all (measured: a third of the worker's CPU at 200,000 events)."""

    partition: str  # topic and partition, as the watermark key
    offset: int


class FactId(NamedTuple):
    """What makes two deliveries the same fact (see `claim_id`)."""

    tenant: str
    key: str


# --- the documents an event changes, and how ------------------------------------------------

@dataclass(frozen=True)
class CounterKey:
    tenant: str
    day: str
    dimension: Dimension
    value: str


@dataclass(frozen=True)
class AmbassadorKey:
    tenant: str
    ambassador_id: str


@dataclass(frozen=True)
class ContentKey:
    tenant: str
    content_id: str


Target = CounterKey | AmbassadorKey | ContentKey


@dataclass(frozen=True)
class Increments:
    """What a counter document adds to its parts."""

    parts: Mapping[str, int]

    def then(self, later: Increments) -> Increments:
        summed = dict(self.parts)
        for name, amount in later.parts.items():
            summed[name] = summed.get(name, 0) + amount
        return Increments(summed)


@dataclass(frozen=True)
class Profile:
    """The part of an ambassador's profile the reports use (always changed as a whole)."""

    team_id: str | None
    networks: tuple[str, ...]
    leaderboard_opt_in: bool
    leaderboard_name: str | None = None  # only while leaderboard_opt_in


NO_PROFILE = Profile(None, (), False, None)  # after an opt-out or an erasure: nothing left to show


@dataclass(frozen=True)
class AmbassadorChange:
    """What an event changes in the ambassador projection; None leaves a field as it is.

    `history` is appended to the projection's own (in offset order, exactly once like the rest).
    """

    status: AmbassadorStatus | None = None
    profile: Profile | None = None
    erased: bool = False  # the tombstone: once set, never lifted
    history: tuple[MembershipChange, ...] = ()

    def then(self, later: AmbassadorChange) -> AmbassadorChange:
        return AmbassadorChange(later.status if later.status is not None else self.status,
                                later.profile if later.profile is not None else self.profile,
                                self.erased or later.erased, self.history + later.history)

    def applied_to(self, view: AmbassadorView) -> AmbassadorView:
        changed = replace(view, erased=view.erased or self.erased, history=view.history + self.history)
        if self.status is not None:
            changed = replace(changed, status=self.status)
        if self.profile is not None:
            changed = replace(changed, team_id=self.profile.team_id, networks=self.profile.networks,
                              leaderboard_opt_in=self.profile.leaderboard_opt_in,
                              leaderboard_name=self.profile.leaderboard_name)
        return changed


# A content event carries the whole projection (`ContentView`): the latest wins.
Change = Increments | AmbassadorChange | ContentView


def combine(earlier: Change, later: Change) -> Change:
    """Two changes of one document as one, in offset order."""
    if isinstance(earlier, Increments | AmbassadorChange):
        return earlier.then(later)  # type: ignore[arg-type]
    return later


@dataclass(frozen=True)
class Fragment:
    """One event's effect on one document."""

    target: Target
    position: Position
    change: Change


@dataclass(frozen=True)
class ConditionalWrite:
    """Many fragments of one document as one update, guarded by per-partition watermarks."""

    target: Target
    floors: Mapping[str, int]  # the stored watermark must be below this (absent counts as below)
    marks: Mapping[str, int]  # and becomes this
    change: Change
    fragments: tuple[Fragment, ...] = field(default=(), compare=False)


Watermarks = Mapping[str, int]  # partition -> last offset applied


def position_of(delivery: Delivery) -> Position:
    return Position(delivery.watermark_key, delivery.offset)


def claim_id(delivery: Delivery) -> FactId:
    """What makes two deliveries the same fact: a share, an engagement, or else the envelope.

    The relay may publish one envelope twice (at two offsets) and a connector
    may report one engagement twice: both must count once.
    """
    event = delivery.event
    if isinstance(event, PostShared):
        key = f"share:{event.share_id}"
    elif isinstance(event, EngagementReceived):
        key = f"engagement:{event.engagement_id}"
    else:
        key = f"event:{delivery.envelope.id}"
    return FactId(delivery.tenant_id, key)


def plan_writes(fragments: Iterable[Fragment]) -> list[ConditionalWrite]:
    """Coalesce fragments into one conditional write per document (fields set in offset order)."""
    grouped: dict[Target, list[Fragment]] = defaultdict(list)
    for fragment in fragments:
        grouped[fragment.target].append(fragment)
    return [_coalesce(sorted(group, key=lambda f: f.position.offset)) for group in grouped.values()]


def _coalesce(group: Sequence[Fragment]) -> ConditionalWrite:
    floors: dict[str, int] = {}
    marks: dict[str, int] = {}
    change = group[0].change
    for number, fragment in enumerate(group):
        partition, offset = fragment.position.partition, fragment.position.offset
        floors[partition] = min(floors.get(partition, offset), offset)
        marks[partition] = max(marks.get(partition, offset), offset)
        if number:
            change = combine(change, fragment.change)
    return ConditionalWrite(group[0].target, floors, marks, change, tuple(group))


def above_watermarks(write: ConditionalWrite, watermarks: Watermarks) -> list[Fragment]:
    """The fragments of a refused write that the document has not seen yet."""
    return [f for f in write.fragments if f.position.offset > watermarks.get(f.position.partition, -1)]


def admits(write: ConditionalWrite, watermarks: Watermarks) -> bool:
    """The condition of a conditional write, as the store evaluates it."""
    return all(watermarks.get(partition, -1) < floor for partition, floor in write.floors.items())


# --- what each event touches ------------------------------------------------------------

def _dimension_values(event: PostShared | EngagementReceived, individual: bool) -> list[tuple[Dimension, str]]:
    values = [(Dimension.TENANT, TENANT_VALUE), (Dimension.CONTENT, event.content_id),
              (Dimension.NETWORK, event.network.value)]
    # Old events may lack campaign or team: they still count everywhere else.
    if event.campaign_id:
        values.append((Dimension.CAMPAIGN, event.campaign_id))
    if event.team_id:
        values.append((Dimension.TEAM, event.team_id))
    if individual:
        values.append((Dimension.AMBASSADOR, event.ambassador_id))
    return values


def counted_parts(event: PostShared | EngagementReceived) -> tuple[str, dict[str, int]]:
    """The day an event counts on and what it adds to the counters of that day."""
    if isinstance(event, PostShared):
        parts = {"shares": 1, "personalized_shares": int(event.personalized), "potential_reach": event.potential_reach}
        return day_of(event.shared_at), parts
    part = ENGAGEMENT_PART[event.kind]
    parts = {part: event.count}
    if event.self_reported and part in SELF_REPORTED_KINDS:
        parts[f"self_reported_{part}"] = event.count
    if event.kind is EngagementKind.IMPRESSION:
        parts[f"impressions_{event.network.value}"] = event.count
    elif event.kind is EngagementKind.CLICK and event.unique_visitor:
        parts["unique_clicks"] = event.count
    elif event.kind is EngagementKind.CONVERSION and event.conversion_type is not None:
        parts[f"conversions_{event.conversion_type.value}"] = event.count
    return day_of(event.occurred_at), parts


def counter_fragments(delivery: Delivery, individual: bool) -> list[Fragment]:
    """Counters a share or an engagement adds to; `individual` is False once the person is erased."""
    event = delivery.event
    assert isinstance(event, PostShared | EngagementReceived)
    day, parts = counted_parts(event)
    position = position_of(delivery)
    return [Fragment(CounterKey(delivery.tenant_id, day, dimension, value), position, Increments(parts))
            for dimension, value in _dimension_values(event, individual)]


def activity_of(delivery: Delivery) -> ActivityDay:
    event = delivery.event
    assert isinstance(event, PostShared)
    return ActivityDay(delivery.tenant_id, event.ambassador_id, day_of(event.shared_at),
                       frozenset([event.campaign_id] if event.campaign_id else []),
                       frozenset([event.content_id]), frozenset([event.network.value]))


def merge_activity(rows: Iterable[ActivityDay]) -> list[ActivityDay]:
    # Keyed by a plain tuple, not `row.person`: a `Person` per row was most of a 90-day report's merge.
    merged: dict[tuple[str, str, str], ActivityDay] = {}
    for row in rows:
        key = (row.tenant, row.ambassador_id, row.day)
        seen = merged.get(key)
        merged[key] = row if seen is None else seen.joined(row)
    return list(merged.values())


def person_of(delivery: Delivery) -> Person:
    return Person(delivery.tenant_id, delivery.event.ambassador_id)  # type: ignore[attr-defined]


def state_fragment(delivery: Delivery) -> Fragment | None:
    """The projection of ambassadors (status, team, networks, leaderboard choice) and of content."""
    event, tenant = delivery.event, delivery.tenant_id
    if isinstance(event, ContentSnapshot):
        return Fragment(ContentKey(tenant, event.content_id), position_of(delivery),
                        ContentView(event.content_id, event.campaign_id, event.objective.value,
                                    tuple(event.topics), event.version, event.title))
    change: AmbassadorChange
    if isinstance(event, AmbassadorOptedIn | AmbassadorProfileUpdated):
        profile = event.profile
        facts = Profile(profile.team_id, tuple(sorted(presence.network.value for presence in profile.networks)),
                        profile.leaderboard_opt_in,
                        profile.leaderboard_name if profile.leaderboard_opt_in else None)
        if isinstance(event, AmbassadorOptedIn):
            status, moment = AmbassadorStatus.OPTED_IN, event.opted_in_at
        else:
            status, moment = None, event.updated_at
        change = AmbassadorChange(status, facts,
                                  history=(MembershipChange(day_of(moment), status, facts.team_id, facts.networks),))
    elif isinstance(event, AmbassadorOptedOut):
        # The name leaves the leaderboard with the person; team and networks live on in the history.
        change = AmbassadorChange(AmbassadorStatus.OPTED_OUT, NO_PROFILE,
                                  history=(MembershipChange(day_of(event.opted_out_at), AmbassadorStatus.OPTED_OUT),))
    elif isinstance(event, AmbassadorErased):
        # Only the tombstone stays: it stops later events from rebuilding personal statistics.
        # It is never lifted; a person who comes back after erasure does so under a new id.
        # The history keeps the days the id counted as opted in (team and networks, no name),
        # so past days' opted-in counts, anonymous aggregates, stay what they were.
        change = AmbassadorChange(AmbassadorStatus.ERASED, NO_PROFILE, erased=True,
                                  history=(MembershipChange(day_of(event.erased_at), AmbassadorStatus.ERASED),))
    else:
        return None
    return Fragment(AmbassadorKey(tenant, event.ambassador_id), position_of(delivery), change)


# --- slices: a partition's run of deliveries, summed -------------------------------------------

Parts = dict[str, int]


@dataclass(frozen=True)
class SliceSpan:
    """The offsets a slice covers: every delivery of `partition` from `first` to `last`."""

    partition: str
    first: int
    last: int


@dataclass(frozen=True)
class Slice:
    """What the deliveries of one partition from `first` to `last` add to counters and activity days."""

    partition: str
    first: int
    last: int
    counters: Mapping[CounterKey, Mapping[str, int]] = field(default_factory=dict)
    activity: tuple[ActivityDay, ...] = ()

    @property
    def span(self) -> SliceSpan:
        return SliceSpan(self.partition, self.first, self.last)

    @property
    def people(self) -> set[Person]:
        """Everyone with individual figures in this slice."""
        return {Person(key.tenant, key.value) for key in self.counters if key.dimension is Dimension.AMBASSADOR} \
            | {row.person for row in self.activity}

    def without(self, person: Person) -> Slice:
        """This slice without `person`'s individual figures (an erasure)."""
        counters = {key: parts for key, parts in self.counters.items()
                    if not (key.dimension is Dimension.AMBASSADOR and Person(key.tenant, key.value) == person)}
        return replace(self, counters=counters, activity=tuple(r for r in self.activity if r.person != person))


def slice_of(deliveries: Sequence[Delivery], counted: Iterable[Delivery], erased: set[Person]) -> Slice:
    """The slice of one partition's `deliveries` (in offset order); only `counted` ones add anything.

    The hot loop of the worker (every share and engagement passes here): totals are keyed by plain
    tuples, whose hash and equality are C code, and become `CounterKey`s once per distinct key at
    the end (a dataclass key hashed in Python per event and dimension was a tenth of the worker's CPU).
    """
    totals: dict[tuple[str, str, Dimension, str], Parts] = {}
    activity = []
    for delivery in counted:
        event = delivery.event
        assert isinstance(event, PostShared | EngagementReceived)
        tenant = delivery.tenant_id
        individual = Person(tenant, event.ambassador_id) not in erased
        day, parts = counted_parts(event)
        for dimension, value in _dimension_values(event, individual):
            bucket = totals.setdefault((tenant, day, dimension, value), {})
            for name, amount in parts.items():
                bucket[name] = bucket.get(name, 0) + amount
        if individual and isinstance(event, PostShared):
            activity.append(activity_of(delivery))
    first = deliveries[0]
    counters = {CounterKey(*key): parts for key, parts in totals.items()}
    return Slice(first.watermark_key, first.offset, deliveries[-1].offset, counters, tuple(merge_activity(activity)))


def folded_fragments(slices: Iterable[Slice], erased: set[Person]) -> list[Fragment]:
    """Pending slices as fragments of the rolled-up counters, each at its slice's first offset.

    The rolled-up document's watermark for a partition becomes the first offset of the last
    slice folded into it: the chain orders slices, so this is what makes a fold exactly once.
    """
    return [Fragment(key, Position(piece.partition, piece.first), Increments(parts))
            for piece in slices for key, parts in piece.counters.items()
            if not (key.dimension is Dimension.AMBASSADOR and Person(key.tenant, key.value) in erased)]


def counter_rows(rolled: Iterable[tuple[CounterKey, Mapping[str, int], Watermarks]], slices: Iterable[Slice],
                 wanted: Callable[[CounterKey], bool]) -> list[CounterRow]:
    """Rolled-up rows plus what pending slices add that those rows have not folded yet.

    `rolled` must be every rolled-up row `wanted` selects, read after `slices` (a slice
    folded and deleted in between is then in its row, never lost, never counted twice).
    """
    totals: dict[CounterKey, Parts] = {}
    marks: dict[CounterKey, Watermarks] = {}
    for key, parts, watermarks in rolled:
        totals[key] = dict(parts)
        marks[key] = watermarks
    for piece in slices:
        for key, parts in piece.counters.items():
            if wanted(key) and marks.get(key, {}).get(piece.partition, -1) < piece.first:
                bucket = totals.setdefault(key, {})
                for name, amount in parts.items():
                    bucket[name] = bucket.get(name, 0) + amount
    return [CounterRow(key.value, key.day, parts) for key, parts in totals.items()]


def activity_rows(rolled: Iterable[ActivityDay], slices: Iterable[Slice],
                  wanted: Callable[[ActivityDay], bool]) -> list[ActivityDay]:
    """Rolled-up activity days joined with those of pending slices (sets: folding twice is harmless)."""
    return merge_activity([*rolled, *(row for piece in slices for row in piece.activity if wanted(row))])
