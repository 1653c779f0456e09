"""Two independent API instances on one database writing the same aggregate at once.

Each instance has its own MongoDB client and Kafka producer, as two replicas would: optimistic concurrency
must hold across them (compare-and-set on the stored version), with no lost update and no success
reported for a write that did not happen.
"""

import asyncio

import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient

from advocacy_common.topics import SHARE
from distribution.bootstrap import create_app

pytestmark = pytest.mark.integration
ROUNDS = 6
SHARES = 4
OWN = ("I visited our Lyon site last month and watched the solar panels go up. Today the whole plant runs on "
       "renewable power, and honestly it makes me proud to work here.")


@pytest.fixture
async def other_replica(settings, worker):
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=60), \
            AsyncClient(transport=ASGITransport(app), base_url="http://replica-b") as replica:
        yield replica


async def test_two_replicas_replacing_the_policy_with_the_same_etag_one_wins(client, other_replica, bearer,
                                                                              tenant):
    admin = bearer(tenant, "admin-1", "admin")
    for round_ in range(ROUNDS):
        current = await client.get("/v1/settings/authenticity", headers=admin)
        etag = current.headers["etag"]
        bodies = [{"max_similarity_to_suggested": 0.5 + round_ / 100, "max_similarity_to_colleagues": 0.4,
                   "near_copy_action": "refuse"},
                  {"max_similarity_to_suggested": 0.7 + round_ / 100, "max_similarity_to_colleagues": 0.3,
                   "near_copy_action": "flag"}]
        answers = await asyncio.gather(
            *(replica.put("/v1/settings/authenticity", json=body, headers={**admin, "If-Match": etag})
              for replica, body in zip((client, other_replica), bodies, strict=True)))
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [200, 412], [a.text for a in answers]  # never both: one write happened
        winner = next(a for a in answers if a.status_code == 200)
        stored = await other_replica.get("/v1/settings/authenticity", headers=admin)
        assert stored.json() == winner.json()  # the 200 is what is stored: no lost update
        assert stored.headers["etag"] == winner.headers["etag"] != etag
        assert int(stored.headers["etag"].strip('"')) == round_ + 1  # one version per round, no more


async def test_two_replicas_confirming_the_same_share_emit_one_event(client, other_replica, bearer, tenant, emit,
                                                                     projected, make, amb, read_topic,
                                                                     repositories):
    logins = [f"amb-{i}" for i in range(SHARES)]
    await emit(*(make.opted_in(amb(tenant, login)) for login in logins), make.content("c1"))
    await projected(tuple(amb(tenant, login) for login in logins), {"c1": 1})
    shares = {}
    for login in logins:
        prepared = await client.post("/v1/shares", json={"content_id": "c1", "network": "linkedin", "text": OWN},
                                     headers=bearer(tenant, login, "ambassador"))
        assert prepared.status_code == 201, prepared.text
        shares[login] = prepared.json()["share_id"]

    for login, share_id in shares.items():
        headers = bearer(tenant, login, "ambassador")
        answers = await asyncio.gather(
            *(replica.post(f"/v1/shares/{share_id}/confirm", json={"post_url": f"https://li/{name}/{share_id}"},
                           headers=headers)
              for replica, name in ((client, "a"), (other_replica, "b"))))
        assert {a.status_code for a in answers} <= {200, 409} and 200 in {a.status_code for a in answers}
        stored = await repositories.shares.get(tenant, share_id)
        assert stored.status == "confirmed" and stored.version == 2  # confirmed once, not twice
        assert stored.post_url in {f"https://li/a/{share_id}", f"https://li/b/{share_id}"}
        for answer in answers:  # a 200 reports what is stored, never a post URL that was not written
            if answer.status_code == 200:
                assert (answer.json()["status"], answer.json()["post_url"]) == ("confirmed", stored.post_url)

    events = await read_topic(SHARE, lambda e: e.tenantid == tenant, min_count=SHARES + 1, timeout=5)
    assert sorted(e.data["share_id"] for e in events) == sorted(shares.values())  # one post.shared.v1 each
