"""Generate docs/asyncapi.yaml (AsyncAPI 3.0) from the event contracts in advocacy_common.

    uv run python scripts/asyncapi.py           # (re)write docs/asyncapi.yaml
    uv run python scripts/asyncapi.py --check   # exit 1 and show a diff if the file is not what the code says

Everything that the code knows comes from the code: topics and their `.dlq` twins (topics.py),
event types, their topics, payload schemas and keys (events.py, pydantic JSON schemas), the
CloudEvents binary-mode headers (envelope.py), the DLQ headers (consuming.py) and the default
partition count (the `topic_partitions` setting). Who consumes which topic is wiring in each service's
bootstrap that cannot be read without building workers, so it is the table CONSUMERS below.

FastStream can emit AsyncAPI too, but only for handlers registered on a FastStream broker, with
one payload per handler and no per-message headers schema; our contract is the event catalogue
(several types per topic, CloudEvents headers), so this script builds the document itself.
"""

from __future__ import annotations

import argparse
import difflib
import sys
import uuid
from pathlib import Path
from typing import Any

import yaml
from pydantic.json_schema import models_json_schema

from advocacy_common import envelope, topics
from advocacy_common.events import EVENT_CLASSES, Event
from advocacy_common.settings import ServiceSettings

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "asyncapi.yaml"
REF = "#/components/schemas/{model}"
EXAMPLE_TIME = "2026-03-02T09:30:00Z"
EXAMPLE_TENANT = "acme"
KAFKA_BINDING = "0.5.0"

# Which service writes each topic, the CloudEvents `source` it stamps on its events, and how.
OUTBOX = "through its outbox relay (idempotent producer, acks=all): never lost, possibly twice"
PRODUCERS = {
    topics.CONTENT: ("content", "/advocacy/content", OUTBOX),
    topics.AMBASSADOR: ("ambassador", "/ambassador", "from the API right after the write, with the outbox "
                        "relay as safety net (idempotent producer, acks=all): never lost, possibly twice"),
    topics.SHARE: ("distribution", "/distribution", OUTBOX),
    topics.ENGAGEMENT: ("distribution", "/distribution", "clicks through the outbox relay; connector reports "
                        "from the API, which answers 202 only once Kafka acknowledged (acks=all)"),
    topics.GDPR_EXPORT: ("content, distribution and metrics", "/distribution",  # or /advocacy/content, /metrics
                         "its part of a GDPR export, through its outbox relay, when asked by gdpr.export_requested.v1"),
}
# The export parts' topic has three producers, each its own send operation.
GDPR_EXPORT_PRODUCERS = ("content", "distribution", "metrics")
# Consumer groups (from each service's bootstrap): group -> (service, topics). Metrics adds
# `-g<N>` to its group for each rebuild generation.
CONSUMERS = {
    "content": ("content", [topics.AMBASSADOR]),
    "distribution": ("distribution", [topics.CONTENT, topics.AMBASSADOR]),
    "distribution-comments": ("distribution", [topics.ENGAGEMENT]),
    "metrics": ("metrics", list(topics.EVENT_TOPICS)),
    "ambassador-gdpr-export": ("ambassador", [topics.GDPR_EXPORT]),
}
# One line per type for readers of the document (events.py has no docstring on most classes). A type
# missing here gets its own docstring or a line made from its name.
SUMMARIES = {
    "content.published.v1": "A content item was published: the full snapshot others need to suggest and check shares.",
    "content.updated.v1": "A published content item changed: the full new snapshot, with a higher version.",
    "content.retired.v1": "A content item expired or was withdrawn: nothing more is suggested from it.",
    "ambassador.opted_in.v1": "An employee chose to become an ambassador, accepting a charter version.",
    "ambassador.profile_updated.v1": "An ambassador's non-identifying targeting profile changed.",
    "ambassador.opted_out.v1": "An ambassador left the programme: stop everything addressed to them at once.",
    "ambassador.erased.v1": "An ambassador's personal data was erased: delete what you hold about this id.",
    "charter.published.v1": "A new charter version: ambassadors accept it again before new suggestions.",
    "charter.accepted.v1": "An ambassador accepted a charter version (the auditable consent record).",
    "signal.reported.v1": "An ambassador flagged a sensitive online conversation for the comms team.",
    "post.shared.v1": "An ambassador posted a content item on a network, with its authenticity scores.",
    "engagement.received.v1": "Impressions, reactions, comments, replies, reshares, clicks or conversions of a share.",
}
DLQ_HEADERS = {
    "x-dlq-reason": "The error that sent the record here (exception text, at most 2000 characters)",
    "x-dlq-error-type": "The error's class name, e.g. ValidationError or MalformedEnvelope",
    "x-dlq-original-topic": "The physical topic the record was read from",
    "x-dlq-original-partition": "Its partition there (decimal)",
    "x-dlq-original-offset": "Its offset there (decimal)",
    "x-dlq-attempts": "How many times a handler tried it (0: it could not be decoded at all)",
}


