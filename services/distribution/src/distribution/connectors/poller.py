"""The polling worker: due posts are claimed (compare-and-set), read from their network, and their new
totals turned into deltas that are written with the post before they are reported.

Restarts neither poll twice nor skip: each post keeps its own `next_poll_at`; a poller claims a post by
moving it `lease` ahead in a compare-and-set on its version (of two pollers, one wins); after the call
it stores the new marks, the next time and the deltas as `pending` in one write, then reports them, then
clears them. A crash before that write repeats the call after the lease (the same totals give the same
deltas); a crash after it leaves `pending`, which the next claim reports first. Deltas have
deterministic ids and the ingestion refuses a report id twice, so every delta counts exactly once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from advocacy_common.errors import Problem
from advocacy_common.events import EngagementKind
from advocacy_common.repository import StaleWrite
from advocacy_common.secretbox import SecretUnreadable

from ..models.engagement import Observation, ReportSource
from ..models.plausibility import Implausible
from ..service.engagement import Engagement
from . import linkedin, x
from .deltas import deltas
from .errors import BudgetSpent, NetworkError, NotFound, RateLimited, Unauthorized
from .linkedin import LinkedInApi
from .models import ConnectionStatus, Delta, PostStatus, TrackedPost
from .options import ConnectorOptions
from .ports import ConnectorStores, TrackedPosts
from .schedule import backoff
from .x import XApi

log = logging.getLogger(__name__)
SELF_REPORTED = "self-reported"
SELF_REPORTED_KINDS: dict[str, EngagementKind] = {
    "impressions": EngagementKind.IMPRESSION, "members_reached": EngagementKind.MEMBERS_REACHED,
    "reactions": EngagementKind.REACTION, "comments": EngagementKind.COMMENT, "reshares": EngagementKind.RESHARE}
KINDS = {"linkedin": linkedin.METRICS, "x": x.METRICS}


def tracked_post_id(tenant: str, share_id: str, source: str) -> str:
    return "/".join((tenant, share_id, source))


async def report_delta(engagement: Engagement, post: TrackedPost, delta: Delta) -> None:
    """THE one place a connector's delta enters the engagement ingestion: `Engagement.ingest`, the entry
    point a signed webhook report reaches after its signature check (same plausibility rules,
    de-duplication, attribution and `engagement.received.v1`)."""
    observation = Observation(id=delta.id, kind=delta.kind, count=delta.count, occurred_at=delta.observed_at,
                              share_id=post.share_id)
    await engagement.ingest(post.tenant, ReportSource(key=f"network-{post.source}", name=post.source), observation,
                            delta.observed_at, self_reported=post.source == SELF_REPORTED)


async def deliver_pending(posts: TrackedPosts, engagement: Engagement, post: TrackedPost,
                          now: datetime) -> TrackedPost:
    """Report the post's pending deltas; those reported (or refused for good) leave `pending`."""
    if not post.pending:
        return post
    left: list[Delta] = []
    for delta in post.pending:
        try:
            await report_delta(engagement, post, delta)
        except Implausible as refused:
            # Refused by the plausibility rules: reporting it again changes nothing.
            log.warning("delta %s of %s refused as implausible: %s", delta.metric, post.source, refused.reason)
            continue
        except Problem as problem:
            if problem.status == 409:
                continue  # counted already (an earlier attempt got through): exactly once
            if problem.status in (400, 404, 422):
                # Refused by the ingestion's rules (e.g. plausibility): reporting it again changes nothing.
                log.warning("delta %s of %s refused by ingestion: %s", delta.metric, post.source, problem.status)
                continue
            left.append(delta)
        except Exception:  # Kafka down, database hiccup: keep it for the next attempt
            log.exception("delta of a %s post not reported yet; kept for the next round", post.source)
            left.append(delta)
    update: dict = {"pending": left}
    if left:  # come back soon for them rather than at the next scheduled poll
        soon = now + timedelta(minutes=1)
        update["next_poll_at"] = min(post.next_poll_at or soon, soon)
        update["status"] = PostStatus.ACTIVE
    return await posts.save(post.model_copy(update=update))


