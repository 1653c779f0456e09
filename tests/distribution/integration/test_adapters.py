"""The MongoDB adapters on the real database: the contracts of the ports the fakes imitate."""

from datetime import UTC, datetime, timedelta

import pytest

from advocacy_common.consuming import Delivery
from advocacy_common.envelope import Envelope
from advocacy_common.outbox import queued_events
from advocacy_common.events import EngagementKind, EngagementReceived, PostShared
from advocacy_common.repository import AlreadyExists, KeyReused, StaleWrite, UnitOfWork
from advocacy_common.topics import SHARE
from advocacy_common.events import AmbassadorOptedIn, AmbassadorProfile, ContentPublished, Objective
from advocacy_common.repository import Storage
from advocacy_common.subjects import COLLECTION as SUBJECTS
from distribution.adapters import sharing as sharing_module
from distribution.adapters.sharing import BOOK_CHUNK_ENTRIES
from distribution.adapters import links as links_module
from distribution.adapters.buckets import holding
from distribution.adapters import ambassador_documents
from distribution.adapters.projections import (
    EARLIER_PROFILE, PROFILE, MongoAmbassadorProjection, flatten_earlier_profiles,
)
from distribution.adapters.shared_contents import EARLIER_COLLECTION as EARLIER_SHARED, drop_earlier_shared_contents
from distribution.adapters.subjects import move_subject_claims
from distribution.models.authenticity import (
    AuthenticityPolicy, BookEntry, minhash, normalized_words, packed, shingles,
)
from distribution.models.engagement import Click, Connector, Report, engagement_received
from distribution.models.projections import CommentTally, ContentView
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
                 created_at=NOW)


async def test_a_signature_book_is_read_by_id_and_grows_by_compare_and_set_across_chunks(repositories, tenant,
                                                                                         distribution_db):
    books = repositories.books
    empty = await books.read(tenant, "c1")
    assert (empty.entries, empty.last_version) == ([], 0)
    post = packed(minhash(shingles(normalized_words(POST))))
    entries = [BookEntry(share_id=f"s-{i}", colleague=f"k-{i % 3}", signature=post)
               for i in range(BOOK_CHUNK_ENTRIES + 2)]
    await books.add(empty, entries[0])
    with pytest.raises(AlreadyExists):  # a second writer of the first chunk, from the same empty read
        await books.add(empty, entries[1])
    stale = await books.read(tenant, "c1")
    for entry in entries[1:]:
        await books.add(await books.read(tenant, "c1"), entry)
    with pytest.raises(StaleWrite):  # the book moved on since `stale` was read: nothing written
        await books.add(stale, BookEntry(share_id="late", colleague="k-9", signature=post))
    book = await books.read(tenant, "c1")
    assert [e.share_id for e in book.entries] == [e.share_id for e in entries]
    assert book.entries[0].signature == post and book.last_chunk == 1 and book.last_chunk_size == 2
    assert len(book.colleagues_of("k-0")) == len(entries) - len(entries[::3])
    stored = await distribution_db["signature_books"].find_one({"_id": f"{tenant}/c1/0"})
    assert len(stored["share_ids"]) == BOOK_CHUNK_ENTRIES and len(stored["signatures"]) == 512 * BOOK_CHUNK_ENTRIES
    await books.remove(tenant, "c1", "s-1")
    await books.remove(tenant, "c1", f"s-{BOOK_CHUNK_ENTRIES + 1}")
    assert [e.share_id for e in (await books.read(tenant, "c1")).entries] == \
        [e.share_id for e in entries if e.share_id not in {"s-1", f"s-{BOOK_CHUNK_ENTRIES + 1}"}]
    assert (await books.read("another", "c1")).entries == []  # ids are tenant-scoped, the tenant is checked


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
    assert (await shares._holding(prepared.id).find_one({"_id": prepared.id}))["post_url"] == "https://li/p"
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
    assert await links.changes(tenant) == 0
    assert await links.claim(tenant, link.code, "s1") and await links.claim(tenant, link.code, "s1")
    assert not await links.claim(tenant, link.code, "s2")
    # What the redirect's cache checks: every claim (a retried one too) and every erasure move it on, a
    # refused claim does not; another tenant's count stays.
    assert await links.changes(tenant) == 2 and await links.changes(f"{tenant}-other") == 0
    await links.anonymise(tenant, "a1", "erased")
    assert await links.changes(tenant) == 3 and (await links.by_code(link.code)).ambassador_id == "erased"


