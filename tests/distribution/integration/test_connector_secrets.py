"""Connector secrets sealed at rest on the real database, and signed webhooks across a key rotation.

The rotation tests run on databases of their own: resealing is cross-tenant, and the session's API (on
the dev-only key) must not find its connectors sealed under a key it does not hold.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient

from advocacy_common.mongo import create_client
from advocacy_common.repository import ServerCapabilities
from advocacy_common.secretbox import DEV_ONLY_KEY, DEV_ONLY_KEY_ID, new_encoded_key
from distribution.adapters.buckets import holding
from distribution.adapters.links import link_buckets
from distribution.adapters.sharing import share_buckets
from distribution.bootstrap import create_app, reseal_connector_secrets
from distribution.models.engagement import new_connector_secret, sign

pytestmark = pytest.mark.integration
NEW_KEY = new_encoded_key()


def keyring(settings, current: str, **keys: str):
    """The settings with this keyring (ids -> base64 keys)."""
    return settings.model_copy(update={"secret_keys": keys, "secret_key_id": current})


@asynccontextmanager
async def api(settings) -> AsyncIterator[AsyncClient]:
    async with LifespanManager(create_app(settings), startup_timeout=60) as manager, \
            AsyncClient(transport=ASGITransport(manager.app), base_url="http://test") as client:
        yield client


@pytest.fixture
async def own_database(settings):
    """Settings on a database of this test's own, with a tracked link to report conversions on."""
    own = settings.model_copy(update={"database": f"{settings.database}_secrets_{uuid.uuid4().hex[:6]}"})
    mongo = create_client(own.mongodb_uri, "distribution-secret-tests")
    yield own, mongo[own.database]
    await mongo.drop_database(own.database)
    await mongo.close()


async def a_tracked_link(database, tenant: str) -> str:
    """A tracked link and its confirmed share, as a confirmation leaves them (conversions need a posted share)."""
    code, share_id = f"code{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    confirmed_at = datetime.now(UTC) - timedelta(minutes=1)
    ferretdb = (await ServerCapabilities.detect(database)).ferretdb
    await holding(link_buckets(database, ferretdb), code).insert_one({
        "_id": code, "tenant": tenant, "ambassador_id": "a1", "content_id": "c1", "network": "linkedin",
        "link_url": "https://www.example.com/", "confirmed_share_id": share_id})
    await holding(share_buckets(database, ferretdb), share_id).insert_one({
        "_id": share_id, "tenant": tenant, "version": 2, "status": "confirmed", "ambassador_id": "a1",
        "content_id": "c1", "campaign_id": "camp-1", "network": "linkedin", "text": "My own words",
        "tracked_link_code": code, "tracked_link": f"https://go.example.com/r/{code}", "share_intent_url": None,
        "recommended_at": confirmed_at, "similarity_to_suggested": 0.0, "similarity_to_colleagues": 0.0,
        "personalized": True, "created_at": confirmed_at, "confirmed_at": confirmed_at})
    return code


async def register(client, bearer, tenant: str) -> dict:
    response = await client.post("/v1/connectors", json={"name": f"sync-{uuid.uuid4().hex[:6]}"},
                                 headers={**bearer(tenant, "admin-1", "admin"), "Idempotency-Key": str(uuid.uuid4())})
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    return response.json()


async def report_conversion(client, bearer, tenant: str, connector_id: str, secret: str, code: str):
    raw = json.dumps({"id": str(uuid.uuid4()), "tracked_link_code": code, "conversion_type": "lead",
                      "occurred_at": datetime.now(UTC).isoformat()}).encode()
    return await client.post(f"/v1/connectors/{connector_id}/conversions", content=raw,
                             headers={**bearer(tenant, "svc", "integrator"), "Content-Type": "application/json",
                                      "X-Advocacy-Signature": sign(secret, int(time.time()), raw)})


async def test_the_stored_connector_holds_no_plaintext_secret_and_its_webhook_verifies(
        client, bearer, tenant, settings, distribution_db):
    connector = await register(client, bearer, tenant)
    secret = connector["secret"]
    stored = await distribution_db["connectors"].find_one({"_id": connector["connector_id"]})
    assert secret not in str(stored) and secret.removeprefix("whsec_") not in str(stored)
    assert "secret" not in stored and stored["sealed_secret"]["key_id"] == settings.secret_key_id

    code = await a_tracked_link(distribution_db, tenant)
    accepted = await report_conversion(client, bearer, tenant, connector["connector_id"], secret, code)
    assert accepted.status_code == 202, accepted.text
    forged = await report_conversion(client, bearer, tenant, connector["connector_id"], "whsec_guess", code)
    assert forged.status_code == 401


