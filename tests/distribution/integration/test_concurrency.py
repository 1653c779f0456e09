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
    # One content each: the same words by two colleagues on one content would be a near-copy.
    await emit(*(make.opted_in(amb(tenant, login)) for login in logins),
               *(make.content(f"c{i}") for i in range(SHARES)))
    await projected(tuple(amb(tenant, login) for login in logins), {f"c{i}": 1 for i in range(SHARES)})
    shares = {}
    for i, login in enumerate(logins):
        prepared = await client.post("/v1/shares", json={"content_id": f"c{i}", "network": "linkedin", "text": OWN},
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


PARROT = OWN.replace("honestly ", "").replace("last month", "in May")


async def test_of_two_colleagues_confirming_the_same_text_at_once_only_one_succeeds(client, other_replica, bearer,
                                                                                     tenant, emit, projected, make,
                                                                                     amb, read_topic, repositories):
    """Both prepared the text before either confirmed (so both were accepted as personalised); they confirm
    at the same moment on two replicas: one confirmation goes through, the other gets the 422 a preparation
    after it would have got, and the book of the content holds only the winner."""
    pairs = [(f"amb-{round_}a", f"amb-{round_}b") for round_ in range(ROUNDS)]
    contents = {f"c{round_}": 1 for round_ in range(ROUNDS)}
    await emit(*(make.opted_in(amb(tenant, login)) for pair in pairs for login in pair),
               *(make.content(content_id) for content_id in contents))
    await projected(tuple(amb(tenant, login) for pair in pairs for login in pair), contents)
    winners = []
    for (first, second), content_id in zip(pairs, contents, strict=True):
        prepared = {}
        for login, text in ((first, OWN), (second, PARROT)):
            answer = await client.post("/v1/shares", json={"content_id": content_id, "network": "linkedin",
                                                           "text": text}, headers=bearer(tenant, login, "ambassador"))
            assert answer.status_code == 201 and answer.json()["personalized"], answer.text
            prepared[login] = answer.json()["share_id"]
        answers = await asyncio.gather(*(
            replica.post(f"/v1/shares/{prepared[login]}/confirm", json={},
                         headers=bearer(tenant, login, "ambassador"))
            for replica, login in ((client, first), (other_replica, second))))
        assert sorted(a.status_code for a in answers) == [200, 422], [a.text for a in answers]
        won, lost = (answers[0], answers[1]) if answers[0].status_code == 200 else (answers[1], answers[0])
        refusal = lost.json()
        assert lost.headers["content-type"] == "application/problem+json"
        assert (refusal["type"], refusal["rule"], refusal["threshold"]) == (
            "urn:advocacy:share-refused:too_similar_to_colleagues", "too_similar_to_colleagues", 0.4)
        assert refusal["score"] > 0.4 and "colleague already posted" in refusal["detail"]
        loser_id = lost.url.path.split("/")[-2]
        assert (await repositories.shares.get(tenant, loser_id)).status == "prepared"
        book = await repositories.books.read(tenant, content_id)
        assert [e.share_id for e in book.entries] == [won.json()["share_id"]]
        winners.append(won.json()["share_id"])

    events = await read_topic(SHARE, lambda e: e.tenantid == tenant, min_count=ROUNDS + 1, timeout=5)
    assert sorted(e.data["share_id"] for e in events) == sorted(winners)  # only the winners were shared
