"""SCIM 2.0 /Users as Okta and Microsoft Entra ID provision it."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration

SCIM = "application/scim+json"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def scim_headers(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "Content-Type": SCIM, "Accept": SCIM}


async def test_create_get_and_filter_by_user_name(client, provision, as_integrator):
    created = await provision("Alice@Corp.example", externalId="00u-alice", displayName="Alice A.")

    fetched = await client.get(f"/scim/v2/Users/{created['id']}", headers=as_integrator)
    # Entra ID looks a user up before creating it; the match is case-insensitive.
    found = await client.get("/scim/v2/Users", params={"filter": 'userName eq "alice@corp.example"'},
                             headers=as_integrator)
    missing = await client.get("/scim/v2/Users", params={"filter": 'userName eq "nobody@corp.example"'},
                               headers=as_integrator)

    assert fetched.status_code == 200 and fetched.headers["content-type"].startswith(SCIM)
    body = fetched.json()
    assert body["userName"] == "Alice@Corp.example" and body["externalId"] == "00u-alice"
    assert body["meta"]["resourceType"] == "User" and body["meta"]["location"].endswith(created["id"])
    assert found.json()["totalResults"] == 1 and found.json()["Resources"][0]["id"] == created["id"]
    assert missing.json() == {"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                              "totalResults": 0, "startIndex": 1, "itemsPerPage": 0, "Resources": []}


async def test_duplicate_user_name_is_a_scim_uniqueness_error(client, provision, as_integrator):
    await provision("dup@corp.example")
    response = await client.post("/scim/v2/Users", json={"userName": "DUP@corp.example"},
                                 headers=scim_headers(as_integrator))
    assert response.status_code == 409
    assert response.headers["content-type"].startswith(SCIM)
    assert response.json()["schemas"] == [ERROR] and response.json()["scimType"] == "uniqueness"
    assert response.json()["status"] == "409"


async def test_pagination_with_start_index_and_count(client, provision, as_integrator):
    ids = [(await provision(f"page{i}@corp.example"))["id"] for i in range(5)]

    pages = [(await client.get("/scim/v2/Users", params={"startIndex": start, "count": 2},
                               headers=as_integrator)).json() for start in (1, 3, 5)]

    assert [p["totalResults"] for p in pages] == [5, 5, 5]
    assert [p["itemsPerPage"] for p in pages] == [2, 2, 1]
    assert [r["id"] for p in pages for r in p["Resources"]] == ids


async def test_replace_and_patch_like_okta(client, provision, as_integrator):
    user = await provision("bob@corp.example")
    replaced = await client.put(f"/scim/v2/Users/{user['id']}", headers=scim_headers(as_integrator), json={
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "bob@corp.example",
        "name": {"givenName": "Bob", "familyName": "Builder"}, "title": "Engineer", "active": True,
        "emails": [{"value": "bob@corp.example", "type": "work", "primary": True}],
        "phoneNumbers": [{"value": "+33 1 23 45 67 89"}]})
    patched = await client.patch(f"/scim/v2/Users/{user['id']}", headers=scim_headers(as_integrator), json={
        "schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": False}}]})

    assert replaced.status_code == 200 and replaced.json()["name"]["familyName"] == "Builder"
    assert "phoneNumbers" not in replaced.json()  # not kept: we store only what the programme needs
    assert patched.status_code == 200 and patched.json()["active"] is False
    assert patched.json()["title"] == "Engineer"


async def test_patch_paths_like_entra(client, provision, as_integrator):
    user = await provision("carol@corp.example")
    response = await client.patch(f"/scim/v2/Users/{user['id']}", headers=scim_headers(as_integrator), json={
        "schemas": [PATCH], "Operations": [
            {"op": "Add", "path": 'emails[type eq "work"].value', "value": "carol.new@corp.example"},
            {"op": "Replace", "path": "name.givenName", "value": "Carol"},
            {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
             "value": "marketing"},
            {"op": "Replace", "path": "displayName", "value": "Carol C."}]})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["emails"][0]["value"] == "carol.new@corp.example"
    assert body["name"]["givenName"] == "Carol" and body["displayName"] == "Carol C."
    assert body["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"] == {"department": "marketing"}


async def test_delete_removes_the_user(client, provision, as_integrator):
    user = await provision("dave@corp.example")
    deleted = await client.delete(f"/scim/v2/Users/{user['id']}", headers=as_integrator)
    fetched = await client.get(f"/scim/v2/Users/{user['id']}", headers=as_integrator)
    listed = await client.get("/scim/v2/Users", params={"filter": 'userName eq "dave@corp.example"'},
                              headers=as_integrator)
    assert deleted.status_code == 204
    assert fetched.status_code == 404 and fetched.json()["schemas"] == [ERROR]
    assert listed.json()["totalResults"] == 0
    # The userName is free again for a new hire.
    await provision("dave@corp.example")


async def test_errors_use_the_scim_format(client, provision, as_integrator, as_employee):
    user = await provision("erin@corp.example")
    bad_filter = await client.get("/scim/v2/Users", params={"filter": 'title co "x"'}, headers=as_integrator)
    bad_value = await client.put(f"/scim/v2/Users/{user['id']}", json={"userName": ""}, headers=as_integrator)
    no_token = await client.get("/scim/v2/Users")
    wrong_role = await client.get("/scim/v2/Users", headers=as_employee("erin@corp.example"))
    assert (bad_filter.status_code, bad_filter.json()["scimType"]) == (400, "invalidFilter")
    assert (bad_value.status_code, bad_value.json()["scimType"]) == (400, "invalidValue")
    assert no_token.status_code == 401 and no_token.json()["schemas"] == [ERROR]
    assert wrong_role.status_code == 403 and wrong_role.json()["schemas"] == [ERROR]
    # Bad input changed nothing.
    after = await client.get(f"/scim/v2/Users/{user['id']}", headers=as_integrator)
    assert after.json()["userName"] == "erin@corp.example"


async def test_another_tenant_sees_nothing(client, provision, bearer):
    user = await provision("frank@corp.example")
    other = bearer("someone-else", "scim-okta", "integrator")
    assert (await client.get(f"/scim/v2/Users/{user['id']}", headers=other)).status_code == 404
    listed = await client.get("/scim/v2/Users", headers=other)
    assert listed.json()["totalResults"] == 0
    patched = await client.patch(f"/scim/v2/Users/{user['id']}", headers=other, json={
        "schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": False}]})
    assert patched.status_code == 404
