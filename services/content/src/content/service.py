"""Use cases of the content service: what an endpoint, an event handler or the scheduler asks for.

Commands in, domain values out. Every change to an item is one compare-and-set
save (the version it was read at, and for workflow moves its status) that
carries the events it causes in the same write (the unit of work), so a
publication is never lost nor told twice. Refusals are domain exceptions
(RuleViolation, InvalidTransition, FourEyesViolation, KeyUsedForAnotherAction)
or the repository's (StaleWrite, KeyReused); the API turns them into problems.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from advocacy_common.api_support import fingerprint, idempotent_id
from advocacy_common.auth import Principal
from advocacy_common.envelope import utcnow
from advocacy_common.errors import forbidden, not_found
from advocacy_common.events import ContentRetired, ContentSnapshot
from advocacy_common.repository import Page, StaleWrite, UnitOfWork
from advocacy_common.subjects import ambassador_id_of

from .models import (
    EVENT_SOURCE, SCHEDULER, SNAPSHOT_CAMPAIGN_FIELDS, Action, AmbassadorProjection, Campaign, ContentItem, HistoryEntry,
    ItemFilter, RetireReason, RuleViolation, Status, TenantSettings, check_approver, check_campaign_period,
    check_content, check_ready_for_review, event_id, is_targeted, next_status, published_event, retired_event,
    status_after_edit, to_stored_time, updated_event, with_author,
)
from .ports import AmbassadorProjections, Campaigns, ContentItems, TenantSettingsStore
from .schemas import CampaignIn, CampaignPatch, ContentIn, ContentPatch

SOURCE = EVENT_SOURCE
ERASURE_ATTEMPTS = 5
log = logging.getLogger(__name__)
Clock = Callable[[], datetime]


class ContentService:
    def __init__(self, campaigns: Campaigns, items: ContentItems, tenant_settings: TenantSettingsStore,
                 ambassadors: AmbassadorProjections, clock: Clock = utcnow, source: str = SOURCE):
        self.campaigns = campaigns
        self.items = items
        self.tenant_settings = tenant_settings
        self.ambassadors = ambassadors
        self._clock = clock
        self.source = source

    def now(self) -> datetime:
        # At BSON's precision, so what we answer equals what a later read returns.
        return to_stored_time(self._clock())

    # --- campaigns ----------------------------------------------------------------------

    async def create_campaign(self, principal: Principal, body: CampaignIn, key: str | None) -> tuple[Campaign, bool]:
        """A new campaign, or the one this Idempotency-Key created first (then False)."""
        check_campaign_period(body.starts_on, body.ends_on)
        now = self.now()
        campaign = Campaign(id=idempotent_id(principal.tenant, "campaign", key), tenant=principal.tenant,
                            **body.model_dump(), created_by=principal.subject, created_at=now, updated_at=now)
        return await self.campaigns.add_idempotent(campaign, fingerprint(body.model_dump(mode="json")))

    async def list_campaigns(self, tenant: str, cursor: str | None, limit: int) -> Page[Campaign]:
        return await self.campaigns.newest_first(tenant, cursor, limit)

    async def get_campaign(self, tenant: str, campaign_id: str) -> Campaign:
        campaign = await self.campaigns.get(tenant, campaign_id)
        if campaign is None:
            raise not_found("campaign")
        return campaign

    async def update_campaign(self, principal: Principal, campaign: Campaign, patch: CampaignPatch) -> Campaign:
        """Change fields of the campaign as read; a change of a snapshot field re-announces its published items."""
        changed = Campaign.model_validate({**campaign.model_dump(), **patch.model_dump(exclude_unset=True),
                                           "updated_at": self.now(), "updated_by": principal.subject})
        check_campaign_period(changed.starts_on, changed.ends_on)
        if any(getattr(campaign, name) != getattr(changed, name) for name in SNAPSHOT_CAMPAIGN_FIELDS):
            # The scheduler re-announces the campaign's published items; the flag survives a crash.
            changed = changed.model_copy(update={"refresh_published": True})
        return await self.campaigns.save(changed)

    # --- content items ---------------------------------------------------------------------

    async def get_item(self, tenant: str, item_id: str) -> ContentItem:
        item = await self.items.get(tenant, item_id)
        if item is None:
            raise not_found("content item")
        return item

    async def list_items(self, tenant: str, filters: ItemFilter, cursor: str | None,
                         limit: int) -> Page[ContentItem]:
        return await self.items.newest_first(tenant, filters, cursor, limit)

    async def calendar(self, tenant: str, start: datetime, end: datetime, limit: int) -> list[ContentItem]:
        """Items scheduled in [start, end), earliest first; drafts too, so planners see gaps and plans."""
        return await self.items.scheduled_between(tenant, start, end, limit)

    async def create_item(self, principal: Principal, body: ContentIn,
                          key: str | None) -> tuple[ContentItem, bool]:
        """An editor's new item starts as a draft."""
        return await self._insert_item(principal, body, key, Action.CREATE, Status.DRAFT)

    async def propose(self, principal: Principal, body: ContentIn, key: str | None) -> tuple[ContentItem, bool]:
        """An opted-in ambassador's proposal goes straight to review, recorded under their ambassador id
        (the id ambassador events carry, so that an erasure finds it), never under their login."""
        ambassador = await self._opted_in_ambassador(principal, "propose content")
        return await self._insert_item(principal, body, key, Action.PROPOSE, Status.IN_REVIEW,
                                       by=ambassador.ambassador_id)

    async def _insert_item(self, principal: Principal, body: ContentIn, key: str | None, action: Action,
                           status: Status, by: str | None = None) -> tuple[ContentItem, bool]:
        by = by or principal.subject
        campaign = await self._campaign_of(principal.tenant, body.campaign_id)
        now = self.now()
        item = ContentItem(id=idempotent_id(principal.tenant, f"content:{action}", key), tenant=principal.tenant,
                           **body.model_dump(), status=status, created_by=by, created_at=now, updated_at=now,
                           authors=[by], proposed_by=by if action is Action.PROPOSE else None,
                           history=[HistoryEntry(action=action, status=status, by=by, at=now)])
        check_content(item, campaign)
        return await self.items.add_idempotent(item, fingerprint(body.model_dump(mode="json")))

    async def edit_item(self, principal: Principal, item: ContentItem, patch: ContentPatch) -> ContentItem:
        """Edits keep the status (approved goes back to review); a published item tells distribution."""
        status = status_after_edit(item.status)
        campaign = await self._campaign_of(item.tenant, item.campaign_id)
        edited = ContentItem.model_validate({**item.model_dump(), **patch.model_dump(exclude_unset=True)})
        check_content(edited, campaign)
        edited = edited.moved(Action.EDIT, status, principal.subject, self.now(), updated_by=principal.subject,
                              authors=with_author(item.authors, principal.subject), campaign_version=campaign.version)
        uow = self._unit_of_work(item.tenant)
        if status is Status.PUBLISHED:
            self._record(uow, updated_event(edited, campaign, item.version + 1))
        return await self.items.save(edited, uow, guard={"status": item.status.value})

    async def act(self, principal: Principal, item: ContentItem, action: Action, comment: str | None = None,
                  key: str | None = None) -> ContentItem:
        """A workflow step asked for by a person: submit, approve, reject or withdraw."""
        if key is not None and item.step_done_with_key(action, key):
            return item
        status = next_status(action, item.status)
        if action in (Action.SUBMIT, Action.APPROVE):
            check_ready_for_review(item)
        if action is Action.APPROVE:
            settings = await self.tenant_settings.of_tenant(item.tenant)
            # A proposer is among the authors under their ambassador id, not their login.
            for approver in (principal.subject, await ambassador_id_of(self.ambassadors, principal)):
                check_approver(approver, item.authors, settings.four_eyes)
        now = self.now()
        uow = self._unit_of_work(item.tenant)
        changes: dict[str, Any] = {}
        if action is Action.WITHDRAW:
            changes = {"retired_at": now, "retired_reason": RetireReason.WITHDRAWN}
            if item.status is Status.PUBLISHED:
                self._record(uow, retired_event(item, item.version + 1, RetireReason.WITHDRAWN, now))
        moved = item.moved(action, status, principal.subject, now, comment=comment, key=key, **changes)
        return await self.items.save(moved, uow, guard={"status": item.status.value})

    # --- the scheduler ------------------------------------------------------------------------

    async def run_schedule(self, batch_size: int) -> int:
        """One pass of the scheduler; returns the largest number of moves of one kind (a full batch
        means more are due)."""
        published = await self.publish_due(self.now(), batch_size)
        retired = await self.retire_due(self.now(), batch_size)
        refreshed = await self.refresh_campaign_snapshots(self.now(), batch_size)
        if published or retired or refreshed:
            log.info("scheduler published %d, retired %d and re-announced %d items", published, retired, refreshed)
        return max(published, retired, refreshed)

    async def publish_due(self, now: datetime, limit: int) -> int:
        """Publish approved items whose time has come; returns how many moved.

        An item whose expiry passed before it could be published (the worker was
        down through both) retires without an event: nobody was ever told of it.
        """
        campaigns: dict[tuple[str, str], Campaign] = {}

        async def publish(item: ContentItem) -> int:
            if item.expires_at is not None and item.expires_at <= now:
                return await self._scheduled(item, Action.EXPIRE, now, None, retired_at=now,
                                             retired_reason=RetireReason.EXPIRED)
            key = (item.tenant, item.campaign_id)
            if key not in campaigns:
                campaigns[key] = await self._campaign_of(*key)
            return await self._scheduled(item, Action.PUBLISH, now, published_event(item, campaigns[key],
                                                                                    item.version + 1),
                                         published_at=now, campaign_version=campaigns[key].version)

        return await _each(await self.items.due_for_publication(now, limit), publish)

    async def retire_due(self, now: datetime, limit: int) -> int:
        """Retire published items whose expiry has passed; returns how many moved."""
        async def retire(item: ContentItem) -> int:
            return await self._scheduled(item, Action.EXPIRE, now,
                                         retired_event(item, item.version + 1, RetireReason.EXPIRED, now),
                                         retired_at=now, retired_reason=RetireReason.EXPIRED)

        return await _each(await self.items.due_for_retirement(now, limit), retire)

    async def refresh_campaign_snapshots(self, now: datetime, limit: int) -> int:
        """Re-announce (content.updated.v1) published items of campaigns whose objective or disclosure changed."""
        async def refresh(campaign: Campaign) -> int:
            behind = await self.items.published_behind(campaign, limit)
            moved, complete = 0, len(behind) < limit
            for item in behind:
                uow = self._unit_of_work(item.tenant)
                self._record(uow, updated_event(item, campaign, item.version + 1))
                refreshed = item.moved(Action.CAMPAIGN_CHANGE, Status.PUBLISHED, campaign.updated_by or SCHEDULER,
                                       now, campaign_version=campaign.version)
                try:
                    await self.items.save(refreshed, uow, guard={"status": Status.PUBLISHED.value})
                    moved += 1
                except StaleWrite:
                    complete = False  # edited meanwhile: the next pass looks again
            if complete:
                await self.campaigns.mark_refreshed(campaign)
            return moved

        return await _each(await self.campaigns.awaiting_refresh(limit), refresh)

    async def _scheduled(self, item: ContentItem, action: Action, now: datetime,
                         event: ContentSnapshot | ContentRetired | None, **changes: Any) -> int:
        status = next_status(action, item.status)
        uow = self._unit_of_work(item.tenant)
        if event is not None:
            self._record(uow, event)
        try:
            await self.items.save(item.moved(action, status, SCHEDULER, now, **changes), uow,
                                  guard={"status": item.status.value})
        except StaleWrite:
            # Another scheduler, or an editor, got there first: its write is the one that counts.
            return 0
        return 1

    # --- ambassadors ----------------------------------------------------------------------------

    async def feed(self, principal: Principal, cursor: str | None, limit: int) -> Page[ContentItem]:
        """Published items targeted to the calling ambassador (through their profile)."""
        ambassador = await self._opted_in_ambassador(principal, "see published content")
        return await self.items.published_for(principal.tenant, ambassador.profile, cursor, limit)

    async def get_published(self, principal: Principal, item_id: str) -> ContentItem:
        ambassador = await self._opted_in_ambassador(principal, "see published content")
        item = await self.items.get(principal.tenant, item_id)
        if item is None or item.status is not Status.PUBLISHED or not is_targeted(item, ambassador.profile):
            raise not_found("content item")
        return item

    async def _opted_in_ambassador(self, principal: Principal, to_do: str) -> AmbassadorProjection:
        """The caller's entry in the projection, under the ambassador id that holds their login now
        (`advocacy_common.subjects`): never an erased predecessor's with the same login."""
        ambassador = await self.ambassadors.get(principal.tenant, await ambassador_id_of(self.ambassadors, principal))
        if ambassador is None or not ambassador.opted_in:
            # Principle 1: nothing is suggested to someone who has not opted in (or opted out).
            raise forbidden(f"Only ambassadors who opted in may {to_do}.")
        return ambassador

    async def person_data(self, tenant: str, person: str) -> dict[str, list[dict[str, Any]]]:
        """Everything content holds about an ambassador id (their part of a GDPR export). An erased
        person's tombstone is not about anyone any more: nothing is exported for it."""
        ambassador = await self.ambassadors.get(tenant, person)
        if ambassador is not None and ambassador.erased:
            return {"ambassador": [], "content_items": []}
        return {"ambassador": [ambassador.model_dump(mode="json")] if ambassador else [],
                "content_items": [item.model_dump(mode="json") for item in await self.items.touched_by(tenant, person)]}

    async def anonymise_person(self, tenant: str, person: str) -> int:
        """Replace an erased person's id in every item they wrote, proposed or acted on."""
        done = 0
        for item in await self.items.touched_by(tenant, person):
            for _attempt in range(ERASURE_ATTEMPTS):
                try:
                    await self.items.save(item.anonymised(person))
                except StaleWrite:  # changed meanwhile: anonymise what it is now
                    current = await self.items.get(tenant, item.id)
                    if current is None:
                        break
                    item = current
                    continue
                done += 1
                break
        return done

    # --- tenant settings --------------------------------------------------------------------------

    async def get_tenant_settings(self, tenant: str) -> TenantSettings:
        return await self.tenant_settings.of_tenant(tenant)

    async def save_tenant_settings(self, current: TenantSettings, four_eyes: bool) -> TenantSettings:
        return await self.tenant_settings.save(current.model_copy(update={"four_eyes": four_eyes}))

    # --- helpers ------------------------------------------------------------------------------------

    async def _campaign_of(self, tenant: str, campaign_id: str) -> Campaign:
        campaign = await self.campaigns.get(tenant, campaign_id)
        if campaign is None:
            raise RuleViolation("campaign_id", "no such campaign")
        return campaign

    def _unit_of_work(self, tenant: str) -> UnitOfWork:
        return UnitOfWork(tenant, self.source)

    @staticmethod
    def _record(uow: UnitOfWork, event: ContentSnapshot | ContentRetired) -> None:
        uow.record(event, event_id=event_id(uow.tenant_id, event))


async def _each(entities: list[Any], move: Callable[[Any], Awaitable[int]]) -> int:
    """Apply a scheduler move to each entity; one that fails is logged and skipped, so it
    cannot hold back the ones behind it (it is tried again on the next pass)."""
    moved = 0
    for entity in entities:
        try:
            moved += await move(entity)
        except Exception:
            log.exception("scheduler could not move %s", entity.id)
    return moved
