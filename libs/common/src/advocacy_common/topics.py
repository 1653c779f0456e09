"""Topic names, their dead-letter twins, and how they are created.

Event topics keep everything (`retention.ms=-1`) so that every read model can
be rebuilt by replaying them from the start. A prefix lets tests and several
environments share one cluster without colliding.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from .startup_wait import while_kafka_unreachable

CONTENT = "advocacy.content"
AMBASSADOR = "advocacy.ambassador"
SHARE = "advocacy.share"
ENGAGEMENT = "advocacy.engagement"
EVENT_TOPICS = (CONTENT, AMBASSADOR, SHARE, ENGAGEMENT)
# GDPR export parts carry personal data: a topic of their own, not among the replayable event topics,
# kept one day (long enough for a worker that was down to catch up, short enough not to be an archive).
GDPR_EXPORT = "advocacy.gdpr-export"
GDPR_EXPORT_RETENTION_MS = 24 * 3600 * 1000
DLQ_SUFFIX = ".dlq"


def dlq(topic: str) -> str:
    return topic + DLQ_SUFFIX


@dataclass(frozen=True)
class TopicNames:
    """Resolves logical topic names to physical ones under a prefix."""

    prefix: str = ""

    def physical(self, logical: str) -> str:
        return self.prefix + logical

    def logical(self, physical: str) -> str:
        return physical[len(self.prefix):] if physical.startswith(self.prefix) else physical

    def dlq(self, logical: str) -> str:
        return self.physical(dlq(logical))

    def all(self) -> list[str]:
        return [self.physical(t) for t in EVENT_TOPICS] + [self.dlq(t) for t in EVENT_TOPICS] + self.short_lived()

    def short_lived(self) -> list[str]:
        return [self.physical(GDPR_EXPORT), self.dlq(GDPR_EXPORT)]


async def ensure_topics(bootstrap_servers: str, names: TopicNames, partitions: int = 6,
                        replication_factor: int = 1) -> list[str]:
    """Create the event topics and their DLQs if missing; returns the ones created. Waits for a broker that
    does not answer yet (see startup_wait)."""
    return await while_kafka_unreachable(lambda: _ensure_topics(bootstrap_servers, names, partitions,
                                                                replication_factor), "creating topics")


async def _ensure_topics(bootstrap_servers: str, names: TopicNames, partitions: int,
                         replication_factor: int) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        short_lived = set(names.short_lived())
        wanted = [
            NewTopic(name=name, num_partitions=partitions, replication_factor=replication_factor,
                     topic_configs={"retention.ms": str(GDPR_EXPORT_RETENTION_MS) if name in short_lived else "-1",
                                    "cleanup.policy": "delete"})
            for name in names.all() if name not in existing
        ]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass  # another process created them first: the outcome we want
        return [t.name for t in wanted]
    finally:
        await admin.close()
