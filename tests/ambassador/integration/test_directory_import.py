"""Bulk directory import by integrators: JSON and CSV, with a per-row error report."""

from __future__ import annotations

import asyncio

import pytest

pytestmark = pytest.mark.integration

CSV = """user_name,given_name,family_name,email,team_id,location,active
ann@corp.example,Ann,Smith,ann@corp.example,sales,Paris,true
,No,Name,x@corp.example,sales,Paris,true
ben@corp.example,Ben,Jones,not-an-address,ops,Lyon,yes
cat@corp.example,Cat,Ng,cat@corp.example,ops,Lyon,
ann@corp.example,Ann,Again,ann@corp.example,sales,Paris,true
"""


async def test_csv_import_applies_good_rows_and_reports_bad_ones(client, as_integrator):
    response = await client.post("/v1/directory/import", content=CSV.encode(),
                                 headers={**as_integrator, "Content-Type": "text/csv"})

    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["created"], report["updated"], report["unchanged"]) == (2, 0, 0)
    assert [(e["row"], e["field"]) for e in report["errors"]] == [(2, "user_name"), (3, "emails.0.value"),
                                                                  (5, "user_name")]
    listed = await client.get("/scim/v2/Users", params={"filter": 'userName eq "cat@corp.example"'},
                              headers=as_integrator)
    cat = listed.json()["Resources"][0]
    assert cat["active"] is True and cat["addresses"] == [{"type": "work", "locality": "Lyon"}]


async def test_json_import_is_an_upsert_and_idempotent(client, as_integrator, as_admin):
    rows = {"employees": [{"user_name": "dan@corp.example", "given_name": "Dan", "team_id": "ops"},
                          {"user_name": "eve@corp.example", "emails": [{"value": "eve@corp.example"}]}]}
    first = await client.post("/v1/directory/import", json=rows, headers=as_integrator)
    again = await client.post("/v1/directory/import", json=rows, headers=as_integrator)
    rows["employees"][0]["team_id"] = "sales"
    changed = await client.post("/v1/directory/import", json=rows, headers=as_admin)

    assert (first.json()["created"], again.json()["unchanged"]) == (2, 2)
    assert (changed.json()["updated"], changed.json()["unchanged"]) == (1, 1)
    # Nobody becomes an ambassador by being imported.
    listed = await client.get("/v1/ambassadors", headers=as_admin)
    assert listed.json()["items"] == []
    everyone = await client.get("/v1/ambassadors", params={"status": "not_enrolled"}, headers=as_admin)
    assert len(everyone.json()["items"]) == 2


async def test_import_deactivates_and_opts_out(client, provision, volunteer, as_integrator, as_employee):
    await provision("gus@corp.example")
    await volunteer("gus@corp.example")
    response = await client.post("/v1/directory/import", headers=as_integrator, json={
        "employees": [{"user_name": "gus@corp.example", "active": False}]})
    assert response.json()["updated"] == 1
    assert (await client.get("/v1/me", headers=as_employee("gus@corp.example"))).json()["status"] == "opted_out"


async def test_import_refuses_what_it_cannot_read(client, as_integrator, as_employee):
    not_a_list = await client.post("/v1/directory/import", json={"employees": "nope"}, headers=as_integrator)
    wrong_type = await client.post("/v1/directory/import", content=b"<xml/>",
                                   headers={**as_integrator, "Content-Type": "application/xml"})
    employee = await client.post("/v1/directory/import", json={"employees": []}, headers=as_employee("x@corp.example"))
    assert not_a_list.status_code == 422 and not_a_list.json()["errors"][0]["field"] == "employees"
    assert wrong_type.status_code == 415
    assert employee.status_code == 403


async def test_concurrent_provisioning_of_one_user_name_makes_one_person(client, as_integrator, as_admin):
    rows = {"employees": [{"user_name": "twin@corp.example", "given_name": "Twin"}]}
    reports = await asyncio.gather(*(client.post("/v1/directory/import", json=rows, headers=as_integrator)
                                     for _ in range(4)))
    assert [r.status_code for r in reports] == [200] * 4
    assert sum(r.json()["created"] for r in reports) == 1
    found = await client.get("/scim/v2/Users", params={"filter": 'userName eq "twin@corp.example"'},
                             headers=as_integrator)
    assert found.json()["totalResults"] == 1
    everyone = await client.get("/v1/ambassadors", params={"status": "not_enrolled"}, headers=as_admin)
    assert [p["user_name"] for p in everyone.json()["items"]] == ["twin@corp.example"]
