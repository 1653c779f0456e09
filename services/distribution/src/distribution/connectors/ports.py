"""What the connector use cases need from storage: one Protocol per store, domain types in and out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from .models import Authorization, Connection, ConnectionStatus, LinkedInApp, TrackedPost, XApp


class Connections(Protocol):
    async def get(self, tenant: str, ambassador_id: str, network: str) -> Connection | None:
        """The grant with its token opened (SecretUnreadable when its key left the keyring)."""
        ...

    async def put(self, connection: Connection) -> None:
        """Store the grant, replacing an earlier one of the same person and network (a reconnection)."""
        ...

    async def mark(self, connection: Connection, status: ConnectionStatus) -> None:
        """Set the status if the grant is still the one read (a newer grant is left alone)."""
        ...

    async def of_ambassador(self, tenant: str, ambassador_id: str) -> list[Connection]: ...

    async def delete(self, tenant: str, ambassador_id: str, network: str | None = None,
                     before: datetime | None = None) -> int:
        """Delete the person's grants (on one network, or all; only those made before `before` if given)."""
        ...


class Authorizations(Protocol):
    async def add(self, authorization: Authorization) -> None: ...

    async def take(self, tenant: str, ambassador_id: str, state: str) -> Authorization | None:
        """Remove and return the person's pending authorization of this state (a state is used once)."""
        ...

    async def delete_of(self, tenant: str, ambassador_id: str) -> None: ...


class TrackedPosts(Protocol):
    async def get(self, tenant: str, post_id: str) -> TrackedPost | None: ...

    async def add(self, post: TrackedPost) -> TrackedPost:
        """Insert; the stored one when this share is tracked already."""
        ...

    async def save(self, post: TrackedPost) -> TrackedPost:
        """Compare-and-set on the version read: the saved post (version + 1), or StaleWrite."""
        ...

    async def due(self, now: datetime, limit: int, tenant: str | None = None) -> list[TrackedPost]:
        """Active posts whose next poll time has come, earliest first (of every tenant, or of one)."""
        ...

    async def pause(self, tenant: str, ambassador_id: str, network: str) -> None:
        """Stop polling the person's posts on that network (their grant lapsed)."""
        ...

    async def resume(self, tenant: str, ambassador_id: str, network: str, now: datetime) -> None:
        """Paused posts of the person on that network become due now (they reconnected)."""
        ...

    async def of_share(self, tenant: str, share_id: str) -> list[TrackedPost]: ...

    async def delete_of(self, tenant: str, ambassador_id: str, before: datetime | None = None) -> None: ...


class NetworkApps(Protocol):
    async def linkedin(self, tenant: str) -> LinkedInApp | None: ...

    async def x(self, tenant: str) -> XApp | None: ...

    async def put_linkedin(self, app: LinkedInApp) -> None: ...

    async def put_x(self, app: XApp) -> None: ...


class Budgets(Protocol):
    async def spend(self, tenant: str, network: str, day: str, limit: int) -> bool:
        """Count one request on the tenant's budget of that day; False (nothing counted) when it is used up."""
        ...


@dataclass(frozen=True)
class ConnectorStores:
    connections: Connections
    authorizations: Authorizations
    posts: TrackedPosts
    apps: NetworkApps
    budgets: Budgets
