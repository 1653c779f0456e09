"""Use cases of the ambassador: the feed, preparing a share, confirming it was posted.

The platform prepares, the person posts: nothing here posts anywhere. A confirmed share and its
`post.shared.v1` event are one single-document write (the event rides in the share's outbox).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

from advocacy_common.api_support import encode_cursor, fingerprint, idempotent_id, key_reused_with_other_body
from advocacy_common.auth import Principal, Role
from advocacy_common.errors import invalid, not_found
from advocacy_common.events import Network, PostShared
from advocacy_common.outbox import with_outbox
from advocacy_common.publishing import envelope_for
from advocacy_common.topics import SHARE

from .models import (
    INELIGIBILITY_REASONS, AmbassadorView, CharterView, ContentView, Refusal, after_cursor, check_authenticity,
    check_text, check_weekly_limit, in_quiet_hours, ineligibility, rank_feed, recommend_slot, required_disclosures,
    score_authenticity, targeting_misses,
)
from .options import EVENT_SOURCE, Options
from .schemas import Feed, FeedItem, PrepareShare
from .store import CONFIRMED, PREPARED, DistributionStore
from .tracking import link_code, share_intent_url

WEEK = timedelta(days=7)
SHARE_EVENT_NAMESPACE = uuid.UUID("5d0f1f0e-7a43-4d7e-b0a3-2b8c9e6d4f11")


async def feed_for(store: DistributionStore, principal: Principal, now: datetime, limit: int,
                   cursor: list | None) -> Feed:
    ambassador = await store.get_ambassador(principal.tenant, principal.ambassador_id)
    reason = ineligibility(ambassador, await store.get_charter(principal.tenant))
    if reason is not None:
        return Feed(items=[], reason=reason, message=INELIGIBILITY_REASONS[reason])
    assert ambassador is not None
    contents, shared = await asyncio.gather(store.list_published_contents(principal.tenant, now),
                                            store.list_shared_content_ids(principal.tenant, principal.ambassador_id))
    scored_at = _cursor_time(cursor) or now
    ranked = after_cursor(rank_feed(contents, ambassador, now, shared, scored_at), cursor)
    page = ranked[:limit]
    next_cursor = (encode_cursor([scored_at.isoformat(), page[-1][0], page[-1][1].content_id])
                   if len(ranked) > limit else None)
    return Feed(items=[_feed_item(score, content, ambassador) for score, content in page], next_cursor=next_cursor)


def _cursor_time(cursor: list | None) -> datetime | None:
    if not cursor:
        return None
    try:
        if len(cursor) != 3:
            raise ValueError("a feed cursor has three parts")
        return datetime.fromisoformat(str(cursor[0]))
    except ValueError:
        raise invalid("cursor", "is not a cursor this API returned") from None


def _feed_item(score: float, content: ContentView, ambassador: AmbassadorView) -> FeedItem:
    mine = ambassador.networks()
    return FeedItem(content_id=content.content_id, campaign_id=content.campaign_id, title=content.title,
                    link_url=content.link_url, topics=content.topics, language=content.language,
                    networks=[n for n in content.networks if n in mine],
                    suggested_texts={n: t for n, t in content.suggested_texts.items() if n in mine},
                    disclosure_line=content.disclosure_line, publish_at=content.publish_at,
                    expires_at=content.expires_at, score=score)


async def prepare_share(store: DistributionStore, options: Options, principal: Principal, request: PrepareShare,
                        idempotency_key: str | None, now: datetime) -> dict[str, Any]:
    """Check every rule, then store the prepared share with its tracked link; same key, same result."""
    tenant, me = principal.tenant, principal.ambassador_id
    share_id = idempotent_id(tenant, f"share:{me}", idempotency_key)
    request_fingerprint = fingerprint(request.model_dump(mode="json"))
    existing, ambassador, charter, content, (policy, _) = await asyncio.gather(
        store.get_share(tenant, share_id), store.get_ambassador(tenant, me), store.get_charter(tenant),
        store.get_content(tenant, request.content_id), store.get_policy(tenant))
    if existing is not None:
        return same_request_or_422(existing, request_fingerprint)
    _check_may_share(ambassador, charter, content, request.network, now)
    assert ambassador is not None and ambassador.profile is not None and content is not None
    network, preferences = request.network, ambassador.profile.preferences
    code = link_code(options.link_code_secret, tenant, me, content.content_id, network.value)
    link, shared_this_week, colleague_signatures, taken = await asyncio.gather(
        store.get_link_of_tenant(tenant, code), store.count_confirmed_since(tenant, me, now - WEEK),
        store.list_colleague_signatures(tenant, content.content_id, me),
        store.count_slots_taken_from(tenant, content.content_id, now))
    if link is not None and link.get("confirmed_share_id"):
        raise Refusal("already_shared", f"You already shared this content on {network.value}.")
    disclosures = required_disclosures(content, charter)
    check_text(request.text, network, disclosures)
    check_weekly_limit(shared_this_week, preferences.max_shares_per_week)
    planned = request.planned_at or now
    if in_quiet_hours(planned, preferences.quiet_hours, preferences.time_zone):
        raise Refusal("quiet_hours", "That time is within the quiet hours you set; pick another moment.")
    scores = score_authenticity(request.text, list(content.suggested_texts.values()), colleague_signatures,
                                ignore=tuple(disclosures))
    check_authenticity(scores, policy)

    slot = recommend_slot(max(now, planned), content.publish_at or now, taken, options.slot_spacing,
                          preferences.quiet_hours, preferences.time_zone)
    team_id = ambassador.profile.team_id
    await store.ensure_link({"_id": code, "tenant": tenant, "ambassador_id": me, "content_id": content.content_id,
                             "campaign_id": content.campaign_id, "network": network.value, "team_id": team_id,
                             "link_url": content.link_url, "confirmed_share_id": None, "created_at": now})
    tracked = options.tracked_link(code)
    document = {
        "_id": share_id, "tenant": tenant, "status": PREPARED, "fingerprint": request_fingerprint,
        "ambassador_id": me, "content_id": content.content_id, "campaign_id": content.campaign_id,
        "team_id": team_id, "network": network.value, "text": request.text, "tracked_link_code": code,
        "tracked_link": tracked, "share_intent_url": share_intent_url(network, tracked, request.text),
        "recommended_at": slot, "similarity_to_suggested": scores.to_suggested,
        "similarity_to_colleagues": scores.to_colleagues, "personalized": scores.personalized(policy),
        "signature": scores.signature, "post_url": None, "created_at": now, "confirmed_at": None,
    }
    inserted = await store.insert_share(document)
    # Read back: a concurrent retry with the same key may have won, and the database's copy (times in
    # milliseconds) is what any later retry will be answered with.
    stored = await store.get_share(tenant, share_id) or document
    return stored if inserted else same_request_or_422(stored, request_fingerprint)


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


def same_request_or_422(existing: dict[str, Any], request_fingerprint: str) -> dict[str, Any]:
    if existing.get("fingerprint") != request_fingerprint:
        raise key_reused_with_other_body()
    return existing


async def get_share_for(store: DistributionStore, principal: Principal, share_id: str) -> dict[str, Any]:
    """An ambassador sees their own shares; admins and connectors any share of their tenant."""
    share = await store.get_share(principal.tenant, share_id)
    if share is None or (share["ambassador_id"] != principal.ambassador_id
                         and not principal.has_any(Role.ADMIN, Role.INTEGRATOR)):
        raise not_found("share")
    return share


async def confirm_share(store: DistributionStore, principal: Principal, share_id: str, post_url: str | None,
                        now: datetime) -> dict[str, Any]:
    """Record that the person posted; emits post.shared.v1 once (a repeated confirmation changes nothing)."""
    share = await get_share_for(store, principal, share_id)
    if share["status"] == CONFIRMED:
        return share
    tenant = principal.tenant
    ambassador = await store.get_ambassador(tenant, share["ambassador_id"])
    reason = ineligibility(ambassador, await store.get_charter(tenant))
    if reason in ("opted_out", "erased", "not_opted_in"):
        raise Refusal(reason, INELIGIBILITY_REASONS[reason])
    assert ambassador is not None
    if not await store.claim_link_for_share(tenant, share["tracked_link_code"], share_id):
        raise Refusal("already_shared", f"You already shared this content on {share['network']}.")
    event = PostShared(share_id=share_id, content_id=share["content_id"], campaign_id=share["campaign_id"],
                       ambassador_id=share["ambassador_id"], team_id=share.get("team_id"),
                       network=Network(share["network"]), personalized=share["personalized"],
                       similarity_to_suggested=share["similarity_to_suggested"],
                       similarity_to_colleagues=share["similarity_to_colleagues"],
                       potential_reach=ambassador.audience_on(share["network"]) or 0,
                       tracked_link_code=share["tracked_link_code"], shared_at=now)
    update = {"$set": {"status": CONFIRMED, "confirmed_at": now, "post_url": post_url}}
    # A deterministic id: should two confirmations both get through, consumers see one event twice.
    envelope = envelope_for(event, tenant_id=tenant, source=EVENT_SOURCE,
                            event_id=str(uuid.uuid5(SHARE_EVENT_NAMESPACE, f"{tenant}/{share_id}")))
    await store.confirm_share(tenant, share_id, with_outbox(update, [(SHARE, envelope)]))
    return await store.get_share(tenant, share_id) or share

