"""The public tracked link: where it leads, and counting the click (its event rides with the click)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from cachetools import TTLCache

from advocacy_common.events import EngagementKind
from advocacy_common.repository import UnitOfWork

from ..models.engagement import (
    Click, attribution_of_link, engagement_received, is_link_preview_bot, visitor_hash, with_utm,
)
from ..models.sharing import TrackedLink
from ..options import EVENT_SOURCE, Options
from ..ports import Repositories

REDIRECT_SOURCE = "redirect"
CACHED_LINKS = 10_000


@dataclass(frozen=True)
class Destination:
    link: TrackedLink
    url: str  # the content's current link, or the link's own when the content is unknown


@dataclass(frozen=True)
class Tracking:
    repositories: Repositories
    options: Options
    # Recently followed links and where they lead, for `options.link_cache_seconds`: a popular link is
    # read once per period instead of twice per click. A link changes only when its share is confirmed
    # or its ambassador erased, and the content's URL with its projection: each is seen that much later,
    # on top of the projections' own lag. Bounded: the oldest entries go first.
    destinations: TTLCache = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "destinations", TTLCache(maxsize=CACHED_LINKS, ttl=self.options.link_cache_seconds))

    async def follow(self, code: str, client_ip: str, user_agent: str | None, now: datetime,
                     count: bool = True) -> str | None:
        """Where the code leads (with UTM parameters), after recording the click; None for an unknown code.

        `count=False` (a HEAD request: link checkers, previews probing the target) only resolves the target.
        """
        destination = await self.destination(code)
        if destination is None:
            return None
        if count and not is_link_preview_bot(user_agent):
            await self.record_click(destination.link, client_ip, user_agent or "", now)  # durable before we answer
        link = destination.link
        return with_utm(destination.url, network=link.network, campaign_id=link.campaign_id or "", code=code)

    async def destination(self, code: str) -> Destination | None:
        cached = self.destinations.get(code) if self.options.link_cache_seconds > 0 else None
        if cached is not None:
            return cached
        link = await self.repositories.links.by_code(code)
        if link is None:
            return None  # not cached: a code may be created any moment
        content = await self.repositories.contents.get(link.tenant, link.content_id)
        destination = Destination(link, content.link_url if content is not None and content.link_url else link.link_url)
        if self.options.link_cache_seconds > 0:
            self.destinations[code] = destination
        return destination

    async def record_click(self, link: TrackedLink, client_ip: str, user_agent: str, now: datetime) -> bool:
        """Two inserts per click: the visitor's claim on the link, then the click with its event; True when
        this visitor is new on this link.

        The claim comes first because the event says whether the visitor is unique. A crash between the
        two loses nothing counted (no answer was sent) but makes this visitor's next click a repeat one.
        """
        click_id = uuid.uuid4().hex
        key = f"{link.code}/{visitor_hash(self.options.visitor_hash_salt, link.code, client_ip, user_agent)}"
        unique = await self.repositories.clicks.claim_visitor(link.tenant, key)
        uow = UnitOfWork(link.tenant, EVENT_SOURCE)
        event = engagement_received(link.tenant, attribution_of_link(link), kind=EngagementKind.CLICK, count=1,
                                    source=REDIRECT_SOURCE, source_event_id=click_id, occurred_at=now,
                                    unique_visitor=unique)
        uow.record(event, event_id=event.engagement_id)
        await self.repositories.clicks.record(Click(id=f"{link.code}/{click_id}", tenant=link.tenant, code=link.code,
                                                    at=now), uow)
        return unique