async def test_clicks_connectors_reports_and_policies(repositories, tenant):
    uow = UnitOfWork(tenant, "/tests")
    event = engagement_received(tenant, {"share_id": None, "content_id": "c1", "campaign_id": None,
                                         "ambassador_id": "a1", "team_id": None, "network": "linkedin"},
                                kind=EngagementKind.CLICK, count=1, source="redirect", source_event_id=tenant,
                                occurred_at=NOW)
    uow.record(event, event_id=event.engagement_id)
    first, second = f"code/{tenant}", f"code/{tenant}-2"
    assert await repositories.clicks.claim_visitors([(tenant, first)]) == {first}
    # One insert for both; the duplicate key says the first visitor is not new.
    assert await repositories.clicks.claim_visitors([(tenant, first), (tenant, second)]) == {second}
    assert await repositories.clicks.claim_visitors([]) == set()
    click = Click(id=f"code/{tenant}", tenant=tenant, code="code", at=NOW)
    await repositories.clicks.record_many([(click, uow)])  # into the relay's queue, with its event
    await repositories.clicks.record_many([(click, uow)])  # a retry of the same click: stored once
    queued = await repositories.clicks.collection.find({"_id": click.id}).to_list()
    assert len(queued) == 1
    # Its event compressed (one binary field), stored and read back whole by the server.
    assert queued[0]["tenant"] == tenant and [e.id for _, e in queued_events(queued[0])] == [event.engagement_id]
    assert (await repositories.clicks.unique_visitors_by_code(tenant, ["code"])) == {"code": 2}

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
    """Slots are held by confirmed shares and by prepares younger than the hold; an older prepare gave its back."""
    shares = repositories.shares
    hold = timedelta(minutes=30)
    for i, (status, hours, age) in enumerate([(ShareStatus.CONFIRMED, 1, timedelta(hours=2)),
                                              (ShareStatus.PREPARED, 2, timedelta(minutes=29)),
                                              (ShareStatus.CONFIRMED, -1, timedelta(0)),
                                              (ShareStatus.PREPARED, 3, timedelta(minutes=31))]):
        item = share(tenant, f"{tenant}-n{i}", "a1", POST + str(i), status)
        item = item.model_copy(update={"recommended_at": NOW + timedelta(hours=hours), "created_at": NOW - age,
                                       "confirmed_at": NOW if status is ShareStatus.CONFIRMED else None})
        await shares.add_prepared(item, f"fp{i}")
        # A confirmation enters its share in the person's shared contents before saving it (even one that
        # then fails: the prepared n1 is entered but not counted).
        await repositories.shared.add(tenant, "a1", item.id, "c1", NOW if i != 1 else NOW - timedelta(days=1))
    assert await shares.count_confirmed_since(tenant, "a1", NOW - timedelta(days=7)) == 2
    assert await shares.count_confirmed_since(tenant, "a1", NOW + timedelta(seconds=1)) == 0
    assert await shares.count_confirmed_since(tenant, "a2", NOW - timedelta(days=7)) == 0
    assert await shares.count_confirmed_since(f"{tenant}-other", "a1", NOW - timedelta(days=7)) == 0
    # Confirmed 8 days ago: out of the week. Entered before times were kept (no time): checked by its share.
    old = share(tenant, f"{tenant}-old", "a1", POST + "old").model_copy(
        update={"content_id": "c2", "confirmed_at": NOW - timedelta(days=8)})
    await shares.add_prepared(old, "fp-old")
    await repositories.shared.add(tenant, "a1", old.id, "c2")
    legacy = share(tenant, f"{tenant}-legacy", "a1", POST + "legacy").model_copy(
        update={"content_id": "c2", "confirmed_at": NOW})
    await shares.add_prepared(legacy, "fp-legacy")
    await repositories.shared.add(tenant, "a1", legacy.id, "c2")
    assert await shares.count_confirmed_since(tenant, "a1", NOW - timedelta(days=7)) == 3
    await repositories.shared.remove(tenant, "a1", legacy.id, "c2")  # its time goes with its entry
    assert await shares.count_confirmed_since(tenant, "a1", NOW - timedelta(days=7)) == 2
    assert await shares.slots_held_from(tenant, "c1", NOW, NOW - hold) == \
        {NOW + timedelta(hours=1), NOW + timedelta(hours=2)}
    assert await shares.slots_held_from(tenant, "c1", NOW, NOW - 2 * hold) == \
        {NOW + timedelta(hours=1), NOW + timedelta(hours=2), NOW + timedelta(hours=3)}
    assert await shares.slots_held_from(f"{tenant}-other", "c1", NOW, NOW - 2 * hold) == set()
    # Confirming the prepared n1 makes its slot held for good.
    prepared = await shares.get(tenant, f"{tenant}-n1")
    await shares.confirm(prepared.confirmed(None, NOW), UnitOfWork(tenant, "/tests"))
    assert NOW + timedelta(hours=2) in await shares.slots_held_from(tenant, "c1", NOW, NOW)


