from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from advocacy_common import events, topics
from advocacy_common.events import REGISTRY, UnknownEventType, decode_data, event_class

pytestmark = pytest.mark.unit


def test_catalogue_has_versioned_past_tense_types_on_known_topics():
    expected = {"content.published.v1", "content.updated.v1", "content.retired.v1", "ambassador.opted_in.v1",
                "ambassador.profile_updated.v1", "ambassador.opted_out.v1", "ambassador.erased.v1",
                "charter.published.v1", "charter.accepted.v1", "signal.reported.v1", "post.shared.v1",
                "engagement.received.v1"}
    assert set(REGISTRY) == expected
    for name, cls in REGISTRY.items():
        assert cls.topic in topics.EVENT_TOPICS, name
        assert name.rsplit(".", 1)[1].startswith("v")


def test_events_are_frozen_and_ignore_unknown_fields():
    event = decode_data("ambassador.erased.v1", {"ambassador_id": "a", "erased_at": "2026-01-01T00:00:00Z",
                                                 "added_later": 1})
    assert event.ambassador_id == "a"
    with pytest.raises(ValidationError):
        event.ambassador_id = "b"


def test_unknown_type_and_bad_data():
    with pytest.raises(UnknownEventType):
        event_class("nope.v1")
    with pytest.raises(ValidationError):
        decode_data("engagement.received.v1", {"kind": "impression"})


def test_events_carry_no_personal_fields():
    forbidden = {"name", "email", "first_name", "last_name", "handle", "display_name"}
    for cls in REGISTRY.values():
        assert not forbidden & set(cls.model_fields), cls


def test_dlq_and_prefix_names():
    names = topics.TopicNames("t1.")
    assert names.physical(topics.SHARE) == "t1.advocacy.share"
    assert names.dlq(topics.SHARE) == "t1.advocacy.share.dlq"
    assert names.logical("t1.advocacy.share") == topics.SHARE
    assert len(names.all()) == 8


def test_snapshot_serialises_to_json():
    event = events.ContentPublished(
        content_id="c1", version=1, campaign_id="k1", objective="leads", title="T", link_url="https://x.test",
        language="fr", networks=["linkedin"], publish_at=datetime(2026, 1, 1, tzinfo=UTC),
        suggested_texts={"linkedin": "Bonjour"})
    data = event.model_dump(mode="json")
    assert data["suggested_texts"] == {"linkedin": "Bonjour"} and data["objective"] == "leads"
    assert decode_data("content.published.v1", data) == event
