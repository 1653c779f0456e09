"""Engagement from connectors: their registration, their reports (202 after Kafka's ack), and the
comments awaiting a reply.

**One entry point for every connector**: `Engagement.ingest(tenant, source, observation, now)`.

- `tenant`: whose post it is.
- `source`: a `ReportSource(key, name)`; `key` scopes the observation ids (a webhook connector's id, or a
  poller's own stable key such as "linkedin-poller"), `name` becomes the events' `source` (for a webhook,
  the connector's name).
- `observation`: an `Observation` (models/engagement.py): the connector's own `id` of it, `kind`, `count`
  (the increase, not a running total), `occurred_at` (time-zone aware), the post by `share_id`, `post_url`
  or `tracked_link_code`, and `conversion_type` for a conversion.
- `now`: the server's clock.

It returns the engagement id (the event's id, deterministic from tenant, source name and observation id)
once Kafka acknowledged the `engagement.received.v1`. It raises `Implausible` (models/plausibility.py: the
rules, all in one place) when the observation cannot be true, and then records and publishes nothing; a
`Problem` 409 when the id was received already (counted once), 422 when the id came back with another
body, 503 when Kafka or the totals are busy (retry with the same observation). The signed webhooks
(`ingest_report`) verify and parse, then call it like any poller does.

An observation is recorded under its id first, with its envelope, then published, then marked
acknowledged; the envelope id is the deterministic engagement id, so a retry after a failed publish
publishes the very same event, and a replay of an acknowledged id is refused. Each share's comment and
reply totals (one document, compare-and-set) are checked and updated on the way: replies before the
report is recorded, comments after Kafka's ack, so replies never exceed comments that were published.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from advocacy_common.api_support import fingerprint, idempotent_id
from advocacy_common.auth import Principal, signature_unauthorized
from advocacy_common.envelope import Envelope
from advocacy_common.errors import Problem, conflict, invalid, not_found
from advocacy_common.events import EngagementKind, EngagementReceived
from advocacy_common.repository import AlreadyExists, Page, StaleWrite, UnitOfWork
from advocacy_common.secretbox import SecretUnreadable
from advocacy_common.topics import ENGAGEMENT
from advocacy_common.subjects import ambassador_id_of

from ..models.engagement import (
    Connector, Observation, Report, ReportSource, SignatureRejected, attribution_of_share, engagement_received,
    new_connector_secret, verify_signature,
)
from ..models.plausibility import Implausible, check_confirmed, check_count, check_occurred_at, reported_ambassador
from ..models.projections import CommentTally, scoped_id
from ..models.sharing import Share
from ..options import EVENT_SOURCE, Options
from ..ports import Publisher, Repositories
from ..schemas import ConversionReport, EngagementReport, NewConnector

ReportType = type[EngagementReport] | type[ConversionReport]
T = TypeVar("T")
TOTALS_ATTEMPTS = 20  # compare-and-set rounds on one post's totals before answering 503
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AwaitingReply:
    tally: CommentTally
    post_url: str | None


@dataclass(frozen=True)
class Engagement:
    repositories: Repositories
    publisher: Publisher
    options: Options

    async def register_connector(self, principal: Principal, request: NewConnector, idempotency_key: str | None,
                                 now: datetime) -> Connector:
        """A new connector with its signing secret; the same key and body return the first one again."""
        connector = Connector(id=idempotent_id(principal.tenant, "connector", idempotency_key),
                              tenant=principal.tenant, name=request.name, secret=new_connector_secret(),
                              created_at=now)
        try:
            return await _readable(self.repositories.connectors.register(
                connector, fingerprint(request.model_dump(mode="json"))))
        except AlreadyExists:
            raise conflict(f"A connector named {request.name!r} already exists.") from None

    async def connectors(self, tenant: str, cursor: str | None, limit: int) -> Page[Connector]:
        return await _readable(self.repositories.connectors.page_of(tenant, cursor, limit))

    async def comments_awaiting_reply(self, principal: Principal, cursor: str | None,
                                      limit: int) -> Page[AwaitingReply]:
        """My posts with comments I have not replied to yet, by share id."""
        me = await ambassador_id_of(self.repositories.ambassadors, principal)
        tallies = await self.repositories.comments.awaiting_reply(principal.tenant, me, cursor, limit)
        result = []
        for tally in tallies.items:
            share = await self.repositories.shares.get(principal.tenant, tally.share_id)
            result.append(AwaitingReply(tally, share.post_url if share else None))
        return Page(result, tallies.next_cursor)

    async def ingest_report(self, principal: Principal, connector_id: str, report_type: ReportType,
                            raw_body: bytes, signature: str | None, now: datetime) -> str:
        """A signed webhook: verify the signature, parse the body, then `ingest` it; the engagement id."""
        tenant = principal.tenant
        connector = await _readable(self.repositories.connectors.get(tenant, connector_id))
        if connector is None:
            raise not_found("connector")
        try:
            verify_signature(connector.secret, signature, raw_body, now, self.options.webhook_tolerance_seconds)
        except SignatureRejected as error:
            raise signature_unauthorized(str(error)) from None
        report = _parse(report_type, raw_body)
        if isinstance(report, ConversionReport):
            observation = Observation(id=report.id, kind=EngagementKind.CONVERSION, count=report.count,
                                      occurred_at=report.occurred_at, tracked_link_code=report.tracked_link_code,
                                      conversion_type=report.conversion_type)
        else:
            observation = Observation(**report.model_dump())
        return await self.ingest(tenant, ReportSource(key=connector.id, name=connector.name), observation, now)

    async def ingest(self, tenant: str, source: ReportSource, observation: Observation, now: datetime, *,
                     self_reported: bool = False) -> str:
        """The one way in for every connector's observation (see the module docstring); the engagement id.
        Signed webhooks and the deltas of the network connectors we run (`connectors.poller.report_delta`)
        both come here. `self_reported`: figures a person typed in, marked as such in the event."""
        report_id = scoped_id(tenant, source.key, observation.id)
        body = observation.model_dump(mode="json")
        # Only when set, so that the fingerprints of webhook reports stay what they were.
        report_fingerprint = fingerprint({**body, "self_reported": True} if self_reported else body)
        envelope = await self._recorded_envelope(tenant, report_id, report_fingerprint)
        if envelope is None:
            event = await self._plausible_event(tenant, source.name, observation, now, self_reported)
            # Replies are counted against the comments before anything is recorded: a refusal leaves nothing.
            await self._count_in_totals(tenant, event, EngagementKind.COMMENT_REPLY)
            envelope = UnitOfWork(tenant, EVENT_SOURCE).record(event, event_id=event.engagement_id)
            recorded = Report(id=report_id, tenant=tenant, connector_id=source.key, source_event_id=observation.id,
                              fingerprint=report_fingerprint, engagement_id=envelope.id, envelope=envelope,
                              received_at=now)
            if not await self.repositories.reports.record(recorded):
                raise conflict("This report id is being received right now; retry in a moment.")
        else:
            event = EngagementReceived.model_validate(envelope.data)
            await self._count_in_totals(tenant, event, EngagementKind.COMMENT_REPLY)  # once: see ShareTotals
        try:
            await self.publisher.publish(ENGAGEMENT, envelope)
        except Exception as error:
            raise Problem(503, "Service Unavailable", "The report could not be stored durably; retry with the "
                          "same id.", headers={"Retry-After": "5"}) from error
        # Comments count in the totals only once Kafka has them: the totals never hold more comments than
        # were published, so replies accepted against them never exceed the published comments.
        await self._count_in_totals(tenant, event, EngagementKind.COMMENT)
        await self.repositories.reports.acknowledge(tenant, report_id)
        return envelope.id

    async def _recorded_envelope(self, tenant: str, report_id: str, report_fingerprint: str) -> Envelope | None:
        """The envelope of an earlier, unacknowledged attempt with this id; refuses a replay of an acknowledged one."""
        existing = await self.repositories.reports.get(tenant, report_id)
        if existing is None:
            return None
        if existing.fingerprint != report_fingerprint:
            raise invalid("id", "was already used for a different report")
        if existing.acknowledged or existing.envelope is None:
            raise conflict("This report id was already received; it is counted once.",
                           engagement_id=existing.engagement_id)
        return existing.envelope

    async def _plausible_event(self, tenant: str, source: str, observation: Observation,
                               now: datetime, self_reported: bool = False) -> EngagementReceived:
        """The observation's event, attributed to its confirmed share, if every plausibility rule holds."""
        check_count(observation.kind, observation.count)
        share = await self._post(tenant, observation)
        check_occurred_at(observation.occurred_at, now, share.confirmed_at, self.options.engagement_clock_skew,
                          self.options.engagement_backfill)
        ambassador = await self.repositories.ambassadors.get(tenant, share.ambassador_id)
        attribution = {**attribution_of_share(share), "ambassador_id": reported_ambassador(share, ambassador)}
        if observation.kind is EngagementKind.CONVERSION and observation.conversion_type is None:
            raise Implausible("conversion_type_missing", "conversion_type", "is required for a conversion")
        return engagement_received(tenant, attribution, kind=observation.kind, count=observation.count,
                                   source=source, source_event_id=observation.id,
                                   occurred_at=observation.occurred_at, conversion_type=observation.conversion_type,
                                   self_reported=self_reported)

    async def _post(self, tenant: str, observation: Observation) -> Share:
        """The confirmed share the observation is about."""
        shares = self.repositories.shares
        if observation.share_id:
            return check_confirmed(await shares.get(tenant, observation.share_id), "share_id")
        if observation.post_url:
            return check_confirmed(await shares.find_by_post_url(tenant, observation.post_url), "post_url")
        if observation.tracked_link_code:
            link = await self.repositories.links.get(tenant, observation.tracked_link_code)
            if link is None:
                raise Implausible("unknown_post", "tracked_link_code", "matches no tracked link")
            share = await shares.get(tenant, link.confirmed_share_id) if link.confirmed_share_id else None
            if share is None:
                raise Implausible("share_not_confirmed", "tracked_link_code", "belongs to a share that was never "
                                  "confirmed as posted")
            return check_confirmed(share, "tracked_link_code")
        raise Implausible("unknown_post", "share_id", "one of share_id, post_url or tracked_link_code is required")

    async def _count_in_totals(self, tenant: str, event: EngagementReceived, kind: EngagementKind) -> None:
        """Add the event to its share's comment totals if it is of `kind` (compare-and-set, retried)."""
        if event.kind is not kind or event.share_id is None:
            return
        totals = self.repositories.totals
        for _ in range(TOTALS_ATTEMPTS):
            updated = (await totals.get(tenant, event.share_id)).counting(kind, event.count, event.engagement_id)
            if updated is None:
                return  # counted by an earlier attempt of this report
            try:
                await totals.save(updated)
                return
            except (StaleWrite, AlreadyExists):
                continue  # another report on this post got in between: read again
        raise Problem(503, "Service Unavailable", "Too many reports on this post at once; retry with the same id.",
                      headers={"Retry-After": "1"})


async def _readable(call: Awaitable[T]) -> T:
    """A stored secret sealed under a key this process does not hold is an operator's matter, not the caller's."""
    try:
        return await call
    except SecretUnreadable as error:
        log.error("a connector secret cannot be opened: %s; is its key still in DISTRIBUTION_SECRET_KEYS?", error)
        raise Problem(503, "Service Unavailable", "The connector's secret cannot be read right now; retry later.",
                      headers={"Retry-After": "60"}) from None


def _parse(report_type: type[BaseModel], raw_body: bytes) -> EngagementReport | ConversionReport:
    try:
        return report_type.model_validate_json(raw_body)  # type: ignore[return-value]
    except ValidationError as error:
        errors = [{"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]} for e in error.errors()]
        raise Problem(422, "Unprocessable Content", "; ".join(f"{e['field']}: {e['message']}" for e in errors),
                      errors=errors) from None
