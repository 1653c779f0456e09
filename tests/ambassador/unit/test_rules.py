"""The pure rules of volunteering, consent, profiles, deactivation and erasure."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from advocacy_common.events import AmbassadorErased, AmbassadorOptedIn, AmbassadorOptedOut, \
    AmbassadorProfileUpdated, CharterAccepted

from ambassador.models import (
    CharterText,
    CharterVersionMismatch,
    Deactivated,
    DirectoryEntry,
    InvalidTransition,
    NetworkAccount,
    NoCurrentCharter,
    NotOptedIn,
    OptOutReason,
    Preferences,
    Profile,
    Status,
    accept_charter,
    apply_directory_entry,
    check_signal_transition,
    erase,
    new_person,
    opt_in,
    opt_out,
    update_profile,
)

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)


def employee(**entry):
    fields = {"user_name": "jane@corp.example", "given_name": "Jane", "family_name": "Doe",
              "emails": [{"value": "jane@corp.example"}], "team_id": "sales", **entry}
    return new_person("p-1", "acme", DirectoryEntry(**fields), NOW)


def volunteered(**entry):
    return opt_in(employee(**entry), 1, 1, "web", NOW).person


def test_a_directory_entry_is_not_an_ambassador():
    person = employee()
    assert person.status == Status.NOT_ENROLLED and not person.is_ambassador


def test_opt_in_records_consent_and_emits_opted_in_then_charter_accepted():
    change = opt_in(employee(), 3, 3, "mobile", NOW)
    assert change.person.status == Status.OPTED_IN and change.person.charter_version == 3
    assert [type(e) for e in change.events] == [AmbassadorOptedIn, CharterAccepted]
    consent = change.person.consents[0]
    assert (consent.kind, consent.charter_version, consent.at, consent.channel) == ("opt_in", 3, NOW, "mobile")
    assert change.events[0].profile.team_id == "sales"  # from the directory until the profile says otherwise


def test_opt_in_needs_a_current_charter_and_that_version():
    with pytest.raises(NoCurrentCharter):
        opt_in(employee(), None, 1, "web", NOW)
    with pytest.raises(CharterVersionMismatch) as mismatch:
        opt_in(employee(), 2, 1, "web", NOW)
    assert mismatch.value.extensions == {"current_version": 2}


def test_a_deactivated_employee_cannot_opt_in():
    with pytest.raises(Deactivated):
        opt_in(employee(active=False), 1, 1, "web", NOW)


def test_opting_in_again_changes_nothing_and_under_a_new_version_is_an_acceptance():
    person = volunteered()
    assert not opt_in(person, 1, 1, "web", LATER).changed
    newer = opt_in(person, 2, 2, "web", LATER)
    assert [type(e) for e in newer.events] == [CharterAccepted]
    assert [c.kind for c in newer.person.consents] == ["opt_in", "charter_acceptance"]


def test_only_an_ambassador_accepts_a_charter():
    with pytest.raises(NotOptedIn):
        accept_charter(employee(), 1, 1, "web", NOW)


def test_opt_out_then_re_opt_in():
    out = opt_out(volunteered(), OptOutReason.SELF, "web", LATER)
    assert out.person.status == Status.OPTED_OUT
    assert isinstance(out.events[0], AmbassadorOptedOut) and out.events[0].reason == "self"
    again = opt_in(out.person, 1, 1, "web", LATER + timedelta(days=1))
    assert again.person.status == Status.OPTED_IN and again.person.opted_out_at is None
    assert [c.consent_id for c in again.person.consents] == ["p-1:1", "p-1:2", "p-1:3"]


def test_opting_out_someone_not_opted_in_changes_nothing():
    assert not opt_out(employee(), OptOutReason.SELF, "web", NOW).changed


def test_profile_changes_emit_only_for_ambassadors_and_only_what_others_see():
    profile = Profile(persona="expert", networks=[NetworkAccount(network="x", handle="@jane", audience_size=10)])
    assert update_profile(employee(), profile, NOW).events == []
    change = update_profile(volunteered(), profile, NOW)
    assert [type(e) for e in change.events] == [AmbassadorProfileUpdated]
    assert "@jane" not in json.dumps(change.events[0].model_dump(mode="json"))
    handle_only = Profile(persona="expert", networks=[NetworkAccount(network="x", handle="@jane2", audience_size=10)])
    renamed = update_profile(change.person, handle_only, LATER)
    assert renamed.changed and renamed.events == []


def test_the_leaderboard_name_travels_only_while_the_person_chooses_to_appear():
    person = volunteered(display_name="Jane D.")
    hidden = update_profile(person, Profile(persona="expert"), NOW)
    assert hidden.events[0].profile.leaderboard_name is None
    assert "Jane" not in json.dumps(hidden.events[0].model_dump(mode="json"))
    shown = update_profile(hidden.person, Profile(persona="expert", leaderboard_opt_in=True), LATER)
    assert shown.events[0].profile.leaderboard_name == "Jane D."  # the directory's display name by default
    chosen = update_profile(shown.person, Profile(persona="expert", leaderboard_opt_in=True,
                                                  leaderboard_name="JD"), LATER)
    assert chosen.events[0].profile.leaderboard_name == "JD"
    renamed = apply_directory_entry(chosen.person, chosen.person.directory.model_copy(
        update={"display_name": "Jane Doe"}), LATER)
    assert renamed.events == []  # the chosen name does not follow the directory
    withdrawn = update_profile(chosen.person, Profile(persona="expert", leaderboard_name="JD"), LATER)
    assert withdrawn.events[0].profile.leaderboard_name is None
    with pytest.raises(ValidationError):
        Profile(leaderboard_name="x" * 81)


def test_deactivation_opts_out_in_the_same_change():
    person = volunteered()
    change = apply_directory_entry(person, person.directory.model_copy(update={"active": False}), LATER)
    assert change.person.status == Status.OPTED_OUT and change.person.directory.active is False
    assert [(type(e), e.reason) for e in change.events] == [(AmbassadorOptedOut, "deactivated")]


def test_a_team_move_updates_what_others_see():
    person = volunteered()
    change = apply_directory_entry(person, person.directory.model_copy(update={"team_id": "ops"}), LATER)
    assert [e.profile.team_id for e in change.events] == ["ops"]
    assert not apply_directory_entry(change.person, change.person.directory, LATER).changed


def test_erasure_removes_personal_data_and_keeps_the_consent_trail():
    person = update_profile(volunteered(), Profile(networks=[NetworkAccount(network="x", handle="@j")]), NOW).person
    change = erase(person, LATER)
    erased = change.person
    assert erased.directory is None and erased.profile == Profile() and erased.status == Status.ERASED
    assert [c.kind for c in erased.consents] == ["opt_in", "withdrawal"]
    assert "jane" not in erased.model_dump_json().lower() and "@j" not in erased.model_dump_json()
    assert [type(e) for e in change.events] == [AmbassadorOptedOut, AmbassadorErased]
    assert not erase(erased, LATER).changed


def test_erasing_someone_who_never_opted_in_emits_nothing():
    change = erase(employee(), LATER)
    assert change.person.status == Status.ERASED and change.events == []


def test_profile_validation():
    with pytest.raises(ValidationError):
        Preferences(time_zone="Nowhere/City")
    with pytest.raises(ValidationError):
        Preferences(quiet_hours={"start": "25:00", "end": "07:00"})
    with pytest.raises(ValidationError):
        Profile(networks=[{"network": "x", "handle": "a"}, {"network": "x", "handle": "b"}])
    assert Profile(topics=[" ai ", "ai", "cloud"]).topics == ["ai", "cloud"]


def test_charter_disclosure_rule():
    with pytest.raises(ValidationError):
        CharterText(title="t", body="b", disclosure_required=True)
    assert CharterText(title="t", body="b", disclosure_required=True, disclosure_line="#Acme").disclosure_line


def test_signal_triage_transitions():
    check_signal_transition("new", "acknowledged")
    check_signal_transition("acknowledged", "closed")
    with pytest.raises(InvalidTransition):
        check_signal_transition("closed", "new")
    with pytest.raises(InvalidTransition):
        check_signal_transition("acknowledged", "new")
