"""The public tracked link: where it leads, and counting the click (its event rides with the click)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from advocacy_common.events import EngagementKind
from advocacy_common.repository import UnitOfWork

from ..models.engagement import (
    Click, attribution_of_link, engagement_received, is_link_preview_bot, visitor_hash, with_utm,
)
from ..models.sharing import TrackedLink
from ..options import EVENT_SOURCE, Options
from ..ports import Repositories

REDIRECT_SOURCE = "redirect"


@dataclass(frozen=True)
class Tracking:
    repositories: Repositories
    options: Options

    async def follow(self, code: str, client_ip: str, user_agent: str | None, now: datetime,
                     count: bool = True) -> str | None:
        """Where the code leads (with UTM parameters), after recording the click; None for an unknown code.

        `count=False` (a HEAD request: link checkers, previews probing the target) only resolves the target.
        """
        link = await self.repositories.links.by_code(code)
        if link is None:
            return None
        work: list[Awaitable[Any]] = [self.repositories.contents.get(link.tenant, link.content_id)]
        if count and not is_link_preview_bot(user_agent):
            work.append(self.record_click(link, client_ip, user_agent or "", now))
        content, *_ = await asyncio.gather(*work)  # the click is durable before we answer, in parallel
        destination = content.link_url if content is not None and content.link_url else link.link_url
        return with_utm(destination, network=link.network, campaign_id=link.campaign_id or "", code=code)

    async def record_click(self, link: TrackedLink, client_ip: str, user_agent: str, now: datetime) -> bool:
        """One insert per click, carrying its event; True when this visitor is new on this link.

        A visitor's first click is stored under a key derived from their hash, so the insert itself says
        whether they are new; later clicks get random keys. Inserts only: no document has two writers.
        """
        click_id = uuid.uuid4().hex
        first_click_id = f"{link.code}/{visitor_hash(self.options.visitor_hash_salt, link.code, client_ip, user_agent)}"
        for document_id, unique in ((first_click_id, True), (f"{link.code}/{click_id}", False)):
            uow = UnitOfWork(link.tenant, EVENT_SOURCE)
            event = engagement_received(link.tenant, attribution_of_link(link), kind=EngagementKind.CLICK, count=1,
                                        source=REDIRECT_SOURCE, source_event_id=click_id, occurred_at=now,
                                        unique_visitor=unique)
            uow.record(event, event_id=event.engagement_id)
            if await self.repositories.clicks.record(Click(id=document_id, tenant=link.tenant, code=link.code, at=now),
                                                     uow):
                return unique
        return False  # not reached: a random click id is never taken