def channel_id(topic: str) -> str:
    return topic.removeprefix("advocacy.").replace(".", "-")


def message_id(cls: type[Event]) -> str:
    return cls.__name__


def default_partitions() -> int:
    """What a service creates a missing topic with: its `topic_partitions` setting's default."""
    return ServiceSettings.model_fields["topic_partitions"].default


# --- schemas and examples ----------------------------------------------------------------------

def payload_schemas() -> dict[str, Any]:
    """One JSON schema per event class (validation mode: what a consumer accepts), shared $defs hoisted."""
    _, document = models_json_schema([(cls, "validation") for cls in EVENT_CLASSES], ref_template=REF)
    return dict(sorted(document.get("$defs", {}).items()))


# Fields that are null in a consistent example: the leaderboard name travels only with leaderboard_opt_in.
NULL_IN_EXAMPLES = {"leaderboard_name"}


def example_value(name: str, schema: dict[str, Any], schemas: dict[str, Any]) -> Any:
    """A plausible, deterministic value for one field, from its name and schema."""
    if "$ref" in schema:
        return example_value(name, schemas[schema["$ref"].rsplit("/", 1)[1]], schemas)
    if name in NULL_IN_EXAMPLES:
        return None
    if "anyOf" in schema:
        non_null = [s for s in schema["anyOf"] if s.get("type") != "null"]
        return example_value(name, non_null[0], schemas) if non_null else None
    if isinstance(schema.get("default"), str):
        return schema["default"]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object" and "properties" in schema:
        return {field: example_value(field, sub, schemas) for field, sub in schema["properties"].items()}
    if kind == "object":
        return {}
    if kind == "array":
        return [example_value(name, schema.get("items", {}), schemas)]
    if kind == "boolean":
        return bool(schema.get("default", False))
    if kind == "integer":
        return max(int(schema.get("minimum", 0)), 1) if "default" not in schema else schema["default"]
    if kind == "number":
        return 0.42 if schema.get("maximum") == 1 else 12.5
    if schema.get("format") == "date-time":
        return EXAMPLE_TIME
    return example_string(name)


def example_string(name: str) -> str:
    if name.endswith("_id"):
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"urn:advocacy:example:{name}"))
    if "url" in name:
        return "https://www.example.com/blog/hybrid-work"
    return {"topics": "hybrid-work", "teams": "team-platform", "locations": "berlin", "languages": "en",
            "alt": "Two colleagues at a whiteboard", "kind": "image", "title": "How we run hybrid teams", "language": "en", "reason": "withdrawn", "severity": "medium",
            "start": "22:00", "end": "07:00", "time_zone": "Europe/Berlin", "tracked_link_code": "k3Xq9TzA",
            "source": "redirect", "channel": "api", "location": "berlin", "disclosure_line": "#ad"}.get(name, name)


def example_event(cls: type[Event], schemas: dict[str, Any]) -> Event:
    """An instance of the event built from its own schema, so pydantic confirms the example is valid."""
    values = example_value(cls.__name__, schemas[cls.__name__], schemas)
    return cls.model_validate(values)


def summary(cls: type[Event]) -> str:
    own_doc = cls.__dict__.get("__doc__")
    entity, verb, version = cls.type_name.split(".")
    fallback = f"{entity.capitalize()} {verb.replace('_', ' ')} ({version})."
    return SUMMARIES.get(cls.type_name) or (own_doc.strip().splitlines()[0] if own_doc else fallback)


def key_description(cls: type[Event], event: Event) -> str:
    if cls.keyed_by_tenant:
        return "The tenant id (same as ce_tenantid): all charter events of a tenant stay in order."
    key = event.aggregate_id()
    fields = [name for name, value in event.model_dump(mode="json").items() if value == key]
    if not fields:
        return "The aggregate id (same as ce_subject)."
    text = f"The `{fields[0]}` (same as ce_subject): events of one {fields[0].removesuffix('_id')} stay in order."
    if cls.model_fields[fields[0]].default is None:
        fallback = event.model_copy(update={fields[0]: None}).aggregate_id()
        text += f" When `{fields[0]}` is null the key is built from other ids, e.g. `{fallback}`."
    return text


# --- headers -----------------------------------------------------------------------------------

