from datetime import UTC, datetime

import pytest
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from advocacy_common.envelope import Envelope, KafkaRecord, MalformedEnvelope, from_kafka, to_kafka
from advocacy_common.events import AmbassadorOptedOut, CharterPublished
from advocacy_common.publishing import envelope_for

pytestmark = pytest.mark.unit


def sample() -> Envelope:
    event = AmbassadorOptedOut(ambassador_id="amb-1", opted_out_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    return envelope_for(event, tenant_id="acme", source="/ambassador", correlation_id="corr-1")


def test_binary_mode_headers_and_key():
    record = to_kafka(sample())
    names = {name for name, _ in record.headers}
    assert {"ce_id", "ce_source", "ce_type", "ce_specversion", "ce_time", "ce_subject",
            "ce_tenantid", "ce_correlationid", "content-type"} <= names
    assert record.key == b"amb-1"
    assert record.header("ce_type") == "ambassador.opted_out.v1"
    assert record.header("content-type") == "application/json"
    assert b"amb-1" in record.value and b"ce_" not in record.value


def test_our_message_is_read_by_the_cloudevents_sdk():
    ours = sample()
    record = to_kafka(ours)
    message = ce_kafka.KafkaMessage(headers=dict(record.headers), key=record.key, value=record.value)
    theirs = ce_kafka.from_binary(message, JSONFormat())
    assert theirs.get_id() == ours.id
    assert theirs.get_type() == "ambassador.opted_out.v1"
    assert theirs.get_source() == "/ambassador"
    assert theirs.get_subject() == "amb-1"
    assert theirs.get_time() == ours.time
    assert theirs.get_extension("tenantid") == "acme"
    assert theirs.get_extension("correlationid") == "corr-1"
    assert theirs.get_data() == ours.data


def test_sdk_binary_message_is_read_by_us():
    event = CloudEvent(attributes={"id": "e-1", "source": "/crm", "type": "ambassador.erased.v1",
                                   "subject": "amb-9", "time": datetime(2026, 5, 1, tzinfo=UTC),
                                   "tenantid": "acme", "causationid": "c-0", "datacontenttype": "application/json",
                                   "partitionkey": "amb-9"},
                       data={"ambassador_id": "amb-9", "erased_at": "2026-05-01T00:00:00Z"})
    message = ce_kafka.to_binary(event, JSONFormat())
    ours = from_kafka(message.key if isinstance(message.key, bytes) else message.key.encode(),
                      message.value, message.headers)
    assert (ours.id, ours.type, ours.subject, ours.tenantid, ours.causationid) == \
        ("e-1", "ambassador.erased.v1", "amb-9", "acme", "c-0")
    assert ours.time == datetime(2026, 5, 1, tzinfo=UTC)
    assert ours.data == {"ambassador_id": "amb-9", "erased_at": "2026-05-01T00:00:00Z"}
    assert ours.extensions["partitionkey"] == "amb-9"


def test_sdk_structured_message_is_read_by_us():
    event = CloudEvent(attributes={"id": "e-2", "source": "/x", "type": "t.v1", "tenantid": "acme"},
                       data={"a": 1})
    message = ce_kafka.to_structured(event, JSONFormat())
    ours = from_kafka(None, message.value, message.headers)
    assert (ours.id, ours.type, ours.tenantid, ours.data) == ("e-2", "t.v1", "acme", {"a": 1})


def test_round_trip_keeps_every_attribute():
    original = sample().model_copy(update={"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01",
                                           "extensions": {"custom": "x"}})
    record = to_kafka(original)
    assert from_kafka(record.key, record.value, record.headers) == original


def test_charter_events_are_keyed_by_tenant():
    event = CharterPublished(charter_id="ch-1", version=2, published_at=datetime.now(UTC))
    assert envelope_for(event, tenant_id="acme", source="/ambassador").subject == "acme"


@pytest.mark.parametrize("headers,value", [
    ([], b"{}"),
    ([("ce_id", b"1"), ("ce_type", b"t.v1"), ("ce_specversion", b"1.0")], b"{}"),  # no source
    ([("ce_id", b"1"), ("ce_source", b"/s"), ("ce_type", b"t.v1"), ("ce_specversion", b"1.0")], b"[1,2]"),
    ([("ce_id", b"1"), ("ce_source", b"/s"), ("ce_type", b"t.v1"), ("ce_specversion", b"1.0")], b"{not json"),
    ([("ce_id", b"1"), ("ce_source", b"/s"), ("ce_type", b"t.v1"), ("ce_specversion", b"0.3")], b"{}"),
    ([("ce_id", b"1"), ("ce_source", b"/s"), ("ce_type", b"t.v1"), ("ce_specversion", b"1.0"),
      ("ce_time", b"yesterday")], b"{}"),
    ([("ce_id", b"1"), ("ce_source", b"/s"), ("ce_type", b"t.v1"), ("ce_specversion", b"1.0"),
      ("x-note", b"\xff\xfe")], b"{}"),  # a header that is not UTF-8
    ([("ce_id", b"1"), ("ce_source", b"/s"), ("ce_type", b"t.v1"), ("ce_specversion", b"1.0")], b"\xff{}"),
])
def test_malformed_records_are_refused(headers, value):
    with pytest.raises(MalformedEnvelope):
        from_kafka(None, value, headers)


def test_kafka_record_header_lookup_is_case_insensitive():
    assert KafkaRecord(None, b"", [("Content-Type", b"x")]).header("content-type") == "x"