async def test_comments_awaiting_reply_page_by_share_skipping_the_answered(repositories, tenant):
    """Keyset pages over the tallies; a tally whose comments all got replies is skipped, not a short page."""
    comments = repositories.comments
    offset = 0
    for share_id, received, replied in (("s1", 2, 0), ("s2", 1, 1), ("s3", 3, 1), ("s4", 1, 1), ("s5", 1, 0)):
        tally = CommentTally(tenant=tenant, share_id=share_id, ambassador_id="a1", content_id="c1", network="linkedin")
        for kind, count in ((EngagementKind.COMMENT, received), (EngagementKind.COMMENT_REPLY, replied)):
            if count:
                offset += 1
                event = EngagementReceived(engagement_id=f"e{offset}", kind=kind, count=count, share_id=share_id,
                                           content_id="c1", ambassador_id="a1", network="linkedin", occurred_at=NOW,
                                           source="li", source_event_id=str(offset))
                delivery = Delivery(Envelope(source="/tests", type=event.type_name, tenantid=tenant), event,
                                    "advocacy.engagement", 0, offset)
                await comments.count(tally, kind, count, delivery)
    pages, cursor = [], None
    while True:
        page = await comments.awaiting_reply(tenant, "a1", cursor, 1)
        pages.append([t.share_id for t in page.items])
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == [["s1"], ["s3"], ["s5"]]
    assert (await comments.awaiting_reply(tenant, "a1", None, 10)).items[1].awaiting == 2
    assert (await comments.awaiting_reply(tenant, "someone-else", None, 10)).items == []


async def test_shares_confirmed_before_the_signature_books_are_found_until_marked(repositories, tenant,
                                                                                  distribution_db):
    shares = repositories.shares
    old = repositories.shares.to_document(share(tenant, f"{tenant}-old", "a1", POST))
    old.pop("in_book")
    await shares._holding(old["_id"]).insert_one(old)  # as an earlier release stored it
    await shares.add_prepared(share(tenant, f"{tenant}-new", "a2", POST), "fp")  # stored by this release
    outside = {s.id for s in await shares.confirmed_outside_books(1000)}
    assert f"{tenant}-old" in outside and f"{tenant}-new" not in outside
    await shares.mark_in_book(tenant, f"{tenant}-old")
    assert f"{tenant}-old" not in {s.id for s in await shares.confirmed_outside_books(1000)}


