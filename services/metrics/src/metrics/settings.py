"""Settings of the metrics service (env prefix METRICS_), read once in bootstrap/main."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from advocacy_common.settings import ServiceSettings

# Privacy floor from DESIGN.md: no team view for fewer than 3 people, whatever the configuration says.
ABSOLUTE_MIN_TEAM_SIZE = 3

DEFAULT_CPM_BY_NETWORK = {"linkedin": 12.0, "x": 6.0, "facebook": 7.0, "instagram": 8.0, "tiktok": 9.0, "xing": 10.0}


class MetricsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="METRICS_", extra="ignore")

    service_name: str = "metrics"
    database: str = "metrics"
    http_port: int = 8104
    consumer_group: str = Field(default="metrics", description="Kafka group of the first generation; later ones add -g<N>")
    min_team_size: int = Field(default=5, description="Smallest team (opted-in ambassadors) whose aggregates are shown")
    cpm_by_network: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_CPM_BY_NETWORK),
                                             description="Cost per 1000 impressions, for earned media value")
    # 2,500: a batch of 5,000 was ~5 % cheaper per event but took the worker's peak RSS from ~285 MB to
    # ~350-380 MB (bench/pipeline.py, 200,000 events): the memory of a batch (records, decoded events,
    # insert commands) comes on top of the recent claims, and the target is < 300 MB per process.
    batch_max_records: int = Field(default=2500, description="Records per consumed batch (one slice per partition each)")
    fold_every_seconds: float = Field(default=2.0, description="Least time between two folds of pending slices")
    generation_poll_seconds: float = 1.0
    report_fresh_seconds: float = Field(default=0.5, ge=0, description=(
        "How long the API answers an aggregate report (tenant, campaign, content, network, team; never an "
        "individual's) from the report it computed, per process, one computation per report however many wait; "
        "0 computes it on every request. Asked for steadily, a report is at most this old plus one computation; "
        "a change of who counts (opt-in, opt-out, erasure) and a rebuild's switch show at once"))
    report_stale_seconds: float = Field(default=1.5, ge=0, description=(
        "For this long after that, a request still gets the previous report at once while one recomputation "
        "runs (longer than a cold computation, so that steady readers never wait for one); older reports are "
        "never served"))
    stream_poll_seconds: float = 1.0
    stream_heartbeat_seconds: float = 15.0
    stream_ticket_key: str = Field(default="dev-only-stream-ticket-key-set-a-random-one", min_length=32,
                                   description=(
        "Signs stream tickets (HMAC); every replica must share it. Set a random value in production."))
    stream_ticket_ttl_seconds: int = Field(default=60, ge=1, le=300, description="How long a stream ticket is valid")
    max_streams_per_subject: int = Field(default=3, ge=1, description="Concurrent streams of one caller, per replica")

    @field_validator("min_team_size")
    @classmethod
    def _never_below_floor(cls, value: int) -> int:
        if value < ABSOLUTE_MIN_TEAM_SIZE:
            raise ValueError(f"must be at least {ABSOLUTE_MIN_TEAM_SIZE}")
        return value
