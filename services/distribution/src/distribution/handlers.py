"""Event handlers: content, ambassador and charter events into projections; engagement into comment tallies.

Every effect goes through `apply_once` (per-partition watermark in the same write), so a redelivered
event changes nothing and replaying the topics from the start rebuilds the same projections.
Version guards keep the newest content and charter even when an older event is applied later.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from advocacy_common.consuming import Delivery, apply_once
from advocacy_common.events import (
    AmbassadorErased, AmbassadorOptedIn, AmbassadorOptedOut, AmbassadorProfileUpdated, CharterAccepted,
    CharterPublished, ContentPublished, ContentRetired, ContentUpdated, EngagementKind, EngagementReceived, Event,
)

from .models import ERASED, AmbassadorStatus
from .store import DistributionStore, scoped_id

NOT_ERASED = {"status": {"$ne": AmbassadorStatus.ERASED.value}}


async def on_content_snapshot(store: DistributionStore, delivery: Delivery) -> None:
    event = delivery.event
    assert isinstance(event, ContentPublished | ContentUpdated)
    fields = event.model_dump(mode="json")
    fields.update(tenant=delivery.tenant_id, retired=False, publish_at=event.publish_at, expires_at=event.expires_at)
    await apply_once(store.contents, {"_id": scoped_id(delivery.tenant_id, event.content_id),
                                      "version": {"$lt": event.version}}, {"$set": fields}, delivery)


async def on_content_retired(store: DistributionStore, delivery: Delivery) -> None:
    event = delivery.event
    assert isinstance(event, ContentRetired)
    update = {"$set": {"retired": True, "version": event.version, "retired_reason": event.reason,
                       "tenant": delivery.tenant_id, "content_id": event.content_id}}
    await apply_once(store.contents, {"_id": scoped_id(delivery.tenant_id, event.content_id),
                                      "version": {"$lte": event.version}}, update, delivery)


async def _update_ambassador(store: DistributionStore, delivery: Delivery, ambassador_id: str,
                             update: dict[str, Any]) -> None:
    """Once erased, nothing but a new opt-in brings a person back into this projection."""
    update = {**update, "$set": {**update.get("$set", {}), "tenant": delivery.tenant_id,
                                 "ambassador_id": ambassador_id}}
    await apply_once(store.ambassadors, {"_id": scoped_id(delivery.tenant_id, ambassador_id), **NOT_ERASED},
                     update, delivery)


async def on_opted_in(store: DistributionStore, delivery: Delivery) -> None:
    event = delivery.event
    assert isinstance(event, AmbassadorOptedIn)
    update = {"$set": {"status": AmbassadorStatus.OPTED_IN.value, "profile": event.profile.model_dump(mode="json"),
                       "tenant": delivery.tenant_id, "ambassador_id": event.ambassador_id},
              # charter.accepted travels on the tenant's partition and may arrive before or after this.
              "$max": {"accepted_charter_version": event.charter_version}}
    await apply_once(store.ambassadors, {"_id": scoped_id(delivery.tenant_id, event.ambassador_id)}, update, delivery)


async def on_profile_updated(store: DistributionStore, delivery: Delivery) -> None:
    event = delivery.event
    assert isinstance(event, AmbassadorProfileUpdated)
    await _update_ambassador(store, delivery, event.ambassador_id,
                             {"$set": {"profile": event.profile.model_dump(mode="json")}})


async def on_opted_out(store: DistributionStore, delivery: Delivery) -> None:
    event = delivery.event
    assert isinstance(event, AmbassadorOptedOut)
    await _update_ambassador(store, delivery, event.ambassador_id,
                             {"$set": {"status": AmbassadorStatus.OPTED_OUT.value}})


async def on_erased(store: DistributionStore, delivery: Delivery) -> None:
    event = delivery.event
    assert isinstance(event, AmbassadorErased)
    await apply_once(store.ambassadors, {"_id": scoped_id(delivery.tenant_id, event.ambassador_id)},
                     {"$set": {"status": AmbassadorStatus.ERASED.value, "tenant": delivery.tenant_id,
                               "ambassador_id": event.ambassador_id}, "$unset": {"profile": ""}}, delivery)
    # Always run (idempotent by nature), so a crash after the first write still completes the erasure.
    await store.anonymise_ambassador(delivery.tenant_id, event.ambassador_id, ERASED)


async def on_charter_published(store: DistributionStore, delivery: Delivery) -> None:
    event = delivery.event
    assert isinstance(event, CharterPublished)
    update = {"$set": {"tenant": delivery.tenant_id, "current_version": event.version,
                       "disclosure_required": event.disclosure_required, "disclosure_line": event.disclosure_line}}
    await apply_once(store.charters, {"_id": delivery.tenant_id, "current_version": {"$lt": event.version}},
                     update, delivery)


async def on_charter_accepted(store: DistributionStore, delivery: Delivery) -> None:
    event = delivery.event
    assert isinstance(event, CharterAccepted)
    await _update_ambassador(store, delivery, event.ambassador_id,
                             {"$max": {"accepted_charter_version": event.charter_version}})


COMMENT_COUNTERS = {EngagementKind.COMMENT: "comments", EngagementKind.COMMENT_REPLY: "replies"}


async def on_engagement(store: DistributionStore, delivery: Delivery) -> None:
    """Comments and replies per share, so an ambassador sees which posts still await an answer."""
    event = delivery.event
    assert isinstance(event, EngagementReceived)
    counter = COMMENT_COUNTERS.get(event.kind)
    if counter is None or event.share_id is None:
        return
    ambassador = await store.get_ambassador(delivery.tenant_id, event.ambassador_id)
    # A replay after an erasure must not bring the person's id back.
    ambassador_id = ERASED if ambassador and ambassador.status is AmbassadorStatus.ERASED else event.ambassador_id
    update = {"$inc": {counter: event.count},
              "$set": {"tenant": delivery.tenant_id, "share_id": event.share_id, "ambassador_id": ambassador_id,
                       "content_id": event.content_id, "network": event.network.value}}
    await apply_once(store.comments, {"_id": scoped_id(delivery.tenant_id, event.share_id)}, update, delivery)


Handler = Callable[[Delivery], Awaitable[None]]

PROJECTION_HANDLERS: dict[type[Event], Callable[[DistributionStore, Delivery], Awaitable[None]]] = {
    ContentPublished: on_content_snapshot,
    ContentUpdated: on_content_snapshot,
    ContentRetired: on_content_retired,
    AmbassadorOptedIn: on_opted_in,
    AmbassadorProfileUpdated: on_profile_updated,
    AmbassadorOptedOut: on_opted_out,
    AmbassadorErased: on_erased,
    CharterPublished: on_charter_published,
    CharterAccepted: on_charter_accepted,
}
ENGAGEMENT_HANDLERS = {EngagementReceived: on_engagement}


def bind(handlers: dict[type[Event], Callable[[DistributionStore, Delivery], Awaitable[None]]],
         store: DistributionStore) -> dict[type[Event], Handler]:
    return {event_type: partial(handler, store) for event_type, handler in handlers.items()}
