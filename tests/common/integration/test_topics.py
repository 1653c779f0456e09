import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from advocacy_common import topics
from advocacy_common.topics import ensure_topics

pytestmark = pytest.mark.integration


async def test_topics_are_created_once_with_partitions_and_infinite_retention(infrastructure, kafka_topics):
    assert await ensure_topics(infrastructure.kafka_bootstrap_servers, kafka_topics, partitions=3) == []
    admin = AIOKafkaAdminClient(bootstrap_servers=infrastructure.kafka_bootstrap_servers)
    await admin.start()
    try:
        names = kafka_topics.all()
        described = await admin.describe_topics(names)
        assert {d["topic"] for d in described} == set(names)
        assert all(len(d["partitions"]) == 3 for d in described)
        configs = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC,
                                                               kafka_topics.physical(topics.SHARE))])
        entries = {c[0]: c[1] for c in configs[0].resources[0][4]}
        assert entries["retention.ms"] == "-1"
    finally:
        await admin.close()
