"""Two independent API instances (two apps built by bootstrap, each with its own database client)
writing the same content item at once, each with If-Match of the version it read: per version exactly
one write succeeds, the stored item holds every successful change, and no 2xx is answered for a write
that did not happen (the events tell distribution of exactly the successful writes)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient

from content.bootstrap import create_app

pytestmark = pytest.mark.integration
ROUNDS = 8
UPDATED = "content.updated.v1"
STALE_AT_SAVE = "changed while your request ran"  # the compare-and-set refused the write
STALE_AT_READ = "changed since you read it"  # If-Match already named an old version when read


@pytest.fixture(scope="module")
async def second_api(api, content_settings) -> AsyncIterator[AsyncClient]:
    """Another instance of the content API on the same database: its own app, client and connections."""
    app = create_app(content_settings)
    async with LifespanManager(app):
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://content-b") as client:
            assert client is not api and app is not api.app
            yield client


async def read(api: AsyncClient, item_id: str, headers: dict) -> dict:
    response = await api.get(f"/v1/content/{item_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def stale_cause(response) -> str:
    assert response.status_code == 412, response.text
    detail = response.json()["detail"]
    return STALE_AT_SAVE if STALE_AT_SAVE in detail else STALE_AT_READ


async def test_concurrent_edits_from_two_instances_lose_nothing(kit, second_api, worker_starter,
                                                                  content_settings, wait_until):
    first, second, editor = kit.api, second_api, kit.editor
    campaign = await kit.campaign()
    publish_at = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    item = await kit.content(campaign["id"], publish_at=publish_at, expires_at=None)
    assert (await first.post(f"/v1/content/{item['id']}/submit", headers=editor)).status_code == 200
    assert (await second.post(f"/v1/content/{item['id']}/approve", headers=kit.reviewer)).status_code == 200

    async with worker_starter(content_settings):
        async def published():
            current = await read(first, item["id"], editor)
            return current if current["status"] == "published" else None

        start = await wait_until(published)
        winners, causes = [], Counter()
        for round_ in range(ROUNDS):
            # Both instances read the same version, then each adds its own topic to what it read.
            seen = await asyncio.gather(read(first, item["id"], editor), read(second, item["id"], editor))
            assert seen[0]["version"] == seen[1]["version"]
            answers = await asyncio.gather(*(
                api.patch(f"/v1/content/{item['id']}", json={"topics": [*view["topics"], f"{name}{round_}"]},
                          headers={**editor, "If-Match": f'"{view["version"]}"'})
                for api, view, name in ((first, seen[0], "a"), (second, seen[1], "b"))))
            succeeded = [answer for answer in answers if answer.status_code == 200]
            assert len(succeeded) == 1, [(a.status_code, a.text) for a in answers]
            causes.update(stale_cause(answer) for answer in answers if answer.status_code != 200)
            [won] = succeeded
            assert won.headers["etag"] == f'"{seen[0]["version"] + 1}"'
            winners.append(won.json())

        stored = await read(second, item["id"], editor)
        # Every successful change is there, in order; each success was one new version, nothing else was.
        assert stored["topics"] == start["topics"] + [w["topics"][-1] for w in winners]
        assert stored["version"] == start["version"] + ROUNDS
        assert [w["version"] for w in winners] == list(range(start["version"] + 1, stored["version"] + 1))
        edits = [h for h in stored["history"] if h["action"] == "edit"]
        assert len(edits) == ROUNDS

        # Distribution hears of exactly the writes that were answered 200, each at its version.
        updates = await kit.events(ROUNDS, UPDATED)
        assert sorted((e.get_data()["version"], e.get_data()["topics"]) for e in updates) == \
            [(w["version"], w["topics"]) for w in winners]
        assert len(await kit.events(ROUNDS + 1, UPDATED, timeout=2)) == ROUNDS
    print(f"losers refused: {dict(causes)}")
    assert sum(causes.values()) == ROUNDS
    # Both instances read before either wrote: the compare-and-set itself refused the losers.
    assert causes[STALE_AT_SAVE] >= 1


async def test_a_workflow_step_and_an_edit_racing_from_two_instances(kit, second_api):
    first, second, editor = kit.api, second_api, kit.editor
    campaign = await kit.campaign()
    for _ in range(4):
        item = await kit.content(campaign["id"])
        if_match = {**editor, "If-Match": f'"{item["version"]}"'}
        submit, edit = await asyncio.gather(
            first.post(f"/v1/content/{item['id']}/submit", headers=if_match),
            second.patch(f"/v1/content/{item['id']}", json={"title": "Renamed"}, headers=if_match))
        assert sorted([submit.status_code, edit.status_code]) == [200, 412], (submit.text, edit.text)
        stored = await read(second, item["id"], editor)
        assert stored["version"] == item["version"] + 1
        if submit.status_code == 200:
            assert (stored["status"], stored["title"]) == ("in_review", item["title"]) and stored == submit.json()
        else:
            assert (stored["status"], stored["title"]) == ("draft", "Renamed") and stored == edit.json()
