"""Subject holders and GDPR export parts on the real database: the latest claim wins, a part is written once."""

from datetime import UTC, datetime, timedelta

import pytest

from advocacy_common.auth import Principal
from advocacy_common.consuming import Delivery
from advocacy_common.events import GdprExportRequested
from advocacy_common.gdpr_export import MongoExportParts
from advocacy_common.outbox import OUTBOX_FIELD
from advocacy_common.publishing import envelope_for
from advocacy_common.subjects import MongoSubjectHolders, ambassador_id_of

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 1, tzinfo=UTC)


async def test_the_latest_claim_of_a_login_wins_in_any_order_and_per_tenant(database):
    holders = MongoSubjectHolders(database["ambassador_subjects"])
    ann = Principal(subject="ann", tenant="acme", roles=frozenset({"ambassador"}), claims={})
    assert await ambassador_id_of(holders, ann) == ann.subject_key  # nobody claimed it: the first holder's id
    await holders.claim_subject("acme", ann.subject_key, "new-ann", T0 + timedelta(hours=1))
    await holders.claim_subject("acme", ann.subject_key, ann.subject_key, T0)  # the erased one's, replayed late
    await holders.claim_subject("acme", ann.subject_key, "new-ann", T0 + timedelta(hours=1))  # redelivered
    assert await ambassador_id_of(holders, ann) == "new-ann"
    assert await holders.subject_holder("other", ann.subject_key) is None


async def test_an_export_part_is_written_once_with_its_page_events(database):
    parts = MongoExportParts(database["gdpr_export_parts"], "/tests")
    request = GdprExportRequested(export_id="x-1", ambassador_id="a-1", requested_at=T0)
    delivery = Delivery(envelope_for(request, tenant_id="acme", source="/ambassador"), request,
                        "advocacy.ambassador", 0, 7)
    sections = {"shares": [{"n": i} for i in range(150)]}
    assert await parts.write(delivery, "distribution", sections, T0) is True
    assert await parts.write(delivery, "distribution", sections, T0) is False  # a redelivered request
    document = await database["gdpr_export_parts"].find_one({"_id": "acme\x1fx-1"})
    entries = document[OUTBOX_FIELD]
    assert len(entries) == 2 and {entry["topic"] for entry in entries} == {"advocacy.gdpr-export"}
