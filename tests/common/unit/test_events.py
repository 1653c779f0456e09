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
                "engagement.received.v1", "gdpr.export_requested.v1", "gdpr.export_part_written.v1"}
    assert set(REGISTRY) == expected
    for name, cls in REGISTRY.items():
        assert cls.topic in (*topics.EVENT_TOPICS, topics.GDPR_EXPORT), name
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
    assert len(names.all()) == 10
    # The export parts' topic is short-lived and not among the replayable event topics.
    assert names.short_lived() == ["t1.advocacy.gdpr-export", "t1.advocacy.gdpr-export.dlq"]
    assert topics.GDPR_EXPORT not in topics.EVENT_TOPICS and topics.GDPR_EXPORT_RETENTION_MS == 86_400_000


def test_snapshot_serialises_to_json():
    event = events.ContentPublished(
        content_id="c1", version=1, campaign_id="k1", objective="leads", title="T", link_url="https://x.test",
        language="fr", networks=["linkedin"], publish_at=datetime(2026, 1, 1, tzinfo=UTC),
        suggested_texts={"linkedin": "Bonjour"})
    data = event.model_dump(mode="json")
    assert data["suggested_texts"] == {"linkedin": "Bonjour"} and data["objective"] == "leads"
    assert decode_data("content.published.v1", data) == event


def test_export_parts_are_cut_into_pages_and_an_empty_part_is_one_last_page():
    from advocacy_common.gdpr_export import RECORDS_PER_PAGE, part_pages

    request = events.GdprExportRequested(export_id="x", ambassador_id="a", requested_at=datetime(2026, 1, 1, tzinfo=UTC))
    now = datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    empty = part_pages(request, "content", {"shares": []}, now)
    assert [(p.page, p.last, p.sections) for p in empty] == [(1, True, {"shares": []})]
    pages = part_pages(request, "distribution", {"shares": [{"n": i} for i in range(RECORDS_PER_PAGE + 5)],
                                                 "tracked_links": [{"code": "c"}]}, now)
    assert [(p.page, p.last) for p in pages] == [(1, False), (2, True)]
    assert sum(len(records) for p in pages for records in p.sections.values()) == RECORDS_PER_PAGE + 6
    assert pages[1].sections == {"shares": [{"n": i} for i in range(RECORDS_PER_PAGE, RECORDS_PER_PAGE + 5)],
                                 "tracked_links": [{"code": "c"}]}