async def test_shares_marked_in_the_earlier_shared_contents_are_found_again_until_marked(repositories, tenant,
                                                                                         distribution_db):
    # An earlier release marked its confirmed shares `in_shared` (entered in `shared_contents`, dropped since):
    # they are outside the person's document until entered there again (`Sharing.fill_shared`).
    shares = repositories.shares
    earlier = shares.to_document(share(tenant, f"{tenant}-earlier", "a1", POST))
    earlier["in_shared"] = earlier.pop("in_person")
    await shares._holding(earlier["_id"]).insert_one(earlier)  # its bucket on FerretDB, as moved at start
    await shares.add_prepared(share(tenant, f"{tenant}-new", "a2", POST), "fp")  # stored by this release
    outside = {s.id for s in await shares.confirmed_outside_shared(1000)}
    assert f"{tenant}-earlier" in outside and f"{tenant}-new" not in outside
    await shares.mark_in_shared(tenant, f"{tenant}-earlier")
    assert f"{tenant}-earlier" not in {s.id for s in await shares.confirmed_outside_shared(1000)}


async def test_shared_contents_hold_one_entry_per_share_in_the_persons_own_document(repositories, tenant):
    shared, ambassadors = repositories.shared, repositories.ambassadors
    assert await shared.of(tenant, "a1") == set()
    await ambassadors.opt_in(tenant, "a1", AmbassadorProfile(persona="expert"), 0, opted_in(tenant, 1))
    for _ in range(2):  # a retried confirmation enters nothing twice
        await shared.add(tenant, "a1", "s-li", "c1")
    await shared.add(tenant, "a1", "s-x", "c1")  # the same content on another network
    await shared.add(tenant, "a1", "s-2", "c2")
    await shared.add(tenant, "a2", "s-3", "c3")
    assert await shared.of(tenant, "a1") == {"c1", "c2"} and await shared.of(tenant, "a2") == {"c3"}
    # In the ambassador projection's document, which the projection's own writes leave them in.
    assert shared.buckets == ambassadors.buckets
    await ambassadors.opt_out(tenant, "a1", opted_in(tenant, 2))
    [bucket] = [c for c in shared.buckets if await c.find_one({"_id": f"{tenant}/a1"})]
    stored = await bucket.find_one({"_id": f"{tenant}/a1"})
    assert stored["status"] == "opted_out"
    assert stored["shares"] == [{"share_id": "s-li", "content_id": "c1"}, {"share_id": "s-x", "content_id": "c1"},
                                {"share_id": "s-2", "content_id": "c2"}]
    assert (await ambassadors.person(tenant, "a1")).shared_content_ids == {"c1", "c2"}
    assert len(shared.buckets) == (256 if repositories.shares.storage.capabilities.ferretdb else 1)
    await shared.remove(tenant, "a1", "s-li", "c1")  # the other share of c1 keeps it
    assert await shared.of(tenant, "a1") == {"c1", "c2"}
    await shared.remove(tenant, "a1", "s-x", "c1")
    await shared.remove(tenant, "a1", "s-x", "c1")  # again: nothing more
    assert await shared.of(tenant, "a1") == {"c2"}
    assert await shared.of(f"{tenant}-other", "a1") == set()  # another tenant's person of the same id
    await shared.forget(tenant, "a1")
    await shared.forget(tenant, "a1")
    assert await shared.of(tenant, "a1") == set() and "shares" not in await bucket.find_one({"_id": f"{tenant}/a1"})
    assert (await ambassadors.get(tenant, "a1")).status.value == "opted_out"  # the projection stays
    assert await shared.of(tenant, "a2") == {"c3"}


async def test_earlier_shared_contents_collections_are_dropped_at_start(distribution_db):
    database = distribution_db.client[f"{distribution_db.name}_shared"]
    try:
        for name in (EARLIER_SHARED, f"{EARLIER_SHARED}_00", f"{EARLIER_SHARED}_ff"):
            await database[name].insert_one({"_id": "t/a1", "tenant": "t", "shares": []})
        await database["ambassadors"].insert_one({"_id": "t/a1", "tenant": "t", "ambassador_id": "a1"})
        assert await drop_earlier_shared_contents(database) == 3
        assert await database.list_collection_names() == ["ambassadors"]
        assert await drop_earlier_shared_contents(database) == 0
    finally:
        await distribution_db.client.drop_database(database.name)


