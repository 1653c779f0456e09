"""Use cases of the ambassador: the feed, preparing a share, confirming it was posted; the tenant's policy.

The platform prepares, the person posts: nothing here posts anywhere. A confirmed share and its
`post.shared.v1` event are one single-document write (the unit of work rides with the share).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from advocacy_common.api_support import fingerprint, idempotent_id
from advocacy_common.auth import Principal, Role
from advocacy_common.cursors import CursorCodec
from advocacy_common.errors import Problem, not_found
from advocacy_common.events import Network, PostShared
from advocacy_common.repository import AlreadyExists, Page, StaleWrite, UnitOfWork
from advocacy_common.subjects import ambassador_id_of

from ..models.authenticity import (
    AuthenticityPolicy, AuthenticityScores, BookEntry, TenantPolicy, check_authenticity, closest_colleague,
    colleague_key, packed, score_authenticity,
)
from ..models.projections import (
    ERASED, INELIGIBILITY_REASONS, SCORE_SCALE, AmbassadorStatus, AmbassadorView, CharterView, ContentView,
    FeedPage, FeedPosition, ineligibility, suggestion, targeting_misses,
)
from ..models.sharing import (
    Refusal, Share, ShareStatus, TrackedLink, check_text, check_weekly_limit, in_quiet_hours, link_code,
    recommend_slot, required_disclosures, share_intent_url,
)
from ..options import EVENT_SOURCE, Options
from ..ports import Repositories
from ..schemas import PrepareShare
from .feed_snapshots import FeedSnapshots

WEEK = timedelta(days=7)
BOOK_ATTEMPTS = 20  # compare-and-set rounds on a content's signature book before answering 503
SHARE_EVENT_NAMESPACE = uuid.UUID("5d0f1f0e-7a43-4d7e-b0a3-2b8c9e6d4f11")
FEED_CURSOR_SCOPE = "feed"
# What a confirmation still needs of the person (a pending charter does not undo a post already made).
CONFIRMATION_REFUSALS = ("opted_out", "erased", "not_opted_in")


class PolicyChanged(Exception):
    """Another admin replaced the policy meanwhile; nothing was written."""


@dataclass(frozen=True)
class Sharing:
    repositories: Repositories
    options: Options
    cursors: CursorCodec  # feed pages: the ranking is computed here, not by a query
    feed_snapshots: FeedSnapshots = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "feed_snapshots", FeedSnapshots(self.repositories.contents,
                                                                 self.repositories.charters,
                                                                 self.options.feed_snapshot_seconds))

    # --- the feed ---------------------------------------------------------------------------

    async def feed(self, principal: Principal, now: datetime, limit: int, cursor: str | None) -> FeedPage:
        """Per request: who I am, my profile and what I shared (one read by `_id`, two when my login was
        provisioned again after an erasure: `AmbassadorProjection.person`), and the tenant's snapshot
        (contents and charter, see `FeedSnapshots`)."""
        tenant = principal.tenant
        person, snapshot = await asyncio.gather(self.repositories.ambassadors.person(tenant, principal.subject_key),
                                                self.feed_snapshots.of(tenant))
        me, ambassador, shared = person.ambassador_id, person.ambassador, person.shared_content_ids
        position = self._position(tenant, me, cursor)
        charter = snapshot.charter
        reason = ineligibility(ambassador, charter)
        if reason is not None:
            return FeedPage(reason=reason)
        assert ambassador is not None
        scored_at = position.scored_at if position else now
        # `rank_feed` then `after_position`, computed for the page only (one more: is there a next page?).
        ranked = snapshot.index.page(ambassador, now, shared, scored_at, position, limit + 1)
        page = ranked[:limit]
        next_cursor = None
        if len(ranked) > limit:
            score, content = page[-1]
            next_cursor = self.cursors.encode(self._scope(tenant, me),
                                              (scored_at, round(score * SCORE_SCALE), content.content_id))
        # The lines prepare will require (campaign and charter), so nobody is refused for one never shown.
        mine = ambassador.networks()  # once per page, not per item
        return FeedPage(items=[suggestion(score, content, ambassador, required_disclosures(content, charter), mine)
                               for score, content in page],
                        next_cursor=next_cursor)

    async def me(self, principal: Principal) -> str:
        """The caller's ambassador id: the one holding their login now (never an erased predecessor's)."""
        return await ambassador_id_of(self.repositories.ambassadors, principal)

    def _scope(self, tenant: str, me: str) -> str:
        return f"{FEED_CURSOR_SCOPE}\x1f{tenant}\x1f{me}"

    def _position(self, tenant: str, me: str, cursor: str | None) -> FeedPosition | None:
        values = self.cursors.decode(self._scope(tenant, me), cursor, (datetime, int, str))
        return FeedPosition(*values) if values else None

    # --- shares -----------------------------------------------------------------------------

    async def prepare(self, principal: Principal, request: PrepareShare, idempotency_key: str | None,
                      now: datetime) -> Share:
        """Check every rule, then store the prepared share with its tracked link; same key, same result."""
        repositories, tenant, me = self.repositories, principal.tenant, await self.me(principal)
        share_id = idempotent_id(tenant, f"share:{me}", idempotency_key)
        request_fingerprint = fingerprint(request.model_dump(mode="json"))
        existing, ambassador, charter, content, policy = await asyncio.gather(
            repositories.shares.get_retry(tenant, share_id, request_fingerprint), repositories.ambassadors.get(tenant, me),
            repositories.charters.current(tenant), repositories.contents.get(tenant, request.content_id),
            repositories.policies.current(tenant))
        if existing is not None:
            return existing
        _check_may_share(ambassador, charter, content, request.network, now)
        assert ambassador is not None and ambassador.profile is not None and content is not None
        network, preferences = request.network, ambassador.profile.preferences
        code = link_code(self.options.link_code_secret, tenant, me, content.content_id, network.value)
        disclosures = required_disclosures(content, charter)
        link, shared_this_week, held, book = await asyncio.gather(
            repositories.links.get(tenant, code), repositories.shares.count_confirmed_since(tenant, me, now - WEEK),
            repositories.shares.slots_held_from(tenant, content.content_id, now, now - self.options.prepare_hold),
            repositories.books.read(tenant, content.content_id))
        if link is not None and link.confirmed_share_id:
            raise Refusal("already_shared", f"You already shared this content on {network.value}.")
        check_text(request.text, network, disclosures)
        check_weekly_limit(shared_this_week, preferences.max_shares_per_week)
        planned = request.planned_at or now
        if in_quiet_hours(planned, preferences.quiet_hours, preferences.time_zone):
            raise Refusal("quiet_hours", "That time is within the quiet hours you set; pick another moment.")
        colleagues = book.colleagues_of(self._colleague(tenant, me, content.content_id))
        scores = score_authenticity(request.text, list(content.suggested_texts.values()), colleagues,
                                    ignore=tuple(disclosures))
        check_authenticity(scores, policy.policy)

        slot = recommend_slot(max(now, planned), content.publish_at or now, held, self.options.slot_spacing,
                              preferences.quiet_hours, preferences.time_zone)
        team_id = ambassador.profile.team_id
        await repositories.links.ensure(TrackedLink(
            code=code, tenant=tenant, ambassador_id=me, content_id=content.content_id,
            campaign_id=content.campaign_id, network=network.value, team_id=team_id, link_url=content.link_url,
            created_at=now))
        tracked = self.options.tracked_link(code)
        share = Share(id=share_id, tenant=tenant, ambassador_id=me, content_id=content.content_id,
                      campaign_id=content.campaign_id, team_id=team_id, network=network, text=request.text,
                      tracked_link_code=code, tracked_link=tracked,
                      share_intent_url=share_intent_url(network, tracked, request.text), recommended_at=slot,
                      similarity_to_suggested=scores.to_suggested, similarity_to_colleagues=scores.to_colleagues,
                      personalized=scores.personalized(policy.policy), signature=scores.signature,
                      created_at=now)
        return await repositories.shares.add_prepared(share, request_fingerprint)

    async def get(self, principal: Principal, share_id: str) -> Share:
        """An ambassador sees their own shares; admins and connectors any share of their tenant."""
        share = await self.repositories.shares.get(principal.tenant, share_id)
        if share is None or (not principal.has_any(Role.ADMIN, Role.INTEGRATOR)
                             and share.ambassador_id != await self.me(principal)):
            raise not_found("share")
        return share

    async def mine(self, principal: Principal, cursor: str | None, limit: int) -> Page[Share]:
        return await self.repositories.shares.page_of(principal.tenant, await self.me(principal), cursor, limit)

    async def confirm(self, principal: Principal, share_id: str, post_url: str | None, now: datetime) -> Share:
        """Record that the person posted; emits post.shared.v1 once (a repeated confirmation changes nothing)."""
        repositories, tenant = self.repositories, principal.tenant
        share = await self.get(principal, share_id)
        if share.status is ShareStatus.CONFIRMED:
            return share
        ambassador = await repositories.ambassadors.get(tenant, share.ambassador_id)
        reason = ineligibility(ambassador, await repositories.charters.current(tenant))
        if reason in CONFIRMATION_REFUSALS:
            raise Refusal(reason, INELIGIBILITY_REASONS[reason])
        assert ambassador is not None
        # The near-copy check again, against what colleagues confirmed since the preparation; passing it
        # enters this share in the content's book, so a colleague confirming the same text next is refused.
        share = await self._enter_book(share)
        if not await repositories.links.claim(tenant, share.tracked_link_code, share_id):
            await repositories.books.remove(tenant, share.content_id, share_id)
            raise Refusal("already_shared", f"You already shared this content on {share.network.value}.")
        # Before the share is saved, as the book and the link: the person's next feed leaves it out.
        await repositories.shared.add(tenant, share.ambassador_id, share_id, share.content_id, now)
        uow = UnitOfWork(tenant, EVENT_SOURCE)
        # A deterministic id: a confirmation retried after a lost answer is the same event.
        uow.record(PostShared(share_id=share_id, content_id=share.content_id, campaign_id=share.campaign_id,
                              ambassador_id=share.ambassador_id, team_id=share.team_id, network=share.network,
                              personalized=share.personalized, similarity_to_suggested=share.similarity_to_suggested,
                              similarity_to_colleagues=share.similarity_to_colleagues,
                              potential_reach=ambassador.audience_on(share.network.value) or 0,
                              tracked_link_code=share.tracked_link_code, shared_at=now),
                   event_id=str(uuid.uuid5(SHARE_EVENT_NAMESPACE, f"{tenant}/{share_id}")))
        try:
            saved = await repositories.shares.confirm(share.confirmed(post_url, now), uow)
        except StaleWrite:
            # Another request (another replica) changed the share since we read it; nothing of ours was
            # written. If it was a confirmation, this one is a repeat and answers with what is stored.
            current = await repositories.shares.get(tenant, share_id)
            if current is None or current.status is not ShareStatus.CONFIRMED:
                await repositories.books.remove(tenant, share.content_id, share_id)
                await repositories.shared.remove(tenant, share.ambassador_id, share_id, share.content_id)
                raise
            return current
        # The database's copy (times in milliseconds) is what later reads answer with.
        return await repositories.shares.get(tenant, share_id) or saved

    def _colleague(self, tenant: str, ambassador_id: str, content_id: str) -> str:
        return colleague_key(self.options.link_code_secret, tenant, ambassador_id, content_id)

    async def _enter_book(self, share: Share, check: bool = True) -> Share:
        """Check the share against the colleagues in its content's book under the current policy (Refusal
        as at preparation), then add it to the book; the share with its scores as of now.

        The addition is a compare-and-set: when another confirmation of the same content got in between,
        the book is read again and the check repeated against it, so of two colleagues confirming the same
        text at once the second is compared with the first.
        """
        tenant, books = share.tenant, self.repositories.books
        colleague = self._colleague(tenant, share.ambassador_id, share.content_id)
        policy = (await self.repositories.policies.current(tenant)).policy
        for _ in range(BOOK_ATTEMPTS):
            book = await books.read(tenant, share.content_id)
            scores = AuthenticityScores(share.similarity_to_suggested,
                                        closest_colleague(share.signature, book.colleagues_of(colleague)),
                                        share.signature)
            checked = share.model_copy(update={"similarity_to_colleagues": scores.to_colleagues,
                                               "personalized": scores.personalized(policy)})
            if book.holds(share.id) or not share.signature:
                return checked  # entered by an earlier attempt of this confirmation (or nothing to compare)
            if check:
                check_authenticity(scores, policy)
            try:
                await books.add(book, BookEntry(share_id=share.id, colleague=colleague,
                                                signature=packed(share.signature)))
                return checked
            except (StaleWrite, AlreadyExists):
                continue  # another confirmation of this content got in first: compare with it too
        raise Problem(503, "Service Unavailable", "Many colleagues are confirming this content right now; "
                      "confirm again in a moment.", headers={"Retry-After": "1"})

    async def fill_books(self, batch: int = 200) -> int:
        """Enter the shares confirmed before signature books existed into their content's book (run at
        start-up; idempotent and safe beside other replicas doing the same); how many were entered."""
        entered = 0
        while shares := await self.repositories.shares.confirmed_outside_books(batch):
            for share in shares:
                await self._enter_book(share, check=False)  # confirmed already: a fact, not a request
                await self.repositories.shares.mark_in_book(share.tenant, share.id)
                entered += 1
        return entered

    async def fill_shared(self, batch: int = 200) -> int:
        """Enter the shares confirmed before `SharedContents` existed into their person's (run at start-up,
        idempotent); how many shares were looked at. An erased person's shares name nobody: left out."""
        entered = 0
        while shares := await self.repositories.shares.confirmed_outside_shared(batch):
            for share in shares:
                if share.ambassador_id != ERASED:
                    await self._enter_shared(share)
                await self.repositories.shares.mark_in_shared(share.tenant, share.id)
                entered += 1
        return entered

    async def _enter_shared(self, share: Share) -> None:
        repositories = self.repositories
        await repositories.shared.add(share.tenant, share.ambassador_id, share.id, share.content_id,
                                      share.confirmed_at)
        # An erasure that ran meanwhile (it forgets the person's entries last) must not be undone.
        ambassador = await repositories.ambassadors.get(share.tenant, share.ambassador_id)
        if ambassador is not None and ambassador.status is AmbassadorStatus.ERASED:
            await repositories.shared.forget(share.tenant, share.ambassador_id)

    # --- the tenant's authenticity policy -----------------------------------------------------

    async def policy(self, tenant: str) -> TenantPolicy:
        return await self.repositories.policies.current(tenant)

    async def replace_policy(self, tenant: str, policy: AuthenticityPolicy,
                             precondition: Callable[[int], None]) -> TenantPolicy:
        """Replace the thresholds if the stored version is the one `precondition` accepts (it raises
        otherwise); PolicyChanged when another writer got in between, so no two admins overwrite each other."""
        current = await self.repositories.policies.current(tenant)
        precondition(current.version)
        try:
            return await self.repositories.policies.replace(tenant, policy, current.version)
        except (StaleWrite, AlreadyExists):
            raise PolicyChanged(tenant) from None


def _check_may_share(ambassador: AmbassadorView | None, charter: CharterView, content: ContentView | None,
                     network: Network, now: datetime) -> None:
    reason = ineligibility(ambassador, charter)
    if reason is not None:
        raise Refusal(reason, INELIGIBILITY_REASONS[reason])
    assert ambassador is not None
    if content is None or not content.is_active(now):
        raise Refusal("content_not_available", "This content is not (or no longer) available for sharing.")
    misses = [m for m in targeting_misses(content, ambassador) if m != "network"]
    if misses:
        raise Refusal("not_targeted", f"This content is not meant for you (audience: {', '.join(misses)}).")
    if network.value not in content.networks or network.value not in ambassador.networks():
        raise Refusal("network_not_allowed", f"This content cannot be shared on {network.value}, or {network.value} "
                      "is not one of the networks in your profile.")
