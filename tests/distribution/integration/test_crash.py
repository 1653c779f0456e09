"""SIGKILL the worker process mid-work, restart it: projections and relayed events equal the ground truth."""

import os
import signal
import subprocess
import sys
import uuid

import pytest

from advocacy_common.events import (
    AmbassadorOptedOut, AmbassadorProfileUpdated, CharterAccepted, CharterPublished, ContentRetired,
)
from advocacy_common.mongo import create_client
from advocacy_common.publishing import EventPublisher, envelope_for
from advocacy_common.repository import UnitOfWork
from advocacy_testkit import document_with_pending, read_envelopes
from advocacy_common.topics import ENGAGEMENT, TopicNames, ensure_topics
from distribution.adapters import ambassador_documents
from distribution.models.engagement import engagement_received

pytestmark = [pytest.mark.integration, pytest.mark.slow]
AMBASSADORS = 24
CONTENTS = 24
CLICKS = 120


def start_worker(settings, names: TopicNames, database: str, group: str) -> subprocess.Popen:
    env = {**os.environ, "DISTRIBUTION_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
           "DISTRIBUTION_MONGODB_URI": settings.mongodb_uri, "DISTRIBUTION_DATABASE": database,
           "DISTRIBUTION_TOPIC_PREFIX": names.prefix, "DISTRIBUTION_TOPIC_PARTITIONS": "3",
           "DISTRIBUTION_CONSUMER_GROUP": group, "DISTRIBUTION_LOG_LEVEL": "WARNING"}
    return subprocess.Popen([sys.executable, "-c", "from distribution.main import run_worker; run_worker()"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def test_worker_killed_and_restarted_loses_and_doubles_nothing(settings, tenant, make, wait_for, unique_db_name):
    # Ground truth: every ambassador opted in, accepted charter 2, updated; every third opted out.
    # Every content published in 3 versions; every fourth retired.
    events = [CharterPublished(charter_id="ch", version=2, published_at=make.now)]
    for i in range(AMBASSADORS):
        events += [make.opted_in(f"a{i}"), CharterAccepted(ambassador_id=f"a{i}", charter_version=2,
                                                           accepted_at=make.now),
                   AmbassadorProfileUpdated(ambassador_id=f"a{i}", updated_at=make.now,
                                            profile=make.profile(location=f"site-{i}"))]
        if i % 3 == 0:
            events.append(AmbassadorOptedOut(ambassador_id=f"a{i}", opted_out_at=make.now))
    for i in range(CONTENTS):
        events += [make.content(f"c{i}", version=v, title=f"c{i} v{v}") for v in (1, 2, 3)]
        if i % 4 == 0:
            events.append(ContentRetired(content_id=f"c{i}", version=4, campaign_id="camp-1", reason="expired",
                                         retired_at=make.now))
    # Topics of its own: the restarted consumer replays only this test's events, not the whole session's.
    names = TopicNames(f"{settings.topic_prefix}crash{uuid.uuid4().hex[:6]}.")
    await ensure_topics(settings.kafka_bootstrap_servers, names, partitions=3)
    publisher = EventPublisher(settings.kafka_bootstrap_servers, names, client_id="crash-test")
    await publisher.start()
    try:
        await publisher.publish_many([(e.topic, envelope_for(e, tenant_id=tenant, source="/tests")) for e in events])
    finally:
        await publisher.stop()

    database = unique_db_name("distribution")
    mongo = create_client(settings.mongodb_uri, "crash-test")
    db = mongo[database]
    attribution = {"share_id": None, "content_id": "c1", "campaign_id": "camp-1", "ambassador_id": "a1",
                   "team_id": "ops", "network": "linkedin"}
    run = uuid.uuid4().hex[:6]
    for i in range(CLICKS):  # clicks recorded by the API (in the relay's queue: published, then deleted)
        event = engagement_received(tenant, attribution, kind="click", count=1, source="redirect",
                                    source_event_id=f"{run}-{i}", occurred_at=make.now)
        envelope = UnitOfWork(tenant, "/distribution").record(event, event_id=event.engagement_id)
        await db["clicks"].insert_one(document_with_pending({"_id": f"{run}-{i}", "tenant": tenant},
                                                               [(ENGAGEMENT, envelope)]))

    group = f"distribution-crash-{uuid.uuid4().hex[:6]}"
    first = start_worker(settings, names, database, group)
    try:
        async def started_working():
            assert await ambassador_documents(db, {"tenant": tenant}) \
                or await db["clicks"].count_documents({"tenant": tenant}) < CLICKS
        await wait_for(started_working, timeout=90)  # a cold import takes long on a loaded machine
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        assert first.returncode == -signal.SIGKILL
    finally:
        first.kill()

    second = start_worker(settings, names, database, group)
    try:
        async def settled():
            ambassadors = {d["ambassador_id"]: (d.get("status"), d.get("accepted_charter_version"),
                                                (d.get("profile") or {}).get("location"))
                           for d in await ambassador_documents(db, {"tenant": tenant})}
            assert ambassadors == {f"a{i}": ("opted_out" if i % 3 == 0 else "opted_in", 2, f"site-{i}")
                                   for i in range(AMBASSADORS)}
            contents = {d["content_id"]: (d["version"], d["retired"], d.get("title"))
                        async for d in db["contents"].find({"tenant": tenant})}
            assert contents == {f"c{i}": (4, True, f"c{i} v3") if i % 4 == 0 else (3, False, f"c{i} v3")
                                for i in range(CONTENTS)}
            assert await db["clicks"].count_documents({"tenant": tenant, "_outbox.0": {"$exists": True}}) == 0
        await wait_for(settled, timeout=90)
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(timeout=20)
        except subprocess.TimeoutExpired:
            second.kill()
        await mongo.close()

    clicks = await read_envelopes(settings.kafka_bootstrap_servers, names.physical(ENGAGEMENT), min_count=CLICKS,
                                  timeout=30, predicate=lambda e: e.tenantid == tenant)
    assert {c.data["source_event_id"] for c in clicks} == {f"{run}-{i}" for i in range(CLICKS)}  # none lost
    assert len({c.id for c in clicks}) == CLICKS  # a re-published copy keeps its id: consumers count it once
