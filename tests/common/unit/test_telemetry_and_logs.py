import json
import logging
from datetime import UTC, datetime

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from advocacy_common.events import AmbassadorErased
from advocacy_common.logs import JsonFormatter
from advocacy_common.publishing import envelope_for
from advocacy_common.telemetry import consuming_span

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def tracer():
    provider = TracerProvider()
    return provider.get_tracer("test")


def test_trace_context_rides_in_the_envelope_and_is_continued(tracer):
    with tracer.start_as_current_span("produce") as producer_span:
        envelope = envelope_for(AmbassadorErased(ambassador_id="a", erased_at=datetime.now(UTC)),
                                tenant_id="acme", source="/t")
        producer_trace = producer_span.get_span_context().trace_id
    assert envelope.traceparent and format(producer_trace, "032x") in envelope.traceparent
    trace.set_tracer_provider(TracerProvider())
    with consuming_span(envelope, "advocacy.ambassador") as span:
        assert span.get_span_context().trace_id == producer_trace


def test_json_log_lines():
    record = logging.LogRecord("svc", logging.WARNING, __file__, 1, "opted out %s", ("a1",), None)
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "WARNING" and line["message"] == "opted out a1" and line["logger"] == "svc"
