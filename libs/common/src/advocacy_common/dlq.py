"""Dead letters: how they are written, read back and replayed (`advocacy-dlq list|replay`).

A record that a consumer group cannot apply goes to `<topic>.dlq` unchanged (key,
value, headers) plus `x-dlq-*` headers saying why, where it came from and which
group gave up on it. Every dead letter is written to partition 0 of the DLQ, so an
offset names one record and the listing is in the order of failure.

Replaying puts the original record back on its topic. Consumers de-duplicate by
CloudEvents id (the processed-event ledger, metrics claims) and watermarks, so a
replayed event that some group already applied changes nothing there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError
from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from .envelope import KafkaRecord
from .topics import DLQ_SUFFIX, EVENT_TOPICS, TopicNames

if TYPE_CHECKING:
    from .consuming import RawRecord
    from .publishing import EventPublisher

HEADER_PREFIX = "x-dlq-"
REASON = "x-dlq-reason"
ERROR_TYPE = "x-dlq-error-type"
ORIGINAL_TOPIC = "x-dlq-original-topic"
ORIGINAL_PARTITION = "x-dlq-original-partition"
ORIGINAL_OFFSET = "x-dlq-original-offset"
ATTEMPTS = "x-dlq-attempts"
GROUP = "x-dlq-group"
VALUE_DROPPED = "x-dlq-value-dropped"  # the value did not fit in the DLQ: its size, in bytes
DLQ_PARTITION = 0
_TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError)


class DeadLetterFailed(Exception):
    """The DLQ could not be written: the record must be delivered again, never skipped."""


def describe(error: BaseException) -> str:
    """A one-line reason; validation errors without the offending input values (they may be large)."""
    if isinstance(error, ValidationError):
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in error.errors())
        text = f"{error.error_count()} validation error(s) for {error.title}: {problems}"
    else:
        text = f"{type(error).__name__}: {error}"
    return " ".join(text.split())[:2000]


def dead_letter_record(record: RawRecord, error: BaseException, attempts: int, group_id: str) -> KafkaRecord:
    headers = [h for h in record.headers if not h[0].startswith(HEADER_PREFIX)]
    headers += [(name, value.encode()) for name, value in (
        (REASON, describe(error)),
        (ERROR_TYPE, type(error).__name__),
        (ORIGINAL_TOPIC, record.topic),
        (ORIGINAL_PARTITION, str(record.partition)),
        (ORIGINAL_OFFSET, str(record.offset)),
        (ATTEMPTS, str(attempts)),
        (GROUP, group_id),
    )]
    return KafkaRecord(key=record.key, value=record.value, headers=headers)


async def send_dead_letter(publisher: EventPublisher, physical_dlq: str, letter: KafkaRecord) -> None:
    """Write one dead letter; raise `DeadLetterFailed` if Kafka did not take it."""
    try:
        try:
            await publisher.send_record(physical_dlq, letter, partition=DLQ_PARTITION)
        except _TOO_LARGE:
            # The original fitted its topic; with our headers it may not fit the DLQ. Keep the
            # position and reason (the record can still be read at its original offset).
            size = len(letter.value or b"")
            await publisher.send_record(physical_dlq, KafkaRecord(
                key=letter.key, value=None, headers=[*letter.headers, (VALUE_DROPPED, str(size).encode())],
            ), partition=DLQ_PARTITION)
    except Exception as error:
        raise DeadLetterFailed(f"could not write to {physical_dlq}: {type(error).__name__}: {error}") from error


@dataclass(frozen=True)
class DeadLetter:
    """One record of a DLQ, with its `x-dlq-*` headers read."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]
    timestamp: int = 0  # when it was dead-lettered, ms since the epoch

    @classmethod
    def from_consumer_record(cls, record: Any) -> DeadLetter:
        return cls(record.partition, record.offset, record.key, record.value, list(record.headers or ()),
                   record.timestamp)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name:
                return (value or b"").decode("utf-8", errors="replace")
        return None

    @property
    def position(self) -> str:
        """How `replay --offset` names this record: `N` on partition 0, `P:N` elsewhere."""
        return str(self.offset) if self.partition == DLQ_PARTITION else f"{self.partition}:{self.offset}"

    def original_headers(self) -> list[tuple[str, bytes]]:
        return [(k, v) for k, v in self.headers if not k.lower().startswith(HEADER_PREFIX)]

    def summary(self) -> dict[str, Any]:
        original = (f"{self.header(ORIGINAL_TOPIC)}[{self.header(ORIGINAL_PARTITION)}]"
                    f"@{self.header(ORIGINAL_OFFSET)}")
        return {"offset": self.position, "reason": self.header(REASON), "error_type": self.header(ERROR_TYPE),
                "original": original, "group": self.header(GROUP), "attempts": self.header(ATTEMPTS),
                "event_type": self.header("ce_type"), "event_id": self.header("ce_id"),
                "value_dropped": self.header(VALUE_DROPPED) is not None}


