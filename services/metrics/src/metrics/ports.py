"""What the aggregation and the reports need from storage (MongoDB in `store.py`, a fake in the tests)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from .aggregation import ActivityWrite, ConditionalWrite, Position
from .models import Dimension, Period


class MetricsStore(Protocol):
    # --- writes of the consumer ---------------------------------------------------------
    async def claim(self, claims: Mapping[str, Position]) -> dict[str, Position]:
        """Record the first position of each fact (if none yet); return the stored position of each."""

    async def write_conditionally(self, writes: Sequence[ConditionalWrite]) -> list[ConditionalWrite]:
        """Apply each write whose watermark condition holds (upserting); return the refused ones."""

    async def read_watermarks(self, writes: Sequence[ConditionalWrite]) -> dict[tuple[str, str], dict[str, int]]:
        """The watermarks of the documents of `writes`, by (collection, document id)."""

    async def add_activity(self, rows: Sequence[ActivityWrite]) -> None:
        """Upsert activity days, adding to their sets (idempotent)."""

    async def erased_among(self, people: set[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which (tenant, ambassador) pairs carry the erasure tombstone."""

    async def erase_individual(self, tenant: str, ambassador_id: str) -> None:
        """Delete the person's own counters and activity days (idempotent)."""

    # --- reads of the API -----------------------------------------------------------------
    async def list_counters(self, tenant: str, dimension: Dimension, value: str | None,
                            period: Period) -> list[dict[str, Any]]:
        """Counter rows {value, day, parts} of one dimension (one value, or all when None) in a period."""

    async def list_activity(self, tenant: str, period: Period) -> list[dict[str, Any]]:
        """Activity rows {ambassador_id, day, campaigns, contents, networks} in a period."""

    async def list_ambassadors(self, tenant: str) -> list[dict[str, Any]]:
        """The ambassador projection {ambassador_id, status, team_id, networks, leaderboard_opt_in}."""

    async def list_contents(self, tenant: str) -> list[dict[str, Any]]:
        """The content projection {content_id, campaign_id, objective, topics}."""
