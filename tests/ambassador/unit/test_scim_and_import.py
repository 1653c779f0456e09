"""SCIM mapping, PATCH and filters; CSV/JSON import parsing. Pure functions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ambassador.directory_import import parse_rows, rows_from_csv
from ambassador.models import DirectoryEntry, new_person
from ambassador.scim import ENTERPRISE_SCHEMA, ScimError, apply_patch, entry_from_resource, parse_filter, \
    parse_patch, user_resource

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 22, tzinfo=UTC)


def resource(**entry):
    person = new_person("id-1", "acme", DirectoryEntry(user_name="ann@corp.example", **entry), NOW)
    return user_resource(person, "https://x/scim/v2/Users/id-1")


def patch(*operations):
    return {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": list(operations)}


def patched(resource, body):
    return apply_patch(resource, parse_patch(body))


def test_round_trip_keeps_what_we_store():
    original = DirectoryEntry(user_name="ann@corp.example", external_id="00u1", given_name="Ann", family_name="Lee",
                              display_name="Ann L.", title="CTO", emails=[{"value": "ann@corp.example"}],
                              team_id="tech", location="Nantes", active=False)
    person = new_person("id-1", "acme", original, NOW)
    assert entry_from_resource(user_resource(person, "loc")) == original


def test_attribute_names_are_case_insensitive_and_unknown_ones_dropped():
    entry = entry_from_resource({"USERNAME": "bo@corp.example", "Name": {"GivenName": "Bo"},
                                 "phoneNumbers": [{"value": "123"}], "ACTIVE": "False"})
    assert (entry.user_name, entry.given_name, entry.active) == ("bo@corp.example", "Bo", False)


def test_missing_or_invalid_user_name_is_invalid_value():
    for body in ({"active": True}, {"userName": ""}, {"userName": "a", "emails": [{"value": "no-at"}]}):
        with pytest.raises(ScimError) as error:
            entry_from_resource(body)
        assert error.value.status == 400 and error.value.scim_type == "invalidValue"


def test_okta_patch_without_path():
    result = patched(resource(given_name="Ann"), patch({"op": "replace", "value": {"active": False}}))
    entry = entry_from_resource(result)
    assert entry.active is False and entry.given_name == "Ann"


def test_entra_patches_with_paths_and_value_filters():
    result = patched(resource(emails=[{"value": "old@corp.example", "type": "work"}]), patch(
        {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "new@corp.example"},
        {"op": "Add", "path": "name.familyName", "value": "Lee"},
        {"op": "Replace", "path": f"{ENTERPRISE_SCHEMA}:department", "value": "ops"},
        {"op": "Add", "path": "addresses[type eq \"work\"].locality", "value": "Lille"},
        {"op": "Replace", "path": "preferredLanguage", "value": "fr"}))
    entry = entry_from_resource(result)
    assert [e.value for e in entry.emails] == ["new@corp.example"]
    assert (entry.family_name, entry.team_id, entry.location) == ("Lee", "ops", "Lille")


def test_patch_remove_and_malformed_operations():
    removed = entry_from_resource(patched(resource(title="CTO"), patch({"op": "remove", "path": "title"})))
    assert removed.title is None
    for bad in ({"Operations": "x"}, patch({"op": "move", "path": "title"}), patch({"op": "remove"})):
        with pytest.raises(ScimError):
            patched(resource(), bad)


def test_filters():
    assert parse_filter('userName eq "a@b.c"') == {"user_name": "a@b.c"}
    assert parse_filter('externalId EQ "00u\\"1"') == {"external_id": '00u"1'}
    assert parse_filter(None) == {}
    for unsupported in ('title eq "x"', 'userName co "a"', "userName eq a"):
        with pytest.raises(ScimError) as error:
            parse_filter(unsupported)
        assert error.value.scim_type == "invalidFilter"


def test_scim_error_body():
    assert ScimError(409, "taken", "uniqueness").body() == {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": "409", "detail": "taken",
        "scimType": "uniqueness"}


def test_csv_rows_become_entries_with_row_errors():
    rows = rows_from_csv("user_name,email,active,unknown\r\na@x.io,a@x.io,no,1\r\n,b@x.io,,2\r\nA@X.IO,,,\r\n")
    entries, errors = parse_rows(rows)
    assert [(n, e.user_name, e.active, [m.value for m in e.emails]) for n, e in entries] == [
        (1, "a@x.io", False, ["a@x.io"])]
    assert [(e.row, e.field) for e in errors] == [(2, "user_name"), (3, "user_name")]
    assert errors[1].message == "appears twice in this import"


def test_json_rows_that_are_not_objects():
    entries, errors = parse_rows([{"user_name": "ok@x.io"}, "nope"])
    assert len(entries) == 1 and (errors[0].row, errors[0].field) == (2, "row")


def test_patches_of_attributes_we_do_not_keep_change_nothing_whatever_their_value():
    before = resource(title="CTO")
    # Entra sends the enterprise manager as a bare string; we do not store it.
    result = patched(before, patch(
        {"op": "Add", "path": f"{ENTERPRISE_SCHEMA}:manager", "value": "26118915-6090"},
        {"op": "replace", "value": {"nickName": "Annie", ENTERPRISE_SCHEMA: {"manager": "m", "department": "ops"}}},
        {"op": "replace", "path": "title", "value": "CEO"}))
    entry = entry_from_resource(result)
    assert (entry.title, entry.team_id) == ("CEO", "ops")
    assert entry_from_resource(patched(before, patch({"op": "replace", "path": "nickName", "value": "A"}))) == \
        entry_from_resource(before)
    with pytest.raises(ScimError) as error:
        patched(before, patch({"op": "move", "path": "nickName"}))
    assert error.value.scim_type == "invalidSyntax"
