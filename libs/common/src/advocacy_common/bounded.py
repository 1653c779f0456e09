"""Value types with bounds, for everything a client sends (bodies, query and path parameters).

Python's datetime and int accept values that our storage or arithmetic cannot take: year 1 or
9999 with an offset overflows when converted to UTC, an int beyond 64 bits cannot be stored in
BSON. These types refuse such values where they are parsed, so they become a 422 naming the
field instead of a 500 deeper in. `BoundedInput` gives every string field of a request model a
maximum length (the body limit bounds the whole document).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from annotated_types import Ge, Le
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, StringConstraints

EARLIEST_YEAR = 2000
LATEST_YEAR = 2100
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# The longest string any request field may hold unless its model says less (a Facebook post has 63,206).
MAX_FIELD_CHARS = 65_536


def _within_calendar(value: date) -> date:
    # Checked on the value as sent, before any conversion to UTC could overflow.
    if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        raise ValueError(f"must be between the years {EARLIEST_YEAR} and {LATEST_YEAR}")
    return value


SaneDatetime = Annotated[AwareDatetime, AfterValidator(_within_calendar)]
"""A timezone-aware instant between the years 2000 and 2100."""
SaneDate = Annotated[date, AfterValidator(_within_calendar)]
"""A calendar day between the years 2000 and 2100."""
Int64 = Annotated[int, Ge(INT64_MIN), Le(INT64_MAX)]
"""An integer that BSON can store (signed 64 bits)."""
NonNegativeInt64 = Annotated[int, Ge(0), Le(INT64_MAX)]
"""A count or a version: 0 to 2**63 - 1."""
Int32 = Annotated[int, Ge(-(2**31)), Le(2**31 - 1)]


def bounded_text(max_length: int, min_length: int = 0) -> type[str]:
    """A string type of at most `max_length` characters (for query and path parameters)."""
    return Annotated[str, StringConstraints(min_length=min_length, max_length=max_length)]  # type: ignore[return-value]


QueryText = bounded_text(200)
"""A short query parameter (a topic, a language, an id)."""
Cursor = bounded_text(2048)
"""A pagination cursor as this API returns it."""


class BoundedInput(BaseModel):
    """Base of request bodies: a misspelt field is an error, and no string is longer than MAX_FIELD_CHARS."""

    model_config = ConfigDict(extra="forbid", str_max_length=MAX_FIELD_CHARS)

PathId = bounded_text(200, min_length=1)
"""An id in a path (ours are at most a few dozen characters)."""
