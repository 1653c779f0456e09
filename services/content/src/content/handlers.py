"""Ambassador events in, the projection of who may propose and what they are targeted by out.

Only non-identifying profile attributes are kept (persona, team, location,
languages, topics). The projection applies each event once and keeps an erased
ambassador as a tombstone (see `ports.AmbassadorProjections`).
"""

from __future__ import annotations

from advocacy_common.consuming import Delivery, Handler
from advocacy_common.events import (
    AmbassadorErased, AmbassadorOptedIn, AmbassadorOptedOut, AmbassadorProfileUpdated, Event, GdprExportRequested,
)
from advocacy_common.gdpr_export import ExportParts, answer_export_request

from .models import TargetingProfile
from .ports import AmbassadorProjections
from .service import ContentService


def build_handlers(projections: AmbassadorProjections, service: ContentService,
                   export_parts: ExportParts) -> dict[type[Event], Handler]:
    async def on_opted_in(delivery: Delivery) -> None:
        event: AmbassadorOptedIn = delivery.event
        await projections.opted_in(delivery.tenant_id, event.ambassador_id, TargetingProfile.of(event.profile),
                                   delivery)
        # Whose token names this id: a login provisioned again after an erasure names a new id.
        await projections.claim_subject(delivery.tenant_id, event.subject_key or event.ambassador_id,
                                        event.ambassador_id, event.opted_in_at)

    async def on_profile_updated(delivery: Delivery) -> None:
        event: AmbassadorProfileUpdated = delivery.event
        await projections.profile_updated(delivery.tenant_id, event.ambassador_id,
                                          TargetingProfile.of(event.profile), delivery)

    async def on_opted_out(delivery: Delivery) -> None:
        await projections.opted_out(delivery.tenant_id, delivery.event.ambassador_id, delivery)

    async def on_erased(delivery: Delivery) -> None:
        await projections.erased(delivery.tenant_id, delivery.event.ambassador_id, delivery)
        # Not only when the projection applied it: after a crash between the two writes the
        # redelivered event must still anonymise, and anonymising twice changes nothing.
        await service.anonymise_person(delivery.tenant_id, delivery.event.ambassador_id)

    async def on_export_requested(delivery: Delivery) -> None:
        # Content's part of a GDPR export (see advocacy_common.gdpr_export): no call, an event back.
        await answer_export_request(export_parts, delivery, "content", service.person_data, service.now())

    return {
        GdprExportRequested: on_export_requested,
        AmbassadorOptedIn: on_opted_in,
        AmbassadorProfileUpdated: on_profile_updated,
        AmbassadorOptedOut: on_opted_out,
        AmbassadorErased: on_erased,
    }