def cloudevents_headers(type_name: str) -> dict[str, Any]:
    text = {"type": "string"}
    return {
        "type": "object",
        "description": "CloudEvents 1.0 Kafka protocol binding, binary mode: attributes are `ce_` headers "
                       "(UTF-8), the record value is the event data as JSON.",
        "required": ["ce_id", "ce_source", "ce_type", "ce_specversion", "ce_time", "ce_subject",
                     "content-type", "ce_tenantid"],
        "properties": {
            "ce_id": {**text, "minLength": 1, "description": "Unique per event; consumers de-duplicate on it"},
            "ce_source": {**text, "format": "uri-reference", "description": "The producing service"},
            "ce_type": {**text, "const": type_name},
            "ce_specversion": {**text, "const": envelope.SPECVERSION},
            "ce_time": {**text, "format": "date-time", "description": "When the event happened (RFC 3339, UTC)"},
            "ce_subject": {**text, "description": "The aggregate the event is about; equals the record key"},
            "content-type": {**text, "const": envelope.JSON_CONTENT_TYPE},
            "ce_tenantid": {**text, "description": "The tenant (extension attribute); every consumer scopes by it"},
            "ce_correlationid": {**text, "description": "Id of the first event (or request) of a causal chain"},
            "ce_causationid": {**text, "description": "ce_id of the event that caused this one"},
            "traceparent": {**text, "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
                            "description": "W3C trace context of the producing span"},
            "tracestate": {**text, "description": "W3C trace state, when the producer has one"},
        },
    }


def dead_letter_headers() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "The original record's headers (its ce_* attributes when it had them), plus why it was "
                       "dead-lettered.",
        "required": list(DLQ_HEADERS),
        "properties": {name: {"type": "string", "description": text} for name, text in DLQ_HEADERS.items()},
        "additionalProperties": {"type": "string"},
    }


def example_headers(cls: type[Event], event: Event) -> dict[str, str]:
    record = envelope.to_kafka(envelope.Envelope(
        id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"urn:advocacy:example:event:{cls.type_name}")),
        source=PRODUCERS[cls.topic][1], type=cls.type_name, time=envelope.parse_time(EXAMPLE_TIME),
        subject=EXAMPLE_TENANT if cls.keyed_by_tenant else event.aggregate_id(), tenantid=EXAMPLE_TENANT,
        correlationid="9d3c2f61-5b7e-4c1a-8f3e-2a6b7c8d9e01", causationid="9d3c2f61-5b7e-4c1a-8f3e-2a6b7c8d9e01",
        traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        data=event.model_dump(mode="json")))
    return {name: value.decode() for name, value in record.headers}


# --- document ----------------------------------------------------------------------------------

def message(cls: type[Event], schemas: dict[str, Any]) -> dict[str, Any]:
    event = example_event(cls, schemas)
    headers = example_headers(cls, event)
    return {
        "name": cls.type_name,
        "title": cls.__name__,
        "summary": summary(cls),
        "contentType": envelope.JSON_CONTENT_TYPE,
        "headers": {"$ref": f"#/components/schemas/headers.{cls.type_name}"},
        "payload": {"$ref": f"#/components/schemas/{cls.__name__}"},
        "correlationId": {"location": "$message.header#/ce_correlationid"},
        "bindings": {"kafka": {"key": {"type": "string", "description": key_description(cls, event)},
                               "bindingVersion": KAFKA_BINDING}},
        "examples": [{"name": cls.type_name.replace(".", "-"), "headers": headers,
                      "payload": event.model_dump(mode="json")}],
    }


def dead_letter_message(topic: str, schemas: dict[str, Any]) -> dict[str, Any]:
    first = next(cls for cls in EVENT_CLASSES if cls.topic == topic)
    event = example_event(first, schemas)
    headers = {**example_headers(first, event), "x-dlq-reason": "ValueError: the handler refused the event",
               "x-dlq-error-type": "ValueError", "x-dlq-original-topic": topic,
               "x-dlq-original-partition": "3", "x-dlq-original-offset": "1207", "x-dlq-attempts": "3"}
    return {
        "name": f"{topic}.dead-letter",
        "title": f"Dead letter of {topic}",
        "summary": f"A record of {topic} that a consumer could not decode or kept failing on, copied unchanged "
                   "(same key, value and headers) with x-dlq-* headers added.",
        "headers": {"$ref": "#/components/schemas/headers.dead-letter"},
        "payload": {"description": f"The original record value, byte for byte: normally one of the {topic} "
                                   "payloads, but possibly malformed (that may be why it is here)."},
        "bindings": {"kafka": {"key": {"type": "string", "description": "The original record's key, unchanged."},
                               "bindingVersion": KAFKA_BINDING}},
        "examples": [{"name": f"{channel_id(topic)}-dead-letter", "headers": headers,
                      "payload": event.model_dump(mode="json")}],
    }


