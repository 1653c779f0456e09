"""One cursor codec for every keyset-paginated list.

A cursor holds the sort key of the last item of a page (the sort field's value
and the `_id` that breaks ties). It is opaque to clients and tamper-evident: it
carries an HMAC over the list it belongs to and its values, and each value is
typed, so a malformed, truncated, edited or foreign cursor is a 400 problem
before any query runs (never a 500 from comparing a string with a date).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .errors import bad_request

MAX_CURSOR_LENGTH = 1024
_SIGNATURE_BYTES = 12
# The kinds of value a sort key may hold, and how each travels in a cursor.
_KINDS: dict[type, str] = {datetime: "t", str: "s", int: "i"}


def _encode_value(value: Any) -> list[Any]:
    if isinstance(value, bool):  # bool is an int: never a sort key here
        raise TypeError("a boolean is not a sort key")
    for kind, tag in _KINDS.items():
        if isinstance(value, kind):
            return [tag, value.isoformat() if isinstance(value, datetime) else value]
    raise TypeError(f"{type(value).__name__} is not a sort key type")


def _decode_value(tagged: Any, expected: type) -> Any:
    if not (isinstance(tagged, list) and len(tagged) == 2 and tagged[0] == _KINDS.get(expected)):
        raise ValueError("wrong type")
    raw = tagged[1]
    if expected is datetime:
        if not isinstance(raw, str):
            raise ValueError("wrong type")
        value = datetime.fromisoformat(raw)
        if value.tzinfo is None:
            raise ValueError("naive time")
        return value.astimezone(UTC)
    if expected is int:
        if not isinstance(raw, int) or isinstance(raw, bool) or abs(raw) >= 2**63:
            raise ValueError("wrong type")
        return raw
    if not isinstance(raw, str) or len(raw) > 512:
        raise ValueError("wrong type")
    return raw


@dataclass(frozen=True)
class CursorCodec:
    """Signs and checks cursors with a deployment key (settings: `cursor_key`).

    Every replica of a service must share the key, so that a cursor issued by one
    replica is accepted by another.
    """

    key: bytes

    def _signature(self, scope: str, body: bytes) -> bytes:
        return hmac.new(self.key, scope.encode() + b"\x1f" + body, hashlib.sha256).digest()[:_SIGNATURE_BYTES]

    def encode(self, scope: str, values: tuple[Any, ...]) -> str:
        body = json.dumps([_encode_value(v) for v in values], separators=(",", ":")).encode()
        token = self._signature(scope, body) + body
        return base64.urlsafe_b64encode(token).decode().rstrip("=")

    def decode(self, scope: str, cursor: str | None, types: tuple[type, ...]) -> tuple[Any, ...] | None:
        """The typed values of a cursor this codec issued for `scope`; None when there is none."""
        if cursor is None or cursor == "":
            return None
        try:
            if len(cursor) > MAX_CURSOR_LENGTH:
                raise ValueError("too long")
            token = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            signature, body = token[:_SIGNATURE_BYTES], token[_SIGNATURE_BYTES:]
            if not hmac.compare_digest(signature, self._signature(scope, body)):
                raise ValueError("signature")
            tagged = json.loads(body)
            if not isinstance(tagged, list) or len(tagged) != len(types):
                raise ValueError("shape")
            return tuple(_decode_value(t, expected) for t, expected in zip(tagged, types, strict=True))
        except (ValueError, TypeError, UnicodeDecodeError, RecursionError):
            raise bad_request("cursor", "is not a cursor this list returned") from None
