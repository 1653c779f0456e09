"""The application is assembled correctly (no I/O: the lifespan does not run)."""

import pytest

from distribution.bootstrap import create_app
from distribution.settings import DistributionSettings

pytestmark = pytest.mark.unit


def test_openapi_documents_every_endpoint_and_the_signature_header():
    schema = create_app(DistributionSettings()).openapi()
    paths = schema["paths"]
    assert {"/v1/feed", "/v1/shares", "/v1/shares/{share_id}", "/v1/shares/{share_id}/confirm", "/v1/me/shares",
            "/v1/me/comments-awaiting-reply", "/v1/connectors", "/v1/connectors/{connector_id}/engagements",
            "/v1/connectors/{connector_id}/conversions", "/v1/settings/authenticity", "/r/{code}"} <= set(paths)
    webhook = paths["/v1/connectors/{connector_id}/engagements"]["post"]
    assert "X-Advocacy-Signature" in [p["name"] for p in webhook["parameters"]]
    assert "202" in webhook["responses"]
    assert "near-copy" in paths["/v1/shares"]["post"]["description"]


def test_settings_use_the_distribution_prefix(monkeypatch):
    monkeypatch.setenv("DISTRIBUTION_SLOT_SPACING_MINUTES", "45")
    monkeypatch.setenv("DISTRIBUTION_DATABASE", "dist_x")
    settings = DistributionSettings()
    assert (settings.slot_spacing_minutes, settings.database, settings.http_port) == (45, "dist_x", 8103)
