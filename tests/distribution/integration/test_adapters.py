"""The MongoDB adapters on the real database: the contracts of the ports the fakes imitate."""

from datetime import UTC, datetime, timedelta

import pytest

from advocacy_common.events import EngagementKind, PostShared
from advocacy_common.repository import AlreadyExists, KeyReused, StaleWrite, UnitOfWork
from advocacy_common.topics import SHARE
from distribution.models.authenticity import (
    AuthenticityPolicy, minhash, normalized_words, shingles, signature_bands,
)
from distribution.models.engagement import Click, Connector, Report, engagement_received
from distribution.models.sharing import Share, ShareStatus, TrackedLink

pytestmark = pytest.mark.integration
NOW = datetime.now(UTC).replace(microsecond=0)
POST = ("I visited our Lyon site last month and watched the solar panels go up. Today the whole plant runs on "
        "renewable power, and honestly it makes me proud to work here.")


def share(tenant: str, share_id: str, ambassador_id: str, text: str, status=ShareStatus.CONFIRMED) -> Share:
    signature = minhash(shingles(normalized_words(text)))
    return Share(id=share_id, tenant=tenant, status=status, ambassador_id=ambassador_id, content_id="c1",
                 campaign_id="camp", network="linkedin", text=text, tracked_link_code=f"code-{share_id}",
                 tracked_link="https://go/r/x", share_intent_url=None, recommended_at=NOW,
                 similarity_to_suggested=0.1, similarity_to_colleagues=0.0, personalized=True, signature=signature,
                 signature_bands=signature_bands(signature), created_at=NOW)


async def test_colleague_signatures_come_from_the_lsh_bands_of_confirmed_shares_of_others(repositories, tenant):
    shares = repositories.shares
    await shares.add_prepared(share(tenant, f"{tenant}-1", "a1", POST), "fp1")
    await shares.add_prepared(share(tenant, f"{tenant}-2", "a2", "Completely different words about hiring "
                                    "engineers in Nantes for the data platform team this spring."), "fp2")
    await shares.add_prepared(share(tenant, f"{tenant}-3", "a3", POST, status=ShareStatus.PREPARED), "fp3")
    await shares.add_prepared(share(tenant, f"{tenant}-4", "me", POST), "fp4")
    near_copy = minhash(shingles(normalized_words(POST.replace("honestly ", ""))))
    found = await shares.colleague_signatures(tenant, "c1", "me", signature_bands(near_copy))
    assert found == [share(tenant, "x", "a1", POST).signature]  # not the unrelated, the prepared, nor mine
    assert await shares.colleague_signatures(tenant, "c1", "me", []) == []
    assert await shares.colleague_signatures("another", "c1", "me", signature_bands(near_copy)) == []


async def test_share_confirmation_is_a_compare_and_set_with_its_event(repositories, tenant, distribution_db,
                                                                       read_topic, worker):
    shares = repositories.shares
    prepared = await shares.add_prepared(share(tenant, f"{tenant}-s", "a1", POST, ShareStatus.PREPARED), "fp")
    assert await shares.add_prepared(share(tenant, f"{tenant}-s", "a1", POST, ShareStatus.PREPARED), "fp") == prepared
    with pytest.raises(KeyReused):
        await shares.get_retry(tenant, prepared.id, "another body")
    uow = UnitOfWork(tenant, "/tests")
    uow.record(PostShared(share_id=prepared.id, content_id="c1", campaign_id="camp", ambassador_id="a1",
                          network="linkedin", personalized=True, similarity_to_suggested=0.1,
                          similarity_to_colleagues=0.0, potential_reach=1, tracked_link_code="code", shared_at=NOW),
               event_id=f"{tenant}-event")
    saved = await shares.confirm(prepared.confirmed("https://li/p", NOW), uow)
    assert (saved.version, saved.status) == (2, ShareStatus.CONFIRMED)
    with pytest.raises(StaleWrite):  # the same read again: nothing is written, no second event
        await shares.confirm(prepared.confirmed("https://li/other", NOW), UnitOfWork(tenant, "/tests"))
    assert (await distribution_db["shares"].find_one({"_id": prepared.id}))["post_url"] == "https://li/p"
    events = await read_topic(SHARE, lambda e: e.tenantid == tenant, min_count=2, timeout=4)
    assert [e.id for e in events] == [f"{tenant}-event"]  # saved with the share, relayed once
    page = await shares.page_of(tenant, "a1", None, 10)
    assert [s.id for s in page.items] == [prepared.id] and page.next_cursor is None


