import pytest
from pydantic import ValidationError

from advocacy_common.dlq import DeadLetter, describe, logical_topic, select
from advocacy_common.events import AmbassadorOptedOut

pytestmark = pytest.mark.unit


def letter(partition: int, offset: int) -> DeadLetter:
    return DeadLetter(partition, offset, b"k", b"{}", [("ce_id", b"e1"), ("x-dlq-reason", b"why")])


def test_offsets_name_records_on_partition_zero_and_p_colon_n_elsewhere():
    letters = [letter(0, 4), letter(0, 5), letter(2, 4)]
    assert [x.position for x in letters] == ["4", "5", "2:4"]
    assert select(letters, ["5", "0:4", "2:4", "5"]) == [letters[1], letters[0], letters[2]]
    with pytest.raises(KeyError, match="9"):
        select(letters, ["4", "9"])


def test_original_headers_drop_only_the_dlq_ones():
    assert letter(0, 1).original_headers() == [("ce_id", b"e1")]


def test_topic_names_accept_short_and_dlq_forms():
    assert logical_topic("ambassador") == logical_topic("advocacy.ambassador.dlq") == "advocacy.ambassador"


def test_validation_reasons_leave_the_input_out():
    with pytest.raises(ValidationError) as caught:
        AmbassadorOptedOut.model_validate({"ambassador_id": "secret-value", "opted_out_at": "not a date"})
    reason = describe(caught.value)
    assert "opted_out_at" in reason and "secret-value" not in reason and "not a date" not in reason
    assert describe(ValueError("boom")) == "ValueError: boom"
