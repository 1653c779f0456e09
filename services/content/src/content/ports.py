"""What the use cases need from storage: one Protocol per repository, domain types in and out.

The MongoDB adapters (store.py) implement these on the repository base; the unit
tests implement them in memory (tests/content/unit/content_fakes.py). Writes refuse with
the base's exceptions: StaleWrite (the version or the guard no longer holds,
nothing written), KeyReused (an Idempotency-Key came back with another body).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol, TypeVar

from advocacy_common.consuming import Delivery
from advocacy_common.repository import Page, StaleWrite, UnitOfWork  # noqa: F401  StaleWrite: re-exported, the refusal the API renders
from advocacy_common.subjects import SubjectHolders

from .models import AmbassadorProjection, Campaign, ContentItem, ItemFilter, TargetingProfile, TenantSettings

E = TypeVar("E")


class Versioned(Protocol[E]):
    """What the repository base gives every aggregate: a tenant-checked read, an idempotent insert,
    a compare-and-set save (the stored version becomes the entity's + 1)."""

    async def get(self, tenant: str, entity_id: str) -> E | None: ...

    async def add_idempotent(self, entity: E, fingerprint: str, uow: UnitOfWork | None = None) -> tuple[E, bool]: ...

    async def save(self, entity: E, uow: UnitOfWork | None = None, guard: Mapping[str, Any] | None = None) -> E: ...


class Campaigns(Versioned[Campaign], Protocol):
    async def newest_first(self, tenant: str, cursor: str | None, limit: int) -> Page[Campaign]: ...

    async def awaiting_refresh(self, limit: int) -> list[Campaign]:
        """Campaigns (of every tenant) whose published items must be re-announced."""

    async def mark_refreshed(self, campaign: Campaign) -> bool:
        """Clear the flag if the campaign is still at this version (a newer change keeps it).

        Not a change anyone edits against: the version (the ETag) stays.
        """


class ContentItems(Versioned[ContentItem], Protocol):
    async def newest_first(self, tenant: str, filters: ItemFilter, cursor: str | None,
                           limit: int) -> Page[ContentItem]: ...

    async def scheduled_between(self, tenant: str, start: datetime, end: datetime,
                                limit: int) -> list[ContentItem]:
        """Items whose publish_at is in [start, end), earliest first, any status."""

    async def published_for(self, tenant: str, profile: TargetingProfile | None, cursor: str | None,
                            limit: int) -> Page[ContentItem]:
        """Published items targeted to this profile, most recently published first."""

    async def touched_by(self, tenant: str, person: str) -> list[ContentItem]:
        """Items a person created, proposed or edited (for erasure)."""

    async def published_behind(self, campaign: Campaign, limit: int) -> list[ContentItem]:
        """Published items of the campaign whose last snapshot predates its current version."""

    async def due_for_publication(self, now: datetime, limit: int) -> list[ContentItem]:
        """Approved items (of every tenant) whose publish_at has come, earliest first."""

    async def due_for_retirement(self, now: datetime, limit: int) -> list[ContentItem]:
        """Published items (of every tenant) whose expires_at has passed, earliest first."""


class TenantSettingsStore(Protocol):
    async def of_tenant(self, tenant: str) -> TenantSettings:
        """The tenant's settings; the defaults at version 0 when never saved."""

    async def save(self, settings: TenantSettings, uow: UnitOfWork | None = None,
                   guard: Mapping[str, Any] | None = None) -> TenantSettings: ...


class AmbassadorProjections(SubjectHolders, Protocol):
    """The projection of ambassador events. Each write applies once per delivered event, and an
    erased ambassador stays a tombstone that no later event changes; True when it applied now.
    With it, which ambassador id holds each login now (`advocacy_common.subjects`)."""

    async def get(self, tenant: str, ambassador_id: str) -> AmbassadorProjection | None: ...

    async def opted_in(self, tenant: str, ambassador_id: str, profile: TargetingProfile,
                       delivery: Delivery) -> bool: ...

    async def profile_updated(self, tenant: str, ambassador_id: str, profile: TargetingProfile,
                              delivery: Delivery) -> bool: ...

    async def opted_out(self, tenant: str, ambassador_id: str, delivery: Delivery) -> bool: ...

    async def erased(self, tenant: str, ambassador_id: str, delivery: Delivery) -> bool: ...
