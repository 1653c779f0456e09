"""Settings of the content service (env prefix CONTENT_), read once, in bootstrap."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from advocacy_common.settings import ServiceSettings


class ContentSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CONTENT_", extra="ignore")

    service_name: str = "content"
    database: str = "content"
    http_port: int = 8101
    scheduler_poll_seconds: float = Field(default=1.0, gt=0, description="How often due items are published/retired")
    scheduler_batch_size: int = Field(default=200, ge=1, description="Items moved per scheduler pass and kind")
    consumer_group: str = "content"
