"""The stored forms of slices and claims: what is written reads back the same, and what earlier releases
wrote (rows of subdocuments, claims with `p` and `o`) is still read."""

import bson

from metrics.aggregation import CounterKey, Position, Slice
from metrics.models import ActivityDay, Dimension
from metrics.store import _claim_position, _claimed_at, _slice, _slice_document


def a_slice() -> Slice:
    return Slice("engagement-3", 40, 97, {
        CounterKey("t1", "2026-03-02", Dimension.TENANT, "all"): {"shares": 3, "impressions": 120},
        CounterKey("t1", "2026-03-02", Dimension.AMBASSADOR, "a|b"): {"shares": 1},
    }, (ActivityDay("t1", "a|b", "2026-03-02", frozenset({"camp1"}), frozenset({"c1", "c2"}), frozenset({"x"})),))


def test_a_slice_reads_back_as_written_through_bson():
    document = bson.decode(bson.encode(_slice_document(a_slice())))

    assert _slice(document) == a_slice()
    assert set(document) == {"_id", "p", "first", "last", "rows"}  # one binary value for all the rows


def test_a_slice_of_an_earlier_release_is_still_read():
    earlier = {"_id": "engagement-3|40", "p": "engagement-3", "first": 40, "last": 97,
               "counters": [{"t": "t1", "d": "2026-03-02", "k": "tenant", "v": "all",
                             "c": {"shares": 3, "impressions": 120}},
                            {"t": "t1", "d": "2026-03-02", "k": "ambassador", "v": "a|b", "c": {"shares": 1}}],
               "activity": [{"t": "t1", "a": "a|b", "d": "2026-03-02", "campaigns": ["camp1"],
                             "contents": ["c1", "c2"], "networks": ["x"]}]}

    assert _slice(earlier) == a_slice()


def test_a_claim_position_reads_back_and_the_earlier_form_still_reads():
    position = Position("post.shared|topic-with|bars-2", 123456)

    assert _claim_position({"_id": "t1|e1", "at": _claimed_at(position)}) == position
    assert _claim_position({"_id": "t1|e1", "tenant_id": "t1", "p": "shares-0", "o": 7}) == Position("shares-0", 7)
