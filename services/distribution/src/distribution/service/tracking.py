"""The public tracked link: where it leads, and counting the click (its event rides with the click).

Clicks are counted by group commit (`group_commit.py`): the clicks of concurrent requests are written
together, two insert commands per batch instead of two per click, and each redirect is answered only once
its batch is durable.
"""

from __future__ import annotations

import asyncio
import contextvars
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

from cachetools import TTLCache
from prometheus_client import Counter

from advocacy_common.events import EngagementKind
from advocacy_common.repository import UnitOfWork

from ..models.engagement import (
    Click, attribution_of_link, engagement_received, is_link_preview_bot, visitor_hash, with_utm,
)
from ..models.sharing import TrackedLink
from ..options import EVENT_SOURCE, Options
from ..ports import Repositories
from .group_commit import GroupCommit
from .link_versions import TenantVersions, Version

REDIRECT_SOURCE = "redirect"
CACHED_LINKS = 10_000
# How long a cached link or content URL lives at most, its tenant's version unchanged (link_versions.py):
# the bound for a change whose count was not moved. A link is re-read that often, however popular.
LONGEST_CACHED_SECONDS = 300.0
CACHED_CONTENTS = 10_000
# The bot check runs crawlerdetect's large regex; a handful of user agents make most traffic. Longer ones
# (rare, and a way to fill memory) are checked every time.
CACHED_USER_AGENTS = 2_048
CACHEABLE_USER_AGENT = 512
_NO_CONTENT = ""  # a cached "the content is unknown": the link's own URL is used
# What the redirect asks of the database, on /metrics: each batch is two insert commands, each read one find
# ("changes": a check of a tenant's version, two finds).
CLICK_BATCHES = Counter("distribution_click_batches", "Batches of clicks written (two inserts each)", ["outcome"])
CLICKS_WRITTEN = Counter("distribution_clicks_written", "Clicks written durably by the redirect's batches")
REDIRECT_READS = Counter("distribution_redirect_reads", "Reads of the redirect past its caches", ["what"])


@dataclass(frozen=True)
class Destination:
    link: TrackedLink
    url: str  # the content's current link, or the link's own when the content is unknown
    target: str  # `url` with the link's UTM parameters: what the redirect answers
    version: Version | None = None  # its tenant's version known before it was read (None: re-read at next use)


@dataclass(frozen=True)
class ClickToCount:
    link: TrackedLink
    visitor_key: str  # code/salted visitor hash
    at: datetime
    # The request's context: its event is built in it, so that the event joins that request's trace (the
    # batch is written by a task of whichever request started it).
    context: contextvars.Context


@lru_cache(maxsize=CACHED_USER_AGENTS)
def _is_bot_cached(user_agent: str) -> bool:
    return is_link_preview_bot(user_agent)


def is_bot(user_agent: str | None) -> bool:
    if user_agent and len(user_agent) <= CACHEABLE_USER_AGENT:
        return _is_bot_cached(user_agent)
    return is_link_preview_bot(user_agent)


