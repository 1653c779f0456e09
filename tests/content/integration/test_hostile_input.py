"""Nothing a client sends makes the content API answer 5xx or change anything (issue 11)."""

import pytest

from advocacy_testkit import ALL_ROLES, server_errors_on_hostile_input

pytestmark = pytest.mark.integration


async def test_no_route_answers_hostile_input_with_a_5xx(kit, bearer):
    campaign = await kit.campaign()
    item = await kit.content(campaign["id"])
    ids = {"campaign_id": campaign["id"], "item_id": item["id"]}
    mallory = bearer(kit.tenant, "mallory", *ALL_ROLES)
    assert await server_errors_on_hostile_input(kit.api, kit.api.app, mallory, ids) == []


@pytest.mark.parametrize("field, value", [
    ("publish_at", "0001-01-01T00:00:00+05:00"), ("publish_at", "9999-12-31T23:59:59-05:00"),
    ("expires_at", "9999-12-31T23:59:59.999999-14:00"), ("publish_at", "2030-01-01T00:00:00"),
    ("title", "x" * (20 * 1024 * 1024)), ("suggested_texts", {"linkedin": "x" * 70_000}),
])
async def test_out_of_range_values_are_refused_and_nothing_is_written(kit, field, value):
    campaign = await kit.campaign()
    before = (await kit.api.get("/v1/content", headers=kit.editor)).json()["items"]
    response = await kit.api.post("/v1/content", json=kit.content_body(campaign["id"], **{field: value}),
                                  headers=kit.editor)
    assert response.status_code in (413, 422), response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert (await kit.api.get("/v1/content", headers=kit.editor)).json()["items"] == before


@pytest.mark.parametrize("query", [
    "/v1/calendar?start=0001-01-01&end=0001-01-02", "/v1/calendar?start=9999-12-30&end=9999-12-31",
    "/v1/content?publish_from=0001-01-01T00:00:00%2B05:00", "/v1/content?publish_to=9999-12-31T23:59:59-05:00",
    "/v1/content?limit=" + "9" * 30, "/v1/content?topic=" + "t" * 500,
])
async def test_query_values_at_the_ends_of_the_calendar_are_422(kit, query):
    response = await kit.api.get(query, headers=kit.editor)
    assert response.status_code == 422, response.text


async def test_campaign_dates_at_the_ends_of_the_calendar_are_422(kit):
    for dates in ({"starts_on": "0001-01-01"}, {"ends_on": "9999-12-31"}):
        response = await kit.api.post("/v1/campaigns", json=kit.campaign_body(**dates), headers=kit.editor)
        assert response.status_code == 422, response.text


async def test_authenticated_answers_are_not_cached_and_carry_security_headers(kit):
    response = await kit.api.get("/v1/campaigns", headers=kit.editor)
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
