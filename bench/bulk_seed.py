"""Seeding a read model in bulk through the services' own adapters.

A projection adapter applies an event as an `update_one(filter, update, upsert=True)` on one document.
(The metrics store sends raw `update` commands of such statements; they are applied the same way.)
On FerretDB 1.x each of those costs a scan of the collection (its filter holds the watermark, not only
`_id`) and the writes are serialised, so 100,000 of them take hours. `RecordingDatabase` stands in for
the adapter's database: it keeps each collection in memory and applies every update exactly as the
server would for these operators ($set, $max, $inc, $unset, dotted paths, equality fields of the filter
on insert); `flush` then writes the resulting documents with unordered `insert_many`. The documents are
the ones the adapter's own updates produce: only the way they reach the server differs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

CHUNK = 500


@dataclass
class UpdateResult:
    matched_count: int
    upserted_id: Any


def _put(document: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        document = document.setdefault(part, {})
    document[last] = value


def _get(document: Mapping[str, Any], path: str) -> Any:
    for part in path.split("."):
        if not isinstance(document, Mapping) or part not in document:
            return None
        document = document[part]
    return document


def _drop(document: dict[str, Any], path: str) -> None:
    *parents, last = path.split(".")
    for part in parents:
        document = document.get(part, {})
    document.pop(last, None)


class RecordingCollection:
    def __init__(self, name: str):
        self.name = name
        self.documents: dict[Any, dict[str, Any]] = {}

    async def update_one(self, filter_: Mapping[str, Any], update: Mapping[str, Any], upsert: bool = False,
                         **_: Any) -> UpdateResult:
        key = filter_["_id"]
        document = self.documents.get(key)
        inserted = document is None
        if inserted:
            if not upsert:
                return UpdateResult(0, None)
            document = {name: value for name, value in filter_.items()
                        if not name.startswith("$") and not isinstance(value, Mapping)}
            self.documents[key] = document
        for operator, fields in update.items():
            for path, value in fields.items():
                if operator == "$set":
                    _put(document, path, value)
                elif operator == "$max":
                    current = _get(document, path)
                    _put(document, path, value if current is None else max(current, value))
                elif operator == "$inc":
                    _put(document, path, (_get(document, path) or 0) + value)
                elif operator == "$unset":
                    _drop(document, path)
                elif operator == "$addToSet":
                    values = _get(document, path) or []
                    added = value["$each"] if isinstance(value, Mapping) and "$each" in value else [value]
                    _put(document, path, values + [v for v in added if v not in values])
                elif operator == "$push":
                    added = value["$each"] if isinstance(value, Mapping) and "$each" in value else [value]
                    _put(document, path, (_get(document, path) or []) + list(added))
                else:
                    raise NotImplementedError(operator)
        return UpdateResult(0 if inserted else 1, key if inserted else None)

    async def insert_one(self, document: Mapping[str, Any], **_: Any) -> None:
        """As the server's unique `_id` index does: a second insert of one `_id` is a duplicate key."""
        if document["_id"] in self.documents:
            raise DuplicateKeyError(f"E11000 duplicate key: {document['_id']!r}")
        self.documents[document["_id"]] = dict(document)

    def find(self, filter_: Mapping[str, Any], projection: Any = None) -> _Found:
        """Only what the adapters' writes read back: documents by bare `_id` or `_id` `$in`."""
        key = filter_["_id"]
        ids = key["$in"] if isinstance(key, Mapping) else [key]
        return _Found([self.documents[i] for i in ids if i in self.documents])

    async def find_one(self, filter_: Mapping[str, Any], projection: Any = None) -> dict[str, Any] | None:
        found = self.find(filter_).documents
        return found[0] if found else None


class _Found:
    def __init__(self, documents: list[dict[str, Any]]):
        self.documents = documents

    def __aiter__(self):
        return self._iterate()

    async def _iterate(self):
        for document in self.documents:
            yield document


class RecordingDatabase:
    """What `Storage.database` offers the adapters: collections by name."""

    def __init__(self, name: str):
        self.name = name
        self.collections: dict[str, RecordingCollection] = {}

    def __getitem__(self, name: str) -> RecordingCollection:
        return self.collections.setdefault(name, RecordingCollection(name))

    def get_collection(self, name: str) -> RecordingCollection:
        return self[name]

    async def command(self, command: Mapping[str, Any]) -> dict[str, Any]:
        """The raw `update` command (ordered statements with upsert), as the metrics store sends it."""
        collection = self[command["update"]]
        for statement in command["updates"]:
            await collection.update_one(statement["q"], statement["u"], upsert=statement.get("upsert", False))
        return {"ok": 1, "n": len(command["updates"])}

    async def flush(self, database: AsyncDatabase) -> int:
        """Insert every recorded document (unordered, in chunks) and forget them; the number written."""
        written = 0
        for name, collection in self.collections.items():
            documents = list(collection.documents.values())
            for start in range(0, len(documents), CHUNK):
                await _insert(database[name], documents[start:start + CHUNK])
            written += len(documents)
            collection.documents.clear()
        return written


async def _insert(collection: AsyncCollection, documents: list[dict[str, Any]], attempts: int = 5) -> None:
    """Unordered insert, retried when the connection fails (a loaded server); a document already there from
    an earlier attempt is fine."""
    for attempt in range(attempts):
        try:
            await collection.insert_many(documents, ordered=False)
            return
        except BulkWriteError as error:
            if all(e.get("code") == 11000 for e in error.details.get("writeErrors", [])):
                return
            raise
        except PyMongoError:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(2)