@dataclass(frozen=True)
class Tracking:
    repositories: Repositories
    options: Options
    # Recently followed links and where they lead, each tagged with its tenant's version (link_versions.py):
    # kept while that version stays, checked every `options.link_cache_seconds`, so a popular link is read
    # once, not twice per click, nor once per period. A link changes only when its share is confirmed or
    # its ambassador erased, and the content's URL with its projection: each moves the tenant's version,
    # and is seen up to one check period (plus one check) later, on top of the projections' own lag.
    # Bounded: the oldest entries go first, none lives past LONGEST_CACHED_SECONDS. The contents' URLs are
    # kept apart, so that the links of one content read it once, not once each.
    destinations: TTLCache = field(init=False)
    content_urls: TTLCache = field(init=False)  # (tenant, content id) -> (url, version tag)
    versions: TenantVersions = field(init=False)
    clicks: GroupCommit[ClickToCount, bool] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "destinations", TTLCache(maxsize=CACHED_LINKS, ttl=LONGEST_CACHED_SECONDS))
        object.__setattr__(self, "content_urls", TTLCache(maxsize=CACHED_CONTENTS, ttl=LONGEST_CACHED_SECONDS))
        object.__setattr__(self, "versions", TenantVersions(self._version, self.options.link_cache_seconds))
        object.__setattr__(self, "clicks", GroupCommit(self._count, max_items=self.options.click_batch_max,
                                                       max_wait=self.options.click_batch_wait_seconds,
                                                       max_in_flight=self.options.click_writes_in_flight))

    async def follow(self, code: str, client_ip: str, user_agent: str | None, now: datetime,
                     count: bool = True) -> str | None:
        """Where the code leads (with UTM parameters), after recording the click; None for an unknown code.

        `count=False` (a HEAD request: link checkers, previews probing the target) only resolves the target.
        """
        destination = await self.destination(code)
        if destination is None:
            return None
        if count and not is_bot(user_agent):
            await self.record_click(destination.link, client_ip, user_agent or "", now)  # durable before we answer
        return destination.target

    async def destination(self, code: str) -> Destination | None:
        caching = self.options.link_cache_seconds > 0
        cached = self.destinations.get(code) if caching else None
        if cached is not None:
            # Also for an untagged entry: its re-read below then finds the tenant's version checked.
            if cached.version == await self.versions.current(cached.link.tenant):
                return cached
            self.destinations.pop(code, None)
        reading_since = self.versions.clock()
        REDIRECT_READS.labels("link").inc()
        link = await self.repositories.links.by_code(code)
        if link is None:
            return None  # not cached: a code may be created any moment
        # The tenant's version as checked before the link's read began: never newer than what was read.
        version = self.versions.known(link.tenant, checked_before=reading_since)
        url = await self._content_url(link.tenant, link.content_id, version) or link.link_url
        destination = Destination(link, url, with_utm(url, network=link.network, campaign_id=link.campaign_id or "",
                                                      code=code), version)
        if caching:
            self.destinations[code] = destination
        return destination

    async def _content_url(self, tenant: str, content_id: str, version: Version | None) -> str:
        key = (tenant, content_id)
        caching = self.options.link_cache_seconds > 0
        cached = self.content_urls.get(key) if caching else None
        if cached is not None and cached[1] is not None and cached[1] == version:
            return cached[0]
        REDIRECT_READS.labels("content").inc()
        content = await self.repositories.contents.get(tenant, content_id)
        url = content.link_url if content is not None and content.link_url else _NO_CONTENT
        if caching:
            self.content_urls[key] = (url, version)
        return url

    async def _version(self, tenant: str) -> Version:
        REDIRECT_READS.labels("changes").inc()
        links, contents = await asyncio.gather(self.repositories.links.changes(tenant),
                                               self.repositories.contents.changes(tenant))
        return links, contents

    async def record_click(self, link: TrackedLink, client_ip: str, user_agent: str, now: datetime) -> bool:
        """Count the click (in the next batch of clicks); True when this visitor is new on this link."""
        key = f"{link.code}/{visitor_hash(self.options.visitor_hash_salt, link.code, client_ip, user_agent)}"
        return await self.clicks.submit(ClickToCount(link, key, now, contextvars.copy_context()))

    async def _count(self, batch: list[ClickToCount]) -> list[bool]:
        """Two inserts per batch: the visitors' claims on their links, then the clicks with their events.

        The claims come first because each event says whether its visitor is unique. A failure between the
        two loses nothing counted (every request of the batch gets the error) but makes these visitors' next
        clicks repeat ones. Of two clicks of one visitor on one link in a batch, the first is the unique one.
        """
        claims: dict[str, str] = {}
        for click in batch:
            claims.setdefault(click.visitor_key, click.link.tenant)
        try:
            new = await self.repositories.clicks.claim_visitors([(tenant, key) for key, tenant in claims.items()])
            uniques: list[bool] = []
            for click in batch:
                uniques.append(click.visitor_key in new)
                new.discard(click.visitor_key)
            await self.repositories.clicks.record_many([click.context.run(self._click, click, unique)
                                                        for click, unique in zip(batch, uniques, strict=True)])
        except Exception:
            CLICK_BATCHES.labels("failed").inc()
            raise
        CLICK_BATCHES.labels("written").inc()
        CLICKS_WRITTEN.inc(len(batch))
        return uniques

    @staticmethod
    def _click(click: ClickToCount, unique: bool) -> tuple[Click, UnitOfWork]:
        link = click.link
        click_id = uuid.uuid4().hex
        uow = UnitOfWork(link.tenant, EVENT_SOURCE)
        event = engagement_received(link.tenant, attribution_of_link(link), kind=EngagementKind.CLICK, count=1,
                                    source=REDIRECT_SOURCE, source_event_id=click_id, occurred_at=click.at,
                                    unique_visitor=unique)
        uow.record(event, event_id=event.engagement_id)
        return Click(id=f"{link.code}/{click_id}", tenant=link.tenant, code=link.code, at=click.at), uow
