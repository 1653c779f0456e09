"""Opt-out and erasure take effect in distribution; tenant settings of authenticity."""

import pytest

from advocacy_common.events import AmbassadorErased, AmbassadorOptedOut

pytestmark = pytest.mark.integration
OWN = ("I visited our Lyon site last month and watched the solar panels go up. Today the whole plant runs on "
       "renewable power, and honestly it makes me proud to work here.")


async def prepare(client, bearer, tenant, ambassador, content_id="c1"):
    return await client.post("/v1/shares", json={"content_id": content_id, "network": "linkedin", "text": OWN},
                             headers=bearer(tenant, ambassador, "ambassador"))


async def test_opt_out_stops_suggestions_and_shares(client, bearer, tenant, emit, projected, make, wait_for, amb):
    await emit(make.opted_in(amb(tenant, "amb-1")), make.content("c1"), make.content("c2"))
    await projected((amb(tenant, "amb-1"),), {"c1": 1, "c2": 1})
    pending = (await prepare(client, bearer, tenant, "amb-1")).json()
    await emit(AmbassadorOptedOut(ambassador_id=amb(tenant, "amb-1"), opted_out_at=make.now))
    headers = bearer(tenant, "amb-1", "ambassador")

    async def empty_feed():
        feed = (await client.get("/v1/feed", headers=headers)).json()
        assert feed["items"] == [] and feed["reason"] == "opted_out"
    await wait_for(empty_feed)

    refused = await prepare(client, bearer, tenant, "amb-1", "c2")
    assert refused.status_code == 422 and refused.json()["rule"] == "opted_out"
    confirm = await client.post(f"/v1/shares/{pending['share_id']}/confirm", headers=headers)
    assert confirm.status_code == 422 and confirm.json()["rule"] == "opted_out"

    await emit(make.opted_in(amb(tenant, "amb-1")))  # opting in again is the person's own choice

    async def back():
        assert len((await client.get("/v1/feed", headers=headers)).json()["items"]) == 2
    await wait_for(back)


async def test_erasure_anonymises_shares_and_links(client, bearer, tenant, emit, projected, make, wait_for, repositories, amb):
    await emit(make.opted_in(amb(tenant, "amb-1")), make.content("c1"))
    await projected((amb(tenant, "amb-1"),), {"c1": 1})
    prepared = (await prepare(client, bearer, tenant, "amb-1")).json()
    await client.post(f"/v1/shares/{prepared['share_id']}/confirm", json={"post_url": "https://li/p/amb-1"},
                      headers=bearer(tenant, "amb-1", "ambassador"))
    await emit(AmbassadorErased(ambassador_id=amb(tenant, "amb-1"), erased_at=make.now))

    async def anonymised():
        share = (await client.get(f"/v1/shares/{prepared['share_id']}",
                                  headers=bearer(tenant, "admin", "admin"))).json()
        assert (share["ambassador_id"], share["text"], share["post_url"]) == ("erased", None, None)
        # Shares and links are anonymised side by side: no order between the two.
        assert (await repositories.links.by_code(prepared["tracked_link_code"])).ambassador_id == "erased"
    await wait_for(anonymised)
    ambassador = await repositories.ambassadors.get(tenant, amb(tenant, "amb-1"))
    assert ambassador.status == "erased" and ambassador.profile is None
    feed = (await client.get("/v1/feed", headers=bearer(tenant, "amb-1", "ambassador"))).json()
    assert feed["reason"] == "erased"
    assert (await client.get(f"/r/{prepared['tracked_link_code']}")).status_code == 302  # posts stay online


async def test_authenticity_policy_per_tenant(client, bearer, tenant, emit, projected, make, amb):
    admin = bearer(tenant, "admin-1", "admin")
    current = await client.get("/v1/settings/authenticity", headers=admin)
    assert current.json() == {"max_similarity_to_suggested": 0.4, "max_similarity_to_colleagues": 0.4,
                              "near_copy_action": "refuse"}
    etag = current.headers["etag"]
    relaxed = {"max_similarity_to_suggested": 0.95, "max_similarity_to_colleagues": 0.9, "near_copy_action": "flag"}
    updated = await client.put("/v1/settings/authenticity", json=relaxed, headers={**admin, "If-Match": etag})
    assert updated.status_code == 200 and updated.headers["etag"] != etag
    stale = await client.put("/v1/settings/authenticity", json=relaxed, headers={**admin, "If-Match": etag})
    assert stale.status_code == 412
    invalid = await client.put("/v1/settings/authenticity", json={**relaxed, "max_similarity_to_suggested": 2},
                               headers=admin)
    assert invalid.status_code == 422
    assert (await client.get("/v1/settings/authenticity", headers=admin)).json() == relaxed
    assert (await client.get("/v1/settings/authenticity", headers=bearer(tenant, "a", "ambassador"))).status_code == 403

    await emit(make.opted_in(amb(tenant, "amb-1")), make.content("c1"))
    await projected((amb(tenant, "amb-1"),), {"c1": 1})
    copy = await client.post("/v1/shares", json={"content_id": "c1", "network": "linkedin", "text": make.suggested},
                             headers=bearer(tenant, "amb-1", "ambassador"))
    assert copy.status_code == 201 and copy.json()["personalized"] is False  # flagged, not refused
    other_tenant = await client.get("/v1/settings/authenticity", headers=bearer("another", "admin-1", "admin"))
    assert other_tenant.json()["near_copy_action"] == "refuse"
