"""HTTP response models of the metrics API (never the event classes)."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field


class Kpis(BaseModel):
    """Every KPI of the programme's definitions; a ratio is null when its denominator is zero."""

    ambassadors_opted_in: int = Field(description="Ambassadors currently opted in (in this team or network)")
    active_ambassadors: int = Field(description="Of those, how many shared at least once in the period")
    activation_rate: float | None
    shares: int
    personalized_shares: int
    personalization_rate: float | None = Field(description="personalized_shares / shares")
    potential_reach: int = Field(description="Sum of the ambassadors' audience at share time")
    impressions: int = Field(description="Organic reach reported for shared posts")
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


class PeriodOut(BaseModel):
    first_day: date
    last_day: date


class KpiReport(BaseModel):
    dimension: str
    value: str
    period: PeriodOut
    kpis: Kpis


class SeriesPoint(BaseModel):
    period_start: date
    first_day: date
    last_day: date
    kpis: Kpis


class TimeSeries(BaseModel):
    dimension: str
    value: str
    granularity: str
    period: PeriodOut
    points: list[SeriesPoint]


class RankedItem(BaseModel):
    key: str = Field(description="The content id or the topic")
    engagement_rate: float
    engagements: int
    impressions: int
    shares: int


class Ranking(BaseModel):
    period: PeriodOut
    items: list[RankedItem]


class LeaderboardEntry(BaseModel):
    rank: int
    ambassador_id: str
    engagements: int
    impressions: int
    shares: int
    engagement_rate: float | None


class Leaderboard(BaseModel):
    """Only ambassadors who chose to appear on it."""

    period: PeriodOut
    entries: list[LeaderboardEntry]


class TeamList(BaseModel):
    period: PeriodOut
    min_team_size: int
    teams: list[KpiReport] = Field(description="Teams at or above the minimum size")
    hidden_teams: int = Field(description="Teams not shown because they are smaller than the minimum")