async def test_links_are_created_once_and_claimed_by_one_share(repositories, tenant):
    links = repositories.links
    link = TrackedLink(code=f"{tenant}-code", tenant=tenant, ambassador_id="a1", content_id="c1", network="linkedin",
                       link_url="https://acme.com/first", created_at=NOW)
    await links.ensure(link)
    await links.ensure(link.model_copy(update={"link_url": "https://acme.com/second"}))
    assert (await links.by_code(link.code)).link_url == "https://acme.com/first"
    assert await links.get("another", link.code) is None
    assert await links.claim(tenant, link.code, "s1") and await links.claim(tenant, link.code, "s1")
    assert not await links.claim(tenant, link.code, "s2")


async def test_clicks_connectors_reports_and_policies(repositories, tenant):
    uow = UnitOfWork(tenant, "/tests")
    event = engagement_received(tenant, {"share_id": None, "content_id": "c1", "campaign_id": None,
                                         "ambassador_id": "a1", "team_id": None, "network": "linkedin"},
                                kind=EngagementKind.CLICK, count=1, source="redirect", source_event_id=tenant,
                                occurred_at=NOW)
    uow.record(event, event_id=event.engagement_id)
    assert await repositories.clicks.claim_visitor(tenant, f"code/{tenant}") is True
    assert await repositories.clicks.claim_visitor(tenant, f"code/{tenant}") is False  # the insert said it
    click = Click(id=f"code/{tenant}", tenant=tenant, code="code", at=NOW)
    await repositories.clicks.record(click, uow)  # into the relay's queue, with its event
    queued = await repositories.clicks.collection.find_one({"_id": click.id})
    assert queued["tenant"] == tenant and [e["id"] for e in queued["_outbox"]] == [event.engagement_id]

    connector = Connector(id=f"{tenant}-c", tenant=tenant, name="sync", secret="whsec_x", created_at=NOW)
    assert await repositories.connectors.register(connector, "fp") == connector
    assert await repositories.connectors.register(connector, "fp") == connector
    with pytest.raises(KeyReused):
        await repositories.connectors.register(connector, "other")
    with pytest.raises(AlreadyExists):  # the name is unique per tenant
        await repositories.connectors.register(connector.model_copy(update={"id": f"{tenant}-d"}), "fp")
    assert [c.name for c in await repositories.connectors.list(tenant)] == ["sync"]

    report = Report(id=f"{tenant}/c/r1", tenant=tenant, connector_id=connector.id, source_event_id="r1",
                    fingerprint="fp", engagement_id=event.engagement_id, envelope=uow.pending[0][1], received_at=NOW)
    assert await repositories.reports.record(report) and not await repositories.reports.record(report)
    assert (await repositories.reports.get(tenant, report.id)).envelope.id == event.engagement_id
    await repositories.reports.acknowledge(tenant, report.id)
    stored = await repositories.reports.get(tenant, report.id)
    assert stored.acknowledged and stored.envelope is None

    policies = repositories.policies
    assert (await policies.current(tenant)).version == 0
    first = await policies.replace(tenant, AuthenticityPolicy(max_similarity_to_suggested=0.5), 0)
    with pytest.raises(AlreadyExists):  # a second first writer
        await policies.replace(tenant, AuthenticityPolicy(), 0)
    second = await policies.replace(tenant, AuthenticityPolicy(near_copy_action="flag"), first.version)
    with pytest.raises(StaleWrite):
        await policies.replace(tenant, AuthenticityPolicy(), first.version)
    assert await policies.current(tenant) == second and second.version == 2


async def test_counts_of_confirmed_shares_and_slots(repositories, tenant):
    shares = repositories.shares
    for i, (status, hours) in enumerate([(ShareStatus.CONFIRMED, 1), (ShareStatus.PREPARED, 2),
                                         (ShareStatus.CONFIRMED, -1)]):
        item = share(tenant, f"{tenant}-n{i}", "a1", POST + str(i), status)
        item = item.model_copy(update={"recommended_at": NOW + timedelta(hours=hours),
                                       "confirmed_at": NOW if status is ShareStatus.CONFIRMED else None})
        await shares.add_prepared(item, f"fp{i}")
    assert await shares.count_confirmed_since(tenant, "a1", NOW - timedelta(days=7)) == 2
    assert await shares.count_slots_taken_from(tenant, "c1", NOW) == 2
    assert await shares.shared_content_ids(tenant, "a1") == {"c1"}
