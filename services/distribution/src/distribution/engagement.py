"""Engagement in: clicks on tracked links, and signed reports of connectors (engagement and conversions).

Clicks are inserted with their event in the click document's outbox (the redirect never waits for
Kafka). A connector's report is recorded under its own id first, then published, and the endpoint
answers once Kafka acknowledged; the envelope id is the deterministic engagement id, so a retry
after a failure publishes the very same event.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from advocacy_common.api_support import fingerprint, idempotent_id
from advocacy_common.auth import Principal
from advocacy_common.envelope import Envelope
from advocacy_common.errors import Problem, conflict, invalid, not_found
from advocacy_common.events import ConversionType, EngagementKind, EngagementReceived
from advocacy_common.outbox import new_document_with_outbox
from advocacy_common.publishing import EventPublisher, envelope_for
from advocacy_common.topics import ENGAGEMENT

from .options import EVENT_SOURCE, Options
from .schemas import ConversionReport, EngagementReport, NewConnector
from .sharing import same_request_or_422
from .store import DistributionStore, scoped_id
from .tracking import (
    SignatureRejected, engagement_id, is_link_preview_bot, new_connector_secret, verify_signature, visitor_hash,
    with_utm,
)

REDIRECT_SOURCE = "redirect"


def attribution_of_link(link: dict[str, Any]) -> dict[str, Any]:
    """Who and what a tracked link stands for, so consumers need no join."""
    return {"share_id": link.get("confirmed_share_id"), "content_id": link["content_id"],
            "campaign_id": link.get("campaign_id"), "ambassador_id": link["ambassador_id"],
            "team_id": link.get("team_id"), "network": link["network"]}


def attribution_of_share(share: dict[str, Any]) -> dict[str, Any]:
    return {**attribution_of_link(share), "share_id": share["_id"]}


def engagement_envelope(tenant: str, attribution: dict[str, Any], *, kind: EngagementKind, count: int, source: str,
                        source_event_id: str, occurred_at: datetime, conversion_type: ConversionType | None = None,
                        unique_visitor: bool = False) -> Envelope:
    event_id = engagement_id(tenant, source, source_event_id)
    event = EngagementReceived(engagement_id=event_id, kind=kind, count=count, occurred_at=occurred_at,
                               source=source, source_event_id=source_event_id, conversion_type=conversion_type,
                               unique_visitor=unique_visitor, **attribution)
    return envelope_for(event, tenant_id=tenant, source=EVENT_SOURCE, event_id=event_id)


# --- tracked links ------------------------------------------------------------------------------

async def follow_link(store: DistributionStore, options: Options, code: str, client_ip: str,
                      user_agent: str | None, now: datetime) -> str | None:
    """Where the code leads (with UTM parameters), after recording the click; None for an unknown code."""
    link = await store.get_link(code)
    if link is None:
        return None
    work = [store.get_content(link["tenant"], link["content_id"])]
    if not is_link_preview_bot(user_agent):
        work.append(record_click(store, options, link, client_ip, user_agent or "", now))
    content, *_ = await asyncio.gather(*work)  # the click is durable before we answer, in parallel with the lookup
    destination = content.link_url if content is not None and content.link_url else link["link_url"]
    return with_utm(destination, network=link["network"], campaign_id=link.get("campaign_id") or "", code=code)


async def record_click(store: DistributionStore, options: Options, link: dict[str, Any], client_ip: str,
                       user_agent: str, now: datetime) -> None:
    """One insert per click, carrying its event. A visitor's first click on a link is stored under a key
    derived from their hash, so the insert itself says whether they are new; later clicks get random keys.
    Inserts only: no document is updated by two writers (FerretDB's updates are not atomic under contention)."""
    tenant, code = link["tenant"], link["_id"]
    click_id = uuid.uuid4().hex

    def click(document_id: str, unique: bool) -> dict[str, Any]:
        envelope = engagement_envelope(tenant, attribution_of_link(link), kind=EngagementKind.CLICK, count=1,
                                       source=REDIRECT_SOURCE, source_event_id=click_id, occurred_at=now,
                                       unique_visitor=unique)
        return new_document_with_outbox({"_id": document_id, "tenant": tenant, "code": code, "at": now},
                                        [(ENGAGEMENT, envelope)])

    first_click_id = f"{code}/{visitor_hash(options.visitor_hash_salt, code, client_ip, user_agent)}"
    if not await store.insert_click(click(first_click_id, unique=True)):
        await store.insert_click(click(f"{code}/{click_id}", unique=False))


# --- connectors ------------------------------------------------------------------------------------

async def create_connector(store: DistributionStore, principal: Principal, request: NewConnector,
                           idempotency_key: str | None, now: datetime) -> dict[str, Any]:
    connector_id = idempotent_id(principal.tenant, "connector", idempotency_key)
    request_fingerprint = fingerprint(request.model_dump(mode="json"))
    document = {"_id": connector_id, "tenant": principal.tenant, "name": request.name,
                "secret": new_connector_secret(), "fingerprint": request_fingerprint, "created_at": now}
    if await store.insert_connector(document):
        return document
    existing = await store.get_connector(principal.tenant, connector_id)
    if existing is None:
        raise conflict(f"A connector named {request.name!r} already exists.")
    return same_request_or_422(existing, request_fingerprint)


async def _attribute_engagement(store: DistributionStore, tenant: str, report: EngagementReport) -> dict[str, Any]:
    if report.share_id:
        share = await store.get_share(tenant, report.share_id)
        if share is None:
            raise invalid("share_id", "matches no share")
        return attribution_of_share(share)
    if report.post_url:
        share = await store.get_share_by_post_url(tenant, report.post_url)
        if share is None:
            raise invalid("post_url", "matches no confirmed share")
        return attribution_of_share(share)
    if report.tracked_link_code:
        return attribution_of_link(await _link(store, tenant, report.tracked_link_code))
    raise invalid("share_id", "one of share_id, post_url or tracked_link_code is required")


async def _link(store: DistributionStore, tenant: str, code: str) -> dict[str, Any]:
    link = await store.get_link_of_tenant(tenant, code)
    if link is None:
        raise invalid("tracked_link_code", "matches no tracked link")
    return link


async def _report_envelope(store: DistributionStore, tenant: str, source: str, report: BaseModel) -> Envelope:
    if isinstance(report, ConversionReport):
        attribution = attribution_of_link(await _link(store, tenant, report.tracked_link_code))
        return engagement_envelope(tenant, attribution, kind=EngagementKind.CONVERSION, count=report.count,
                                   source=source, source_event_id=report.id, occurred_at=report.occurred_at,
                                   conversion_type=report.conversion_type)
    assert isinstance(report, EngagementReport)
    return engagement_envelope(tenant, await _attribute_engagement(store, tenant, report),
                               kind=EngagementKind(report.kind), count=report.count, source=source,
                               source_event_id=report.id, occurred_at=report.occurred_at)


async def ingest_report(store: DistributionStore, publisher: EventPublisher, options: Options, principal: Principal,
                        connector_id: str, report_type: type[EngagementReport] | type[ConversionReport],
                        raw_body: bytes, signature: str | None, now: datetime) -> str:
    """Verify, de-duplicate, publish and wait for Kafka; returns the engagement id."""
    tenant = principal.tenant
    connector = await store.get_connector(tenant, connector_id)
    if connector is None:
        raise not_found("connector")
    try:
        verify_signature(connector["secret"], signature, raw_body, now, options.webhook_tolerance_seconds)
    except SignatureRejected as error:
        raise Problem(401, "Unauthorized", str(error)) from None
    report = _parse(report_type, raw_body)
    report_id = scoped_id(tenant, connector_id, report.id)
    report_fingerprint = fingerprint(report.model_dump(mode="json"))
    envelope = await _recorded_envelope(store, tenant, report_id, report_fingerprint)
    if envelope is None:
        envelope = await _report_envelope(store, tenant, connector["name"], report)
        recorded = {"_id": report_id, "tenant": tenant, "connector_id": connector_id, "source_event_id": report.id,
                    "fingerprint": report_fingerprint, "engagement_id": envelope.id, "acknowledged": False,
                    "envelope": envelope.to_document(), "received_at": now}
        if not await store.insert_report(recorded):
            raise conflict("This report id is being received right now; retry in a moment.")
    try:
        await publisher.publish(ENGAGEMENT, envelope)
    except Exception as error:
        raise Problem(503, "Service Unavailable", "The report could not be stored durably; retry with the same id.",
                      headers={"Retry-After": "5"}) from error
    await store.mark_report_acknowledged(report_id)
    return envelope.id


async def _recorded_envelope(store: DistributionStore, tenant: str, report_id: str,
                             report_fingerprint: str) -> Envelope | None:
    """The envelope of an earlier, unacknowledged attempt with this id; refuses a replay of an acknowledged one."""
    existing = await store.get_report(tenant, report_id)
    if existing is None:
        return None
    if existing["fingerprint"] != report_fingerprint:
        raise invalid("id", "was already used for a different report")
    if existing.get("acknowledged"):
        raise conflict("This report id was already received; it is counted once.",
                       engagement_id=existing["engagement_id"])
    return Envelope.from_document(existing["envelope"])


def _parse(report_type: type[BaseModel], raw_body: bytes) -> Any:
    try:
        return report_type.model_validate_json(raw_body)
    except ValidationError as error:
        errors = [{"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]} for e in error.errors()]
        raise Problem(422, "Unprocessable Content", "; ".join(f"{e['field']}: {e['message']}" for e in errors),
                      errors=errors) from None
