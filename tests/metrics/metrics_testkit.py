"""Test helpers of the metrics service: event builders, the shared in-memory fakes of the ports
(`InMemoryStore`, `InMemoryGenerations`), a plain reference.

The reference computes every KPI straight from the list of distinct facts, by
filtering and counting, with none of the service's coalescing, watermarks or
claims: it is what the service must equal.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from advocacy_common.consuming import Delivery
from advocacy_common.envelope import Envelope
from advocacy_common.events import (
    AmbassadorErased, AmbassadorOptedIn, AmbassadorOptedOut, AmbassadorProfile, AmbassadorProfileUpdated,
    ContentPublished, ConversionType, EngagementKind, EngagementReceived, Event, Network, NetworkPresence,
    Objective, Persona, PostShared,
)
from advocacy_common.publishing import envelope_for
from advocacy_testkit import FakeExportParts, FakeSubjectHolders
from metrics.aggregation import (
    AmbassadorChange, AmbassadorKey, Change, ConditionalWrite, ContentKey, CounterKey, FactId, Increments, Position,
    Slice, SliceSpan, Target, Watermarks, activity_rows, counter_rows,
)
from metrics.models import (
    FIRST_GENERATION, ActivityDay, AmbassadorView, ContentView, CounterRow, Dimension, Period, Person, Revisions,
    in_view,
)

BASE_DAY = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NETWORKS = [Network.LINKEDIN, Network.X, Network.XING]
CPM = {"linkedin": 12.0, "x": 6.0, "xing": 10.0}


# --- events -------------------------------------------------------------------------------

def opted_in(ambassador: str, team: str | None, networks: Sequence[Network] = (Network.LINKEDIN,),
             leaderboard: bool = False, at: datetime = BASE_DAY, name: str | None = None) -> AmbassadorOptedIn:
    return AmbassadorOptedIn(ambassador_id=ambassador, charter_version=1, opted_in_at=at,
                             profile=profile(team, networks, leaderboard, name))


def profile(team: str | None, networks: Sequence[Network], leaderboard: bool = False,
            name: str | None = None) -> AmbassadorProfile:
    """`name` is the leaderboard name, sent (as the ambassador service does) only with `leaderboard`."""
    return AmbassadorProfile(persona=Persona.EXPERT, team_id=team, leaderboard_opt_in=leaderboard,
                             leaderboard_name=name if leaderboard else None,
                             networks=[NetworkPresence(network=n, audience_size=100) for n in networks])


def moved(ambassador: str, team: str | None, networks: Sequence[Network] = (Network.LINKEDIN,),
          leaderboard: bool = False, at: datetime = BASE_DAY, name: str | None = None) -> AmbassadorProfileUpdated:
    return AmbassadorProfileUpdated(ambassador_id=ambassador, updated_at=at,
                                    profile=profile(team, networks, leaderboard, name))


def opted_out(ambassador: str, at: datetime = BASE_DAY) -> AmbassadorOptedOut:
    return AmbassadorOptedOut(ambassador_id=ambassador, opted_out_at=at)


def erased(ambassador: str, at: datetime = BASE_DAY) -> AmbassadorErased:
    return AmbassadorErased(ambassador_id=ambassador, erased_at=at)


def published(content: str, campaign: str, topics: Sequence[str] = ("ai",), title: str = "t",
              version: int = 1) -> ContentPublished:
    return ContentPublished(content_id=content, version=version, campaign_id=campaign, objective=Objective.AWARENESS,
                            title=title, link_url="https://example.com", topics=list(topics), language="en",
                            networks=[Network.LINKEDIN], publish_at=BASE_DAY)


def shared(share: str, ambassador: str, content: str, campaign: str, team: str | None,
           network: Network = Network.LINKEDIN, day: int = 0, personalized: bool = True,
           reach: int = 100) -> PostShared:
    return PostShared(
        share_id=share, content_id=content, campaign_id=campaign, ambassador_id=ambassador, team_id=team,
        network=network, personalized=personalized, similarity_to_suggested=0.2, similarity_to_colleagues=0.1,
        potential_reach=reach, tracked_link_code=f"L{share}", shared_at=BASE_DAY + timedelta(days=day))


def engaged(engagement: str, share: str, ambassador: str, content: str, campaign: str | None, team: str | None,
            kind: EngagementKind, count: int = 1, network: Network = Network.LINKEDIN, day: int = 0,
            conversion: ConversionType | None = None, unique: bool = False,
            self_reported: bool = False) -> EngagementReceived:
    return EngagementReceived(
        engagement_id=engagement, kind=kind, count=count, share_id=share, content_id=content, campaign_id=campaign,
        ambassador_id=ambassador, team_id=team, network=network, occurred_at=BASE_DAY + timedelta(days=day),
        source="test", source_event_id=engagement, conversion_type=conversion, unique_visitor=unique,
        self_reported=self_reported)


# The KPI names of self-reported figures, kind by kind (written out here, independently of metrics.models).
SELF_REPORTED = {"impressions": EngagementKind.IMPRESSION, "members_reached": EngagementKind.MEMBERS_REACHED,
                 "reactions": EngagementKind.REACTION, "comments": EngagementKind.COMMENT,
                 "comment_replies": EngagementKind.COMMENT_REPLY, "reshares": EngagementKind.RESHARE}


def envelope(event: Event, tenant: str) -> Envelope:
    return envelope_for(event, tenant_id=tenant, source="/test")


# --- a Kafka-like log ------------------------------------------------------------------------

@dataclass(frozen=True)
class Record:
    envelope: Envelope
    event: Event
    topic: str
    partition: int


def partition_of(env: Envelope, partitions: int) -> int:
    return sum((env.subject or "").encode()) % partitions


def build_log(envelopes: Iterable[tuple[Envelope, Event]], partitions: int = 2) -> dict[tuple[str, int], list[Delivery]]:
    """Records appended to their topic partition in production order, with offsets."""
    log: dict[tuple[str, int], list[Delivery]] = defaultdict(list)
    for env, event in envelopes:
        key = (event.topic, partition_of(env, partitions))
        log[key].append(Delivery(env, event, event.topic, key[1], len(log[key])))
    return log


def deliveries(tenant: str, *events: Event) -> list[Delivery]:
    """The events as a tenant's deliveries over two partitions."""
    return [d for records in build_log([(envelope(e, tenant), e) for e in events], 2).values() for d in records]


