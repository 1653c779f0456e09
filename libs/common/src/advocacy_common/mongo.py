"""MongoDB client factory (PyMongo's asyncio API; Motor is deprecated)."""

from __future__ import annotations

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase


def create_client(uri: str, app_name: str) -> AsyncMongoClient:
    # tz_aware: datetimes come back in UTC with tzinfo, as we write them.
    return AsyncMongoClient(uri, appname=app_name, tz_aware=True, serverSelectionTimeoutMS=5000,
                            retryWrites=False)


async def ping(database: AsyncDatabase) -> bool:
    try:
        await database.command("ping")
        return True
    except Exception:
        return False
