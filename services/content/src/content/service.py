"""Use cases of the content service: what an endpoint or the scheduler asks for, on top of the store.

Every change to an item is one guarded single-document write that carries the
events it causes (outbox), so a publication is never lost nor told twice.
Domain errors (RuleViolation, InvalidTransition, FourEyesViolation, KeyReused,
ConcurrentChange) are turned into problem documents by the API.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Any

from advocacy_common.api_support import fingerprint, idempotent_id
from advocacy_common.auth import Principal
from advocacy_common.envelope import utcnow
from advocacy_common.errors import forbidden, not_found
from advocacy_common.events import Event
from advocacy_common.outbox import with_outbox
from advocacy_common.publishing import envelope_for

from .models import (
    ERASED, SNAPSHOT_CAMPAIGN_FIELDS, Action, RetireReason, RuleViolation, Status, check_approver,
    check_campaign_period, check_content, check_ready_for_review, event_id, next_status, profile_values,
    published_event, retired_event, status_after_edit, targeting_keys, to_stored_time, updated_event,
)
from .schemas import CampaignIn, CampaignPatch, ContentIn, ContentPatch
from .store import After, ContentStore, KeyReused

SOURCE = "/advocacy/content"
SCHEDULER = "scheduler"
log = logging.getLogger(__name__)
Clock = Callable[[], datetime]


class ConcurrentChange(Exception):
    """The document changed between our read and our write."""


class ContentService:
    def __init__(self, store: ContentStore, clock: Clock = utcnow, source: str = SOURCE):
        self.store = store
        self._clock = clock
        self.source = source

    def now(self) -> datetime:
        # At BSON's precision, so what we answer equals what a later read returns.
        return to_stored_time(self._clock())

    # --- campaigns ----------------------------------------------------------------------

    async def create_campaign(self, principal: Principal, body: CampaignIn, key: str | None) -> tuple[dict, bool]:
        check_campaign_period(body.starts_on, body.ends_on)
        now = self.now()
        document = {
            "_id": idempotent_id(principal.tenant, "campaign", key),
            "tenant": principal.tenant,
            **body.model_dump(mode="json"),
            "version": 1,
            "created_by": principal.subject,
            "created_at": now,
            "updated_at": now,
            "request_fingerprint": fingerprint(body.model_dump(mode="json")),
        }
        return await self.store.insert_idempotent(self.store.campaigns, document)

    async def get_campaign(self, tenant: str, campaign_id: str) -> dict:
        campaign = await self.store.get_campaign(tenant, campaign_id)
        if campaign is None:
            raise not_found("campaign")
        return campaign

    async def update_campaign(self, principal: Principal, campaign: dict, patch: CampaignPatch) -> dict:
        changes = patch.model_dump(mode="json", exclude_unset=True)
        merged = {**campaign, **changes}
        check_campaign_period(date.fromisoformat(merged["starts_on"]), date.fromisoformat(merged["ends_on"]))
        fields = {**changes, "updated_at": self.now(), "updated_by": principal.subject}
        if any(campaign.get(name) != merged.get(name) for name in SNAPSHOT_CAMPAIGN_FIELDS):
            # The scheduler re-announces the campaign's published items; the flag survives a crash.
            fields["refresh_published"] = True
        update = {"$set": fields, "$inc": {"version": 1}}
        return _changed_or_raise(await self.store.update_guarded(self.store.campaigns, campaign, update))

    # --- content items ---------------------------------------------------------------------

    async def get_item(self, tenant: str, item_id: str) -> dict:
        item = await self.store.get_item(tenant, item_id)
        if item is None:
            raise not_found("content item")
        return item

    async def create_item(self, principal: Principal, body: ContentIn, key: str | None) -> tuple[dict, bool]:
        """An editor's new item starts as a draft."""
        return await self._insert_item(principal, body, key, Action.CREATE, Status.DRAFT)

    async def propose(self, principal: Principal, body: ContentIn, key: str | None) -> tuple[dict, bool]:
        """An opted-in ambassador's proposal goes straight to review, recorded under their ambassador id
        (the id ambassador events carry, so that an erasure finds it), never under their login."""
        ambassador = await self._opted_in_ambassador(principal, "propose content")
        return await self._insert_item(principal, body, key, Action.PROPOSE, Status.IN_REVIEW,
                                       by=ambassador["ambassador_id"])

    async def _insert_item(self, principal: Principal, body: ContentIn, key: str | None, action: Action,
                           status: Status, by: str | None = None) -> tuple[dict, bool]:
        by = by or principal.subject
        fields = _stored_fields(body, set(ContentIn.model_fields))
        campaign = await self._campaign_of(principal.tenant, fields["campaign_id"])
        check_content(fields, campaign)
        now = self.now()
        document = {
            "_id": idempotent_id(principal.tenant, f"content:{action}", key),
            "tenant": principal.tenant,
            **fields,
            "targets": targeting_keys(fields["audience"]),
            "status": status.value,
            "version": 1,
            "created_by": by,
            "created_at": now,
            "updated_at": now,
            "authors": [by],
            "proposed_by": by if action is Action.PROPOSE else None,
            "history": [_history(action, status, by, now)],
            "request_fingerprint": fingerprint(body.model_dump(mode="json")),
        }
        return await self.store.insert_idempotent(self.store.items, document)

    async def edit_item(self, principal: Principal, item: dict, patch: ContentPatch) -> dict:
        """Edits keep the status (approved goes back to review); a published item tells distribution."""
        status = status_after_edit(Status(item["status"]))
        changes = _stored_fields(patch, patch.model_fields_set)
        merged = {**item, **changes}
        campaign = await self._campaign_of(item["tenant"], item["campaign_id"])
        check_content(merged, campaign)
        version = item["version"] + 1
        now = self.now()
        fields = {**changes, "targets": targeting_keys(merged["audience"]), "updated_at": now,
                  "updated_by": principal.subject, "authors": _with(item["authors"], principal.subject),
                  "campaign_version": campaign["version"]}
        events = [updated_event(merged, campaign, version)] if status is Status.PUBLISHED else []
        return await self._write(item, version, status, fields, _history(Action.EDIT, status, principal.subject, now),
                                 events)

    async def act(self, principal: Principal, item: dict, action: Action, comment: str | None = None,
                  key: str | None = None) -> dict:
        """A workflow step asked for by a person: submit, approve, reject or withdraw."""
        if key is not None and _already_done(item, action, key):
            return item
        current = Status(item["status"])
        status = next_status(action, current)
        if action in (Action.SUBMIT, Action.APPROVE):
            check_ready_for_review(item)
        if action is Action.APPROVE:
            settings = await self.store.get_tenant_settings(item["tenant"])
            # A proposer is among the authors under their ambassador id, not their login.
            for approver in (principal.subject, principal.ambassador_id):
                check_approver(approver, item["authors"], settings["four_eyes"])
        now = self.now()
        version = item["version"] + 1
        fields: dict[str, Any] = {"updated_at": now}
        events: list[Event] = []
        if action is Action.WITHDRAW:
            fields.update(retired_at=now, retired_reason=RetireReason.WITHDRAWN.value)
            if current is Status.PUBLISHED:
                events.append(retired_event(item, version, RetireReason.WITHDRAWN, now))
        entry = _history(action, status, principal.subject, now, comment=comment, key=key)
        return await self._write(item, version, status, fields, entry, events)

    # --- the scheduler ------------------------------------------------------------------------

    async def publish_due(self, now: datetime, limit: int) -> int:
        """Publish approved items whose time has come; returns how many moved.

        An item whose expiry passed before it could be published (the worker was
        down through both) retires without an event: nobody was ever told of it.
        """
        campaigns: dict[tuple[str, str], dict] = {}

        async def publish(item: dict) -> int:
            version = item["version"] + 1
            if item.get("expires_at") is not None and item["expires_at"] <= now:
                fields = {"updated_at": now, "retired_at": now, "retired_reason": RetireReason.EXPIRED.value}
                return await self._scheduled(item, version, Action.EXPIRE, Status.RETIRED, fields, [], now)
            key = (item["tenant"], item["campaign_id"])
            if key not in campaigns:
                campaigns[key] = await self._campaign_of(*key)
            event = published_event(item, campaigns[key], version)
            fields = {"updated_at": now, "published_at": now, "campaign_version": campaigns[key]["version"]}
            return await self._scheduled(item, version, Action.PUBLISH, Status.PUBLISHED, fields, [event], now)

        return await _each(await self.store.list_due_for_publication(now, limit), publish)

    async def retire_due(self, now: datetime, limit: int) -> int:
        """Retire published items whose expiry has passed; returns how many moved."""
        async def retire(item: dict) -> int:
            version = item["version"] + 1
            event = retired_event(item, version, RetireReason.EXPIRED, now)
            fields = {"updated_at": now, "retired_at": now, "retired_reason": RetireReason.EXPIRED.value}
            return await self._scheduled(item, version, Action.EXPIRE, Status.RETIRED, fields, [event], now)

        return await _each(await self.store.list_due_for_retirement(now, limit), retire)

    async def refresh_campaign_snapshots(self, now: datetime, limit: int) -> int:
        """Re-announce (content.updated.v1) published items of campaigns whose objective or disclosure changed."""
        async def refresh(campaign: dict) -> int:
            behind = await self.store.list_published_behind(campaign, limit)
            moved, complete = 0, len(behind) < limit
            for item in behind:
                version = item["version"] + 1
                fields = {"updated_at": now, "campaign_version": campaign["version"]}
                entry = _history(Action.CAMPAIGN_CHANGE, Status.PUBLISHED, campaign.get("updated_by") or SCHEDULER, now)
                try:
                    await self._write(item, version, Status.PUBLISHED, fields, entry,
                                      [updated_event(item, campaign, version)])
                    moved += 1
                except ConcurrentChange:
                    complete = False  # edited meanwhile: the next pass looks again
            if complete:
                # Guarded by the campaign's version: a newer change keeps its flag.
                await self.store.update_guarded(self.store.campaigns, campaign,
                                                {"$set": {"refresh_published": False}})
            return moved

        return await _each(await self.store.list_campaigns_to_refresh(limit), refresh)

    async def _scheduled(self, item: dict, version: int, action: Action, status: Status, fields: dict,
                         events: list[Event], now: datetime) -> int:
        next_status(action, Status(item["status"]))
        try:
            await self._write(item, version, status, fields, _history(action, status, SCHEDULER, now), events)
        except ConcurrentChange:
            # Another scheduler, or an editor, got there first: its write is the one that counts.
            return 0
        return 1

    # --- ambassadors ----------------------------------------------------------------------------

    async def feed(self, principal: Principal, after: After, limit: int) -> tuple[list[dict], bool]:
        """Published items targeted to the calling ambassador (through their profile)."""
        values = await self._targeting_values(principal)
        return await self.store.list_published_for(principal.tenant, values, after, limit)

    async def get_published(self, principal: Principal, item_id: str) -> dict:
        values = await self._targeting_values(principal)
        item = await self.store.get_published_for(principal.tenant, item_id, values)
        if item is None:
            raise not_found("content item")
        return item

    async def _targeting_values(self, principal: Principal) -> dict[str, list[str]]:
        ambassador = await self._opted_in_ambassador(principal, "see published content")
        return profile_values(ambassador.get("profile") or {})

    async def _opted_in_ambassador(self, principal: Principal, to_do: str) -> dict:
        """The caller's entry in the projection, under their ambassador id: `ambassador_id_for(tenant, sub)`,
        the id the ambassador service puts in its events."""
        ambassador = await self.store.get_ambassador(principal.tenant, principal.ambassador_id)
        if not ambassador or not ambassador.get("opted_in"):
            # Principle 1: nothing is suggested to someone who has not opted in (or opted out).
            raise forbidden(f"Only ambassadors who opted in may {to_do}.")
        return ambassador

    async def anonymise_person(self, tenant: str, person: str) -> int:
        """Replace an erased person's id in every item they wrote, proposed or acted on."""
        done = 0
        for item in await self.store.list_by_person(tenant, person):
            for _attempt in range(5):
                fields = _anonymised(item, person)
                update = {"$set": {**fields, "version": item["version"] + 1}}
                if await self.store.update_guarded(self.store.items, item, update) is not None:
                    done += 1
                    break
                item = await self.store.get_item(tenant, item["_id"])
                if item is None:
                    break
        return done

    # --- tenant settings --------------------------------------------------------------------------

    async def save_tenant_settings(self, current: dict, changes: dict) -> dict:
        return _changed_or_raise(await self.store.save_tenant_settings(current, changes))

    # --- helpers ------------------------------------------------------------------------------------

    async def _campaign_of(self, tenant: str, campaign_id: str) -> dict:
        campaign = await self.store.get_campaign(tenant, campaign_id)
        if campaign is None:
            raise RuleViolation("campaign_id", "no such campaign")
        return campaign

    async def _write(self, item: dict, version: int, status: Status, fields: dict, entry: dict,
                     events: list[Event]) -> dict:
        update = {"$set": {**fields, "status": status.value, "version": version}, "$push": {"history": entry}}
        envelopes = [(event.topic, envelope_for(event, tenant_id=item["tenant"], source=self.source,
                                                event_id=event_id(item["tenant"], event)))
                     for event in events]
        written = _changed_or_raise(await self.store.update_guarded(self.store.items, item,
                                                                     with_outbox(update, envelopes)))
        if envelopes:
            await self.store.notify_relay(item["_id"])
        return written