async def test_the_content_change_count_moves_on_every_write_also_a_repeated_one(repositories, tenant):
    contents = repositories.contents
    assert await contents.changes(tenant) == 0
    item = ContentView(tenant=tenant, content_id="c1", version=2, networks=["linkedin"], publish_at=NOW)
    event = ContentPublished(content_id="c1", version=2, campaign_id="camp", objective=Objective.AWARENESS,
                             title="t", link_url="https://acme.com", suggested_texts={}, topics=[], language="en",
                             networks=["linkedin"], publish_at=NOW)
    delivery = Delivery(Envelope(source="/tests", type=event.type_name, tenantid=tenant), event, "advocacy.content", 0, 1)
    await contents.put_if_newer(item, delivery)
    await contents.put_if_newer(item, delivery)  # redelivered: applied once, counted again
    assert await contents.changes(tenant) == 2
    await contents.put_if_newer(item.model_copy(update={"content_id": "later", "publish_at": NOW + timedelta(days=1)}),
                                Delivery(delivery.envelope, event, "advocacy.content", 0, 2))
    await contents.retire(tenant, "c1", 3, "withdrawn", Delivery(delivery.envelope, event, "advocacy.content", 0, 3))
    assert await contents.changes(tenant) == 4
    assert [c.content_id for c in await contents.list_unretired(tenant)] == ["later"]  # scheduled ones too
    assert await contents.changes(f"{tenant}-other") == 0


async def test_subject_claims_ride_on_the_first_holders_document_and_a_feed_reads_one_document(repositories,
                                                                                                tenant, monkeypatch):
    ambassadors = repositories.ambassadors
    profile = AmbassadorProfile(persona="expert")
    await ambassadors.opt_in(tenant, "key-1", profile, 0, opted_in(tenant, 1))
    await ambassadors.claim_subject(tenant, "key-1", "key-1", NOW - timedelta(days=2))  # the first holder's own
    await repositories.shared.add(tenant, "key-1", "s1", "c1")
    reads = []
    monkeypatch.setattr(ambassadors, "_document", counting(ambassadors._document, reads))
    first = await ambassadors.person(tenant, "key-1")
    assert (first.ambassador_id, first.ambassador.status.value, first.shared_content_ids) == \
        ("key-1", "opted_in", {"c1"})
    assert reads == ["key-1"]  # one read by `_id`: login, projection and shared contents in one document
    assert await ambassadors.subject_holder(tenant, "unclaimed") is None
    nobody = await ambassadors.person(tenant, "unclaimed")  # a login nobody claimed names its first holder
    assert (nobody.ambassador_id, nobody.ambassador, nobody.shared_content_ids) == ("unclaimed", None, frozenset())
    # Provisioned again after an erasure: the successor's claim on the first holder's document; a replayed
    # older claim changes nothing; the erased predecessor's document keeps no profile and says who holds it.
    await ambassadors.erase(tenant, "key-1", opted_in(tenant, 2))
    await ambassadors.opt_in(tenant, "second", profile, 0, opted_in(tenant, 3))
    await ambassadors.claim_subject(tenant, "key-1", "second", NOW)
    await ambassadors.claim_subject(tenant, "key-1", "older", NOW - timedelta(days=1))
    await ambassadors.claim_subject(tenant, "key-1", "key-1", NOW - timedelta(days=2))  # the first opt-in replayed
    assert await ambassadors.subject_holder(tenant, "key-1") == "second"
    reads.clear()
    successor = await ambassadors.person(tenant, "key-1")
    assert (successor.ambassador_id, successor.ambassador.status.value, successor.shared_content_ids) == \
        ("second", "opted_in", frozenset())  # never the predecessor's
    assert reads == ["key-1", "second"]
    assert (await ambassadors.get(tenant, "key-1")).status.value == "erased"
    assert await ambassadors.subject_holder(f"{tenant}-other", "key-1") is None
    assert (await ambassadors.person(f"{tenant}-other", "key-1")).ambassador is None  # tenant-scoped
    # A claim arriving before anything else of its first holder makes a document of the key.
    await ambassadors.claim_subject(tenant, "key-2", "third", NOW)
    assert await ambassadors.subject_holder(tenant, "key-2") == "third"
    assert (await ambassadors.person(tenant, "key-2")).ambassador_id == "third"


