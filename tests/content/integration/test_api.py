"""The content API against the real database: campaigns, items, workflow, rules, isolation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

pytestmark = pytest.mark.integration
PROBLEM = "application/problem+json"


def field_of(response) -> str:
    assert response.headers["content-type"].startswith(PROBLEM), response.text
    return response.json()["errors"][0]["field"]


async def test_campaign_create_read_update_with_etag(kit):
    campaign = await kit.campaign()
    assert campaign["objective"] == "talent" and campaign["disclosure_line"] == "#WeAreAcme"
    got = await kit.api.get(f"/v1/campaigns/{campaign['id']}", headers=kit.reviewer)
    assert got.status_code == 200 and got.headers["etag"] == '"1"'

    stale = await kit.api.patch(f"/v1/campaigns/{campaign['id']}", json={"name": "Renamed"},
                                headers={**kit.editor, "If-Match": '"7"'})
    assert stale.status_code == 412
    changed = await kit.api.patch(f"/v1/campaigns/{campaign['id']}", json={"name": "Renamed", "disclosure_line": None},
                                  headers={**kit.editor, "If-Match": '"1"'})
    assert changed.status_code == 200, changed.text
    assert changed.json()["name"] == "Renamed" and changed.json()["disclosure_line"] is None
    assert changed.headers["etag"] == '"2"'

    backwards = await kit.api.patch(f"/v1/campaigns/{campaign['id']}", json={"ends_on": "2000-01-01"},
                                    headers=kit.editor)
    assert backwards.status_code == 422 and field_of(backwards) == "ends_on"


async def test_campaign_post_is_idempotent_by_key(kit):
    headers = {**kit.editor, "Idempotency-Key": "camp-1"}
    first = await kit.api.post("/v1/campaigns", json=kit.campaign_body(), headers=headers)
    again = await kit.api.post("/v1/campaigns", json=kit.campaign_body(), headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"] and again.headers["idempotent-replayed"] == "true"
    other = await kit.api.post("/v1/campaigns", json=kit.campaign_body(name="Other"), headers=headers)
    assert other.status_code == 422 and field_of(other) == "Idempotency-Key"
    listed = await kit.api.get("/v1/campaigns", headers=kit.editor)
    assert [c["id"] for c in listed.json()["items"]] == [first.json()["id"]]


async def test_content_is_created_as_draft_with_normalised_fields(kit):
    campaign = await kit.campaign()
    item = await kit.content(campaign["id"])
    assert item["status"] == "draft" and item["version"] == 1 and item["created_by"] == "ed-1"
    assert item["topics"] == ["research", "innovation"] and item["audience"]["teams"] == ["r&d"]
    assert item["history"][0]["action"] == "create"
    assert await kit.get(item["id"]) == item


@pytest.mark.parametrize(("overrides", "field"), [
    ({"link_url": "javascript:alert(1)"}, "link_url"),
    ({"link_url": "ftp://example.com/file"}, "link_url"),
    ({"media": [{"url": "file:///etc/passwd"}]}, "media.0.url"),
    ({"suggested_texts": {"x": "x" * 281 + " #WeAreAcme"}}, "suggested_texts.x"),
    ({"suggested_texts": {"facebook": "Hello #WeAreAcme"}}, "suggested_texts.facebook"),
    ({"suggested_texts": {"linkedin": "No disclosure here"}}, "suggested_texts.linkedin"),
    ({"networks": []}, "networks"),
    ({"networks": ["myspace"]}, "networks.0"),
    ({"language": "English"}, "language"),
    ({"audience": {"personas": ["influencer"]}}, "audience.personas.0"),
    ({"publish_at": "2001-01-01T00:00:00Z", "expires_at": None}, "publish_at"),
    ({"publish_at": "2030-01-01T10:00:00"}, "publish_at"),
    ({"campaign_id": "no-such-campaign"}, "campaign_id"),
    ({"surprise": True}, "surprise"),
])
async def test_bad_content_is_refused_naming_the_field_and_nothing_is_saved(kit, overrides, field):
    campaign = await kit.campaign()
    response = await kit.api.post("/v1/content", json={**kit.content_body(campaign["id"]), **overrides},
                                  headers=kit.editor)
    assert response.status_code == 422, response.text
    assert field_of(response) == field
    listed = await kit.api.get("/v1/content", headers=kit.editor)
    assert listed.json()["items"] == []


async def test_expiry_must_follow_publication(kit):
    campaign = await kit.campaign()
    body = kit.content_body(campaign["id"])
    body["expires_at"] = body["publish_at"]
    response = await kit.api.post("/v1/content", json=body, headers=kit.editor)
    assert response.status_code == 422 and field_of(response) == "expires_at"


async def test_workflow_with_four_eyes_rejection_and_invalid_transitions(kit):
    campaign = await kit.campaign()
    item = await kit.content(campaign["id"])
    draft_approve = await kit.api.post(f"/v1/content/{item['id']}/approve", headers=kit.reviewer)
    assert draft_approve.status_code == 409 and draft_approve.json()["current_status"] == "draft"

    await kit.act(item["id"], "submit", kit.editor)
    # An editor who is also a reviewer may not approve their own item.
    both = kit.as_("ed-1", "editor", "reviewer")
    own = await kit.api.post(f"/v1/content/{item['id']}/approve", headers=both)
    assert own.status_code == 403 and "four-eyes" in own.json()["detail"].lower()

    no_comment = await kit.api.post(f"/v1/content/{item['id']}/reject", json={}, headers=kit.reviewer)
    assert no_comment.status_code == 422 and field_of(no_comment) == "comment"
    rejected = await kit.act(item["id"], "reject", kit.reviewer, json={"comment": "Too salesy"})
    assert rejected["status"] == "draft" and rejected["history"][-1]["comment"] == "Too salesy"

    await kit.act(item["id"], "submit", kit.editor)
    approved = await kit.act(item["id"], "approve", kit.reviewer)
    assert approved["status"] == "approved"
    assert [(h["action"], h["by"]) for h in approved["history"]] == [
        ("create", "ed-1"), ("submit", "ed-1"), ("reject", "rev-1"), ("submit", "ed-1"), ("approve", "rev-1")]
    assert all(h["at"] for h in approved["history"])

    withdrawn = await kit.act(item["id"], "withdraw", kit.editor, json={"comment": "Plans changed"})
    assert withdrawn["status"] == "retired" and withdrawn["retired_reason"] == "withdrawn"
    again = await kit.api.post(f"/v1/content/{item['id']}/withdraw", headers=kit.editor)
    assert again.status_code == 409
    edit_retired = await kit.api.patch(f"/v1/content/{item['id']}", json={"title": "x"}, headers=kit.editor)
    assert edit_retired.status_code == 409


async def test_four_eyes_can_be_turned_off_per_tenant(kit):
    admin = kit.as_("adm-1", "admin")
    settings = await kit.api.get("/v1/settings", headers=admin)
    assert settings.json() == {"four_eyes": True, "version": 0}
    assert (await kit.api.put("/v1/settings", json={"four_eyes": False}, headers=kit.editor)).status_code == 403
    stale = await kit.api.put("/v1/settings", json={"four_eyes": False}, headers={**admin, "If-Match": '"3"'})
    assert stale.status_code == 412
    saved = await kit.api.put("/v1/settings", json={"four_eyes": False}, headers={**admin, "If-Match": '"0"'})
    assert saved.status_code == 200 and saved.json() == {"four_eyes": False, "version": 1}

    campaign = await kit.campaign()
    both = kit.as_("ed-1", "editor", "reviewer")
    item = await kit.content(campaign["id"])
    await kit.act(item["id"], "submit", both)
    assert (await kit.act(item["id"], "approve", both))["status"] == "approved"


async def test_submit_needs_a_publication_time(kit):
    campaign = await kit.campaign()
    item = await kit.content(campaign["id"], publish_at=None, expires_at=None)
    response = await kit.api.post(f"/v1/content/{item['id']}/submit", headers=kit.editor)
    assert response.status_code == 422 and field_of(response) == "publish_at"
    assert (await kit.get(item["id"]))["status"] == "draft"


async def test_edit_with_if_match_and_approved_items_go_back_to_review(kit):
    campaign = await kit.campaign()
    item = await kit.approved(campaign["id"])
    stale = await kit.api.patch(f"/v1/content/{item['id']}", json={"title": "New"},
                                headers={**kit.editor, "If-Match": '"1"'})
    assert stale.status_code == 412 and stale.json()["current_etag"] == f'"{item["version"]}"'
    edited = await kit.api.patch(f"/v1/content/{item['id']}", json={"title": "New", "topics": ["AI"]},
                                 headers={**kit.editor, "If-Match": f'"{item["version"]}"'})
    assert edited.status_code == 200, edited.text
    body = edited.json()
    assert body["title"] == "New" and body["topics"] == ["ai"] and body["status"] == "in_review"
    assert edited.headers["etag"] == f'"{item["version"] + 1}"'
    bad = await kit.api.patch(f"/v1/content/{item['id']}", json={"suggested_texts": {"x": "no tag"}},
                              headers=kit.editor)
    assert bad.status_code == 422 and field_of(bad) == "suggested_texts.x"
    assert (await kit.get(item["id"]))["suggested_texts"]["x"] == "New lab! #WeAreAcme"


async def test_action_idempotency_key_replays_the_same_step(kit):
    campaign = await kit.campaign()
    item = await kit.content(campaign["id"])
    headers = {**kit.editor, "Idempotency-Key": "submit-1"}
    first = await kit.act(item["id"], "submit", headers)
    again = await kit.act(item["id"], "submit", headers)
    assert first == again and first["status"] == "in_review"
    reused = await kit.api.post(f"/v1/content/{item['id']}/withdraw", headers=headers)
    assert reused.status_code == 422


async def test_content_post_idempotency(kit):
    campaign = await kit.campaign()
    headers = {**kit.editor, "Idempotency-Key": "lab-post"}
    body = kit.content_body(campaign["id"])
    first = await kit.api.post("/v1/content", json=body, headers=headers)
    again = await kit.api.post("/v1/content", json=body, headers=headers)
    assert first.status_code == again.status_code == 201 and first.json()["id"] == again.json()["id"]
    other = await kit.api.post("/v1/content", json={**body, "title": "Other"}, headers=headers)
    assert other.status_code == 422


async def test_tenants_and_roles_are_isolated(kit, bearer):
    campaign = await kit.campaign()
    item = await kit.content(campaign["id"])
    stranger = bearer("other-tenant", "ed-9", "editor", "reviewer")
    assert (await kit.api.get(f"/v1/content/{item['id']}", headers=stranger)).status_code == 404
    assert (await kit.api.get(f"/v1/campaigns/{campaign['id']}", headers=stranger)).status_code == 404
    assert (await kit.api.post(f"/v1/content/{item['id']}/submit", headers=stranger)).status_code == 404
    assert (await kit.api.get("/v1/content", headers=stranger)).json()["items"] == []
    assert (await kit.api.get("/v1/content")).status_code == 401
    ambassador = kit.as_("amb-1", "ambassador")
    assert (await kit.api.post("/v1/content", json=kit.content_body(campaign["id"]),
                               headers=ambassador)).status_code == 403
    assert (await kit.api.get(f"/v1/content/{item['id']}", headers=ambassador)).status_code == 403
    assert (await kit.api.post(f"/v1/content/{item['id']}/submit", headers=kit.reviewer)).status_code == 403


async def test_list_filters_and_cursor_pagination(kit):
    spring = await kit.campaign()
    autumn = await kit.campaign(name="Autumn", objective="leads")
    base = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    made = []
    for index in range(5):
        made.append(await kit.content(spring["id"] if index % 2 == 0 else autumn["id"],
                                      topics=["ai"] if index < 2 else ["cloud"],
                                      language="fr" if index == 4 else "en",
                                      publish_at=(base + timedelta(days=index)).isoformat(),
                                      expires_at=None))
    await kit.act(made[0]["id"], "submit", kit.editor)

    async def ids(**params) -> list[str]:
        response = await kit.api.get("/v1/content", params=params, headers=kit.reviewer)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    newest_first = [item["id"] for item in reversed(made)]
    assert await ids() == newest_first
    assert await ids(status="in_review") == [made[0]["id"]]
    assert await ids(campaign_id=autumn["id"]) == [made[3]["id"], made[1]["id"]]
    assert await ids(topic="AI") == [made[1]["id"], made[0]["id"]]
    assert await ids(language="fr") == [made[4]["id"]]
    assert await ids(publish_from=(base + timedelta(days=1)).isoformat(),
                     publish_to=(base + timedelta(days=3)).isoformat()) == [made[2]["id"], made[1]["id"]]
    assert (await kit.api.get("/v1/content", params={"status": "lost"}, headers=kit.editor)).status_code == 422

    pages, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await kit.api.get("/v1/content", params=params, headers=kit.editor)).json()
        pages.append([item["id"] for item in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == [newest_first[:2], newest_first[2:4], newest_first[4:]]
    # A cursor is signed for its list: garbage, an edited cursor or another list's cursor is a 400 naming it.
    bad = await kit.api.get("/v1/content", params={"cursor": "!!"}, headers=kit.editor)
    assert bad.status_code == 400 and field_of(bad) == "cursor"
    first = (await kit.api.get("/v1/content", params={"limit": 2}, headers=kit.editor)).json()["next_cursor"]
    edited = first[:-2] + ("AA" if first[-2:] != "AA" else "BB")
    for foreign in (edited, first):
        params = {"cursor": foreign, **({"status": "draft"} if foreign == first else {})}
        refused = await kit.api.get("/v1/content", params=params, headers=kit.editor)
        assert refused.status_code == 400 and field_of(refused) == "cursor", refused.text


async def test_editorial_calendar_groups_by_day(kit):
    campaign = await kit.campaign()
    day = (datetime.now(UTC) + timedelta(days=3)).replace(hour=9, minute=0, second=0, microsecond=0)
    morning = await kit.content(campaign["id"], publish_at=day.isoformat(), expires_at=None)
    evening = await kit.content(campaign["id"], publish_at=(day + timedelta(hours=9)).isoformat(), expires_at=None)
    next_day = await kit.content(campaign["id"], publish_at=(day + timedelta(days=1)).isoformat(), expires_at=None)
    await kit.content(campaign["id"], publish_at=(day + timedelta(days=5)).isoformat(), expires_at=None)
    response = await kit.api.get("/v1/calendar", params={"start": day.date().isoformat(),
                                                         "end": (day.date() + timedelta(days=1)).isoformat()},
                                 headers=kit.reviewer)
    assert response.status_code == 200, response.text
    days = response.json()["days"]
    assert [d["date"] for d in days] == [day.date().isoformat(), (day.date() + timedelta(days=1)).isoformat()]
    assert [i["id"] for i in days[0]["items"]] == [morning["id"], evening["id"]]
    assert [i["id"] for i in days[1]["items"]] == [next_day["id"]]
    too_long = await kit.api.get("/v1/calendar", params={"start": "2026-01-01", "end": "2026-12-31"},
                                 headers=kit.editor)
    assert too_long.status_code == 422 and field_of(too_long) == "end"


async def test_health_and_openapi(kit):
    assert (await kit.api.get("/livez")).status_code == 200
    ready = await kit.api.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"mongodb": True, "kafka": True}
    paths = (await kit.api.get("/openapi.json")).json()["paths"]
    assert {"/v1/content", "/v1/content/{item_id}/approve", "/v1/calendar", "/v1/proposals"} <= set(paths)