async def test_a_ciphertext_copied_to_another_connector_does_not_open(client, bearer, tenant, distribution_db):
    first, second = await register(client, bearer, tenant), await register(client, bearer, tenant)
    connectors = distribution_db["connectors"]
    sealed = (await connectors.find_one({"_id": first["connector_id"]}))["sealed_secret"]
    await connectors.update_one({"_id": second["connector_id"]}, {"$set": {"sealed_secret": sealed}})
    code = await a_tracked_link(distribution_db, tenant)
    refused = await report_conversion(client, bearer, tenant, second["connector_id"], first["secret"], code)
    assert refused.status_code == 503 and refused.headers["retry-after"] == "60"


async def test_rotation_then_reseal_then_removal_of_the_old_key_keeps_webhooks_working(
        own_database, bearer, tenant):
    settings, database = own_database
    old_only = keyring(settings, DEV_ONLY_KEY_ID, **{DEV_ONLY_KEY_ID: DEV_ONLY_KEY})
    both = keyring(settings, "k2", **{DEV_ONLY_KEY_ID: DEV_ONLY_KEY, "k2": NEW_KEY})
    new_only = keyring(settings, "k2", k2=NEW_KEY)
    code = await a_tracked_link(database, tenant)

    async with api(old_only) as client:
        connectors = [await register(client, bearer, tenant) for _ in range(2)]
    async with api(both) as client:  # the new key is current; what the old one sealed still opens
        used = connectors[0]
        accepted = await report_conversion(client, bearer, tenant, used["connector_id"], used["secret"], code)
        assert accepted.status_code == 202, accepted.text
        fresh = await register(client, bearer, tenant)
    stored = {d["_id"]: d["sealed_secret"]["key_id"] async for d in database["connectors"].find({})}
    assert stored == {used["connector_id"]: "k2", connectors[1]["connector_id"]: DEV_ONLY_KEY_ID,
                      fresh["connector_id"]: "k2"}  # resealed on first use; the unused one waits for the command

    first = await reseal_connector_secrets(both)
    assert (first.resealed, first.unreadable) == (1, 0)
    again = await reseal_connector_secrets(both)
    assert (again.resealed, again.unreadable) == (0, 0)  # idempotent
    assert {d["sealed_secret"]["key_id"] async for d in database["connectors"].find({})} == {"k2"}

    async with api(new_only) as client:  # the old key removed: every webhook still verifies
        for connector in [*connectors, fresh]:
            accepted = await report_conversion(client, bearer, tenant, connector["connector_id"],
                                               connector["secret"], code)
            assert accepted.status_code == 202, accepted.text


async def test_a_secret_whose_key_left_the_keyring_is_reported_not_lost(own_database, bearer, tenant):
    settings, database = own_database
    async with api(settings) as client:
        connector = await register(client, bearer, tenant)
    new_only = keyring(settings, "k2", k2=NEW_KEY)
    count = await reseal_connector_secrets(new_only)
    assert (count.resealed, count.unreadable) == (0, 1)
    stored = await database["connectors"].find_one({"_id": connector["connector_id"]})
    assert stored["sealed_secret"]["key_id"] == DEV_ONLY_KEY_ID  # left as it was: put the key back, run again


async def test_a_plain_secret_from_before_sealing_is_sealed_on_first_use_or_by_the_command(
        own_database, bearer, tenant):
    settings, database = own_database
    plain = [(f"{tenant}-legacy-{n}", new_connector_secret()) for n in range(2)]
    for connector_id, secret in plain:  # as the service stored connectors before this change
        await database["connectors"].insert_one({"_id": connector_id, "tenant": tenant, "name": connector_id,
                                                 "secret": secret, "created_at": datetime.now(UTC)})
    code = await a_tracked_link(database, tenant)
    async with api(settings) as client:
        used_id, used_secret = plain[0]
        accepted = await report_conversion(client, bearer, tenant, used_id, used_secret, code)
        assert accepted.status_code == 202, accepted.text
        upgraded = await database["connectors"].find_one({"_id": used_id})
        assert "secret" not in upgraded and used_secret not in str(upgraded)
        assert (await reseal_connector_secrets(settings)).resealed == 1  # the other one
        for connector_id, secret in plain:
            stored = await database["connectors"].find_one({"_id": connector_id})
            assert "secret" not in stored and stored["sealed_secret"]["key_id"] == DEV_ONLY_KEY_ID
            accepted = await report_conversion(client, bearer, tenant, connector_id, secret, code)
            assert accepted.status_code == 202, accepted.text
