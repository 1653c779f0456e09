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
    feed_snapshot_seconds: float = Field(default=5.0, ge=0, description=(
        "How long a process answers feeds from one snapshot of a tenant's published contents (0: read them on "
        "every request); a content change shows in feeds at most this long plus one reload later"))
    # Seals connector secrets at rest (AES-256-GCM). The default is a DEV-ONLY key known to everyone who
    # reads this file: production sets its own keyring, e.g. DISTRIBUTION_SECRET_KEYS='{"2026-12": "<base64 of
    # 32 random bytes>"}' and DISTRIBUTION_SECRET_KEY_ID=2026-12 (rotation: README, "Connector secrets").
    secret_keys: dict[str, str] = Field(default={DEV_ONLY_KEY_ID: DEV_ONLY_KEY}, description=(
        "Keyring: key id -> base64 256-bit key; every key that sealed a stored secret must stay until "
        "re-encrypted. The default is dev-only."))
    secret_key_id: str = Field(default=DEV_ONLY_KEY_ID, description="The key id that seals new secrets")