async def test_the_profile_is_one_string_in_the_persons_document_and_an_earlier_nested_one_reads_the_same(
        repositories, tenant):
    # FerretDB 1.x on PostgreSQL scans the bucket for every read by `_id`: a nested profile made each document
    # big enough to be stored compressed (see `projections.profile_fields`). Earlier documents stay readable.
    ambassadors = repositories.ambassadors
    profile = AmbassadorProfile(persona="expert", topics=["energy", "hiring"], languages=["fr"], team_id="t1",
                                location="lyon", networks=[{"network": "linkedin", "audience_size": 120}])
    await ambassadors.opt_in(tenant, "new", profile, 0, opted_in(tenant, 1))
    collection, document_id = ambassadors._holding(tenant, "new")
    stored = await collection.find_one({"_id": document_id})
    assert isinstance(stored[PROFILE], str) and EARLIER_PROFILE not in stored
    assert (await ambassadors.get(tenant, "new")).profile == profile
    # An earlier release's document: the same fields, the profile nested.
    earlier, earlier_id = ambassadors._holding(tenant, "old")
    await earlier.insert_one({"_id": earlier_id, "tenant": tenant, "ambassador_id": "old", "status": "opted_in",
                              "accepted_charter_version": 0, EARLIER_PROFILE: profile.model_dump(mode="json")})
    person = await ambassadors.person(tenant, "old")
    assert (person.ambassador_id, person.ambassador.status.value, person.ambassador.profile) == \
        ("old", "opted_in", profile)
    moved = profile.model_copy(update={"location": "paris"})
    await ambassadors.update_profile(tenant, "old", moved, opted_in(tenant, 2))
    rewritten = await earlier.find_one({"_id": earlier_id})
    assert EARLIER_PROFILE not in rewritten and (await ambassadors.get(tenant, "old")).profile == moved
    documents = await ambassador_documents(repositories.ambassadors.storage.database, {"tenant": tenant})
    assert [d[EARLIER_PROFILE]["location"] for d in documents] == ["lyon", "paris"]
    # The conversion at start: an earlier document rewritten, once.
    converted, converted_id = ambassadors._holding(tenant, "older")
    await converted.insert_one({"_id": converted_id, "tenant": tenant, "ambassador_id": "older",
                                "status": "opted_in", EARLIER_PROFILE: profile.model_dump(mode="json")})
    database = repositories.ambassadors.storage.database
    ferretdb = repositories.ambassadors.storage.capabilities.ferretdb
    assert await flatten_earlier_profiles(database, ferretdb) >= 1
    stored = await converted.find_one({"_id": converted_id})
    assert EARLIER_PROFILE not in stored and (await ambassadors.get(tenant, "older")).profile == profile
    assert await flatten_earlier_profiles(database, ferretdb) == 0
    await ambassadors.erase(tenant, "new", opted_in(tenant, 3))
    erased = await collection.find_one({"_id": document_id})
    assert PROFILE not in erased and EARLIER_PROFILE not in erased
    assert (await ambassadors.get(tenant, "new")).profile is None


def counting(read, reads: list[str]):
    async def counted(tenant: str, ambassador_id: str, fields=None):
        reads.append(ambassador_id)
        return await read(tenant, ambassador_id, fields)
    return counted


def opted_in(tenant: str, offset: int) -> Delivery:
    event = AmbassadorOptedIn(ambassador_id="x", charter_version=0, opted_in_at=NOW, profile=AmbassadorProfile(persona="expert"))
    return Delivery(Envelope(source="/tests", type=event.type_name, tenantid=tenant), event, "advocacy.ambassador", 0,
                    offset)


