"""Nothing a client sends makes the ambassador API answer 5xx or change anything (issue 11)."""

from __future__ import annotations

import pytest

from advocacy_testkit import ALL_ROLES, server_errors_on_hostile_input

pytestmark = pytest.mark.integration
SCIM = "application/scim+json"
DEEP = "[" * 1000 + "]" * 1000


async def test_no_route_answers_hostile_input_with_a_5xx(client, app, bearer, tenant, provision, volunteer):
    person = await provision("mallory.target@corp.example")
    ids = {"person_id": person["id"], "ambassador_id": person["id"]}
    mallory = bearer(tenant, "mallory", *ALL_ROLES)
    assert await server_errors_on_hostile_input(client, app, mallory, ids) == []


@pytest.mark.parametrize("content_type", [SCIM, "application/json", "text/plain"])
async def test_scim_bodies_nested_1000_deep_are_400_and_create_nobody(client, as_integrator, content_type):
    body = '{"userName": "deep@corp.example", "name": ' + DEEP + "}"
    response = await client.post("/scim/v2/Users", content=body,
                                 headers={**as_integrator, "Content-Type": content_type})
    assert response.status_code == 400, response.text
    listed = await client.get("/scim/v2/Users", params={"filter": 'userName eq "deep@corp.example"'},
                              headers=as_integrator)
    assert listed.json()["totalResults"] == 0


async def test_csv_imports_with_hostile_cells_are_4xx(client, as_integrator):
    for csv_body in ("user_name,title\nann," + "[" * 1000 + "\n",  # brackets are just text in CSV
                     "user_name,title\nann," + "x" * 200_000 + "\n",  # beyond the csv module's field limit
                     "user_name,title\nann,\x00\n"):
        response = await client.post("/v1/directory/import", content=csv_body.encode(),
                                     headers={**as_integrator, "Content-Type": "text/csv"})
        assert response.status_code < 500, response.text
    deep_json = await client.post("/v1/directory/import", content='{"employees": ' + DEEP + "}",
                                  headers={**as_integrator, "Content-Type": "application/json"})
    assert deep_json.status_code == 400


@pytest.mark.parametrize("params", [{"startIndex": "9" * 30}, {"count": "9" * 30}, {"startIndex": "9" * 5000}])
async def test_scim_paging_beyond_bounds_is_400(client, as_integrator, params):
    response = await client.get("/scim/v2/Users", params=params, headers=as_integrator)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith(SCIM)


@pytest.mark.parametrize("path, body", [
    ("/v1/me/opt-in", {"charter_version": 2**64}),
    ("/v1/me/opt-in", {"charter_version": 1, "profile": {"preferences": {"time_zone": "a" * 5000}}}),
    ("/v1/me/charter-acceptances", {"charter_version": -(2**70)}),
])
async def test_values_beyond_bounds_are_422(client, as_employee, provision, path, body):
    await provision("bounded@corp.example")
    response = await client.post(path, json=body, headers=as_employee("bounded@corp.example"))
    assert response.status_code == 422, response.text


async def test_charter_version_beyond_64_bits_is_422(client, as_admin):
    for path in ("/v1/charters/" + "9" * 30, "/v1/consents?charter_version=" + "9" * 30):
        assert (await client.get(path, headers=as_admin)).status_code == 422


async def test_scim_location_comes_from_the_public_url_not_the_host_header(app, client, provision, as_integrator,
                                                                          settings):
    created = await provision("located@corp.example")
    spoofed = await client.get(f"/scim/v2/Users/{created['id']}",
                               headers={**as_integrator, "Host": "evil.example", "X-Forwarded-Host": "evil.example"})
    assert spoofed.status_code == 200
    assert spoofed.json()["meta"]["location"] == f"{settings.public_url}/scim/v2/Users/{created['id']}"
    assert created["meta"]["location"].startswith(settings.public_url)
