"""HTTP API of the network connectors: the person's connections, linking a post, self-reported figures,
and the tenant's network apps. Thin: parse, call `NetworkConnections`, render."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Request, Response

from advocacy_common.auth import Principal, Role, require_roles
from advocacy_common.bounded import PathId
from advocacy_common.envelope import utcnow
from advocacy_common.errors import problem_responses

from .models import Connection, LinkedInApp, TrackedPost, XApp
from .schemas import (
    ConnectionCallback, ConnectionList, ConnectionOut, ConnectionStarted, LinkedInAppIn, LinkPost, NetworkAppsOut,
    SelfReported, TrackedPostOut, XAppIn,
)

router = APIRouter(prefix="/v1")
AMBASSADOR = require_roles(Role.AMBASSADOR)
REPORTERS = require_roles(Role.AMBASSADOR, Role.ADMIN)
ADMIN = require_roles(Role.ADMIN)
Connectable = Literal["linkedin"]


def _distribution(request: Request):
    return request.app.state.distribution


def connection_body(request: Request, connection: Connection) -> ConnectionOut:
    distribution = _distribution(request)
    now = utcnow()
    warning = distribution.connections.options.expiry_warning
    return ConnectionOut(network=connection.network, status=connection.status.value, scopes=connection.scopes,
                         connected_at=connection.connected_at, expires_at=connection.expires_at,
                         expires_soon=connection.status.value != "active" or connection.expires_at - now <= warning,
                         reconnect_url=f"{distribution.options.public_base_url}/v1/me/connections/"
                                       f"{connection.network}/start")


def post_body(post: TrackedPost) -> TrackedPostOut:
    return TrackedPostOut(share_id=post.share_id, source=post.source, post_ref=post.post_ref, status=post.status.value,
                          next_poll_at=post.next_poll_at, last_change_at=post.last_change_at, polls=post.polls,
                          totals=post.last_seen, counted=post.high_water)


@router.post("/me/connections/{network}/start", status_code=201, response_model=ConnectionStarted,
             responses=problem_responses(409))
async def start_connection(request: Request, response: Response, network: Connectable,
                           principal: Principal = Depends(AMBASSADOR)) -> ConnectionStarted:
    """Start connecting my LinkedIn account, read-only (`openid profile r_member_postAnalytics`; never a
    posting scope). Open `authorization_url`; LinkedIn redirects to the app's redirect URL with `code` and
    `state`, which go to the callback. PKCE (S256) and a single-use state bind the flow to me."""
    response.headers["Cache-Control"] = "no-store"
    started = await _distribution(request).connections.start(principal, network, utcnow())
    return ConnectionStarted(authorization_url=started.authorization_url, state=started.state,
                             expires_at=started.expires_at)


@router.post("/me/connections/{network}/callback", status_code=201, response_model=ConnectionOut,
             responses=problem_responses(409))
async def complete_connection(request: Request, network: Connectable, body: ConnectionCallback,
                              principal: Principal = Depends(AMBASSADOR)) -> ConnectionOut:
    """Complete it: the code is exchanged for a token, stored encrypted; my paused posts resume."""
    connection = await _distribution(request).connections.complete(principal, network, body.code, body.state,
                                                                   utcnow())
    return connection_body(request, connection)


@router.get("/me/connections", response_model=ConnectionList)
async def my_connections(request: Request, principal: Principal = Depends(AMBASSADOR)) -> ConnectionList:
    """My connected networks, with when each token lapses and the link to reconnect ahead of time."""
    connections = await _distribution(request).connections.mine(principal)
    return ConnectionList(items=[connection_body(request, c) for c in connections])


@router.delete("/me/connections/{network}", status_code=204)
async def disconnect(request: Request, network: Connectable, principal: Principal = Depends(AMBASSADOR)) -> Response:
    """Disconnect: the token is deleted and my posts there are no longer read."""
    await _distribution(request).connections.disconnect(principal, network)
    return Response(status_code=204)


@router.post("/shares/{share_id}/post", response_model=TrackedPostOut)
async def link_post(request: Request, share_id: PathId, body: LinkPost,
                    principal: Principal = Depends(REPORTERS)) -> TrackedPostOut:
    """Link the post of a confirmed share (its URL) so its figures are read from the network: LinkedIn
    (my connected account: a URL that is not a post of mine is refused) or X (the tenant's app)."""
    distribution = _distribution(request)
    share = await distribution.sharing.get(principal, share_id)
    return post_body(await distribution.connections.link_post(share, body.post_url, utcnow()))


@router.get("/shares/{share_id}/posts", response_model=list[TrackedPostOut])
async def share_posts(request: Request, share_id: PathId,
                      principal: Principal = Depends(REPORTERS)) -> list[TrackedPostOut]:
    """How the share's figures are read: each source, its polling state and the totals counted."""
    distribution = _distribution(request)
    share = await distribution.sharing.get(principal, share_id)
    return [post_body(post) for post in await distribution.connections.posts_of(share)]


@router.post("/shares/{share_id}/self-reported", response_model=TrackedPostOut, responses=problem_responses(409))
async def self_reported(request: Request, share_id: PathId, body: SelfReported,
                        principal: Principal = Depends(REPORTERS)) -> TrackedPostOut:
    """For networks without an API: the totals the network shows, entered by me or an admin. Counted as
    increases above what was counted before, marked `self_reported` in the events."""
    distribution = _distribution(request)
    share = await distribution.sharing.get(principal, share_id)
    totals = {name: value for name, value in body.model_dump().items() if value is not None}
    return post_body(await distribution.connections.self_report(share, totals, utcnow()))


@router.get("/settings/network-apps", response_model=NetworkAppsOut)
async def network_apps(request: Request, principal: Principal = Depends(ADMIN)) -> NetworkAppsOut:
    """The tenant's LinkedIn app and X credential, without their secrets."""
    linkedin, x = await _distribution(request).connections.apps(principal.tenant)
    return NetworkAppsOut(
        linkedin={"client_id": linkedin.client_id, "redirect_uri": linkedin.redirect_uri,
                  "updated_at": linkedin.updated_at.isoformat()} if linkedin else None,
        x={"daily_request_budget": x.daily_request_budget, "updated_at": x.updated_at.isoformat()} if x else None)


@router.put("/settings/network-apps/linkedin", status_code=204)
async def put_linkedin_app(request: Request, body: LinkedInAppIn, principal: Principal = Depends(ADMIN)) -> Response:
    """The tenant's LinkedIn app (client id, secret, registered redirect URL); the secret is stored encrypted."""
    await _distribution(request).connections.put_linkedin_app(LinkedInApp(tenant=principal.tenant, **body.model_dump(),
                                                                          updated_at=utcnow()))
    return Response(status_code=204)


@router.put("/settings/network-apps/x", status_code=204)
async def put_x_app(request: Request, body: XAppIn, principal: Principal = Depends(ADMIN)) -> Response:
    """The tenant's X app-only bearer token (stored encrypted) and its daily request budget."""
    await _distribution(request).connections.put_x_app(XApp(tenant=principal.tenant, **body.model_dump(),
                                                            updated_at=utcnow()))
    return Response(status_code=204)
