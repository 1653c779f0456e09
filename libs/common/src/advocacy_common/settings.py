"""Settings base: each service subclasses it with its own env prefix (CONTENT_, METRICS_...).

Settings are read once, in a service's bootstrap; nothing else reads os.environ.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .topics import TopicNames


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ADVOCACY_", extra="ignore")

    service_name: str = "advocacy"
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = Field(default="", description="Prefix for every topic (tests, shared clusters)")
    topic_partitions: int = 6
    mongodb_uri: str = "mongodb://127.0.0.1:27017/"
    database: str = "advocacy"
    # OIDC: tokens must come from this issuer for this audience; keys from the JWKS URL.
    auth_issuer: str = "http://127.0.0.1:8400"
    auth_audience: str = "advocacy"
    auth_jwks_url: str = "http://127.0.0.1:8400/.well-known/jwks.json"
    auth_algorithms: list[str] = ["RS256", "ES256"]
    auth_leeway_seconds: int = 30
    log_level: str = "INFO"
    log_json: bool = True
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    outbox_poll_seconds: float = Field(default=0.1, description="How often the relay reads outbox hints")
    outbox_sweep_seconds: float = Field(default=10.0, description="How often the relay scans for un-hinted events")
    cursor_key: str = Field(default="dev-only-cursor-key", description=(
        "Signs pagination cursors; every replica of a service must share it. Set a random value in production."))
    max_event_bytes: int = Field(default=1024 * 1024, description="A consumed record with a larger value "
                                 "goes to the DLQ unread")
    cors_allowed_origins: list[str] = Field(default_factory=list, description=(
        "Browser origins allowed to call the API (e.g. the dashboard's); none by default"))
    cors_allow_credentials: bool = Field(default=False, description=(
        "Only for cookie authentication: bearer tokens need no credentialed requests"))
    otlp_endpoint: str | None = Field(default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT"))

    @property
    def topics(self) -> TopicNames:
        return TopicNames(self.topic_prefix)
