"""What the aggregation, the queries and the rebuild need from storage: domain types in and out.

The MongoDB / FerretDB implementation is `store.py`; the unit tests share one
in-memory fake (tests/metrics/metrics_testkit.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from advocacy_common.gdpr_export import ExportParts
from advocacy_common.subjects import SubjectHolders

from .aggregation import ConditionalWrite, FactId, Position, Slice, SliceSpan, Target, Watermarks
from .models import ActivityDay, AmbassadorView, ContentView, CounterRow, Dimension, Period, Person, Revisions


class FactClaims(Protocol):
    """The first position of each fact, so that a copy published at another offset counts once."""

    async def claim(self, claims: Mapping[FactId, Position]) -> dict[FactId, Position]:
        """Record the first position of each fact (if none yet); return the stored position of each, or for a
        fact stored before at a position that is certainly none of `claims`' a position of no delivery
        (`RecentClaims.ELSEWHERE`): either way a copy is told from the first occurrence."""


class WatermarkedDocuments(Protocol):
    """Counters and the ambassador and content projections, each written at most once per Kafka position."""

    async def write_conditionally(self, writes: Sequence[ConditionalWrite]) -> list[ConditionalWrite]:
        """Apply each write whose watermark condition holds (creating the document); return the refused ones."""

    async def read_watermarks(self, targets: Sequence[Target]) -> dict[Target, Watermarks]:
        """The watermarks of those of `targets` that exist."""

    async def erased_among(self, people: set[Person]) -> set[Person]:
        """Which of `people` carry the erasure tombstone."""

    async def list_counters(self, tenant: str, dimension: Dimension, value: str | None,
                            period: Period) -> list[CounterRow]:
        """Counter rows of one dimension (one value, or all when None) in a period, pending slices included."""

    async def list_ambassadors(self, tenant: str) -> list[AmbassadorView]:
        """The ambassador projection of a tenant."""

    async def roster_revision(self, tenant: str) -> int:
        """A number raised after each change of who counts in the tenant (ambassador events, erasures)."""

    async def revisions(self, tenant: str) -> Revisions:
        """The roster revision and the data revision of a tenant, read together."""

    async def data_changed(self, tenants: Iterable[str]) -> None:
        """Raise the data revision of each tenant, after a write of its figures (slices, folds, projections)."""

    async def list_contents(self, tenant: str) -> list[ContentView]:
        """The content projection of a tenant."""


class ActivityDays(Protocol):
    """Who shared on which day (for the distinct counts, joined when read)."""

    async def add_activity(self, rows: Sequence[ActivityDay]) -> None:
        """Create activity days or add to their sets (idempotent)."""

    async def list_activity(self, tenant: str, period: Period, dimension: Dimension | None = None,
                            value: str | None = None) -> list[ActivityDay]:
        """The activity days of a tenant in a period, pending slices included: every set of each (None), or
        what a view of `dimension` needs (`models.in_view`: the days holding `value` in the dimension's set;
        for the tenant, team and individual views, who shared at all), with at least that set filled."""


class SliceLog(Protocol):
    """Per partition, a chain of slices (see aggregation.py), each stored once under (partition, first)."""

    async def append_slices(self, slices: Sequence[Slice]) -> list[SliceSpan]:
        """Store each slice whose (partition, first) is free; the span stored under each taken one."""

    async def slice_progress(self, partitions: Sequence[str]) -> dict[str, int]:
        """Per partition, an offset up to which slices are known to cover every delivery (absent: none)."""

    async def raise_progress(self, partition: str, last: int) -> None:
        """Record that slices cover `partition` up to `last` (never lowers it)."""

    async def pending_slices(self, partitions: Sequence[str] | None) -> list[Slice]:
        """The slices not folded yet, of these partitions (of all when None)."""

    async def delete_slices(self, spans: Sequence[SliceSpan]) -> None:
        """Forget folded slices (idempotent)."""


class MetricsStore(FactClaims, WatermarkedDocuments, ActivityDays, SliceLog, SubjectHolders, ExportParts, Protocol):
    """One generation of the read model, which ambassador id holds each login now, and the GDPR export
    parts metrics wrote (outside the generations: a rebuild does not answer a request again)."""

    async def erase_individual(self, person: Person) -> None:
        """Delete the person's own counters and activity days, in pending slices too (idempotent)."""


class Generations(Protocol):
    """Which generation of the read model is live, and fresh ones for the rebuild."""

    async def current(self) -> int:
        """The live generation."""

    async def allocate(self) -> int:
        """A generation number never used before (the live one included)."""

    async def switch_to(self, generation: int) -> None:
        """Make `generation` the live one (one pointer write)."""

    def store(self, generation: int) -> MetricsStore:
        """The storage of one generation."""

    async def prepare(self, generation: int, *, empty: bool = False) -> MetricsStore:
        """The storage of one generation, ready for writes (emptied first when `empty`)."""
