"""KPI parts, dimensions, periods and the KPI formulas of shared/DOMAIN.md. Pure, no I/O.

Counters are kept per (tenant, UTC day, dimension, value) as additive parts;
any period is a sum of days and every ratio is computed from the summed parts,
never averaged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any, NamedTuple

from advocacy_common.events import ConversionType, EngagementKind, Network


class Dimension(StrEnum):
    TENANT = "tenant"
    CAMPAIGN = "campaign"
    CONTENT = "content"
    NETWORK = "network"
    TEAM = "team"
    AMBASSADOR = "ambassador"


TENANT_VALUE = "all"  # the tenant dimension has one value: the whole programme
FIRST_GENERATION = 1  # of the read model; a rebuild fills the next one and switches to it


class Granularity(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class AmbassadorStatus(StrEnum):
    OPTED_IN = "opted_in"
    OPTED_OUT = "opted_out"
    ERASED = "erased"


class Revisions(NamedTuple):
    """Per tenant, two numbers the worker raises: `roster` when who counts changes (ambassador events,
    erasures), `data` after each write of the tenant's figures. The API keys its kept reports on the
    first and recomputes them only when the second moved."""

    roster: int
    data: int


class Person(NamedTuple):
    """An ambassador of a tenant: whose individual figures, activity and erasure."""

    tenant: str
    ambassador_id: str


# --- what the read model holds, as the reports see it ------------------------------------

@dataclass(frozen=True)
class CounterRow:
    """The additive parts of one (dimension value, UTC day)."""

    value: str
    day: str
    parts: Mapping[str, int]


class ActivityDay(NamedTuple):
    """An ambassador shared on a day; the sets say in which campaigns, contents and networks.

    A NamedTuple, not a frozen dataclass: a 90-day report reads ~11,000 of them (benchmark 4) and a
    frozen dataclass costs ~3 us to build (one `object.__setattr__` per field), a tuple ~0.8 us. Built,
    rebuilt and dropped on every recomputation, with the event loop held all along."""

    tenant: str
    ambassador_id: str
    day: str
    campaigns: frozenset[str] = frozenset()
    contents: frozenset[str] = frozenset()
    networks: frozenset[str] = frozenset()

    @property
    def person(self) -> Person:
        return Person(self.tenant, self.ambassador_id)

    def joined(self, other: ActivityDay) -> ActivityDay:
        """The same day with the sets of both."""
        return ActivityDay(self.tenant, self.ambassador_id, self.day, self.campaigns | other.campaigns,
                           self.contents | other.contents, self.networks | other.networks)


# Which set of an activity day a view of a dimension looks in; the other views (the tenant, a team, a
# person) count who shared at all.
ACTIVITY_SETS = {Dimension.CAMPAIGN: "campaigns", Dimension.CONTENT: "contents", Dimension.NETWORK: "networks"}


def activity_view(dimension: Dimension) -> Dimension:
    """The activity a view of `dimension` reads: its own (campaign, content, network), else the tenant's."""
    return dimension if dimension in ACTIVITY_SETS else Dimension.TENANT


def activity_views(row: ActivityDay) -> list[tuple[Dimension, str]]:
    """Where a person's day of activity counts: the tenant, and each of its campaigns, contents and networks."""
    return [(Dimension.TENANT, TENANT_VALUE), *((dimension, value) for dimension, name in ACTIVITY_SETS.items()
                                                for value in sorted(getattr(row, name)))]


def in_view(row: ActivityDay, dimension: Dimension | None, value: str | None) -> bool:
    """Whether a view of `dimension` (`value`; None: every value) needs this activity day."""
    name = ACTIVITY_SETS.get(dimension) if dimension is not None else None
    return name is None or value is None or value in getattr(row, name)


@dataclass(frozen=True)
class MembershipChange:
    """What one ambassador event changed in who counts as opted in, from `day` (the UTC day of the
    event's own timestamp) on: the status, and the team and networks when the event carries a profile."""

    day: str
    status: AmbassadorStatus | None = None  # None: unchanged
    team_id: str | None = None
    networks: tuple[str, ...] | None = None  # None: the profile (team and networks) is unchanged


@dataclass(frozen=True)
class AmbassadorView:
    """The projection of one ambassador; `erased` is a tombstone that is never lifted.

    `history` is every membership change in event order, so that any past day has its own
    opted-in counts (see reports.Roster); `leaderboard_name` is the name the person chose to
    show, present only while they appear on the leaderboard.
    """

    ambassador_id: str
    status: AmbassadorStatus | None = None  # None: a profile update arrived before the opt-in
    team_id: str | None = None
    networks: tuple[str, ...] = ()
    leaderboard_opt_in: bool = False
    erased: bool = False
    leaderboard_name: str | None = None
    history: tuple[MembershipChange, ...] = ()

    @property
    def opted_in(self) -> bool:
        return self.status is AmbassadorStatus.OPTED_IN and not self.erased


@dataclass(frozen=True)
class ContentView:
    """The projection of one content item (for the 404 check, the titles and the topic rankings)."""

    content_id: str
    campaign_id: str | None
    objective: str
    topics: tuple[str, ...]
    version: int
    title: str | None = None  # None: stored before titles were projected (a rebuild fills it)


SHARE_PARTS = ("shares", "personalized_shares", "potential_reach")
ENGAGEMENT_PARTS = ("impressions", "reactions", "comments", "comment_replies", "reshares",
                    "clicks", "unique_clicks", "conversions", "members_reached")
