"""Ambassador events the connectors act on: an opt-out or an erasure deletes the person's tokens and
tracked posts (idempotent: a redelivery deletes nothing more)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from advocacy_common.consuming import Delivery
from advocacy_common.events import AmbassadorErased, AmbassadorOptedOut, Event

from .ports import ConnectorStores
from .service import forget


async def on_opted_out(stores: ConnectorStores, delivery: Delivery) -> None:
    event = delivery.event
    assert isinstance(event, AmbassadorOptedOut)
    await forget(stores, delivery.tenant_id, event.ambassador_id, before=event.opted_out_at)


async def on_erased(stores: ConnectorStores, delivery: Delivery) -> None:
    event = delivery.event
    assert isinstance(event, AmbassadorErased)
    await forget(stores, delivery.tenant_id, event.ambassador_id)


def connection_handlers(stores: Callable[[], Awaitable[ConnectorStores]]) -> dict[type[Event], Callable]:
    def bound(handler):
        async def handle(delivery: Delivery) -> None:
            await handler(await stores(), delivery)
        return handle

    return {AmbassadorOptedOut: bound(on_opted_out), AmbassadorErased: bound(on_erased)}
