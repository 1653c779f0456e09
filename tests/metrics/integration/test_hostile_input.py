"""Nothing a client sends makes the metrics API answer 5xx (issue 11), against the app factory."""

import uuid

import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient

from advocacy_testkit import ALL_ROLES, server_errors_on_hostile_input
from metrics.bootstrap import create_app
from metrics.settings import MetricsSettings

pytestmark = pytest.mark.integration


@pytest.fixture
async def metrics_api(infrastructure, kafka_topics, unique_db_name, auth_settings):
    settings = MetricsSettings(kafka_bootstrap_servers=infrastructure.kafka_bootstrap_servers,
                               mongodb_uri=infrastructure.mongodb_uri, database=unique_db_name("metrics"),
                               topic_prefix=kafka_topics.prefix, topic_partitions=3, stream_poll_seconds=0.05,
                               **auth_settings)
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=60), \
            AsyncClient(transport=ASGITransport(app), base_url="http://metrics") as client:
        client.app = app
        yield client


async def test_no_route_answers_hostile_input_with_a_5xx(metrics_api, bearer):
    mallory = bearer(f"t-{uuid.uuid4().hex[:8]}", "mallory", *ALL_ROLES)
    assert await server_errors_on_hostile_input(metrics_api, metrics_api.app, mallory, extra_query="max_events=1") \
        == []


@pytest.mark.parametrize("query", ["to=0001-01-01", "from=0001-01-01&to=0001-01-05", "to=9999-12-31",
                                   "from=9999-12-25&to=9999-12-31"])
async def test_periods_at_the_ends_of_the_calendar_are_422(metrics_api, bearer, query):
    analyst = bearer(f"t-{uuid.uuid4().hex[:8]}", "ana", "analyst")
    response = await metrics_api.get(f"/v1/metrics/overview?{query}", headers=analyst)
    assert response.status_code == 422, response.text
