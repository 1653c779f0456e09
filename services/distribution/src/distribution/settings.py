"""Settings of the distribution service (env prefix DISTRIBUTION_), read once in bootstrap/main."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

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
