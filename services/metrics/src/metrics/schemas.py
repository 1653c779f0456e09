"""HTTP response models of the metrics API (never the event classes), read from the use cases' results."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import date

from pydantic import BaseModel, ConfigDict, Field

from advocacy_common.events import ConversionType

from .models import SELF_REPORTED_KINDS, SELF_REPORTED_PARTS
from .service import ExportRow


class _FromDomain(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Kpis(_FromDomain):
    """Every KPI of the programme's definitions; a ratio is null when its denominator is zero."""

    ambassadors_opted_in: int = Field(description="Ambassadors opted in at the end of the period's last day "
                                                  "(in this team or network then); each bucket of a series has its own")
    active_ambassadors: int = Field(description="Of those, how many shared at least once in the period")
    activation_rate: float | None
    shares: int
    personalized_shares: int
    personalization_rate: float | None = Field(description="personalized_shares / shares")
    potential_reach: int = Field(description="Sum of the ambassadors' audience at share time")
    impressions: int = Field(description="Organic reach reported for shared posts")
    members_reached: int = Field(default=0, description="Unique members who saw the shared posts, as the network "
                                 "reports them (LinkedIn MEMBERS_REACHED), summed over posts")
    reactions: int
    comments: int
    reshares: int
    engagements: int = Field(description="reactions + comments + reshares")
    engagement_rate: float | None = Field(description="engagements / impressions")
    comment_replies: int
    comment_response_rate: float | None = Field(description="comment_replies / comments")
    clicks: int
    unique_clicks: int
    click_through_rate: float | None = Field(description="clicks / impressions")
    conversions: int
    conversions_by_type: dict[str, int]
    conversion_rate: float | None = Field(description="conversions / clicks")
    earned_media_value: float = Field(description="impressions / 1000 x the network's configured CPM")
    self_reported: dict[str, int] = Field(default_factory=dict, description="Of the figures above, what people "
                                          "entered themselves for networks without an API")


class PeriodOut(_FromDomain):
    first_day: date
    last_day: date


class KpiReport(_FromDomain):
    dimension: str
    value: str
    period: PeriodOut
    kpis: Kpis


class SeriesPoint(_FromDomain):
    period_start: date
    first_day: date
    last_day: date
    kpis: Kpis


class TimeSeries(_FromDomain):
    dimension: str
    value: str
    granularity: str
    period: PeriodOut
    points: list[SeriesPoint]


class RankedItem(_FromDomain):
    key: str = Field(description="The content id or the topic")
    title: str | None = Field(default=None, description="The content item's title (null for topics)")
    engagement_rate: float
    engagements: int
    impressions: int
    shares: int


class Ranking(_FromDomain):
    period: PeriodOut
    items: list[RankedItem]
    next_cursor: str | None = Field(default=None, description="The next page, or null at the end")


class LeaderboardEntry(_FromDomain):
    rank: int
    ambassador_id: str
    display_name: str | None = Field(description="The name the person chose to show (null if they set none)")
    engagements: int
    impressions: int
    shares: int
    engagement_rate: float | None


class Leaderboard(_FromDomain):
    """Only ambassadors who chose to appear on it."""

    period: PeriodOut
    items: list[LeaderboardEntry]
    next_cursor: str | None = Field(default=None, description="The next page, or null at the end")


class TeamList(_FromDomain):
    period: PeriodOut
    min_team_size: int
    items: list[KpiReport] = Field(description="Teams at or above the minimum size, by team id")
    hidden_teams: int = Field(description="Teams not shown because they are smaller than the minimum")
    next_cursor: str | None = Field(default=None, description="The next page, or null at the end")


class StreamTicket(BaseModel):
    ticket: str = Field(description="Opens the stream once: /v1/metrics/stream?ticket=...")
    expires_in: int = Field(description="Seconds left to use it")


# Every KPI of `Kpis`, in its order; `conversions_by_type` and `self_reported` as one column per key.
CSV_KPIS = tuple(name for name in Kpis.model_fields if name not in ("conversions_by_type", "self_reported"))
CSV_CONVERSION_TYPES = tuple(kind.value for kind in ConversionType)
CSV_HEADER = ("period_start", "first_day", "last_day", "granularity", "dimension", "value", "title", *CSV_KPIS,
              *(f"conversions_{kind}" for kind in CSV_CONVERSION_TYPES), *SELF_REPORTED_PARTS)


def csv_export(rows: Iterable[ExportRow]) -> str:
    """The CSV document: a header, then one line per bucket and value (an undefined ratio or title is empty)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for row in rows:
        point, figures = row.point, row.point.kpis
        writer.writerow([point.period_start, point.first_day, point.last_day, row.granularity.value,
                         row.dimension.value, row.value, row.title or "",
                         *("" if figures[k] is None else figures[k] for k in CSV_KPIS),
                         *(figures["conversions_by_type"].get(kind, 0) for kind in CSV_CONVERSION_TYPES),
                         *(figures["self_reported"].get(kind, 0) for kind in SELF_REPORTED_KINDS)])
    return out.getvalue()
