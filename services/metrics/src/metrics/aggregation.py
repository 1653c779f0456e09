"""The aggregation core: what each event adds to which document, and batch watermarks. Pure, no I/O.

An event's effect on one document is a `Fragment` (increments, fields to set)
at a Kafka position. A batch's fragments are coalesced into one conditional
write per document: "if this document's watermark for partition p is below the
lowest offset I carry for p, apply the sum and raise the watermark to the
highest". When the condition fails (the worker was killed after writing this
document, and the batch came back with other boundaries), the caller reads
the watermarks and keeps only the fragments above them: each event is applied
to each document exactly once, in offset order per partition.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from advocacy_common.consuming import Delivery
from advocacy_common.events import (
    AmbassadorErased, AmbassadorOptedIn, AmbassadorOptedOut, AmbassadorProfileUpdated, ContentSnapshot,
    EngagementReceived, EngagementKind, PostShared,
)

from .models import ENGAGEMENT_PART, TENANT_VALUE, AmbassadorStatus, Dimension, day_of

COUNTERS = "counters"
AMBASSADORS = "ambassadors"
CONTENTS = "contents"


@dataclass(frozen=True, order=True)
class Position:
    partition: str  # topic and partition, as the watermark key
    offset: int


@dataclass(frozen=True)
class Fragment:
    """One event's effect on one document."""

    collection: str
    doc_id: str
    identity: Mapping[str, Any]
    position: Position
    inc: Mapping[str, int] = field(default_factory=dict)
    set: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ConditionalWrite:
    """Many fragments of one document as one update, guarded by per-partition watermarks."""

    collection: str
    doc_id: str
    identity: Mapping[str, Any]
    floors: Mapping[str, int]  # the stored watermark must be below this (absent counts as below)
    marks: Mapping[str, int]  # and becomes this
    inc: Mapping[str, int]
    set: Mapping[str, Any]
    fragments: tuple[Fragment, ...]


@dataclass(frozen=True)
class ActivityWrite:
    """An ambassador shared on a day; the sets say in which campaigns, contents and networks."""

    tenant: str
    ambassador_id: str
    day: str
    campaigns: frozenset[str]
    contents: frozenset[str]
    networks: frozenset[str]

    @property
    def doc_id(self) -> str:
        return f"{self.tenant}|{self.ambassador_id}|{self.day}"


def position_of(delivery: Delivery) -> Position:
    return Position(delivery.watermark_key, delivery.offset)


def claim_id(delivery: Delivery) -> str:
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
    return f"{delivery.tenant_id}|{key}"


def plan_writes(fragments: Iterable[Fragment]) -> list[ConditionalWrite]:
    """Coalesce fragments into one conditional write per document (fields set in offset order)."""
    grouped: dict[tuple[str, str], list[Fragment]] = defaultdict(list)
    for fragment in fragments:
        grouped[(fragment.collection, fragment.doc_id)].append(fragment)
    return [_coalesce(sorted(group, key=lambda f: f.position.offset)) for group in grouped.values()]


def _coalesce(group: Sequence[Fragment]) -> ConditionalWrite:
    floors: dict[str, int] = {}
    marks: dict[str, int] = {}
    inc: dict[str, int] = defaultdict(int)
    fields: dict[str, Any] = {}
    for fragment in group:
        partition, offset = fragment.position.partition, fragment.position.offset
        floors[partition] = min(floors.get(partition, offset), offset)
        marks[partition] = max(marks.get(partition, offset), offset)
        for name, amount in fragment.inc.items():
            inc[name] += amount
        fields.update(fragment.set)
    first = group[0]
    return ConditionalWrite(first.collection, first.doc_id, first.identity, floors, marks, dict(inc), fields,
                            tuple(group))


def above_watermarks(write: ConditionalWrite, watermarks: Mapping[str, int]) -> list[Fragment]:
    """The fragments of a refused write that the document has not seen yet."""
    return [f for f in write.fragments if f.position.offset > watermarks.get(f.position.partition, -1)]


def admits(write: ConditionalWrite, watermarks: Mapping[str, int]) -> bool:
    """The condition of a conditional write, as the store evaluates it."""
    return all(watermarks.get(partition, -1) < floor for partition, floor in write.floors.items())


# --- what each event touches ------------------------------------------------------------

def counter_id(tenant: str, day: str, dimension: Dimension, value: str) -> str:
    return f"{tenant}|{day}|{dimension.value}|{value}"


def ambassador_id_of(tenant: str, ambassador_id: str) -> str:
    return f"{tenant}|{ambassador_id}"


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
    parts = {ENGAGEMENT_PART[event.kind]: event.count}
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
    tenant = delivery.tenant_id
    day, parts = counted_parts(event)
    position = position_of(delivery)
    return [Fragment(COUNTERS, counter_id(tenant, day, dimension, value),
                     {"tenant": tenant, "day": day, "dimension": dimension.value, "value": value},
                     position, inc={f"c.{name}": amount for name, amount in parts.items()})
            for dimension, value in _dimension_values(event, individual)]


def activity_of(delivery: Delivery) -> ActivityWrite:
    event = delivery.event
    assert isinstance(event, PostShared)
    return ActivityWrite(delivery.tenant_id, event.ambassador_id, day_of(event.shared_at),
                         frozenset([event.campaign_id] if event.campaign_id else []),
                         frozenset([event.content_id]), frozenset([event.network.value]))


def merge_activity(rows: Iterable[ActivityWrite]) -> list[ActivityWrite]:
    merged: dict[str, ActivityWrite] = {}
    for row in rows:
        seen = merged.get(row.doc_id)
        merged[row.doc_id] = row if seen is None else ActivityWrite(
            row.tenant, row.ambassador_id, row.day, seen.campaigns | row.campaigns,
            seen.contents | row.contents, seen.networks | row.networks)
    return list(merged.values())


def state_fragment(delivery: Delivery) -> Fragment | None:
    """The projection of ambassadors (status, team, networks, leaderboard choice) and of content."""
    event, tenant = delivery.event, delivery.tenant_id
    if isinstance(event, ContentSnapshot):
        return Fragment(CONTENTS, f"{tenant}|{event.content_id}", {"tenant": tenant, "content_id": event.content_id},
                        position_of(delivery), set={"campaign_id": event.campaign_id,
                                                    "objective": event.objective.value,
                                                    "topics": list(event.topics), "version": event.version})
    fields: dict[str, Any]
    if isinstance(event, AmbassadorOptedIn | AmbassadorProfileUpdated):
        profile = event.profile
        fields = {"team_id": profile.team_id, "leaderboard_opt_in": profile.leaderboard_opt_in,
                  "networks": sorted(presence.network.value for presence in profile.networks)}
        if isinstance(event, AmbassadorOptedIn):
            fields["status"] = AmbassadorStatus.OPTED_IN.value
    elif isinstance(event, AmbassadorOptedOut):
        fields = {"status": AmbassadorStatus.OPTED_OUT.value}
    elif isinstance(event, AmbassadorErased):
        # Only the tombstone stays: it stops later events from rebuilding personal statistics.
        # It is never lifted; a person who comes back after erasure does so under a new id.
        fields = {"status": AmbassadorStatus.ERASED.value, "erased": True, "team_id": None, "networks": [],
                  "leaderboard_opt_in": False}
    else:
        return None
    return Fragment(AMBASSADORS, ambassador_id_of(tenant, event.ambassador_id),
                    {"tenant": tenant, "ambassador_id": event.ambassador_id}, position_of(delivery), set=fields)