def programme(tenant: str = "t1", *later: Event) -> list[Delivery]:
    """A small tenant: three people in red, one in blue, two campaigns, one share with 50 impressions;
    then `later`, in the same log (a later batch: see `split`)."""
    return deliveries(tenant, *[opted_in(f"a{n}", "red") for n in range(3)], opted_in("b1", "blue"),
                      published("c1", "camp1"), published("c9", "quiet-campaign"),
                      shared("s1", "a0", "c1", "camp1", "red"),
                      engaged("e1", "s1", "a0", "c1", "camp1", "red", EngagementKind.IMPRESSION, 50), *later)


def split(log: Sequence[Delivery], later: Sequence[Event]) -> tuple[list[Delivery], list[Delivery]]:
    """A log as two batches: what came before `later`, and `later`."""
    return [d for d in log if d.event not in later], [d for d in log if d.event in later]


class SimulatedCrash(Exception):
    """The worker was killed: nothing after this point of the batch happened."""


class InMemoryStore(FakeSubjectHolders, FakeExportParts):
    """The `MetricsStore` port in plain Python over domain types, able to 'crash' after a number of
    single-document writes (what the worker being killed leaves behind)."""

    def __init__(self) -> None:
        FakeSubjectHolders.__init__(self)
        FakeExportParts.__init__(self)
        self.counters: dict[CounterKey, dict[str, int]] = {}
        self.ambassadors: dict[AmbassadorKey, AmbassadorView] = {}
        self.contents: dict[ContentKey, ContentView] = {}
        self.watermarks: dict[Target, dict[str, int]] = {}
        self.claims: dict[FactId, Position] = {}
        self.activity: dict[tuple[Person, str], ActivityDay] = {}
        self.slices: dict[tuple[str, int], Slice] = {}
        self.progress: dict[str, int] = {}
        self.rosters: dict[str, int] = {}
        self.data_revisions: dict[str, int] = {}
        self.crash_after: int | None = None
        self.writes = 0

    def _write(self) -> None:
        if self.crash_after is not None and self.writes >= self.crash_after:
            raise SimulatedCrash()
        self.writes += 1

    async def claim(self, claims: Mapping[FactId, Position]) -> dict[FactId, Position]:
        result = {}
        for fact, position in claims.items():
            if fact not in self.claims:
                self._write()
                self.claims[fact] = position
            result[fact] = self.claims[fact]
        return result

    async def write_conditionally(self, writes: Sequence[ConditionalWrite]) -> list[ConditionalWrite]:
        refused = []
        for write in writes:
            marks = self.watermarks.get(write.target, {})
            if any(marks.get(p, -1) >= floor for p, floor in write.floors.items()):
                refused.append(write)
                continue
            self._write()
            self._apply(write.target, write.change)
            self.watermarks.setdefault(write.target, {}).update(write.marks)
        self._roster_changed({w.target.tenant for w in writes if isinstance(w.target, AmbassadorKey)})
        return refused

    def _roster_changed(self, tenants: set[str]) -> None:
        for tenant in tenants:  # not a counted write: no crash point of its own (it only drops kept reports)
            self.rosters[tenant] = self.rosters.get(tenant, 0) + 1

    async def roster_revision(self, tenant: str) -> int:
        return self.rosters.get(tenant, 0)

    async def revisions(self, tenant: str) -> Revisions:
        return Revisions(self.rosters.get(tenant, 0), self.data_revisions.get(tenant, 0))

    async def data_changed(self, tenants) -> None:
        for tenant in set(tenants):  # not a counted write either: it only tells the API to recompute
            self.data_revisions[tenant] = self.data_revisions.get(tenant, 0) + 1

    def _apply(self, target: Target, change: Change) -> None:
        if isinstance(target, CounterKey):
            assert isinstance(change, Increments)
            parts = self.counters.setdefault(target, {})
            for name, amount in change.parts.items():
                parts[name] = parts.get(name, 0) + amount
        elif isinstance(target, AmbassadorKey):
            assert isinstance(change, AmbassadorChange)
            self.ambassadors[target] = change.applied_to(
                self.ambassadors.get(target, AmbassadorView(target.ambassador_id)))
        else:
            assert isinstance(change, ContentView)
            self.contents[target] = change

    async def read_watermarks(self, targets: Sequence[Target]) -> dict[Target, Watermarks]:
        return {t: dict(self.watermarks[t]) for t in targets if t in self.watermarks}

    async def add_activity(self, rows: Sequence[ActivityDay]) -> None:
        for row in rows:
            self._write()
            seen = self.activity.get((row.person, row.day))
            self.activity[(row.person, row.day)] = row if seen is None else seen.joined(row)

    async def erased_among(self, people: set[Person]) -> set[Person]:
        return {p for p in people if (view := self.ambassadors.get(AmbassadorKey(*p))) and view.erased}

    async def erase_individual(self, person: Person) -> None:
        self._write()
        for key in [k for k in self.counters if k.tenant == person.tenant
                    and k.dimension is Dimension.AMBASSADOR and k.value == person.ambassador_id]:
            del self.counters[key]
            del self.watermarks[key]
        for key in [k for k in self.activity if k[0] == person]:
            del self.activity[key]
        for key, piece in list(self.slices.items()):
            if person in piece.people:
                self._write()
                self.slices[key] = piece.without(person)
        self._roster_changed({person.tenant})

    async def append_slices(self, slices: Sequence[Slice]) -> list[SliceSpan]:
        taken = []
        for piece in slices:
            stored = self.slices.get((piece.partition, piece.first))
            if stored is not None:
                taken.append(stored.span)
                continue
            self._write()
            self.slices[(piece.partition, piece.first)] = piece
        return taken

    async def slice_progress(self, partitions: Sequence[str]) -> dict[str, int]:
        return {p: self.progress[p] for p in partitions if p in self.progress}

    async def raise_progress(self, partition: str, last: int) -> None:
        self._write()
        self.progress[partition] = max(self.progress.get(partition, -1), last)

    async def pending_slices(self, partitions: Sequence[str] | None) -> list[Slice]:
        return [piece for (partition, _), piece in sorted(self.slices.items())
                if partitions is None or partition in partitions]

    async def delete_slices(self, spans: Sequence[SliceSpan]) -> None:
        for span in spans:
            self._write()
            self.slices.pop((span.partition, span.first), None)

    async def list_counters(self, tenant: str, dimension: Dimension, value: str | None,
                            period: Period) -> list[CounterRow]:
        def wanted(key: CounterKey) -> bool:
            return key.tenant == tenant and key.dimension is dimension and period.contains(key.day) \
                and (value is None or key.value == value)

        slices = list(self.slices.values())
        return counter_rows([(key, parts, self.watermarks.get(key, {})) for key, parts in self.counters.items()
                             if wanted(key)], slices, wanted)

    async def list_activity(self, tenant: str, period: Period, dimension: Dimension | None = None,
                            value: str | None = None) -> list[ActivityDay]:
        def wanted(row: ActivityDay) -> bool:
            return row.tenant == tenant and period.contains(row.day) and in_view(row, dimension, value)

        return activity_rows([row for row in self.activity.values() if wanted(row)], list(self.slices.values()), wanted)

    async def list_ambassadors(self, tenant: str) -> list[AmbassadorView]:
        return [view for key, view in self.ambassadors.items() if key.tenant == tenant]

    async def list_contents(self, tenant: str) -> list[ContentView]:
        return [view for key, view in self.contents.items() if key.tenant == tenant]


