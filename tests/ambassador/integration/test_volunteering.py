"""Volunteering: opt-in by the employee only, opt-out at once, charters and consent, deactivation."""

from __future__ import annotations

import asyncio
import json

import pytest

pytestmark = pytest.mark.integration


def names_anywhere(envelope, value: str) -> bool:
    return envelope.subject == value or value in json.dumps(envelope.data)


async def test_opt_in_publishes_opted_in_and_charter_accepted_without_personal_data(
        client, provision, volunteer, as_employee, tenant_events):
    user = await provision("jane.doe@corp.example", externalId="okta-00u1",
                           **{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "sales"}})
    profile = {"persona": "expert", "topics": ["cloud"], "languages": ["en"],
               "networks": [{"network": "linkedin", "handle": "linkedin.com/in/janedoe", "audience_size": 800}]}

    view = await volunteer("jane.doe@corp.example", profile=profile, channel="mobile")

    assert view["status"] == "opted_in" and view["id"] == user["id"]
    assert view["needs_charter_acceptance"] is False
    events = await tenant_events(2, lambda e: e.subject == user["id"] or e.data.get("ambassador_id") == user["id"])
    by_type = {e.type: e for e in events}
    opted_in = by_type["ambassador.opted_in.v1"].data
    assert opted_in["profile"]["persona"] == "expert"
    assert opted_in["profile"]["team_id"] == "sales"
    assert opted_in["profile"]["networks"] == [{"network": "linkedin", "audience_size": 800}]
    assert by_type["charter.accepted.v1"].data["channel"] == "mobile"
    for envelope in events:
        for personal in ("jane.doe", "janedoe", "Lovelace", "okta-00u1"):
            assert not names_anywhere(envelope, personal)


async def test_opt_out_is_on_the_topic_when_the_call_returns(client, provision, volunteer, as_employee,
                                                             tenant_events):
    # No worker runs in this module: only the API's own flush can have published it.
    user = await provision("leaving@corp.example")
    await volunteer("leaving@corp.example")

    response = await client.post("/v1/me/opt-out", headers=as_employee("leaving@corp.example"))

    assert response.status_code == 200 and response.json()["status"] == "opted_out"
    events = await tenant_events(1, lambda e: e.type == "ambassador.opted_out.v1" and e.subject == user["id"],
                                 timeout=3.0)
    assert [e.data["reason"] for e in events] == ["self"]


async def test_re_opt_in_after_opt_out_is_allowed_and_recorded(client, provision, volunteer, as_employee):
    await provision("again@corp.example")
    await volunteer("again@corp.example")
    await client.post("/v1/me/opt-out", json={"channel": "web"}, headers=as_employee("again@corp.example"))

    view = await volunteer("again@corp.example")

    assert view["status"] == "opted_in"
    headers = as_employee("again@corp.example")
    consents = (await client.get("/v1/me/consents", headers=headers)).json()
    assert [c["kind"] for c in consents["items"]] == ["opt_in", "withdrawal", "opt_in"]
    assert consents["next_cursor"] is None
    # Paged like every list: {items, next_cursor}, a bounded limit, signed cursors.
    first = (await client.get("/v1/me/consents", params={"limit": 2}, headers=headers)).json()
    rest = (await client.get("/v1/me/consents", params={"limit": 2, "cursor": first["next_cursor"]},
                             headers=headers)).json()
    assert [c["kind"] for c in first["items"] + rest["items"]] == ["opt_in", "withdrawal", "opt_in"]
    assert first["next_cursor"] and rest["next_cursor"] is None
    tampered = await client.get("/v1/me/consents", params={"cursor": first["next_cursor"][:-2] + "xx"},
                                headers=headers)
    assert tampered.status_code == 400
    assert (await client.get("/v1/me/consents", params={"limit": 0}, headers=headers)).status_code == 422


async def test_opting_in_twice_changes_nothing(client, provision, volunteer, as_employee):
    await provision("twice@corp.example")
    first = await volunteer("twice@corp.example")
    second = await volunteer("twice@corp.example")
    assert first == second
    consents = (await client.get("/v1/me/consents", headers=as_employee("twice@corp.example"))).json()
    assert len(consents["items"]) == 1


async def test_opt_in_requires_the_current_charter(client, provision, publish_charter, as_employee):
    await provision("reader@corp.example")
    headers = as_employee("reader@corp.example")
    no_charter = await client.post("/v1/me/opt-in", json={"charter_version": 1}, headers=headers)
    assert no_charter.status_code == 409
    await publish_charter()
    await publish_charter(title="Version two")

    stale = await client.post("/v1/me/opt-in", json={"charter_version": 1}, headers=headers)

    assert stale.status_code == 409
    assert stale.headers["content-type"].startswith("application/problem+json")
    assert stale.json()["current_version"] == 2
    assert (await client.get("/v1/me", headers=headers)).json()["status"] == "not_enrolled"