async def test_earlier_subject_claims_move_into_the_ambassador_documents(repositories, distribution_db):
    # Earlier releases kept claims in one collection, then in its buckets: the claims of someone other than
    # the login's first holder move at start (latest claim winning over one there), the collections go.
    database = distribution_db.client[f"{distribution_db.name}_subjects"]
    try:
        tenant = "t1"
        await database[SUBJECTS].insert_many([
            {"_id": f"{tenant}\x1fkey-{n}", "tenant": tenant, "ambassador_id": f"new-{n}" if n % 3 == 0 else f"key-{n}",
             "claimed_at": NOW} for n in range(30)])
        await database[f"{SUBJECTS}_00"].insert_many([
            {"_id": f"{tenant}\x1fkey-3", "tenant": tenant, "ambassador_id": "newer", "claimed_at": NOW + timedelta(hours=1)},
            {"_id": f"{tenant}\x1fkey-6", "tenant": tenant, "ambassador_id": "superseded",
             "claimed_at": NOW - timedelta(hours=1)}])
        await database[f"{SUBJECTS}_ff"].insert_one(
            {"_id": "other\x1fkey-9", "tenant": tenant, "ambassador_id": "wrong-tenant", "claimed_at": NOW})
        ferretdb = repositories.shares.storage.capabilities.ferretdb
        assert await move_subject_claims(database, ferretdb) == 12  # 10 in the collection, 2 in a bucket
        assert not [n for n in await database.list_collection_names() if n.startswith(SUBJECTS)]
        assert await move_subject_claims(database, ferretdb) == 0
        ambassadors = MongoAmbassadorProjection(Storage(database, repositories.shares.storage.capabilities,
                                                        repositories.shares.storage.cursors))
        assert [await ambassadors.subject_holder(tenant, f"key-{n}") for n in (0, 1, 3, 6, 9)] == \
            ["new-0", None, "newer", "new-6", "new-9"]
        assert await ambassadors.subject_holder("other", "key-9") is None
    finally:
        await distribution_db.client.drop_database(database.name)


async def test_links_live_in_buckets_are_erased_in_each_and_move_there_from_the_single_collection(
        repositories, tenant, distribution_db, monkeypatch):
    def link(number: int, ambassador: str = "a1") -> TrackedLink:
        return TrackedLink(code=f"{tenant}-c{number}", tenant=tenant, ambassador_id=ambassador, content_id="c1",
                           network="linkedin", link_url=f"https://acme.com/{number}", created_at=NOW)

    links = repositories.links
    for number in range(12):
        await links.ensure(link(number, "a1" if number % 2 else "a2"))
    assert [found.code for found in await links.of_ambassador(tenant, "a1")] == \
        sorted(f"{tenant}-c{number}" for number in range(1, 12, 2))
    assert await links.of_ambassador(f"{tenant}-other", "a1") == []
    await links.anonymise(tenant, "a1", "erased")  # in every bucket that holds one of theirs
    assert await links.of_ambassador(tenant, "a1") == []
    assert (await links.by_code(f"{tenant}-c1")).ambassador_id == "erased"
    assert (await links.by_code(f"{tenant}-c2")).ambassador_id == "a2"

    # An earlier release kept every link in one collection: moved into the buckets at start (a link already
    # there stays as it is), that collection dropped; a second start finds nothing to do.
    database = distribution_db.client[f"{distribution_db.name}_links"]
    try:
        legacy = [{"_id": f"old-{n}", **link(n).model_dump(exclude={"code"})} for n in range(300)]
        await database[links_module.LINKS].insert_many(legacy)
        buckets = links_module.link_buckets(database, True)
        await holding(buckets, "old-7").insert_one({**legacy[7], "confirmed_share_id": "s-moved-already"})
        monkeypatch.setattr(links_module, "MOVE_BATCH", 2)
        assert await links_module.move_links(database, True) == 299
        assert links_module.LINKS not in await database.list_collection_names()
        assert await links_module.move_links(database, True) == 0
        assert sum([await bucket.count_documents({}) for bucket in buckets]) == 300
        assert max([await bucket.count_documents({}) for bucket in buckets]) < 20  # spread, not in one
        assert (await holding(buckets, "old-7").find_one({"_id": "old-7"}))["confirmed_share_id"] == "s-moved-already"
        assert await links_module.move_links(database, False) == 0  # MongoDB: one collection, nothing to move
    finally:
        await distribution_db.client.drop_database(database.name)


