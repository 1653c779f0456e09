"""Settings of the distribution service (env prefix DISTRIBUTION_), read once in bootstrap/main."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from advocacy_common.secretbox import DEV_ONLY_KEY, DEV_ONLY_KEY_ID
from advocacy_common.settings import ServiceSettings


class DistributionSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DISTRIBUTION_", extra="ignore")

    service_name: str = "distribution"
    database: str = "distribution"
    http_port: int = 8103
    consumer_group: str = Field(default="distribution", description="Kafka consumer group of the projections")
    public_base_url: str = Field(default="http://127.0.0.1:8103",
                                 description="Where GET /r/{code} is reachable by the public (tracked links)")
    # Secrets: the salt makes visitor hashes useless outside this service (no raw IP is stored);
    # the link secret makes tracked-link codes unguessable.
    visitor_hash_salt: str = "dev-only-visitor-salt"
    link_code_secret: str = "dev-only-link-secret"
    slot_spacing_minutes: int = Field(default=30, ge=1, description="Gap between recommended slots of one content")
    webhook_tolerance_seconds: int = Field(default=300, ge=1, description="Accepted clock skew of signed webhooks")
    prepare_hold_seconds: int = Field(default=1800, ge=1, description=(
        "How long a prepared, unconfirmed share keeps its recommended slot; after it, the slot is free again"))
    engagement_clock_skew_seconds: int = Field(default=300, ge=0, le=86_400, description=(
        "How far a reported occurred_at may lie after now, or before the share's confirmation"))
    engagement_backfill_days: int = Field(default=0, ge=0, le=366, description=(
        "How many days before a share's confirmation a reported occurred_at may lie on top of the clock skew. "
        "0 in production: nothing happens to a post before it exists. Only for loading history (the demo "
        "tenant reports weeks of engagement for posts it shares today)"))
    link_cache_seconds: float = Field(default=2.0, ge=0, le=60, description=(
        "How often the redirect checks a tenant's link and content change counts; a tracked link and its "
        "destination it read are reused while they stay, up to 5 minutes (0: read on every click)"))
    # Group commit of clicks (service/group_commit.py). FerretDB 1.x: an insert command of more than ~1,000
    # documents gets slow and large; 500 claims, then 500 clicks with their events, stay modest.
    click_batch_max: int = Field(default=500, ge=1, le=1000, description=(
        "Most clicks the redirect writes in one batch (one insert of the visitors' claims, one of the clicks)"))
    click_batch_wait_ms: float = Field(default=2.0, ge=0, le=100, description=(
        "How long a click waits for others to join its batch when no write is under way (0: write at once); "
        "while a batch is being written, the next one gathers by itself"))
    click_writes_in_flight: int = Field(default=2, ge=1, le=8, description=(
        "Batches of clicks written at the same time (each caller is answered once its own batch is durable); "
        "with 2, one batch gathers and is sent while the other waits for the database's commit"))
    feed_snapshot_seconds: float = Field(default=1.0, ge=0, description=(
        "How long a process answers feeds from one snapshot of a tenant's contents and charter before checking "
        "them again (two reads by id; the contents are listed again only when one changed; 0: check on every "
        "request); a charter change shows in feeds at most this long plus one check later, a content change also "
        "after one listing (contents changing all the time are listed at most every 5 s)"))
    # Seals connector secrets at rest (AES-256-GCM). The default is a DEV-ONLY key known to everyone who
    # reads this file: production sets its own keyring, e.g. DISTRIBUTION_SECRET_KEYS='{"2026-12": "<base64 of
    # 32 random bytes>"}' and DISTRIBUTION_SECRET_KEY_ID=2026-12 (rotation: README, "Connector secrets").
    secret_keys: dict[str, str] = Field(default={DEV_ONLY_KEY_ID: DEV_ONLY_KEY}, description=(
        "Keyring: key id -> base64 256-bit key; every key that sealed a stored secret must stay until "
        "re-encrypted. The default is dev-only."))
    secret_key_id: str = Field(default=DEV_ONLY_KEY_ID, description="The key id that seals new secrets")
    # Network connectors (README, "Network connectors"). The bases are settings so tests point them at fakes.
    linkedin_oauth_base: str = "https://www.linkedin.com/oauth/v2"
    linkedin_api_base: str = "https://api.linkedin.com"
    linkedin_version: str = Field(default="202606", pattern=r"^\d{6}$",
                                  description="LinkedIn-Version header (YYYYMM); each version lives about a year")
    x_api_base: str = "https://api.x.com"
    poll_early_minutes: int = Field(default=60, ge=1, description="Poll interval during the early period")
    poll_early_hours: int = Field(default=48, ge=0, description="Early period after a post is linked")
    poll_late_hours: int = Field(default=24, ge=1, description="Poll interval after the early period")
    poll_quiet_days: int = Field(default=14, ge=1, description="Polling stops this long after the last change")
    poll_round_seconds: float = Field(default=30.0, gt=0, description="Pause of the poller when nothing is due")
    poll_request_gap_seconds: float = Field(default=0.5, ge=0, description="Pause between two network calls")
    poll_batch: int = Field(default=50, ge=1, le=1000, description="Posts claimed per round")
    connection_warning_days: int = Field(default=7, ge=0, description="Warn this long before a token lapses")