# The share of engagement that people entered themselves (networks without an API), kept apart so that a
# view can tell figures read from a network from figures typed in.
SELF_REPORTED_KINDS = ("impressions", "members_reached", "reactions", "comments", "comment_replies", "reshares")
SELF_REPORTED_PARTS = tuple(f"self_reported_{part}" for part in SELF_REPORTED_KINDS)
CONVERSION_PARTS = tuple(f"conversions_{kind.value}" for kind in ConversionType)
IMPRESSION_PARTS = tuple(f"impressions_{network.value}" for network in Network)
COUNTER_PARTS = SHARE_PARTS + ENGAGEMENT_PARTS + CONVERSION_PARTS + IMPRESSION_PARTS + SELF_REPORTED_PARTS

# Which counter an engagement kind adds its count to.
ENGAGEMENT_PART = {
    EngagementKind.IMPRESSION: "impressions",
    EngagementKind.MEMBERS_REACHED: "members_reached",
    EngagementKind.REACTION: "reactions",
    EngagementKind.COMMENT: "comments",
    EngagementKind.COMMENT_REPLY: "comment_replies",
    EngagementKind.RESHARE: "reshares",
    EngagementKind.CLICK: "clicks",
    EngagementKind.CONVERSION: "conversions",
}


@lru_cache(maxsize=4096)
def day_of(moment: datetime) -> str:
    """The UTC day an event counts on, as YYYY-MM-DD (sorts like the date).

    Memoised: the worker asks it for every event, and the events of a batch share few moments
    (a connector reports a post's figures at one time), so most calls are a dictionary lookup.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).date().isoformat()


@dataclass(frozen=True)
class Period:
    """Whole UTC days, both ends included."""

    first: date
    last: date

    @property
    def first_day(self) -> str:
        return self.first.isoformat()

    @property
    def last_day(self) -> str:
        return self.last.isoformat()

    def days(self) -> list[str]:
        return [(self.first + timedelta(days=n)).isoformat() for n in range((self.last - self.first).days + 1)]

    def contains(self, day: str) -> bool:
        return self.first_day <= day <= self.last_day


def trailing_days(today: date, count: int = 30) -> Period:
    return Period(today - timedelta(days=count - 1), today)


def bucket_label(day: str, granularity: Granularity) -> str:
    """The bucket a day falls in: the day itself, its ISO week's Monday, or its month's first day."""
    moment = date.fromisoformat(day)
    if granularity is Granularity.WEEK:
        return (moment - timedelta(days=moment.weekday())).isoformat()
    if granularity is Granularity.MONTH:
        return moment.replace(day=1).isoformat()
    return day


def buckets(period: Period, granularity: Granularity) -> dict[str, Period]:
    """Buckets of a period, each clipped to the period so that they add up to it exactly."""
    result: dict[str, list[str]] = {}
    for day in period.days():
        result.setdefault(bucket_label(day, granularity), []).append(day)
    return {label: Period(date.fromisoformat(days[0]), date.fromisoformat(days[-1])) for label, days in result.items()}


def sum_parts(rows: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total = dict.fromkeys(COUNTER_PARTS, 0)
    for row in rows:
        for part in COUNTER_PARTS:
            total[part] += int(row.get(part, 0))
    return total


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def earned_media_value(parts: Mapping[str, int], cpm_by_network: Mapping[str, float]) -> float:
    """Impressions / 1000 x CPM, network by network."""
    value = sum(parts.get(f"impressions_{network.value}", 0) * cpm_by_network.get(network.value, 0.0)
                for network in Network) / 1000
    return round(value, 2)


def kpis(parts: Mapping[str, int], *, opted_in: int, active: int,
         cpm_by_network: Mapping[str, float]) -> dict[str, Any]:
    """Every KPI of DOMAIN.md from summed parts and the two distinct counts."""
    engagements = parts["reactions"] + parts["comments"] + parts["reshares"]
    return {
        "ambassadors_opted_in": opted_in,
        "active_ambassadors": active,
        "activation_rate": ratio(active, opted_in),
        "shares": parts["shares"],
        "personalized_shares": parts["personalized_shares"],
        "personalization_rate": ratio(parts["personalized_shares"], parts["shares"]),
        "potential_reach": parts["potential_reach"],
        "impressions": parts["impressions"],
        "members_reached": parts["members_reached"],
        "reactions": parts["reactions"],
        "comments": parts["comments"],
        "reshares": parts["reshares"],
        "engagements": engagements,
        "engagement_rate": ratio(engagements, parts["impressions"]),
        "comment_replies": parts["comment_replies"],
        "comment_response_rate": ratio(parts["comment_replies"], parts["comments"]),
        "clicks": parts["clicks"],
        "unique_clicks": parts["unique_clicks"],
        "click_through_rate": ratio(parts["clicks"], parts["impressions"]),
        "conversions": parts["conversions"],
        "conversions_by_type": {kind.value: parts[f"conversions_{kind.value}"] for kind in ConversionType},
        "conversion_rate": ratio(parts["conversions"], parts["clicks"]),
        "earned_media_value": earned_media_value(parts, cpm_by_network),
        "self_reported": {part: parts[f"self_reported_{part}"] for part in SELF_REPORTED_KINDS},
    }


def engagement_rate_of(parts: Mapping[str, int]) -> float | None:
    return ratio(parts["reactions"] + parts["comments"] + parts["reshares"], parts["impressions"])