async def _each(documents: list[dict], move: Callable[[dict], Awaitable[int]]) -> int:
    """Apply a scheduler move to each document; one that fails is logged and skipped, so it
    cannot hold back the ones behind it (it is tried again on the next pass)."""
    moved = 0
    for document in documents:
        try:
            moved += await move(document)
        except Exception:
            log.exception("scheduler could not move %s", document["_id"])
    return moved


def _changed_or_raise(document: dict | None) -> dict:
    if document is None:
        raise ConcurrentChange
    return document


def _stored_fields(body: ContentIn | ContentPatch, names: set[str]) -> dict[str, Any]:
    """The stored form of the given fields: JSON values, except times that stay datetimes."""
    stored = body.model_dump(mode="json", include=names)
    for name in ("publish_at", "expires_at"):
        if name in names:
            stored[name] = getattr(body, name)
    return stored


def _history(action: Action, status: Status, by: str, at: datetime, comment: str | None = None,
             key: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"action": action.value, "status": status.value, "by": by, "at": at}
    if comment:
        entry["comment"] = comment
    if key:
        entry["idempotency_key"] = key
    return entry


def _already_done(item: dict, action: Action, key: str) -> bool:
    """True when this Idempotency-Key already did this action; KeyReused when it did another."""
    for entry in item.get("history", []):
        if entry.get("idempotency_key") == key:
            if entry["action"] != action.value:
                raise KeyReused
            return True
    return False


def _with(people: list[str], person: str) -> list[str]:
    return people if person in people else [*people, person]


def _anonymised(item: dict, person: str) -> dict[str, Any]:
    def swap(value: str | None) -> str | None:
        return ERASED if value == person else value

    return {
        "created_by": swap(item["created_by"]),
        "proposed_by": swap(item.get("proposed_by")),
        "updated_by": swap(item.get("updated_by")),
        "authors": list(dict.fromkeys(swap(author) for author in item["authors"])),
        "history": [{**entry, "by": swap(entry["by"])} for entry in item["history"]],
    }
