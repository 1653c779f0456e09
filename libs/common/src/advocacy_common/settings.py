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
    auth_token_cache_size: int = Field(default=10_000, ge=0, description=(
        "Verified bearer tokens remembered per process, by their exact text, for their remaining life and "
        "while the JWKS they were checked with is current (advocacy_common.auth.VerifiedTokens); 0: verify "
        "every request"))
    log_level: str = "INFO"
    log_json: bool = True
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    http_workers: int = Field(default=1, ge=1, le=64, description=(
        "uvicorn worker processes of the api, sharing http_port (see advocacy_common.serving); in "
        "Kubernetes keep 1 and scale replicas. Rate-limit counts (memory://), in-progress write slots and "
        "in-process caches are then per worker process"))
    outbox_poll_seconds: float = Field(default=0.1, description="How often the relay reads outbox hints")
    outbox_sweep_seconds: float = Field(default=10.0, description="How often the relay scans for un-hinted events")
    cursor_key: str = Field(default="dev-only-cursor-key", description=(
        "Signs pagination cursors; every replica of a service must share it. Set a random value in production."))
    max_event_bytes: int = Field(default=1024 * 1024, description="A consumed record with a larger value "
                                 "goes to the DLQ unread")
    worker_gc_young_threshold: int = Field(default=50_000, ge=0, description=(
        "Allocations between two young garbage collections in a worker process (Python's default: 700); "
        "0 keeps Python's default. See advocacy_common.worker.tune_garbage_collection"))
    # HTTP hardening (advocacy_common.hardening, advocacy_common.ratelimit); see libs/common/README.md.
    public_base_url: str = Field(default="", description=(
        "Where clients reach this service (absolute URLs in responses are built from it, never from the "
        "request's Host); empty: http://<http_host>:<http_port>"))
    allowed_hosts: list[str] = Field(default=["*"], description=(
        "Host header values accepted (`*.example.com` matches sub-domains); ['*'] accepts any. "
        "Health and metrics paths are exempt (probes use the pod's IP)."))
    max_body_bytes: int = Field(default=1024 * 1024, ge=1, description="Largest request body, counted as it arrives")
    max_json_depth: int = Field(default=32, ge=1, description="Deepest nesting of arrays/objects in a JSON body")
    max_header_bytes: int = Field(default=8192, ge=256, description="Longest value of any one request header")
    max_url_bytes: int = Field(default=8192, ge=256, description="Longest path plus query string")
    hsts_seconds: int = Field(default=0, ge=0, description="Strict-Transport-Security max-age; 0 sends none "
                              "(turn on only behind TLS)")
    rate_limit_subject_writes: str = Field(default="100/second", description=(
        "Writes (POST/PUT/PATCH/DELETE) per tenant and token subject, in `limits` notation; "
        "several limits separated by ';'"))
    rate_limit_tenant_writes: str = Field(default="500/second", description="Writes per tenant, all subjects")
    rate_limit_source_writes: str = Field(default="100/second", description=(
        "Writes per tenant and webhook source (the route's path parameter named in rate_limit_source_params)"))
    rate_limit_source_params: list[str] = Field(default=["connector_id"], description=(
        "Path parameters that name the caller of a webhook"))
    rate_limit_tenant_concurrent_writes: int = Field(default=32, ge=0, description=(
        "Writes of one tenant in progress at once, per replica (0: no cap); more wait in the tenant's own "
        "queue instead of queueing for the database ahead of other tenants' writes"))
    rate_limit_slot_wait_seconds: float = Field(default=10.0, gt=0, le=300, description=(
        "How long a write may wait for one of its tenant's in-progress slots before it is refused 429"))
    rate_limit_storage_uri: str = Field(default="memory://", description=(
        "`limits` storage: memory:// counts per replica; redis://... shares the counts between replicas"))
    cors_allowed_origins: list[str] = Field(default_factory=list, description=(
        "Browser origins allowed to call the API (e.g. the dashboard's); none by default"))
    cors_allow_credentials: bool = Field(default=False, description=(
        "Only for cookie authentication: bearer tokens need no credentialed requests"))
    otlp_endpoint: str | None = Field(default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT"))

    @property
    def public_url(self) -> str:
        """The configured public base URL, without a trailing slash."""
        return (self.public_base_url or f"http://{self.http_host}:{self.http_port}").rstrip("/")

    @property
    def topics(self) -> TopicNames:
        return TopicNames(self.topic_prefix)
