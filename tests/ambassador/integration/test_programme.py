"""Charters, consent records, profiles, recognition, training and signals over HTTP."""

from __future__ import annotations

import csv
import io
import json

import pytest

pytestmark = pytest.mark.integration


async def test_charter_versions_and_idempotency_keys(client, as_admin, as_employee, bearer, charter):
    keyed = {**as_admin, "Idempotency-Key": "charter-2026"}
    first = await client.post("/v1/charters", json=charter, headers=keyed)
    replay = await client.post("/v1/charters", json=charter, headers=keyed)
    other_body = await client.post("/v1/charters", json={**charter, "title": "Other"}, headers=keyed)
    second = await client.post("/v1/charters", json={**charter, "tone": "Warmer"}, headers=as_admin)

    assert first.status_code == 201 and first.json()["version"] == 1
    assert replay.json() == first.json()
    assert other_body.status_code == 422
    assert second.json()["version"] == 2
    current = await client.get("/v1/charters/current", headers=as_employee("anyone@corp.example"))
    assert current.json()["version"] == 2 and current.json()["tone"] == "Warmer"
    page = await client.get("/v1/charters", params={"limit": 1}, headers=as_admin)
    rest = await client.get("/v1/charters", params={"limit": 1, "cursor": page.json()["next_cursor"]}, headers=as_admin)
    assert [c["version"] for c in page.json()["items"] + rest.json()["items"]] == [2, 1]
    assert rest.json()["next_cursor"] is None
    elsewhere = await client.get("/v1/charters/1", headers=bearer("other-tenant", "admin", "admin"))
    assert elsewhere.status_code == 404


async def test_a_charter_requiring_disclosure_needs_the_line(client, as_admin, as_employee, charter):
    response = await client.post("/v1/charters", json={**charter, "disclosure_line": None}, headers=as_admin)
    forbidden = await client.post("/v1/charters", json=charter, headers=as_employee("e@corp.example"))
    assert response.status_code == 422
    assert forbidden.status_code == 403
    assert (await client.get("/v1/charters/current", headers=as_admin)).status_code == 404


async def test_consent_records_list_page_and_export(client, provision, volunteer, as_admin, as_employee):
    people = [(await provision(f"c{i}@corp.example"))["id"] for i in range(3)]
    for i in range(3):
        await volunteer(f"c{i}@corp.example", channel="teams")
    await client.post("/v1/me/opt-out", headers=as_employee("c0@corp.example"))

    pages, cursor = [], None
    while True:
        response = await client.get("/v1/consents", params={"limit": 2, **({"cursor": cursor} if cursor else {})},
                                    headers=as_admin)
        pages.append(response.json()["items"])
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break
    exported = await client.get("/v1/consents/export", params={"format": "csv"}, headers=as_admin)

    records = [record for page in pages for record in page]
    assert [len(page) for page in pages] == [2, 2]
    assert sorted(r["kind"] for r in records) == ["opt_in", "opt_in", "opt_in", "withdrawal"]
    assert {r["ambassador_id"] for r in records} == set(people)
    assert all(r["channel"] in ("teams", "web") and r["charter_version"] == 1 for r in records)
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert sorted(row["consent_id"] for row in rows) == sorted(r["consent_id"] for r in records)
    as_json = await client.get("/v1/consents/export", params={"format": "json"}, headers=as_admin)
    assert sorted(json.loads(line)["consent_id"] for line in as_json.text.splitlines()) == \
        sorted(r["consent_id"] for r in records)
    denied = await client.get("/v1/consents", headers=as_employee("c1@corp.example"))
    assert denied.status_code == 403


async def test_profile_etag_and_if_match(client, provision, volunteer, as_employee, tenant_events):
    user = await provision("pia@corp.example")
    await volunteer("pia@corp.example")
    headers = as_employee("pia@corp.example")
    read = await client.get("/v1/me/profile", headers=headers)
    profile = {"persona": "talent", "topics": ["jobs", "jobs", "culture"], "languages": ["fr"],
               "preferences": {"max_shares_per_week": 2, "quiet_hours": {"start": "20:00", "end": "08:00"},
                               "time_zone": "Europe/Paris"}, "leaderboard_opt_in": True}

    updated = await client.put("/v1/me/profile", json=profile, headers={**headers, "If-Match": read.headers["ETag"]})
    stale = await client.put("/v1/me/profile", json={**profile, "persona": "expert"},
                             headers={**headers, "If-Match": read.headers["ETag"]})
    invalid = await client.put("/v1/me/profile", json={**profile, "preferences": {"time_zone": "Mars/Olympus"}},
                               headers=headers)

    assert updated.status_code == 200 and updated.json()["profile"]["topics"] == ["jobs", "culture"]
    assert stale.status_code == 412
    assert invalid.status_code == 422 and invalid.headers["content-type"].startswith("application/problem+json")
    assert read.json()["profile"]["leaderboard_opt_in"] is False  # off by default
    events = await tenant_events(1, lambda e: e.type == "ambassador.profile_updated.v1" and e.subject == user["id"])
    assert events[0].data["profile"]["persona"] == "talent"
    assert events[0].data["profile"]["preferences"]["time_zone"] == "Europe/Paris"


