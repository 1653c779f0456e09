"""Bulk directory import: JSON or CSV rows into directory entries, with an error per bad row. Pure."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from .models import DirectoryEntry, lookup_key

CSV_EMAIL_COLUMN = "email"
FALSE_WORDS = {"false", "0", "no", "n", "off", "inactive"}


@dataclass(frozen=True)
class RowError:
    row: int
    user_name: str | None
    field: str
    message: str


def rows_from_csv(text: str) -> list[dict[str, Any]]:
    """CSV with a header row; columns are the entry's fields, `email` for a single work address."""
    reader = csv.DictReader(io.StringIO(text))
    return [{(key or "").strip(): value for key, value in row.items()} for row in reader]


def _normalised(row: dict[str, Any]) -> dict[str, Any]:
    # CSV cells are strings: empty means absent, `active` reads common words, one `email` column.
    fields = {key: value for key, value in row.items()
              if not (isinstance(value, str) and value.strip() == "") and value is not None}
    email = fields.pop(CSV_EMAIL_COLUMN, None)
    if email is not None and "emails" not in fields:
        fields["emails"] = [{"value": str(email).strip(), "type": "work", "primary": True}]
    active = fields.get("active")
    if isinstance(active, str):
        fields["active"] = active.strip().lower() not in FALSE_WORDS
    return fields


def parse_rows(rows: list[dict[str, Any]]) -> tuple[list[tuple[int, DirectoryEntry]], list[RowError]]:
    """Valid entries with their row numbers, and one error per invalid row (duplicates included)."""
    entries: list[tuple[int, DirectoryEntry]] = []
    errors: list[RowError] = []
    seen: set[str] = set()
    for number, row in enumerate(rows, start=1):
        user_name = row.get("user_name") if isinstance(row, dict) else None
        if not isinstance(row, dict):
            errors.append(RowError(number, None, "row", "must be an object"))
            continue
        try:
            entry = DirectoryEntry.model_validate(_normalised(row))
        except ValidationError as error:
            first = error.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or "row"
            errors.append(RowError(number, user_name, field, first["msg"]))
            continue
        key = lookup_key(entry.user_name)
        if key in seen:
            errors.append(RowError(number, entry.user_name, "user_name", "appears twice in this import"))
            continue
        seen.add(key)
        entries.append((number, entry))
    return entries, errors
