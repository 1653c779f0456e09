"""Use cases on the shared fakes: retries on lost races, preconditions, immediate publication, provisioning."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from advocacy_common.auth import ambassador_id_for
from advocacy_common.repository import AlreadyExists, StaleWrite
from ambassador.models import DirectoryEntry, OptOutReason, PersonNotFound, Profile, SignalStatus, \
    TrainingModuleText, opt_in, opt_out
from ambassador.service import MAX_WRITE_ATTEMPTS
from ambassador_fakes import fake_service

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 22, tzinfo=UTC)


class Refused(Exception):
    pass


@pytest.fixture
def ambassadors():
    ids = iter(f"p{i}" for i in range(100))
    return fake_service(clock=lambda: NOW, new_id=lambda: next(ids))


def entry(user_name="a@corp.example", **fields):
    return DirectoryEntry(user_name=user_name, **fields)


def expecting(version: int):
    def check(read_version: int) -> None:
        if read_version != version:
            raise Refused(read_version)

    return check


async def test_a_lost_race_is_retried_on_fresh_state(ambassadors):
    person, _ = await ambassadors.provision("acme", entry())
    ambassadors.people.interfere = 2

    updated = await ambassadors.change_person("acme", person.id, lambda p: opt_in(p, 1, 1, "web", NOW))

    stored = ambassadors.people.entities[person.id]
    assert updated.status == "opted_in" and updated.version == stored.version == person.version + 3
    assert ambassadors.people.pending[person.id] == ["ambassador.opted_in.v1", "charter.accepted.v1"]
    assert ambassadors.publish_now.people == [person.id]


async def test_a_precondition_refuses_the_version_a_concurrent_writer_left(ambassadors):
    person, _ = await ambassadors.provision("acme", entry())
    ambassadors.people.interfere = 1

    with pytest.raises(Refused):
        await ambassadors.update_profile(person, Profile(persona="expert"), expecting(person.version))

    assert ambassadors.people.entities[person.id].profile == Profile()  # nothing written


async def test_endless_contention_ends_in_stale_write_and_nothing_written(ambassadors):
    person, _ = await ambassadors.provision("acme", entry())
    ambassadors.people.interfere = MAX_WRITE_ATTEMPTS

    with pytest.raises(StaleWrite):
        await ambassadors.change_person("acme", person.id, lambda p: opt_in(p, 1, 1, "web", NOW))

    assert ambassadors.people.entities[person.id].status == "not_enrolled"
    assert ambassadors.publish_now.people == []


async def test_no_write_and_no_publication_when_nothing_changes(ambassadors):
    person, _ = await ambassadors.provision("acme", entry())
    unchanged = await ambassadors.change_person("acme", person.id,
                                                lambda p: opt_out(p, OptOutReason.SELF, "web", NOW))
    assert unchanged.version == person.version and ambassadors.publish_now.people == []
    assert ambassadors.people.pending[person.id] == []


async def test_a_failed_immediate_publication_leaves_events_pending(ambassadors):
    ambassadors.publish_now.broken = True
    person, _ = await ambassadors.provision("acme", entry())
    updated = await ambassadors.change_person("acme", person.id, lambda p: opt_in(p, 1, 1, "web", NOW))
    assert updated.status == "opted_in" and len(ambassadors.people.pending[person.id]) == 2


async def test_provision_creates_updates_or_leaves_unchanged(ambassadors):
    assert (await ambassadors.provision("acme", entry()))[1] == "created"
    assert (await ambassadors.provision("acme", entry()))[1] == "unchanged"
    assert (await ambassadors.provision("acme", entry("A@CORP.example", team_id="x")))[1] == "updated"
    assert (await ambassadors.provision("other", entry()))[1] == "created"


async def test_a_taken_user_name_is_refused_and_an_erased_one_is_free_again(ambassadors):
    first = await ambassadors.create_person("acme", entry())
    with pytest.raises(AlreadyExists):
        await ambassadors.create_person("acme", entry("A@corp.example"))
    await ambassadors.erase_person("acme", first.id)

    again = await ambassadors.create_person("acme", entry())

    # A new person with a new id: the erased record keeps its own (with its consent trail).
    assert first.id == ambassador_id_for("acme", "a@corp.example")
    assert again.id != first.id and again.directory.user_name == "a@corp.example" and again.consents == []
    assert (await ambassadors.person("acme", first.id)).status == "erased"
    assert (await ambassadors.person_for_subject("acme", "A@corp.example")).id == again.id


async def test_someone_else_is_not_found_by_another_tenant(ambassadors):
    person, _ = await ambassadors.provision("acme", entry())
    with pytest.raises(PersonNotFound):
        await ambassadors.change_person("other", person.id, lambda p: opt_in(p, 1, 1, "web", NOW))


async def test_triage_and_module_replacement_retry_or_refuse_on_a_lost_race(ambassadors):
    person, _ = await ambassadors.provision("acme", entry())
    person = await ambassadors.change_person("acme", person.id, lambda p: opt_in(p, 1, 1, "web", NOW))
    signal = await ambassadors.report_signal(person, "https://x.example/1", None, "low", "s1", "fp")
    ambassadors.signals.interfere = 1
    triaged = await ambassadors.triage_signal("acme", signal.id, SignalStatus.ACKNOWLEDGED, "admin")
    assert (triaged.status, triaged.acknowledged_by, triaged.version) == ("acknowledged", "admin", 3)

    module = await ambassadors.create_module("acme", TrainingModuleText(title="One"), "m1", "fp")
    ambassadors.modules.interfere = 1
    with pytest.raises(Refused):
        await ambassadors.replace_module("acme", module.id, TrainingModuleText(title="Two"),
                                         expecting(module.version))
    assert ambassadors.modules.entities["m1"].title == "One"


async def test_an_export_asks_by_event_assembles_the_parts_and_goes_with_the_erasure(ambassadors):
    from ambassador.models import ExportPart, export_status

    person = await ambassadors.create_person("acme", entry())
    request = await ambassadors.request_export("acme", person.id)
    (_, events), = ambassadors.exports.requests.values()
    assert [e.type for e in events] == ["gdpr.export_requested.v1"] and events[0].subject == person.id

    def part(service, page, last):
        return ExportPart(export_id=request.id, service=service, page=page, last=last, sections={"x": [{"n": page}]},
                          written_at=NOW)

    for piece in (part("content", 1, True), part("distribution", 2, True), part("metrics", 1, True)):
        assert await ambassadors.receive_export_part("acme", piece)
    assert not await ambassadors.receive_export_part("acme", part("content", 1, True))  # redelivered
    assert not await ambassadors.receive_export_part("acme", part("content", 1, True).model_copy(
        update={"export_id": "never-asked"}))
    _, parts = await ambassadors.export("acme", person.id, request.id)
    assert export_status(parts) == {"content": True, "distribution": False, "metrics": True}  # page 1 missing
    await ambassadors.receive_export_part("acme", part("distribution", 1, False))
    assert all(export_status((await ambassadors.export("acme", person.id, request.id))[1]).values())
    with pytest.raises(Exception):
        await ambassadors.export("acme", "someone-else", request.id)

    await ambassadors.erase_person("acme", person.id)
    assert ambassadors.exports.requests == {} and ambassadors.exports.received == {}