def channel(topic: str, messages: list[str], description: str, retention_ms: int = -1) -> dict[str, Any]:
    return {
        "address": topic,
        "description": description,
        "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in messages},
        "bindings": {"kafka": {"topic": topic, "partitions": default_partitions(),
                               "topicConfiguration": {"cleanup.policy": ["delete"], "retention.ms": retention_ms},
                               "bindingVersion": KAFKA_BINDING}},
    }


def build() -> dict[str, Any]:
    schemas = payload_schemas()
    by_topic = {topic: [cls for cls in EVENT_CLASSES if cls.topic == topic]
                for topic in (*topics.EVENT_TOPICS, topics.GDPR_EXPORT)}
    messages: dict[str, Any] = {message_id(cls): message(cls, schemas) for cls in EVENT_CLASSES}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic, classes in by_topic.items():
        dead = f"DeadLetter.{channel_id(topic)}"
        messages[dead] = dead_letter_message(topic, schemas)
        names = [message_id(cls) for cls in classes]
        producer, _, how = PRODUCERS[topic]
        if topic == topics.GDPR_EXPORT:
            retention, publishers = topics.GDPR_EXPORT_RETENTION_MS, GDPR_EXPORT_PRODUCERS
            channels[channel_id(topic)] = channel(
                topic, names, "GDPR export parts: PERSONAL DATA (share texts, post URLs, profiles, statistics), "
                "so not a replayable event topic: kept one day, consumed by the ambassador service alone. Keyed "
                "by export id.", retention)
            channels[channel_id(topic) + "-dlq"] = channel(
                topics.dlq(topic), [dead], f"Dead letters of {topic}, kept one day like their topic.", retention)
        else:
            publishers = (producer,)
            channels[channel_id(topic)] = channel(topic, names, f"Events of the {producer} service, kept forever "
                                                  "(replayable). Keyed by aggregate: one aggregate, one partition.")
            channels[channel_id(topic) + "-dlq"] = channel(
                topics.dlq(topic), [dead], f"Dead letters of {topic}, kept forever until replayed or discarded.")
        for publisher in publishers:
            operations[f"{publisher}.publish.{channel_id(topic)}"] = {
                "action": "send", "summary": f"The {publisher} service publishes {how}.",
                "channel": {"$ref": f"#/channels/{channel_id(topic)}"},
                "messages": [{"$ref": f"#/channels/{channel_id(topic)}/messages/{name}"} for name in names]}
    for group, (service, consumed) in CONSUMERS.items():
        for topic in consumed:
            operations[f"{group}.consume.{channel_id(topic)}"] = {
                "action": "receive",
                "summary": f"Consumer group `{group}` of the {service} service; types it does not handle are "
                           "skipped, failures go to the DLQ after 3 attempts.",
                "channel": {"$ref": f"#/channels/{channel_id(topic)}"},
                "bindings": {"kafka": {"groupId": {"type": "string", "const": group},
                                       "bindingVersion": KAFKA_BINDING}}}
        for topic in consumed:
            operations[f"{group}.dead-letter.{channel_id(topic)}"] = {
                "action": "send", "summary": f"Consumer group `{group}` dead-letters what it cannot process.",
                "channel": {"$ref": f"#/channels/{channel_id(topic)}-dlq"}}
    header_schemas = {f"headers.{cls.type_name}": cloudevents_headers(cls.type_name) for cls in EVENT_CLASSES}
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Advocacy platform events",
            "version": "1.0.0",
            "description": "Integration events between the content, ambassador, distribution and metrics services, "
                           "as CloudEvents 1.0 in Kafka binary mode. Generated by scripts/asyncapi.py from the code; "
                           "see docs/events.md for keys, ordering, idempotency and dead letters. Topic names may "
                           "carry a deployment prefix (the `<SERVICE>_TOPIC_PREFIX` setting).",
        },
        "defaultContentType": envelope.JSON_CONTENT_TYPE,
        "servers": {
            "kubernetes": {"host": "advocacy-kafka-bootstrap:9092", "protocol": "kafka",
                           "description": "The Strimzi cluster of the Helm chart (plain listener inside the cluster)"},
            "local": {"host": "127.0.0.1:9092", "protocol": "kafka", "description": "infra/infra.sh or compose"},
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": {**schemas, **header_schemas, "headers.dead-letter": dead_letter_headers()},
            "messages": messages,
        },
    }


def render() -> str:
    header = "# Generated by `make asyncapi` (scripts/asyncapi.py) from libs/common: do not edit by hand.\n"
    return header + yaml.safe_dump(build(), sort_keys=False, allow_unicode=True, width=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the checked-in file differs")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    text = render()
    if not args.check:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        return 0
    current = args.output.read_text() if args.output.exists() else ""
    if current == text:
        return 0
    sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), text.splitlines(True),
                                               str(args.output), "generated from the code"))
    print(f"\n{args.output} is not what the code says: run `make asyncapi` and commit it.", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
