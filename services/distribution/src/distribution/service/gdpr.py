"""Distribution's part of a person's GDPR export: what it holds under their ambassador id.

After an erasure the shares, links and tallies no longer carry the id (they say `erased`) and the
projection is a tombstone: an export of an erased id finds nothing about anyone.
"""

from __future__ import annotations

from typing import Any

from ..models.projections import AmbassadorStatus
from ..ports import Repositories

PAGE = 200
INTERNAL_SHARE_FIELDS = {"signature", "signature_bands"}  # MinHash values, not about the person


async def person_data(repositories: Repositories, tenant: str, ambassador_id: str) -> dict[str, list[dict[str, Any]]]:
    """Profile as distribution knows it, shares with their texts and post URLs, tracked links and the
    distinct visitors of each (click records leave once relayed; the person's clicks per day are in
    metrics' part)."""
    ambassador = await repositories.ambassadors.get(tenant, ambassador_id)
    if ambassador is not None and ambassador.status is AmbassadorStatus.ERASED:
        ambassador = None
    shares, cursor = [], None
    while True:
        page = await repositories.shares.page_of(tenant, ambassador_id, cursor, PAGE)
        shares += [share.model_dump(mode="json", exclude=INTERNAL_SHARE_FIELDS) for share in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    links = await repositories.links.of_ambassador(tenant, ambassador_id)
    visitors = await repositories.clicks.unique_visitors_by_code(tenant, [link.code for link in links]) if links else {}
    return {
        "ambassador": [ambassador.model_dump(mode="json")] if ambassador else [],
        "shares": shares,
        "tracked_links": [{**link.model_dump(mode="json"), "unique_visitors": visitors.get(link.code, 0)} for link in links],
    }