class InMemoryGenerations:
    """The `Generations` port in memory: one `InMemoryStore` per generation and a live pointer."""

    def __init__(self) -> None:
        self.stores: dict[int, InMemoryStore] = {}
        self.live = FIRST_GENERATION
        self.allocated = FIRST_GENERATION

    async def current(self) -> int:
        return self.live

    async def allocate(self) -> int:
        self.allocated = max(self.allocated, self.live) + 1
        return self.allocated

    async def switch_to(self, generation: int) -> None:
        self.live = generation

    def store(self, generation: int) -> InMemoryStore:
        return self.stores.setdefault(generation, InMemoryStore())

    async def prepare(self, generation: int, *, empty: bool = False) -> InMemoryStore:
        if empty:
            self.stores.pop(generation, None)
        return self.store(generation)


def consume_plan(log: Mapping[tuple[str, int], list[Delivery]], rng: random.Random,
                 committed: dict[tuple[str, int], int], max_batch: int) -> tuple[list[Delivery], dict]:
    """One batch as Kafka would hand it: from the committed positions, per-partition order kept."""
    positions = dict(committed)
    batch: list[Delivery] = []
    for _ in range(rng.randint(1, max_batch)):
        open_partitions = [p for p, records in log.items() if positions.get(p, 0) < len(records)]
        if not open_partitions:
            break
        chosen = rng.choice(sorted(open_partitions))
        batch.append(log[chosen][positions.get(chosen, 0)])
        positions[chosen] = positions.get(chosen, 0) + 1
    return batch, positions


