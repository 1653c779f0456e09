import base64
from datetime import UTC, datetime, timedelta, timezone

import pytest

from advocacy_common.cursors import CursorCodec
from advocacy_common.errors import Problem

pytestmark = pytest.mark.unit
codec = CursorCodec(b"k1")
TYPES = (datetime, str)


def test_round_trip_keeps_types_and_time_zone():
    at = datetime(2026, 3, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    cursor = codec.encode("items", (at, "id-9"))
    assert codec.decode("items", cursor, TYPES) == (at.astimezone(UTC), "id-9")
    assert codec.decode("items", codec.encode("items", (7, "x")), (int, str)) == (7, "x")


def test_no_cursor_is_the_first_page():
    assert codec.decode("items", None, TYPES) is None
    assert codec.decode("items", "", TYPES) is None


def _reject(cursor: str, scope: str = "items", types=TYPES) -> Problem:
    with pytest.raises(Problem) as caught:
        codec.decode(scope, cursor, types)
    assert caught.value.status == 400
    assert caught.value.body()["errors"][0]["field"] == "cursor"
    return caught.value


@pytest.mark.parametrize("cursor", ["%%%", "abc", "A" * 2000, base64.urlsafe_b64encode(b"[1,2]").decode(),
                                    base64.urlsafe_b64encode(b"\xff" * 40).decode()])
def test_malformed_cursors_are_400(cursor):
    _reject(cursor)


def test_tampered_foreign_and_mistyped_cursors_are_400():
    good = codec.encode("items", (datetime(2026, 1, 1, tzinfo=UTC), "a"))
    raw = bytearray(base64.urlsafe_b64decode(good + "=" * (-len(good) % 4)))
    raw[-3] ^= 0x01
    _reject(base64.urlsafe_b64encode(bytes(raw)).decode())
    _reject(good, scope="campaigns")  # a cursor of another list
    _reject(CursorCodec(b"other").encode("items", (datetime(2026, 1, 1, tzinfo=UTC), "a")))
    _reject(codec.encode("items", ("2026-01-01", "a")))  # a string where a time is expected
    _reject(codec.encode("items", (2**70, "a")), types=(int, str))  # beyond 64 bits


def test_only_sort_key_types_can_be_encoded():
    with pytest.raises(TypeError):
        codec.encode("items", (True, "a"))
    with pytest.raises(TypeError):
        codec.encode("items", (1.5, "a"))
