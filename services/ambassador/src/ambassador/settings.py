"""Settings of the ambassador service (env prefix AMBASSADOR_), read once in bootstrap/main."""

from __future__ import annotations

from typing import Literal

from pydantic_settings import SettingsConfigDict

from advocacy_common.settings import ServiceSettings


class AmbassadorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="AMBASSADOR_", extra="ignore")

    service_name: str = "ambassador"
    database: str = "ambassador"
    http_port: int = 8102
    # Which directory attribute the token's `sub` claim names: the SCIM `userName`
    # (Okta and Entra put the login there) or the `externalId` (the IdP's own user id).
    subject_attribute: Literal["user_name", "external_id"] = "user_name"
    # Rows accepted by one bulk import request; larger files are sent in parts.
    import_max_rows: int = 5000
