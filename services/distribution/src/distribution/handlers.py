"""Event handlers: content, ambassador and charter events into projections; engagement into comment tallies.

A handler turns the event into domain values and calls a projection port; the adapter applies each event
to a document at most once (watermark in the same write), so a redelivered event changes nothing and a
replay from the start rebuilds the same projections. Version guards keep the newest content and charter
even when an older event is applied later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from advocacy_common.consuming import Delivery
from advocacy_common.events import (
    AmbassadorErased, AmbassadorOptedIn, AmbassadorOptedOut, AmbassadorProfileUpdated, CharterAccepted,
    CharterPublished, ContentPublished, ContentRetired, ContentUpdated, EngagementKind, EngagementReceived, Event,
    GdprExportRequested,
)
from advocacy_common.envelope import utcnow
from advocacy_common.gdpr_export import answer_export_request

from .models.projections import ERASED, AmbassadorStatus, CharterView, CommentTally, ContentView
from .ports import Repositories
from .service.gdpr import person_data

COMMENT_KINDS = (EngagementKind.COMMENT, EngagementKind.COMMENT_REPLY)


async def on_content_snapshot(repositories: Repositories, delivery: Delivery) -> None:
    event = delivery.event
    assert isinstance(event, ContentPublished | ContentUpdated)
    content = ContentView.model_validate({**event.model_dump(), "tenant": delivery.tenant_id, "retired": False})
    await repositories.contents.put_if_newer(content, delivery)


async def on_content_retired(repositories: Repositories, delivery: Delivery) -> None:
    event = delivery.event
    assert isinstance(event, ContentRetired)
    await repositories.contents.retire(delivery.tenant_id, event.content_id, event.version, event.reason, delivery)


async def on_opted_in(repositories: Repositories, delivery: Delivery) -> None:
    event = delivery.event
    assert isinstance(event, AmbassadorOptedIn)
    await repositories.ambassadors.opt_in(delivery.tenant_id, event.ambassador_id, event.profile,
                                          event.charter_version, delivery)
    # Whose token names this id: a login provisioned again after an erasure names a new id.
    await repositories.ambassadors.claim_subject(delivery.tenant_id, event.subject_key or event.ambassador_id,
                                                 event.ambassador_id, event.opted_in_at)


async def on_profile_updated(repositories: Repositories, delivery: Delivery) -> None:
    event = delivery.event
    assert isinstance(event, AmbassadorProfileUpdated)
    await repositories.ambassadors.update_profile(delivery.tenant_id, event.ambassador_id, event.profile, delivery)


async def on_opted_out(repositories: Repositories, delivery: Delivery) -> None:
    event = delivery.event
    assert isinstance(event, AmbassadorOptedOut)
    await repositories.ambassadors.opt_out(delivery.tenant_id, event.ambassador_id, delivery)


async def on_erased(repositories: Repositories, delivery: Delivery) -> None:
    event = delivery.event
    assert isinstance(event, AmbassadorErased)
    tenant, ambassador_id = delivery.tenant_id, event.ambassador_id
    await repositories.ambassadors.erase(tenant, ambassador_id, delivery)
    # Always run (idempotent by nature), so a crash after the first write still completes the erasure.
    await asyncio.gather(repositories.shares.anonymise(tenant, ambassador_id, ERASED),
                         repositories.links.anonymise(tenant, ambassador_id, ERASED),
                         repositories.comments.anonymise(tenant, ambassador_id, ERASED))
    # Last: a confirmation entering the person's shared contents meanwhile fails on the anonymised share
    # and takes its entry out; one that entered before is dropped here.
    await repositories.shared.forget(tenant, ambassador_id)


async def on_export_requested(repositories: Repositories, delivery: Delivery) -> None:
    """Distribution's part of a GDPR export (see advocacy_common.gdpr_export): no call, an event back."""
    await answer_export_request(repositories.exports, delivery, "distribution",
                                lambda tenant, person: person_data(repositories, tenant, person), utcnow())


async def on_charter_published(repositories: Repositories, delivery: Delivery) -> None:
    event = delivery.event
    assert isinstance(event, CharterPublished)
    charter = CharterView(current_version=event.version, disclosure_required=event.disclosure_required,
                          disclosure_line=event.disclosure_line)
    await repositories.charters.publish(delivery.tenant_id, charter, delivery)


async def on_charter_accepted(repositories: Repositories, delivery: Delivery) -> None:
    event = delivery.event
    assert isinstance(event, CharterAccepted)
    await repositories.ambassadors.accept_charter(delivery.tenant_id, event.ambassador_id, event.charter_version,
                                                  delivery)


def is_comment_on_share(event: Event) -> bool:
    """What `on_engagement` tallies. The comment consumer skips the rest (clicks: most of the engagement
    topic) before its ledger, which would otherwise look up and remember every click's event id."""
    return isinstance(event, EngagementReceived) and event.kind in COMMENT_KINDS and event.share_id is not None


async def on_engagement(repositories: Repositories, delivery: Delivery) -> None:
    """Comments and replies per share, so an ambassador sees which posts still await an answer."""
    event = delivery.event
    assert isinstance(event, EngagementReceived)
    if not is_comment_on_share(event):
        return
    ambassador = await repositories.ambassadors.get(delivery.tenant_id, event.ambassador_id)
    # A replay after an erasure must not bring the person's id back.
    ambassador_id = ERASED if ambassador and ambassador.status is AmbassadorStatus.ERASED else event.ambassador_id
    tally = CommentTally(tenant=delivery.tenant_id, share_id=event.share_id, ambassador_id=ambassador_id,
                         content_id=event.content_id, network=event.network.value)
    await repositories.comments.count(tally, event.kind, event.count, delivery)


Handler = Callable[[Delivery], Awaitable[None]]
RepositoryHandler = Callable[[Repositories, Delivery], Awaitable[None]]

PROJECTION_HANDLERS: dict[type[Event], RepositoryHandler] = {
    ContentPublished: on_content_snapshot,
    ContentUpdated: on_content_snapshot,
    ContentRetired: on_content_retired,
    AmbassadorOptedIn: on_opted_in,
    AmbassadorProfileUpdated: on_profile_updated,
    AmbassadorOptedOut: on_opted_out,
    AmbassadorErased: on_erased,
    CharterPublished: on_charter_published,
    CharterAccepted: on_charter_accepted,
    GdprExportRequested: on_export_requested,
}
ENGAGEMENT_HANDLERS: dict[type[Event], RepositoryHandler] = {EngagementReceived: on_engagement}


def bind(handlers: dict[type[Event], RepositoryHandler],
         repositories: Callable[[], Awaitable[Repositories]]) -> dict[type[Event], Handler]:
    """The handlers as the dispatcher calls them (a delivery in), on the repositories `repositories()` gives."""

    def bound(handler: RepositoryHandler) -> Handler:
        async def handle(delivery: Delivery) -> None:
            await handler(await repositories(), delivery)
        return handle

    return {event_type: bound(handler) for event_type, handler in handlers.items()}