@dataclass
class Poller:
    stores: ConnectorStores
    engagement: Engagement
    linkedin: LinkedInApi
    x: XApi
    options: ConnectorOptions
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    sleep: Callable[[float], object] = asyncio.sleep
    # (tenant, network) -> until when this poller leaves that network alone (after a 429).
    held: dict[tuple[str, str], datetime] = field(default_factory=dict)
    requests: int = 0
    tenant: str | None = None  # only this tenant's posts (a tenant's own poller; tests), else every tenant's

    async def run(self, stop: asyncio.Event) -> None:
        """Rounds until stopped; a round that found work is followed by another at once."""
        while not stop.is_set():
            try:
                worked = await self.poll_due()
            except Exception:
                log.exception("poll round failed; next round in %s s", self.options.poll_seconds)
                worked = 0
            if worked:
                continue
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.options.poll_seconds)
            except TimeoutError:
                pass

    async def poll_due(self) -> int:
        """One round: claim and poll the due posts; how many were polled."""
        now = self.clock()
        polled = 0
        for post in await self.stores.posts.due(now, self.options.batch, self.tenant):
            held = self.held.get((post.tenant, post.network))
            if held and held > now:
                continue
            claimed = await self._claim(post, now)
            if claimed is None:
                continue
            try:
                await self.poll(claimed, now)
            except StaleWrite:
                # Paused, resumed or deleted meanwhile (a lapse, a reconnection, an opt-out): what we did
                # not write is recomputed from the stored marks next time, so nothing is lost or doubled.
                pass
            polled += 1
        return polled

    async def _claim(self, post: TrackedPost, now: datetime) -> TrackedPost | None:
        try:
            return await self.stores.posts.save(post.model_copy(update={"next_poll_at": now + self.options.lease}))
        except StaleWrite:
            return None  # another poller has it

    async def poll(self, post: TrackedPost, now: datetime) -> TrackedPost:
        post = await deliver_pending(self.stores.posts, self.engagement, post, now)
        try:
            totals = await self._totals(post, now)
        except _Paused:
            current = await self.stores.posts.get(post.tenant, post.id)
            if current is None or current.status is not PostStatus.ACTIVE:
                return current or post  # paused with its connection already (or deleted)
            return await self.stores.posts.save(current.model_copy(update={"status": PostStatus.PAUSED}))
        except BudgetSpent:
            tomorrow = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
            return await self.stores.posts.save(post.model_copy(update={"next_poll_at": tomorrow}))
        except RateLimited as limited:
            wait = backoff(post.failures + 1, limited.retry_after)
            self.held[(post.tenant, post.network)] = now + wait
            log.info("%s asks to slow down: leaving it %s s", post.network, wait.total_seconds())
            return await self._failed(post, now + wait)
        except NotFound:
            log.info("a %s post is no longer readable; it is not polled any more", post.network)
            return await self.stores.posts.save(post.model_copy(update={"status": PostStatus.FINISHED,
                                                                        "next_poll_at": None}))
        except NetworkError as error:
            log.warning("%s poll failed (%s); backing off", post.network, error)
            return await self._failed(post, now + backoff(post.failures + 1, None))
        found, marks = deltas(post.share_id, post.high_water, totals, KINDS[post.source], now)
        changed = any(post.last_seen.get(metric) != total for metric, total in totals.items())
        last_change = now if changed else post.last_change_at
        next_poll = self.options.schedule.next_poll(post.id, post.linked_at, last_change, now)
        post = await self.stores.posts.save(post.model_copy(update={
            "pending": found, "high_water": marks, "last_seen": totals, "last_change_at": last_change,
            "next_poll_at": next_poll, "status": PostStatus.ACTIVE if next_poll else PostStatus.FINISHED,
            "failures": 0, "polls": post.polls + 1}))
        return await deliver_pending(self.stores.posts, self.engagement, post, now)

    async def _failed(self, post: TrackedPost, retry_at: datetime) -> TrackedPost:
        return await self.stores.posts.save(post.model_copy(update={"next_poll_at": retry_at,
                                                                    "failures": post.failures + 1}))

    async def _totals(self, post: TrackedPost, now: datetime) -> dict[str, int]:
        await self._spread()
        if post.source == "linkedin":
            return await self._linkedin_totals(post, now)
        if post.source == "x":
            return await self._x_totals(post, now)
        raise _Paused()

    async def _linkedin_totals(self, post: TrackedPost, now: datetime) -> dict[str, int]:
        try:
            connection = await self.stores.connections.get(post.tenant, post.ambassador_id, "linkedin")
        except SecretUnreadable:
            log.error("a LinkedIn token cannot be opened: is its key still in DISTRIBUTION_SECRET_KEYS?")
            raise NetworkError("token unreadable") from None
        if connection is None or connection.status is not ConnectionStatus.ACTIVE:
            raise _Paused()
        if connection.expires_at <= now:
            # Lapsed by time: no call at all (it would be a 401), the person is asked to reconnect.
            await self._lapse(connection, ConnectionStatus.EXPIRED)
            raise _Paused()
        try:
            self.requests += 1
            return await self.linkedin.post_totals(connection.access_token, post.post_ref)
        except Unauthorized:
            await self._lapse(connection, ConnectionStatus.REVOKED)
            raise _Paused() from None

    async def _lapse(self, connection, status: ConnectionStatus) -> None:
        """Mark the grant once and pause every post it served: no error piles up, nothing is retried."""
        log.info("a LinkedIn connection is %s; its posts wait for a reconnection", status.value)
        await self.stores.connections.mark(connection, status)
        await self.stores.posts.pause(connection.tenant, connection.ambassador_id, connection.network)

    async def _x_totals(self, post: TrackedPost, now: datetime) -> dict[str, int]:
        app = await self.stores.apps.x(post.tenant)
        if app is None:
            raise _Paused()
        if not await self.stores.budgets.spend(post.tenant, "x", now.date().isoformat(), app.daily_request_budget):
            raise BudgetSpent()
        try:
            self.requests += 1
            return await self.x.post_totals(app.bearer_token, post.post_ref)
        except Unauthorized:
            log.error("the tenant's X bearer token is refused (401): an admin must replace it")
            raise _Paused() from None

    async def _spread(self) -> None:
        if self.requests and self.options.request_gap_seconds:
            await self.sleep(self.options.request_gap_seconds)  # type: ignore[misc]


class _Paused(Exception):
    """The post cannot be read until someone acts (reconnects, sets up the app)."""
