"""Projections and the feed, on the real Kafka and database."""

from datetime import timedelta

import pytest

from advocacy_common.events import (
    Audience, CharterAccepted, CharterPublished, ContentRetired, ContentUpdated,
)

pytestmark = pytest.mark.integration


async def test_feed_is_targeted_ranked_and_paginated(client, bearer, emit, projected, tenant, make, amb):
    await emit(CharterPublished(charter_id="ch", version=1, published_at=make.now),
               make.opted_in(amb(tenant, "amb-1"), topics=["energy", "data"]))
    now = make.now
    await emit(
        make.content("best", topics=["energy", "data"]),                        # full topic affinity
        make.content("good", topics=["energy", "hr"]),                          # half affinity
        make.content("other-team", audience=Audience(teams=["team-sales"])),
        make.content("other-lang", language="de"),
        make.content("wrong-persona", audience=Audience(personas=["talent"])),
        make.content("unused-network", networks=["tiktok"]),
        make.content("expired", expires_at=now - timedelta(minutes=1)),
        make.content("future", publish_at=now + timedelta(days=1)),
        make.content("retired"),
        ContentRetired(content_id="retired", version=2, campaign_id="camp-1", reason="withdrawn", retired_at=now),
    )
    await projected((amb(tenant, "amb-1"),), {"best": 1, "good": 1, "retired": 2, "future": 1})
    headers = bearer(tenant, "amb-1", "ambassador")

    first = (await client.get("/v1/feed?limit=1", headers=headers)).json()
    assert [item["content_id"] for item in first["items"]] == ["best"]
    assert first["reason"] is None and first["next_cursor"]
    second = (await client.get(f"/v1/feed?limit=1&cursor={first['next_cursor']}", headers=headers)).json()
    assert [item["content_id"] for item in second["items"]] == ["good"]
    assert second["next_cursor"] is None
    assert first["items"][0]["score"] > second["items"][0]["score"]
    assert set(first["items"][0]["networks"]) == {"linkedin", "x"}


async def test_newest_content_version_wins(client, bearer, emit, projected, tenant, make, amb):
    await emit(make.opted_in(amb(tenant, "amb-1")), make.content("c1", version=1, title="v1"))
    await emit(ContentUpdated(**{**make.content("c1", version=3, title="v3").model_dump(), "version": 3}),
               make.content("c1", version=2, title="v2 arrives late"))
    await projected((amb(tenant, "amb-1"),), {"c1": 3})
    items = (await client.get("/v1/feed", headers=bearer(tenant, "amb-1", "ambassador"))).json()["items"]
    assert [item["title"] for item in items] == ["v3"]


async def test_charter_pending_empties_the_feed_until_accepted(client, bearer, emit, projected, tenant, make,
                                                               wait_for, repositories, amb):
    headers = bearer(tenant, "amb-1", "ambassador")
    # charter.accepted (tenant key) may arrive before the opt-in (ambassador key): order must not matter.
    await emit(CharterPublished(charter_id="ch", version=2, published_at=make.now),
               CharterAccepted(ambassador_id=amb(tenant, "amb-1"), charter_version=2, accepted_at=make.now),
               make.opted_in(amb(tenant, "amb-1"), charter_version=1), make.content("c1"),
               make.opted_in(amb(tenant, "amb-2"), charter_version=1))
    await projected((amb(tenant, "amb-1"), amb(tenant, "amb-2")), {"c1": 1})

    async def charter_seen():
        assert (await repositories.charters.current(tenant)).current_version == 2
        assert (await repositories.ambassadors.get(tenant, amb(tenant, "amb-1"))).accepted_charter_version == 2
    await wait_for(charter_seen)

    assert len((await client.get("/v1/feed", headers=headers)).json()["items"]) == 1
    pending = (await client.get("/v1/feed", headers=bearer(tenant, "amb-2", "ambassador"))).json()
    assert pending["items"] == [] and pending["reason"] == "charter_pending"
    assert "charter" in pending["message"]

    await emit(CharterAccepted(ambassador_id=amb(tenant, "amb-2"), charter_version=2, accepted_at=make.now))

    async def accepted():
        feed = (await client.get("/v1/feed", headers=bearer(tenant, "amb-2", "ambassador"))).json()
        assert feed["reason"] is None and len(feed["items"]) == 1
    await wait_for(accepted)


async def test_unknown_person_gets_reason_and_roles_are_enforced(client, bearer, tenant):
    feed = (await client.get("/v1/feed", headers=bearer(tenant, "nobody", "ambassador"))).json()
    assert feed == {"items": [], "next_cursor": None, "reason": "not_opted_in", "message": feed["message"]}
    assert (await client.get("/v1/feed", headers=bearer(tenant, "x", "analyst"))).status_code == 403
    response = await client.get("/v1/feed")
    assert response.status_code == 401 and response.headers["content-type"] == "application/problem+json"


async def test_the_caller_is_the_ambassador_their_login_names(client, bearer, emit, projected, tenant, make, amb):
    # Ambassador events carry ambassador_id_for(tenant, login), never the login: an entry under the bare
    # login is somebody else, and the login's case does not matter.
    await emit(make.opted_in(amb(tenant, "amb-1")), make.opted_in("amb-2"), make.content("c1"))
    await projected((amb(tenant, "amb-1"), "amb-2"), {"c1": 1})
    for login in ("amb-1", "AMB-1"):
        feed = (await client.get("/v1/feed", headers=bearer(tenant, login, "ambassador"))).json()
        assert [item["content_id"] for item in feed["items"]] == ["c1"]
    unknown = (await client.get("/v1/feed", headers=bearer(tenant, "amb-2", "ambassador"))).json()
    assert unknown["items"] == [] and unknown["reason"] == "not_opted_in"
    elsewhere = (await client.get("/v1/feed", headers=bearer("other-tenant", "amb-1", "ambassador"))).json()
    assert elsewhere["reason"] == "not_opted_in"
