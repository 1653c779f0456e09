"""Projections rebuilt by replaying the topics from the start equal the live ones."""

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from advocacy_common.events import AmbassadorOptedOut, CharterAccepted, CharterPublished, ContentRetired
from advocacy_common.mongo import create_client
from distribution.adapters import ambassador_documents
from distribution.bootstrap import build_worker

pytestmark = pytest.mark.integration
PROJECTIONS = ("contents", "charters")


async def snapshot(database: AsyncDatabase, tenant: str) -> dict[str, list[dict]]:
    """Projection documents of one tenant, without the per-partition watermarks (offsets differ per run)."""
    result = {}
    for name in PROJECTIONS:
        cursor = database[name].find({"tenant": tenant}, projection={"_wm": 0}).sort("_id", 1)
        result[name] = [document async for document in cursor]
    result["ambassadors"] = [{k: v for k, v in document.items() if k != "_wm"}
                             for document in await ambassador_documents(database, {"tenant": tenant})]
    return result


async def test_replay_from_start_rebuilds_identical_projections(settings, worker, distribution_db, tenant, emit,
                                                                 projected, make, wait_for, unique_db_name, run_id):
    await emit(CharterPublished(charter_id="ch", version=1, published_at=make.now),
               make.opted_in("amb-1"), make.opted_in("amb-2", topics=["hr"]),
               CharterPublished(charter_id="ch", version=2, published_at=make.now),
               CharterAccepted(ambassador_id="amb-1", charter_version=2, accepted_at=make.now),
               make.content("c1"), make.content("c1", version=2, title="second"), make.content("c2"),
               ContentRetired(content_id="c2", version=2, campaign_id="camp-1", reason="expired", retired_at=make.now),
               AmbassadorOptedOut(ambassador_id="amb-2", opted_out_at=make.now))

    async def settled(target: AsyncDatabase):
        state = await snapshot(target, tenant)
        assert len(state["contents"]) == 2 and len(state["ambassadors"]) == 2 and len(state["charters"]) == 1
        assert {d["_id"].split("/")[-1]: (d.get("status"), d.get("accepted_charter_version"))
                for d in state["ambassadors"]} == {"amb-1": ("opted_in", 2), "amb-2": ("opted_out", 1)}
        assert state["charters"][0]["current_version"] == 2
        assert {d["_id"].split("/")[-1]: d["version"] for d in state["contents"]} == {"c1": 2, "c2": 2}
        return state

    live = await wait_for(lambda: settled(distribution_db))
    rebuilt_settings = settings.model_copy(update={"database": unique_db_name("distribution"),
                                                   "consumer_group": f"distribution-replay-{run_id}"})
    replayer = build_worker(rebuilt_settings)
    await replayer.start()
    mongo = create_client(rebuilt_settings.mongodb_uri, "replay-check")
    try:
        rebuilt = await wait_for(lambda: settled(mongo[rebuilt_settings.database]), timeout=40)
    finally:
        await replayer.stop()
        await mongo.close()
    assert rebuilt == live
