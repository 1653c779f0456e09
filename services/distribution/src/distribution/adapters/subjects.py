"""Which ambassador id holds each login (`advocacy_common.subjects`): earlier releases' collections, moved.

The claims now ride in the ambassador projection's documents (`MongoAmbassadorProjection.claim_subject`:
a login's latest claim on the document of its first holder, whose id is the login's subject key), so
that a feed request reads one document instead of two (on FerretDB 1.x each read by `_id` is a command
and a scan of its bucket). Earlier releases kept them in `ambassador_subjects` (one collection), then in
its buckets `ambassador_subjects_00`...`ff` on FerretDB: `move_subject_claims` moves them at start.
"""

from __future__ import annotations

import logging

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure

from advocacy_common.subjects import COLLECTION

from .buckets import bucket_collections
from .projections import ambassador_buckets, claim_login

log = logging.getLogger(__name__)
KEY_SEPARATOR = "\x1f"  # the earlier documents' `_id`: tenant, separator, subject key


async def move_subject_claims(database: AsyncDatabase, ferretdb: bool) -> int:
    """The earlier collections' claims into the ambassador documents, then those collections dropped; how
    many claims were moved. Only a claim by someone other than the login's first holder is moved: the first
    holder's own claim says what no claim says (a login nobody else claimed names its first holder), and a
    first holder never claims again after a successor (that successor exists only once the first holder was
    erased). Idempotent (`claim_subject` keeps the later claim); a start interrupted before the drops moves
    them again."""
    names = {c.name for c in bucket_collections(database, COLLECTION, ferretdb=True)} | {COLLECTION}
    earlier = sorted(names & set(await database.list_collection_names()))
    buckets, moved = ambassador_buckets(database, ferretdb), 0
    for name in earlier:
        try:
            async for claim in database[name].find({}):
                tenant, _, subject_key = str(claim["_id"]).partition(KEY_SEPARATOR)
                if claim.get("tenant") == tenant and claim["ambassador_id"] != subject_key:
                    await claim_login(buckets, tenant, subject_key, claim["ambassador_id"], claim["claimed_at"])
                    moved += 1
        except OperationFailure:
            # Another process starting meanwhile dropped it, after moving every claim it held.
            log.info("%s was dropped meanwhile", name)
        await database[name].drop()
    if earlier:
        log.info("moved %d subject claims into the ambassador documents", moved)
    return moved
