"""A tiny aggregate and its repository, to exercise the repository base on the real server."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from advocacy_common.repository import Repository


class Counter(BaseModel):
    id: str
    tenant: str
    version: int = 1
    value: int = 0
    created_at: datetime


class CounterRepository(Repository[Counter]):
    collection_name = "counters"

    def to_document(self, entity: Counter) -> dict[str, Any]:
        document = entity.model_dump()
        document["_id"] = document.pop("id")
        return document

    def from_document(self, document: Mapping[str, Any]) -> Counter:
        return Counter.model_validate({**document, "id": document["_id"]})
