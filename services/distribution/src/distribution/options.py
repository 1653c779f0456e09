"""What the use cases need from the settings, passed in by bootstrap (nothing here reads the environment)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from .settings import DistributionSettings

EVENT_SOURCE = "/distribution"


@dataclass(frozen=True)
class Options:
    public_base_url: str
    link_code_secret: str
    visitor_hash_salt: str
    slot_spacing: timedelta
    webhook_tolerance_seconds: int
    # A prepare never confirmed stops holding its slot after this (the person gave up, or posted without us).
    prepare_hold: timedelta = timedelta(minutes=30)
    engagement_clock_skew: timedelta = timedelta(minutes=5)
    engagement_backfill: timedelta = timedelta(0)
    link_cache_seconds: float = 2.0
    click_batch_max: int = 500
    click_batch_wait_seconds: float = 0.002
    click_writes_in_flight: int = 2
    feed_snapshot_seconds: float = 0.0  # 0: the feed reads the contents on every request

    @classmethod
    def from_settings(cls, settings: DistributionSettings) -> Options:
        return cls(public_base_url=settings.public_base_url.rstrip("/"), link_code_secret=settings.link_code_secret,
                   visitor_hash_salt=settings.visitor_hash_salt,
                   slot_spacing=timedelta(minutes=settings.slot_spacing_minutes),
                   webhook_tolerance_seconds=settings.webhook_tolerance_seconds,
                   prepare_hold=timedelta(seconds=settings.prepare_hold_seconds),
                   engagement_clock_skew=timedelta(seconds=settings.engagement_clock_skew_seconds),
                   engagement_backfill=timedelta(days=settings.engagement_backfill_days),
                   link_cache_seconds=settings.link_cache_seconds,
                   click_batch_max=settings.click_batch_max,
                   click_batch_wait_seconds=settings.click_batch_wait_ms / 1000,
                   click_writes_in_flight=settings.click_writes_in_flight,
                   feed_snapshot_seconds=settings.feed_snapshot_seconds)

    def tracked_link(self, code: str) -> str:
        return f"{self.public_base_url}/r/{code}"
