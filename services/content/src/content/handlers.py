"""Ambassador events in, the projection of who may propose and what they are targeted by out.

Only non-identifying profile attributes are kept (persona, team, location,
languages, topics). Each effect is applied once per event (partition watermark
in the same update); an erased ambassador stays as a tombstone so that a
replayed opt-in can never bring them back.
"""

from __future__ import annotations

from typing import Any

from advocacy_common.consuming import Delivery, Handler, apply_once
from advocacy_common.events import (
    AmbassadorErased, AmbassadorOptedIn, AmbassadorOptedOut, AmbassadorProfile, AmbassadorProfileUpdated, Event,
)

from .service import ContentService


def targeting_profile(profile: AmbassadorProfile) -> dict[str, Any]:
    return {"persona": profile.persona.value, "team_id": profile.team_id, "location": profile.location,
            "languages": list(profile.languages), "topics": list(profile.topics)}


def build_handlers(service: ContentService) -> dict[type[Event], Handler]:
    store = service.store

    async def project(delivery: Delivery, update: dict[str, Any]) -> bool:
        event = delivery.event
        key = {"_id": store.ambassador_key(delivery.tenant_id, event.ambassador_id), "erased": {"$ne": True}}
        update = {**update, "$setOnInsert": {"tenant": delivery.tenant_id, "ambassador_id": event.ambassador_id,
                                             **update.get("$setOnInsert", {})}}
        return await apply_once(store.ambassadors, key, update, delivery)

    async def on_opted_in(delivery: Delivery) -> None:
        event: AmbassadorOptedIn = delivery.event
        await project(delivery, {"$set": {"opted_in": True, "profile": targeting_profile(event.profile)}})

    async def on_profile_updated(delivery: Delivery) -> None:
        event: AmbassadorProfileUpdated = delivery.event
        await project(delivery, {"$set": {"profile": targeting_profile(event.profile)},
                                 "$setOnInsert": {"opted_in": False}})

    async def on_opted_out(delivery: Delivery) -> None:
        await project(delivery, {"$set": {"opted_in": False}, "$unset": {"profile": ""}})

    async def on_erased(delivery: Delivery) -> None:
        await project(delivery, {"$set": {"opted_in": False, "erased": True}, "$unset": {"profile": ""}})
        # Outside the watermark on purpose: after a crash between the two writes the
        # redelivered event must still anonymise, and anonymising twice changes nothing.
        await service.anonymise_person(delivery.tenant_id, delivery.event.ambassador_id)

    return {
        AmbassadorOptedIn: on_opted_in,
        AmbassadorProfileUpdated: on_profile_updated,
        AmbassadorOptedOut: on_opted_out,
        AmbassadorErased: on_erased,
    }