async def test_profile_shows_the_directory_team_and_location(client, provision, volunteer, as_employee):
    await provision("dir@corp.example", addresses=[{"type": "work", "locality": "Lyon"}],
                    **{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D"}})
    await volunteer("dir@corp.example")
    headers = as_employee("dir@corp.example")
    read = await client.get("/v1/me/profile", headers=headers)
    assert read.status_code == 200
    body = read.json()
    assert (body["team_id"], body["location"]) == ("R&D", "Lyon")
    assert (body["directory_team_id"], body["directory_location"]) == ("R&D", "Lyon")
    assert (body["profile"]["team_id"], body["profile"]["location"]) == (None, None)
    # A location of one's own overrides the directory's for targeting; the directory's stays visible.
    own = await client.put("/v1/me/profile", json={**body["profile"], "location": "Remote"},
                           headers={**headers, "If-Match": read.headers["ETag"]})
    assert own.status_code == 200
    assert (own.json()["team_id"], own.json()["location"], own.json()["directory_location"]) == \
        ("R&D", "Remote", "Lyon")


async def test_recognition_is_given_by_people_with_a_reason(client, provision, volunteer, as_admin, as_employee):
    star = await provision("star@corp.example")
    await provision("peer@corp.example")
    await provision("bystander@corp.example")
    await volunteer("star@corp.example")
    await volunteer("peer@corp.example")
    url = f"/v1/ambassadors/{star['id']}/recognitions"

    kudos = await client.post(url, json={"reason": "Spotted the rumour early"},
                              headers=as_employee("peer@corp.example"))
    badge = await client.post(url, json={"kind": "badge", "badge": "Crisis spotter", "reason": "Signal on launch day"},
                              headers=as_admin)
    nameless = await client.post(url, json={"kind": "badge", "reason": "No badge name"}, headers=as_admin)
    to_self = await client.post(url, json={"reason": "Me, myself"}, headers=as_employee("star@corp.example"))

    assert kudos.status_code == 201 and kudos.json()["giver_role"] == "peer"
    # The ambassador role in a token is not enough: the giver is a peer who opted in, or an admin.
    for outsider in ("stranger@elsewhere.example", "bystander@corp.example"):
        refused = await client.post(url, json={"reason": "Great work"}, headers=as_employee(outsider))
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
    assert badge.status_code == 201 and badge.json()["giver_role"] == "admin"
    assert nameless.status_code == 422 and to_self.status_code == 422
    mine = await client.get("/v1/me/recognitions", headers=as_employee("star@corp.example"))
    assert [r["kind"] for r in mine.json()["items"]] == ["badge", "kudos"]
    assert "points" not in mine.text


async def test_training_catalogue_and_completions(client, provision, as_admin, as_employee):
    person = await provision("tom@corp.example")
    created = await client.post("/v1/training/modules", headers=as_admin, json={
        "title": "Personalise your posts", "url": "https://learn.example/personalise", "duration_minutes": 15})
    module_id = created.json()["module_id"]
    stale_etag = created.headers["ETag"]
    renamed = await client.put(f"/v1/training/modules/{module_id}", headers={**as_admin, "If-Match": stale_etag},
                               json={"title": "Personalise every post", "duration_minutes": 20})
    stale = await client.put(f"/v1/training/modules/{module_id}", headers={**as_admin, "If-Match": stale_etag},
                             json={"title": "Lost update"})

    headers = as_employee("tom@corp.example")
    catalogue = await client.get("/v1/training/modules", headers=headers)
    done = await client.post("/v1/me/training-completions", json={"module_id": module_id}, headers=headers)
    done_again = await client.post("/v1/me/training-completions", json={"module_id": module_id}, headers=headers)
    unknown = await client.post("/v1/me/training-completions", json={"module_id": "nope"}, headers=headers)

    assert renamed.status_code == 200 and renamed.json()["title"] == "Personalise every post"
    assert stale.status_code == 412
    assert [m["module_id"] for m in catalogue.json()["items"]] == [module_id]
    assert done.status_code == 201 and done_again.json() == done.json()
    assert unknown.status_code == 404
    completions = await client.get(f"/v1/ambassadors/{person['id']}/training-completions", headers=as_admin)
    assert [c["module_id"] for c in completions.json()["items"]] == [module_id]

    second = (await client.post("/v1/training/modules", headers=as_admin, json={
        "title": "Answer comments", "url": "https://learn.example/answer", "duration_minutes": 5})).json()
    await client.post("/v1/me/training-completions", json={"module_id": second["module_id"]}, headers=headers)
    for path, reader in (("/v1/me/training-completions", headers),
                         (f"/v1/ambassadors/{person['id']}/training-completions", as_admin)):
        first = (await client.get(path, params={"limit": 1}, headers=reader)).json()
        rest = (await client.get(path, params={"limit": 1, "cursor": first["next_cursor"]}, headers=reader)).json()
        assert [c["module_id"] for c in first["items"] + rest["items"]] == [module_id, second["module_id"]]
        assert rest["next_cursor"] is None


async def test_signals_are_reported_and_triaged(client, provision, volunteer, as_admin, as_employee):
    await provision("sam@corp.example")
    await volunteer("sam@corp.example")
    reported = await client.post("/v1/me/signals", headers=as_employee("sam@corp.example"), json={
        "url": "https://social.example/thread/42", "note": "Angry customers about the outage", "severity": "high"})
    signal_id = reported.json()["signal_id"]
    new = await client.get("/v1/signals", params={"status": "new"}, headers=as_admin)
    read = await client.get(f"/v1/signals/{signal_id}", headers=as_admin)
    acknowledged = await client.patch(f"/v1/signals/{signal_id}", json={"status": "acknowledged"},
                                      headers={**as_admin, "If-Match": read.headers["ETag"]})
    stale = await client.patch(f"/v1/signals/{signal_id}", json={"status": "closed"},
                               headers={**as_admin, "If-Match": read.headers["ETag"]})
    closed = await client.patch(f"/v1/signals/{signal_id}", json={"status": "closed"}, headers=as_admin)
    reopened = await client.patch(f"/v1/signals/{signal_id}", json={"status": "new"}, headers=as_admin)

    assert reported.status_code == 201 and reported.json()["status"] == "new"
    assert [s["signal_id"] for s in new.json()["items"]] == [signal_id]
    assert acknowledged.json()["status"] == "acknowledged"
    assert stale.status_code == 412
    assert closed.json()["status"] == "closed"
    assert reopened.status_code == 409
    not_admin = await client.get(f"/v1/signals/{signal_id}", headers=as_employee("sam@corp.example"))
    assert not_admin.status_code == 403


async def test_another_tenant_gets_404_everywhere(client, provision, volunteer, as_employee, bearer):
    user = await provision("iso@corp.example")
    await volunteer("iso@corp.example")
    headers = {**as_employee("iso@corp.example"), "Idempotency-Key": "signal-1"}
    body = {"url": "https://social.example/t/5", "severity": "low"}
    first = await client.post("/v1/me/signals", json=body, headers=headers)
    retried = await client.post("/v1/me/signals", json=body, headers=headers)
    assert retried.json()["signal_id"] == first.json()["signal_id"]

    intruder = bearer("intruder-tenant", "admin@intruder.example", "admin", "ambassador")
    answers = [
        await client.get(f"/v1/ambassadors/{user['id']}", headers=intruder),
        await client.get(f"/v1/ambassadors/{user['id']}/export", headers=intruder),
        await client.post(f"/v1/ambassadors/{user['id']}/erasure", headers=intruder),
        await client.post(f"/v1/ambassadors/{user['id']}/recognitions", json={"reason": "Sneaky"}, headers=intruder),
        await client.get(f"/v1/signals/{first.json()['signal_id']}", headers=intruder),
        await client.patch(f"/v1/signals/{first.json()['signal_id']}", json={"status": "closed"}, headers=intruder),
    ]
    assert [a.status_code for a in answers] == [404] * 6
    assert (await client.get("/v1/me", headers=as_employee("iso@corp.example"))).json()["status"] == "opted_in"