async def test_shares_live_in_buckets_are_paged_found_and_erased_across_them_and_move_there(
        repositories, tenant, distribution_db, monkeypatch):
    """On FerretDB a share is read and written by id in one bucket of 256 (its reads by `_id` no longer scan
    every share ever stored); the reads by other fields visit them all."""
    shares = repositories.shares
    ferretdb = shares.storage.capabilities.ferretdb
    assert len(shares.buckets) == (256 if ferretdb else 1)
    for n in range(12):
        item = share(tenant, f"{tenant}-b{n:02d}", "a1" if n % 2 else "a2", POST + str(n)).model_copy(update={
            "created_at": NOW + timedelta(minutes=n), "post_url": f"https://li/{tenant}/{n}"})
        await shares.add_prepared(item, f"fp{n}")
    holding_buckets = {bucket.name for bucket in shares.buckets
                       if await bucket.find_one({"tenant": tenant}, {"_id": 1})}
    assert len(holding_buckets) > (5 if ferretdb else 0)  # spread, not in one
    pages, cursor = [], None
    while True:  # newest first across the buckets, 2 a page
        page = await shares.page_of(tenant, "a1", cursor, 2)
        pages.append([s.id for s in page.items])
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == [[f"{tenant}-b11", f"{tenant}-b09"], [f"{tenant}-b07", f"{tenant}-b05"],
                     [f"{tenant}-b03", f"{tenant}-b01"]]
    assert (await shares.find_by_post_url(tenant, f"https://li/{tenant}/4")).id == f"{tenant}-b04"
    assert await shares.find_by_post_url(f"{tenant}-other", f"https://li/{tenant}/4") is None
    await shares.anonymise(tenant, "a1", "erased")
    assert (await shares.page_of(tenant, "a1", None, 10)).items == []
    erased = await shares.get(tenant, f"{tenant}-b03")
    assert (erased.ambassador_id, erased.text, erased.post_url) == ("erased", None, None)
    assert (await shares.get(tenant, f"{tenant}-b04")).ambassador_id == "a2"

    # An earlier release kept every share in one collection: moved into the buckets at start, pending events
    # with them (a share already there stays as it is), that collection dropped; a second start: nothing to do.
    database = distribution_db.client[f"{distribution_db.name}_shares"]
    try:
        legacy = [{**shares.to_document(share(tenant, f"old-{n}", "a1", POST)), "_outbox": [{"id": f"e{n}"}]}
                  for n in range(300)]
        await database[sharing_module.SHARES].insert_many(legacy)
        buckets = sharing_module.share_buckets(database, True)
        await holding(buckets, "old-7").insert_one({**legacy[7], "version": 5})
        monkeypatch.setattr(sharing_module, "MOVE_BATCH", 2)
        assert await sharing_module.move_shares(database, True) == 299
        assert sharing_module.SHARES not in await database.list_collection_names()
        assert await sharing_module.move_shares(database, True) == 0
        assert sum([await bucket.count_documents({}) for bucket in buckets]) == 300
        assert max([await bucket.count_documents({}) for bucket in buckets]) < 20
        assert (await holding(buckets, "old-7").find_one({"_id": "old-7"}))["version"] == 5
        assert (await holding(buckets, "old-8").find_one({"_id": "old-8"}))["_outbox"] == [{"id": "e8"}]
        assert await sharing_module.move_shares(database, False) == 0  # MongoDB: one collection, nothing to move
    finally:
        await distribution_db.client.drop_database(database.name)
