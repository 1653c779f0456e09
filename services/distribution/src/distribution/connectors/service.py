"""The connection flow (start, callback, list, disconnect), linking a post to a share, self-reported
figures, the tenant's network apps, and forgetting a person (opt-out, erasure)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from advocacy_common.auth import Principal
from advocacy_common.errors import Problem, invalid, not_found
from advocacy_common.subjects import ambassador_id_of

from ..models.sharing import Share, ShareStatus
from ..ports import Repositories
from ..service.engagement import Engagement
from . import linkedin, oauth, x
from .deltas import deltas
from .errors import NetworkError, NotFound, RateLimited, Unauthorized
from .linkedin import LinkedInApi
from .models import Authorization, Connection, ConnectionStatus, LinkedInApp, PostStatus, TrackedPost, XApp
from .options import ConnectorOptions
from .poller import SELF_REPORTED, SELF_REPORTED_KINDS, deliver_pending, tracked_post_id
from .ports import ConnectorStores
from .x import XApi

log = logging.getLogger(__name__)
CONNECTABLE = ("linkedin",)  # X metrics are public: read with the tenant's app credential, no personal grant


@dataclass(frozen=True)
class Started:
    authorization_url: str
    state: str
    expires_at: datetime


@dataclass(frozen=True)
class NetworkConnections:
    stores: ConnectorStores
    repositories: Repositories
    engagement: Engagement
    linkedin: LinkedInApi
    x: XApi
    options: ConnectorOptions

    # --- the person's grants ---------------------------------------------------------------

    async def start(self, principal: Principal, network: str, now: datetime) -> Started:
        """The authorization URL (PKCE S256 + state) the person opens to consent, read-only scopes only."""
        me = await ambassador_id_of(self.repositories.ambassadors, principal)
        app = await self._linkedin_app(principal.tenant, network)
        state, verifier = oauth.new_state(), oauth.new_code_verifier()
        expires_at = now + self.options.authorization_ttl
        await self.stores.authorizations.add(Authorization(
            id=state, tenant=principal.tenant, ambassador_id=me, network=network,
            code_verifier=verifier, redirect_uri=app.redirect_uri, created_at=now, expires_at=expires_at))
        url = oauth.authorization_url(self.options.linkedin.authorize, client_id=app.client_id,
                                      redirect_uri=app.redirect_uri, scopes=oauth.LINKEDIN_SCOPES, state=state,
                                      verifier=verifier)
        return Started(url, state, expires_at)

    async def complete(self, principal: Principal, network: str, code: str, state: str, now: datetime) -> Connection:
        """The callback: the state must be the caller's own and fresh; the code is exchanged, the grant stored."""
        me = await ambassador_id_of(self.repositories.ambassadors, principal)
        app = await self._linkedin_app(principal.tenant, network)
        pending = await self.stores.authorizations.take(principal.tenant, me, state)
        if pending is None or pending.network != network:
            raise invalid("state", "matches no authorization you started (each state is used once)")
        if pending.expires_at <= now:
            raise invalid("state", "has expired; start the connection again")
        try:
            grant = await self.linkedin.exchange_code(code=code, verifier=pending.code_verifier,
                                                      client_id=app.client_id, client_secret=app.client_secret,
                                                      redirect_uri=pending.redirect_uri, now=now)
            member = await self.linkedin.member_id(grant.access_token)
        except (Unauthorized, NotFound):
            raise invalid("code", "was refused by LinkedIn; start the connection again") from None
        except NetworkError as error:
            raise Problem(502, "Bad Gateway", "LinkedIn could not be reached; try again.") from error
        scopes = oauth.granted_scopes(grant.scope, oauth.LINKEDIN_SCOPES)
        if "r_member_postAnalytics" not in scopes:
            raise invalid("code", "the consent did not include post analytics (r_member_postAnalytics)")
        connection = Connection(id=_connection_id(principal.tenant, me, network),
                                tenant=principal.tenant, ambassador_id=me, network=network,
                                member_id=member, access_token=grant.access_token, scopes=scopes, connected_at=now,
                                expires_at=grant.expires_at)
        await self.stores.connections.put(connection)
        await self.stores.posts.resume(principal.tenant, me, network, now)
        return connection

    async def mine(self, principal: Principal) -> list[Connection]:
        me = await ambassador_id_of(self.repositories.ambassadors, principal)
        return await self.stores.connections.of_ambassador(principal.tenant, me)

    async def disconnect(self, principal: Principal, network: str) -> None:
        """The token is deleted; the person's posts on that network stop being polled."""
        me = await ambassador_id_of(self.repositories.ambassadors, principal)
        await self.stores.connections.delete(principal.tenant, me, network)
        await self.stores.posts.pause(principal.tenant, me, network)

    async def forget(self, tenant: str, ambassador_id: str, before: datetime | None = None) -> None:
        await forget(self.stores, tenant, ambassador_id, before)

    # --- which post ----------------------------------------------------------------------------

    async def check_post(self, share: Share, post_url: str) -> tuple[str, str] | None:
        """(source, post ref) of the post behind `post_url`, checked with the network; None when we do not
        read this network for this person (no connection, no app): then the URL is only kept on the share.
        A URL that is not a post, or not the connected member's, is refused (422) and changes nothing."""
        network = share.network.value
        if network == "linkedin":
            connection = await self.stores.connections.get(share.tenant, share.ambassador_id, network)
            if connection is None or connection.status is not ConnectionStatus.ACTIVE:
                return None
            try:
                urn = linkedin.post_urn(post_url)
            except linkedin.NotAPostUrl as error:
                raise invalid("post_url", str(error)) from None
            return "linkedin", await self._owned(connection, urn)
        if network == "x" and await self.stores.apps.x(share.tenant):
            try:
                return "x", x.post_id(post_url)
            except x.NotAPostUrl as error:
                raise invalid("post_url", str(error)) from None
        return None

    async def _owned(self, connection: Connection, urn: linkedin.PostUrn) -> str:
        try:
            return await self.linkedin.owned_post(connection.access_token, urn)
        except NotFound:
            raise invalid("post_url", "is not a post of your connected LinkedIn account") from None
        except Unauthorized:
            await self.stores.connections.mark(connection, ConnectionStatus.REVOKED)
            raise invalid("post_url", "cannot be checked: your LinkedIn connection lapsed; reconnect") from None
        except RateLimited:
            raise Problem(503, "Service Unavailable", "LinkedIn asks us to slow down; try again in a minute.",
                          headers={"Retry-After": "60"}) from None
        except NetworkError as error:
            raise Problem(502, "Bad Gateway", "LinkedIn could not be reached; try again.") from error

    async def track(self, share: Share, source: str, post_ref: str, now: datetime) -> TrackedPost:
        """Poll this post from now on (idempotent: an already tracked share keeps its state)."""
        post = TrackedPost(id=tracked_post_id(share.tenant, share.id, source), tenant=share.tenant,
                           share_id=share.id, ambassador_id=share.ambassador_id, network=share.network.value,
                           source=source, post_ref=post_ref, linked_at=now, last_change_at=now, next_poll_at=now)
        return await self.stores.posts.add(post)

    async def link_post(self, share: Share, post_url: str, now: datetime) -> TrackedPost:
        """`POST /v1/shares/{id}/post`: after the confirmation, link the post (checked with the network)."""
        if share.status is not ShareStatus.CONFIRMED:
            raise invalid("share_id", "is not confirmed yet: confirm it (with its post_url) first")
        checked = await self.check_post(share, post_url)
        if checked is None:
            raise invalid("post_url", f"cannot be read on {share.network.value}: connect your account first"
                          if share.network.value == "linkedin" else f"{share.network.value} is not read by a connector")
        return await self.track(share, *checked, now)

    async def posts_of(self, share: Share) -> list[TrackedPost]:
        return await self.stores.posts.of_share(share.tenant, share.id)

    # --- self-reported figures ----------------------------------------------------------------

    async def self_report(self, share: Share, totals: dict[str, int], now: datetime) -> TrackedPost:
        """The totals the network shows, typed in; they go through the same deltas (high-water mark) and
        ingestion as polled totals, marked self-reported."""
        if share.status is not ShareStatus.CONFIRMED:
            raise invalid("share_id", "is not confirmed yet")
        read = [p.source for p in await self.stores.posts.of_share(share.tenant, share.id) if p.source != SELF_REPORTED]
        if read:
            # The same figures would count twice: once read from the network, once typed in.
            raise invalid("share_id", f"is read from {read[0]} already; its figures need not be entered")
        post = TrackedPost(id=tracked_post_id(share.tenant, share.id, SELF_REPORTED), tenant=share.tenant,
                           share_id=share.id, ambassador_id=share.ambassador_id, network=share.network.value,
                           source=SELF_REPORTED, post_ref="", linked_at=now, last_change_at=now, next_poll_at=None,
                           status=PostStatus.FINISHED)
        post = await self.stores.posts.add(post)
        found, marks = deltas(share.id, post.high_water, totals, SELF_REPORTED_KINDS, now)
        changed = any(post.last_seen.get(metric) != total for metric, total in totals.items())
        post = await self.stores.posts.save(post.model_copy(update={
            "pending": [*post.pending, *found], "high_water": marks, "last_seen": {**post.last_seen, **totals},
            "last_change_at": now if changed else post.last_change_at}))
        return await deliver_pending(self.stores.posts, self.engagement, post, now)

    # --- the tenant's apps --------------------------------------------------------------------

    async def put_linkedin_app(self, app: LinkedInApp) -> None:
        await self.stores.apps.put_linkedin(app)

    async def put_x_app(self, app: XApp) -> None:
        await self.stores.apps.put_x(app)

    async def apps(self, tenant: str) -> tuple[LinkedInApp | None, XApp | None]:
        return await self.stores.apps.linkedin(tenant), await self.stores.apps.x(tenant)

    async def _linkedin_app(self, tenant: str, network: str) -> LinkedInApp:
        if network not in CONNECTABLE:
            raise not_found("network")
        app = await self.stores.apps.linkedin(tenant)
        if app is None:
            raise Problem(409, "Conflict", "Your organisation has not set up its LinkedIn app yet (an admin "
                          "does, under PUT /v1/settings/network-apps/linkedin).")
        return app


def _connection_id(tenant: str, ambassador_id: str, network: str) -> str:
    return "/".join((tenant, ambassador_id, network))


async def forget(stores: ConnectorStores, tenant: str, ambassador_id: str, before: datetime | None = None) -> None:
    """Opt-out or erasure: the person's tokens, pending authorizations and tracked posts are deleted.

    `before` (the opt-out's time) spares what the person connected after it, when they opted in again: a
    replay of an old opt-out must not delete today's grant. An erasure passes None: everything goes."""
    await stores.connections.delete(tenant, ambassador_id, before=before)
    await stores.authorizations.delete_of(tenant, ambassador_id)
    await stores.posts.delete_of(tenant, ambassador_id, before=before)
