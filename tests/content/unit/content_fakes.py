"""In-memory fakes of the content ports (content.ports), shared by the unit tests.

Plain Python over domain values: the same contracts as the MongoDB adapters
(tenant-checked reads, idempotent inserts, compare-and-set saves that refuse a
stale version or a failed guard, one event list per saved item), no query language.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from advocacy_common.consuming import Delivery
from advocacy_testkit import FakeSubjectHolders
from advocacy_common.envelope import Envelope
from advocacy_common.repository import AlreadyExists, KeyReused, Page, StaleWrite, UnitOfWork

from content.models import (
    AmbassadorProjection, Campaign, ContentItem, ItemFilter, Status, TargetingProfile, TenantSettings, is_targeted,
)

E = TypeVar("E", Campaign, ContentItem)
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


class FakeRepository(Generic[E]):
    """Entities by id, with the events each write carried and the relay hints it left."""

    def __init__(self) -> None:
        self.entities: dict[str, E] = {}
        self.fingerprints: dict[str, str] = {}
        self.events: dict[str, list[tuple[str, Envelope]]] = {}
        self.hinted: list[str] = []

    async def get(self, tenant: str, entity_id: str) -> E | None:
        entity = self.entities.get(entity_id)
        return entity if entity is not None and entity.tenant == tenant else None

    async def add_idempotent(self, entity: E, fingerprint: str, uow: UnitOfWork | None = None) -> tuple[E, bool]:
        existing = self.entities.get(entity.id)
        if existing is not None:
            if existing.tenant != entity.tenant:
                raise AlreadyExists(entity.id)
            if self.fingerprints.get(entity.id) != fingerprint:
                raise KeyReused(entity.id)
            return existing, False
        self.entities[entity.id] = entity.model_copy(deep=True)
        self.fingerprints[entity.id] = fingerprint
        self._keep_events(entity.id, uow)
        return entity, True

    async def save(self, entity: E, uow: UnitOfWork | None = None, guard: Mapping[str, Any] | None = None) -> E:
        current = self.entities.get(entity.id)
        if current is None or current.tenant != entity.tenant or current.version != entity.version or \
                any(getattr(current, name) != value for name, value in (guard or {}).items()):
            raise StaleWrite(entity.id)
        saved = entity.model_copy(update={"version": entity.version + 1}, deep=True)
        self.entities[entity.id] = saved
        self._keep_events(entity.id, uow)
        return saved

    def _keep_events(self, entity_id: str, uow: UnitOfWork | None) -> None:
        if uow:
            self.events.setdefault(entity_id, []).extend(uow.pending)
            self.hinted.append(entity_id)

    def where(self, predicate: Callable[[E], bool]) -> list[E]:
        return [entity for entity in self.entities.values() if predicate(entity)]

    def page_of(self, entities: list[E], sort: Callable[[E], Any], cursor: str | None, limit: int) -> Page[E]:
        """Newest first by `sort` then id; the cursor is the last id handed out."""
        ordered = sorted(entities, key=lambda e: (sort(e), e.id), reverse=True)
        start = 0 if cursor is None else [e.id for e in ordered].index(cursor) + 1
        chunk = ordered[start:start + limit]
        more = len(ordered) > start + limit
        return Page(chunk, chunk[-1].id if more and chunk else None)


class FakeCampaigns(FakeRepository[Campaign]):
    async def newest_first(self, tenant: str, cursor: str | None, limit: int) -> Page[Campaign]:
        return self.page_of(self.where(lambda c: c.tenant == tenant), lambda c: c.created_at, cursor, limit)

    async def awaiting_refresh(self, limit: int) -> list[Campaign]:
        return self.where(lambda c: c.refresh_published)[:limit]

    async def mark_refreshed(self, campaign: Campaign) -> bool:
        current = self.entities.get(campaign.id)
        if current is None or current.version != campaign.version:
            return False
        self.entities[campaign.id] = current.model_copy(update={"refresh_published": False})
        return True


def _matches(item: ContentItem, filters: ItemFilter) -> bool:
    publish_at = item.publish_at
    return ((filters.status is None or item.status is filters.status)
            and (filters.campaign_id is None or item.campaign_id == filters.campaign_id)
            and (filters.topic is None or filters.topic in item.topics)
            and (filters.language is None or item.language == filters.language)
            and (filters.publish_from is None or (publish_at is not None and publish_at >= filters.publish_from))
            and (filters.publish_to is None or (publish_at is not None and publish_at < filters.publish_to)))


class FakeItems(FakeRepository[ContentItem]):
    def event_types(self, item_id: str) -> list[str]:
        return [envelope.type for _, envelope in self.events.get(item_id, [])]

    async def newest_first(self, tenant: str, filters: ItemFilter, cursor: str | None,
                           limit: int) -> Page[ContentItem]:
        return self.page_of(self.where(lambda i: i.tenant == tenant and _matches(i, filters)),
                            lambda i: i.created_at, cursor, limit)

    async def scheduled_between(self, tenant: str, start: datetime, end: datetime,
                                limit: int) -> list[ContentItem]:
        found = self.where(lambda i: i.tenant == tenant and i.publish_at is not None and start <= i.publish_at < end)
        return sorted(found, key=lambda i: (i.publish_at, i.id))[:limit]

    async def published_for(self, tenant: str, profile: TargetingProfile | None, cursor: str | None,
                            limit: int) -> Page[ContentItem]:
        found = self.where(lambda i: i.tenant == tenant and i.status is Status.PUBLISHED
                           and is_targeted(i, profile))
        return self.page_of(found, lambda i: i.publish_at, cursor, limit)

    async def touched_by(self, tenant: str, person: str) -> list[ContentItem]:
        return self.where(lambda i: i.tenant == tenant and person in {i.created_by, i.proposed_by, *i.authors})

    async def published_behind(self, campaign: Campaign, limit: int) -> list[ContentItem]:
        return self.where(lambda i: i.tenant == campaign.tenant and i.campaign_id == campaign.id
                          and i.status is Status.PUBLISHED
                          and (i.campaign_version or 0) < campaign.version)[:limit]

    async def due_for_publication(self, now: datetime, limit: int) -> list[ContentItem]:
        found = self.where(lambda i: i.status is Status.APPROVED and i.publish_at is not None and i.publish_at <= now)
        return sorted(found, key=lambda i: i.publish_at)[:limit]

    async def due_for_retirement(self, now: datetime, limit: int) -> list[ContentItem]:
        found = self.where(lambda i: i.status is Status.PUBLISHED and i.expires_at is not None
                           and i.expires_at <= now)
        return sorted(found, key=lambda i: i.expires_at)[:limit]


class FakeTenantSettings:
    def __init__(self) -> None:
        self.saved: dict[str, TenantSettings] = {}

    async def of_tenant(self, tenant: str) -> TenantSettings:
        return self.saved.get(tenant) or TenantSettings(tenant=tenant)

    async def save(self, settings: TenantSettings, uow: UnitOfWork | None = None,
                   guard: Mapping[str, Any] | None = None) -> TenantSettings:
        if (await self.of_tenant(settings.tenant)).version != settings.version:
            raise StaleWrite(settings.tenant)
        self.saved[settings.tenant] = settings.model_copy(update={"version": settings.version + 1})
        return self.saved[settings.tenant]


class FakeAmbassadors(FakeSubjectHolders):
    """The projection with its per-partition watermarks and erasure tombstones."""

    def __init__(self) -> None:
        super().__init__()
        self.projections: dict[tuple[str, str], AmbassadorProjection] = {}
        self.watermarks: dict[tuple[str, str], dict[str, int]] = {}

    def put(self, tenant: str, ambassador_id: str, **fields: Any) -> None:
        """Set up an entry directly (as if its events had been consumed)."""
        self.projections[(tenant, ambassador_id)] = AmbassadorProjection(tenant=tenant, ambassador_id=ambassador_id,
                                                                         **fields)

    async def get(self, tenant: str, ambassador_id: str) -> AmbassadorProjection | None:
        return self.projections.get((tenant, ambassador_id))

    async def opted_in(self, tenant: str, ambassador_id: str, profile: TargetingProfile,
                       delivery: Delivery) -> bool:
        return self._apply(tenant, ambassador_id, delivery, {"opted_in": True, "profile": profile})

    async def profile_updated(self, tenant: str, ambassador_id: str, profile: TargetingProfile,
                              delivery: Delivery) -> bool:
        return self._apply(tenant, ambassador_id, delivery, {"profile": profile})

    async def opted_out(self, tenant: str, ambassador_id: str, delivery: Delivery) -> bool:
        return self._apply(tenant, ambassador_id, delivery, {"opted_in": False, "profile": None})

    async def erased(self, tenant: str, ambassador_id: str, delivery: Delivery) -> bool:
        return self._apply(tenant, ambassador_id, delivery, {"opted_in": False, "profile": None, "erased": True})

    def _apply(self, tenant: str, ambassador_id: str, delivery: Delivery, changes: dict[str, Any]) -> bool:
        key = (tenant, ambassador_id)
        current = self.projections.get(key) or AmbassadorProjection(tenant=tenant, ambassador_id=ambassador_id)
        marks = self.watermarks.setdefault(key, {})
        if current.erased or marks.get(delivery.watermark_key, -1) >= delivery.offset:
            return False
        marks[delivery.watermark_key] = delivery.offset
        self.projections[key] = current.model_copy(update=changes)
        return True


class Fakes:
    """One fake per port, as the service is built on them."""

    def __init__(self) -> None:
        self.campaigns, self.items = FakeCampaigns(), FakeItems()
        self.tenant_settings, self.ambassadors = FakeTenantSettings(), FakeAmbassadors()