async def read_dead_letters(bootstrap_servers: str, physical_dlq: str) -> list[DeadLetter]:
    """Everything in a DLQ right now, every partition, oldest first (no consumer group, nothing committed)."""
    partitions = [TopicPartition(physical_dlq, p) for p in await _partitions(bootstrap_servers, physical_dlq)]
    if not partitions:
        return []
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        letters: list[DeadLetter] = []
        while [p for p in partitions if await consumer.position(p) < ends[p]]:
            batches = await consumer.getmany(*partitions, timeout_ms=500)
            letters += [DeadLetter.from_consumer_record(r) for records in batches.values() for r in records
                        if r.offset < ends[TopicPartition(r.topic, r.partition)]]
        return sorted(letters, key=lambda letter: (letter.partition, letter.offset))
    finally:
        await consumer.stop()


async def _partitions(bootstrap_servers: str, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        if topic not in await admin.list_topics():  # asking for an unknown topic's metadata may create it
            return []
        described = await admin.describe_topics([topic])
        return sorted(p["partition"] for t in described if t["topic"] == topic for p in t["partitions"])
    finally:
        await admin.close()


def select(letters: Sequence[DeadLetter], positions: Iterable[str]) -> list[DeadLetter]:
    """The letters named `N` (partition 0) or `P:N`; raises `KeyError` naming any that is not there."""
    by_position = {letter.position: letter for letter in letters}
    wanted = [p.removeprefix(f"{DLQ_PARTITION}:") for p in positions]
    missing = [p for p in wanted if p not in by_position]
    if missing:
        raise KeyError(", ".join(missing))
    return [by_position[p] for p in dict.fromkeys(wanted)]


async def replay(publisher: EventPublisher, names: TopicNames, topic: str, letters: Sequence[DeadLetter]) -> int:
    """Put each letter back on its original topic: original key, value and headers (minus `x-dlq-*`)."""
    for letter in letters:
        target = letter.header(ORIGINAL_TOPIC) or names.physical(topic)
        await publisher.send_record(target, KafkaRecord(letter.key, letter.value, letter.original_headers()))
    return len(letters)


class DlqSettings(BaseSettings):
    """The same environment as the services: plain names, or any service's prefixed ones."""

    model_config = SettingsConfigDict(extra="ignore")

    kafka_bootstrap_servers: str = Field(default="127.0.0.1:9092", validation_alias=AliasChoices(
        "KAFKA_BOOTSTRAP_SERVERS", "ADVOCACY_KAFKA_BOOTSTRAP_SERVERS"))
    topic_prefix: str = Field(default="", validation_alias=AliasChoices("TOPIC_PREFIX", "ADVOCACY_TOPIC_PREFIX"))


def logical_topic(name: str) -> str:
    """`advocacy.share`, `advocacy.share.dlq` and `share` all name the topic `advocacy.share`."""
    name = name.removesuffix(DLQ_SUFFIX)
    short = {t.rsplit(".", 1)[-1]: t for t in EVENT_TOPICS}
    return short.get(name, name)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="advocacy-dlq", description="Inspect and replay dead letters.")
    parser.add_argument("--bootstrap-servers", help="default: $KAFKA_BOOTSTRAP_SERVERS")
    parser.add_argument("--topic-prefix", help="default: $TOPIC_PREFIX")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="show what is in <topic>.dlq")
    listing.add_argument("topic", help="logical topic, e.g. advocacy.ambassador (or ambassador)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    again = commands.add_parser("replay", help="re-publish dead letters to their original topic")
    again.add_argument("topic")
    chosen = again.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--offset", action="append", dest="offsets", metavar="N|P:N",
                        help="a DLQ offset as shown by `list` (repeatable)")
    chosen.add_argument("--all", action="store_true", help="every record in the DLQ")
    return parser


def _print_listing(letters: Sequence[DeadLetter], as_json: bool) -> None:
    for letter in letters:
        row = letter.summary()
        if as_json:
            print(json.dumps(row))
        else:
            event = f"{row['event_type'] or '?'} {row['event_id'] or '?'}"
            print(f"{row['offset']:>6}  {row['original']}  group={row['group']}  {event}  "
                  f"[{row['error_type']}] {row['reason']}")
    if not as_json:
        print(f"{len(letters)} dead letter(s)", file=sys.stderr)


async def run(argv: Sequence[str] | None = None) -> int:
    from .publishing import EventPublisher  # the CLI alone needs a producer

    args = _parser().parse_args(argv)
    settings = DlqSettings()
    bootstrap = args.bootstrap_servers or settings.kafka_bootstrap_servers
    names = TopicNames(settings.topic_prefix if args.topic_prefix is None else args.topic_prefix)
    topic = logical_topic(args.topic)
    letters = await read_dead_letters(bootstrap, names.dlq(topic))
    if args.command == "list":
        _print_listing(letters, args.json)
        return 0
    try:
        chosen = letters if args.all else select(letters, args.offsets)
    except KeyError as error:
        print(f"not in {names.dlq(topic)}: {error.args[0]}", file=sys.stderr)
        return 2
    publisher = EventPublisher(bootstrap, names, client_id="advocacy-dlq")
    await publisher.start()
    try:
        count = await replay(publisher, names, topic, chosen)
    finally:
        await publisher.stop()
    print(f"replayed {count} record(s) to {names.physical(topic)}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(asyncio.run(run(argv)))


if __name__ == "__main__":
    main()
