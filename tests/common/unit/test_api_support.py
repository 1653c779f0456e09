import pytest
from starlette.requests import Request

from advocacy_common.api_support import idempotent_id, page_size, require_if_match
from advocacy_common.errors import Problem

pytestmark = pytest.mark.unit


def request_with(headers: dict[str, str]) -> Request:
    return Request({"type": "http", "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]})


def test_page_size_bounds():
    assert page_size(None) == 50
    with pytest.raises(Problem):
        page_size(0)
    with pytest.raises(Problem):
        page_size(10_000)


def test_if_match():
    require_if_match(request_with({}), 3)
    require_if_match(request_with({"If-Match": '"3"'}), 3)
    require_if_match(request_with({"If-Match": "*"}), 3)
    with pytest.raises(Problem) as caught:
        require_if_match(request_with({"If-Match": '"2"'}), 3)
    assert caught.value.status == 412
    with pytest.raises(Problem) as caught:
        require_if_match(request_with({}), 3, required=True)
    assert caught.value.status == 428


def test_idempotent_ids_are_stable_per_tenant_and_scope():
    assert idempotent_id("acme", "content", "k1") == idempotent_id("acme", "content", "k1")
    assert idempotent_id("acme", "content", "k1") != idempotent_id("other", "content", "k1")
    assert idempotent_id("acme", "content", "k1") != idempotent_id("acme", "campaign", "k1")
    assert idempotent_id("acme", "content", None) != idempotent_id("acme", "content", None)