async def test_someone_outside_the_directory_cannot_opt_in(client, publish_charter, as_employee):
    await publish_charter()
    response = await client.post("/v1/me/opt-in", json={"charter_version": 1}, headers=as_employee("ghost@corp.example"))
    assert response.status_code == 403


async def test_a_new_charter_needs_re_acceptance(client, provision, volunteer, publish_charter, as_employee,
                                                 tenant_events):
    user = await provision("loyal@corp.example")
    await volunteer("loyal@corp.example")
    headers = as_employee("loyal@corp.example")
    second = await publish_charter(title="Stricter tone")

    assert (await client.get("/v1/me", headers=headers)).json()["needs_charter_acceptance"] is True
    response = await client.post("/v1/me/charter-acceptances", json={"charter_version": second["version"]},
                                 headers=headers)

    assert response.status_code == 200 and response.json()["needs_charter_acceptance"] is False
    accepted = await tenant_events(2, lambda e: e.type == "charter.accepted.v1"
                                   and e.data["ambassador_id"] == user["id"])
    assert sorted(e.data["charter_version"] for e in accepted) == [1, 2]


async def test_deactivation_opts_the_ambassador_out(client, provision, volunteer, as_integrator, as_employee,
                                                    tenant_events):
    user = await provision("deact@corp.example")
    await volunteer("deact@corp.example")
    patch = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
             "Operations": [{"op": "Replace", "path": "active", "value": "False"}]}  # as Entra ID sends it

    response = await client.patch(f"/scim/v2/Users/{user['id']}", json=patch, headers=as_integrator)

    assert response.status_code == 200 and response.json()["active"] is False
    events = await tenant_events(1, lambda e: e.type == "ambassador.opted_out.v1" and e.subject == user["id"],
                                 timeout=3.0)
    assert events[0].data["reason"] == "deactivated"
    me = await client.get("/v1/me", headers=as_employee("deact@corp.example"))
    assert me.json()["status"] == "opted_out"
    again = await client.post("/v1/me/opt-in", json={"charter_version": 1}, headers=as_employee("deact@corp.example"))
    assert again.status_code == 403


async def test_an_employee_who_never_opted_in_appears_in_no_event(client, provision, volunteer, publish_charter,
                                                                 as_integrator, as_admin, as_employee, tenant_events):
    bystander = await provision("bystander@corp.example")
    headers = as_employee("bystander@corp.example")
    await publish_charter()
    # Everything a non-volunteer can do or have done to them, short of opting in:
    steps = [
        await client.put("/v1/me/profile", json={"persona": "reporter", "topics": ["events"]}, headers=headers),
        await client.post("/v1/directory/import", json={"employees": [
            {"user_name": "bystander@corp.example", "team_id": "ops", "location": "Lyon"}]}, headers=as_integrator),
        await client.post("/v1/me/signals", json={"url": "https://x.example/post/1", "severity": "high"},
                          headers=headers),
        await client.post(f"/v1/ambassadors/{bystander['id']}/recognitions", json={"reason": "Great article"},
                          headers=as_admin),
        await client.patch(f"/scim/v2/Users/{bystander['id']}", headers=as_integrator, json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "value": {"active": False}}]}),
        await client.post(f"/v1/ambassadors/{bystander['id']}/erasure", headers=as_admin),
    ]
    assert [step.status_code for step in steps] == [200, 200, 409, 404, 200, 200]
    # A volunteer's opt-out afterwards marks the point by which everything before was published.
    volunteer_user = await provision("volunteer@corp.example")
    await volunteer("volunteer@corp.example")
    await client.post("/v1/me/opt-out", headers=as_employee("volunteer@corp.example"))
    await tenant_events(1, lambda e: e.type == "ambassador.opted_out.v1" and e.subject == volunteer_user["id"])

    everything = await tenant_events(10_000, timeout=3.0)

    assert any(e.subject == volunteer_user["id"] for e in everything)
    assert not [e for e in everything if names_anywhere(e, bystander["id"])]


async def test_concurrent_changes_to_one_person_are_all_kept(client, provision, volunteer, as_employee,
                                                             as_integrator, tenant_events):
    user = await provision("busy@corp.example")
    await volunteer("busy@corp.example")
    headers = as_employee("busy@corp.example")
    topics_sets = [[f"topic{i}"] for i in range(5)]

    responses = await asyncio.gather(
        *(client.put("/v1/me/profile", json={"persona": "expert", "topics": t}, headers=headers) for t in topics_sets),
        client.post("/v1/directory/import", json={"employees": [{"user_name": "busy@corp.example", "location": "Nice"}]},
                    headers=as_integrator))

    assert [r.status_code for r in responses] == [200] * 6
    me = await client.get("/v1/me", headers=headers)
    # Six writes after provisioning (version 1) and opt-in (version 2): none lost.
    assert me.headers["ETag"] == '"8"'
    updates = await tenant_events(6, lambda e: e.type == "ambassador.profile_updated.v1" and e.subject == user["id"])
    assert len(updates) == 6
    assert updates[-1].data["profile"]["location"] == "Nice"