# --- the reference --------------------------------------------------------------------------

@dataclass
class Reference:
    """Distinct facts and final states, from the envelopes in production order."""

    shares: list[tuple[str, PostShared]]
    engagements: list[tuple[str, EngagementReceived]]
    ambassadors: dict[tuple[str, str], dict[str, Any]]
    histories: dict[tuple[str, str], list[Event]]  # each person's events, in their partition's order

    @classmethod
    def of(cls, log: Mapping[tuple[str, int], list[Delivery]]) -> Reference:
        seen: set[str] = set()
        shares: dict[tuple[str, str], PostShared] = {}
        engagements: dict[tuple[str, str], EngagementReceived] = {}
        ambassadors: dict[tuple[str, str], dict[str, Any]] = {}
        histories: dict[tuple[str, str], list[Event]] = defaultdict(list)
        for records in log.values():
            for delivery in records:
                tenant, event = delivery.tenant_id, delivery.event
                if isinstance(event, PostShared):
                    shares.setdefault((tenant, event.share_id), event)
                elif isinstance(event, EngagementReceived):
                    engagements.setdefault((tenant, event.engagement_id), event)
                elif delivery.envelope.id not in seen:
                    seen.add(delivery.envelope.id)
                    _fold_ambassador(ambassadors, tenant, event)
                    if hasattr(event, "ambassador_id"):
                        histories[(tenant, event.ambassador_id)].append(event)
        return cls([(t, e) for (t, _), e in shares.items()], [(t, e) for (t, _), e in engagements.items()],
                   ambassadors, dict(histories))

    def state_on(self, tenant: str, ambassador: str, day: str) -> dict[str, Any]:
        """The person's state at the end of `day`: their events up to the first one dated after it
        (one event dated later holds back the rest, however they are dated)."""
        state: dict[tuple[str, str], dict[str, Any]] = {}
        for event in self.histories.get((tenant, ambassador), []):
            if _event_day(event) > day:
                break
            _fold_ambassador(state, tenant, event)
        return state.get((tenant, ambassador), {})

    def is_erased(self, tenant: str, ambassador: str) -> bool:
        return bool(self.ambassadors.get((tenant, ambassador), {}).get("erased"))

    def matches(self, tenant: str, fact: PostShared | EngagementReceived, dimension: Dimension, value: str) -> bool:
        if dimension is Dimension.TENANT:
            return True
        if dimension is Dimension.AMBASSADOR:
            return fact.ambassador_id == value and not self.is_erased(tenant, value)
        actual = {Dimension.CAMPAIGN: fact.campaign_id, Dimension.CONTENT: fact.content_id,
                  Dimension.NETWORK: fact.network.value, Dimension.TEAM: fact.team_id}[dimension]
        return actual == value

    def members(self, tenant: str, dimension: Dimension, value: str, day: str) -> set[str]:
        """Who counted in `value` at the end of `day`."""
        people = set()
        for (t, ambassador) in self.ambassadors:
            state = self.state_on(t, ambassador, day) if t == tenant else {}
            if t != tenant or state.get("status") != "opted_in" or state.get("erased"):
                continue
            if dimension is Dimension.TEAM and state.get("team_id") != value:
                continue
            if dimension is Dimension.NETWORK and value not in state.get("networks", []):
                continue
            if dimension is Dimension.AMBASSADOR and ambassador != value:
                continue
            people.add(ambassador)
        return people

    def kpis(self, tenant: str, dimension: Dimension, value: str, first: str, last: str) -> dict[str, Any]:
        def within(moment: datetime) -> bool:
            return first <= moment.date().isoformat() <= last

        shares = [s for t, s in self.shares if t == tenant and within(s.shared_at)
                  and self.matches(t, s, dimension, value)]
        engagements = [e for t, e in self.engagements if t == tenant and within(e.occurred_at)
                       and self.matches(t, e, dimension, value)]

        def total(kind: EngagementKind, keep=lambda e: True) -> int:
            return sum(e.count for e in engagements if e.kind is kind and keep(e))

        people = self.members(tenant, dimension, value, last)
        team_view = dimension in (Dimension.TEAM, Dimension.TENANT, Dimension.AMBASSADOR)
        # An erased person's activity days are deleted: they stay in past days' opted-in count
        # (anonymously) but no longer count as active.
        sharers = {s.ambassador_id for t, s in self.shares if t == tenant and within(s.shared_at)
                   and (team_view or self.matches(t, s, dimension, value))
                   and not self.is_erased(tenant, s.ambassador_id)}
        impressions = total(EngagementKind.IMPRESSION)
        reactions, comments, reshares = (total(EngagementKind.REACTION), total(EngagementKind.COMMENT),
                                         total(EngagementKind.RESHARE))
        clicks, conversions = total(EngagementKind.CLICK), total(EngagementKind.CONVERSION)
        replies = total(EngagementKind.COMMENT_REPLY)
        emv = sum(e.count * CPM.get(e.network.value, 0) for e in engagements if e.kind is EngagementKind.IMPRESSION)

        def rate(a: float, b: float) -> float | None:
            return a / b if b else None

        return {
            "ambassadors_opted_in": len(people), "active_ambassadors": len(people & sharers),
            "activation_rate": rate(len(people & sharers), len(people)),
            "shares": len(shares), "personalized_shares": sum(s.personalized for s in shares),
            "personalization_rate": rate(sum(s.personalized for s in shares), len(shares)),
            "potential_reach": sum(s.potential_reach for s in shares),
            "impressions": impressions, "reactions": reactions, "comments": comments, "reshares": reshares,
            "engagements": reactions + comments + reshares,
            "engagement_rate": rate(reactions + comments + reshares, impressions),
            "comment_replies": replies, "comment_response_rate": rate(replies, comments),
            "clicks": clicks, "unique_clicks": total(EngagementKind.CLICK, lambda e: e.unique_visitor),
            "click_through_rate": rate(clicks, impressions), "conversions": conversions,
            "conversions_by_type": {kind.value: total(EngagementKind.CONVERSION, lambda e, k=kind: e.conversion_type is k)
                                    for kind in ConversionType},
            "conversion_rate": rate(conversions, clicks), "earned_media_value": round(emv / 1000, 2),
            "members_reached": total(EngagementKind.MEMBERS_REACHED),
            "self_reported": {name: total(kind, lambda e: e.self_reported) for name, kind in SELF_REPORTED.items()},
        }

    def values(self, tenant: str, dimension: Dimension) -> set[str]:
        facts = [f for t, f in self.shares + self.engagements if t == tenant]
        if dimension is Dimension.TENANT:
            return {"all"}
        if dimension is Dimension.AMBASSADOR:
            return {f.ambassador_id for f in facts if not self.is_erased(tenant, f.ambassador_id)}
        attribute = {Dimension.CAMPAIGN: "campaign_id", Dimension.CONTENT: "content_id",
                     Dimension.NETWORK: "network", Dimension.TEAM: "team_id"}[dimension]
        found = {getattr(f, attribute) for f in facts}
        return {getattr(v, "value", v) for v in found if v is not None}


def _event_day(event: Event) -> str:
    moment = next(getattr(event, name) for name in ("opted_in_at", "updated_at", "opted_out_at", "erased_at")
                  if hasattr(event, name))
    return moment.date().isoformat()


def _fold_ambassador(states: dict[tuple[str, str], dict[str, Any]], tenant: str, event: Event) -> None:
    if not hasattr(event, "ambassador_id"):
        return
    state = states.setdefault((tenant, event.ambassador_id), {})
    if isinstance(event, AmbassadorOptedIn | AmbassadorProfileUpdated):
        state.update(team_id=event.profile.team_id, networks=[p.network.value for p in event.profile.networks],
                     leaderboard=event.profile.leaderboard_opt_in)
        if isinstance(event, AmbassadorOptedIn):
            state["status"] = "opted_in"
    elif isinstance(event, AmbassadorOptedOut):
        state["status"] = "opted_out"
    elif isinstance(event, AmbassadorErased):
        state.update(status="erased", erased=True, team_id=None, networks=[])
