"""GDPR: export of everything held about a person, and erasure everywhere."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture
async def active_ambassador(client, provision, volunteer, as_admin, as_employee):
    """An ambassador with a profile, a recognition, a completed module and a signal."""
    user = await provision("gina@corp.example", externalId="00u-gina")
    profile = {"persona": "reporter", "networks": [{"network": "x", "handle": "@gina_reports", "audience_size": 120}]}
    await volunteer("gina@corp.example", profile=profile)
    headers = as_employee("gina@corp.example")
    await client.post(f"/v1/ambassadors/{user['id']}/recognitions", json={"reason": "Great event coverage"},
                      headers=as_admin)
    module = await client.post("/v1/training/modules", json={"title": "Disclosure 101"}, headers=as_admin)
    await client.post("/v1/me/training-completions", json={"module_id": module.json()["module_id"]}, headers=headers)
    signal = await client.post("/v1/me/signals", json={"url": "https://social.example/t/1", "note": "Gina saw this"},
                               headers=headers)
    return {"user": user, "headers": headers, "signal_id": signal.json()["signal_id"]}


async def test_export_holds_everything_about_the_person(client, active_ambassador, as_admin):
    own = await client.get("/v1/me/export", headers=active_ambassador["headers"])
    by_admin = await client.get(f"/v1/ambassadors/{active_ambassador['user']['id']}/export", headers=as_admin)

    assert own.status_code == 200 and own.json()["ambassador_id"] == active_ambassador["user"]["id"]
    exported = own.json()
    assert exported["person"]["directory"]["user_name"] == "gina@corp.example"
    assert exported["person"]["profile"]["networks"][0]["handle"] == "@gina_reports"
    assert [c["kind"] for c in exported["person"]["consents"]] == ["opt_in"]
    assert [r["reason"] for r in exported["recognitions_received"]] == ["Great event coverage"]
    assert len(exported["training_completions"]) == 1
    assert exported["signals_reported"][0]["note"] == "Gina saw this"
    assert "_outbox" not in own.text
    assert {k: v for k, v in by_admin.json().items() if k != "exported_at"} == \
        {k: v for k, v in exported.items() if k != "exported_at"}


async def test_erasure_removes_personal_data_and_tells_every_service(client, active_ambassador, as_admin,
                                                                     as_integrator, tenant_events):
    person_id = active_ambassador["user"]["id"]

    response = await client.post("/v1/me/erasure", headers=active_ambassador["headers"])

    assert response.status_code == 200 and response.json()["ambassador_id"] == person_id
    events = await tenant_events(2, lambda e: e.subject == person_id and e.type in (
        "ambassador.opted_out.v1", "ambassador.erased.v1"), timeout=3.0)
    assert sorted(e.type for e in events) == ["ambassador.erased.v1", "ambassador.opted_out.v1"]
    exported = (await client.get(f"/v1/ambassadors/{person_id}/export", headers=as_admin)).json()
    text = str(exported)
    for personal in ("gina", "00u-gina", "Great event coverage", "Gina saw this"):
        assert personal not in text
    assert exported["person"]["status"] == "erased" and exported["person"]["directory"] is None
    # The consent trail stays as proof, pseudonymous.
    consents = (await client.get("/v1/consents", headers=as_admin)).json()["items"]
    assert [(c["ambassador_id"], c["user_name"], c["kind"]) for c in consents] == [
        (person_id, None, "opt_in"), (person_id, None, "withdrawal")]
    signal = (await client.get(f"/v1/signals/{active_ambassador['signal_id']}", headers=as_admin)).json()
    assert (signal["note"], signal["reporter_id"], signal["url"]) == (None, None, "https://social.example/t/1")
    assert (await client.get(f"/scim/v2/Users/{person_id}", headers=as_integrator)).status_code == 404
    assert (await client.get("/v1/me", headers=active_ambassador["headers"])).status_code == 403


async def test_erasure_can_be_repeated_and_emits_once(client, active_ambassador, as_admin, tenant_events):
    person_id = active_ambassador["user"]["id"]
    first = await client.post(f"/v1/ambassadors/{person_id}/erasure", headers=as_admin)
    second = await client.post(f"/v1/ambassadors/{person_id}/erasure", headers=as_admin)
    assert first.json() == second.json()
    erased = await tenant_events(2, lambda e: e.type == "ambassador.erased.v1" and e.subject == person_id,
                                 timeout=3.0)
    assert len(erased) == 1
    unknown = await client.post("/v1/ambassadors/no-such-person/erasure", headers=as_admin)
    assert unknown.status_code == 404
