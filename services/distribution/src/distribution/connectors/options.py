"""What the connector use cases need from the settings (built by bootstrap)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from .linkedin import LinkedInEndpoints
from .schedule import PollSchedule


@dataclass(frozen=True)
class ConnectorOptions:
    schedule: PollSchedule = field(default_factory=PollSchedule)
    linkedin: LinkedInEndpoints = field(default_factory=LinkedInEndpoints)
    x_api_base: str = "https://api.x.com"
    authorization_ttl: timedelta = timedelta(minutes=10)
    expiry_warning: timedelta = timedelta(days=7)  # `expires_soon` and the reconnect link ahead of time
    lease: timedelta = timedelta(minutes=5)  # a claimed post is left to its poller this long
    batch: int = 50  # posts claimed per round
    request_gap_seconds: float = 0.5  # pause between two calls to one network: spreads the requests
    poll_seconds: float = 30.0  # pause between rounds when nothing was due
    default_x_daily_budget: int = 500


def connector_options(settings) -> ConnectorOptions:
    """From `DistributionSettings` (passed in by bootstrap)."""
    return ConnectorOptions(
        schedule=PollSchedule(early_interval=timedelta(minutes=settings.poll_early_minutes),
                              early_period=timedelta(hours=settings.poll_early_hours),
                              late_interval=timedelta(hours=settings.poll_late_hours),
                              quiet_period=timedelta(days=settings.poll_quiet_days)),
        linkedin=LinkedInEndpoints(oauth_base=settings.linkedin_oauth_base.rstrip("/"),
                                   api_base=settings.linkedin_api_base.rstrip("/"), version=settings.linkedin_version),
        x_api_base=settings.x_api_base.rstrip("/"), expiry_warning=timedelta(days=settings.connection_warning_days),
        batch=settings.poll_batch, request_gap_seconds=settings.poll_request_gap_seconds,
        poll_seconds=settings.poll_round_seconds)
