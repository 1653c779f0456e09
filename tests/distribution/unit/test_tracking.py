"""Tracked-link codes, UTM, share intents, bots, visitor hashes and webhook signatures."""

from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest

from advocacy_common.events import Network
from distribution.models.engagement import (
    SignatureRejected, engagement_id, is_link_preview_bot, sign, verify_signature, visitor_hash, with_utm,
)
from distribution.models.sharing import link_code, share_intent_url

pytestmark = pytest.mark.unit
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
T = int(NOW.timestamp())


def test_link_code_is_stable_per_triple_and_secret():
    code = link_code("s", "t", "a", "c", "linkedin")
    assert code == link_code("s", "t", "a", "c", "linkedin") and len(code) == 10
    others = {link_code("s", "t", "a", "c", "x"), link_code("s", "t", "b", "c", "linkedin"),
              link_code("other", "t", "a", "c", "linkedin")}
    assert code not in others and len(others) == 3


def test_utm_keeps_existing_query_and_replaces_old_utm():
    url = with_utm("https://acme.com/jobs?id=4&utm_source=old#apply", network="linkedin", campaign_id="c1",
                   code="abc")
    parts = urlsplit(url)
    assert parts.fragment == "apply"
    assert parse_qs(parts.query) == {"id": ["4"], "utm_source": ["linkedin"], "utm_medium": ["employee_advocacy"],
                                     "utm_campaign": ["c1"], "utm_content": ["abc"]}


def test_share_intents():
    link = "https://go.acme.com/r/abc"
    assert share_intent_url(Network.LINKEDIN, link, "t") == \
        "https://www.linkedin.com/sharing/share-offsite/?url=https%3A%2F%2Fgo.acme.com%2Fr%2Fabc"
    assert share_intent_url(Network.X, link, "Hi all").startswith("https://x.com/intent/post?text=Hi%20all&url=")
    assert share_intent_url(Network.INSTAGRAM, link, "t") is None


@pytest.mark.parametrize("agent", ["LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
                                   "Twitterbot/1.0", "facebookexternalhit/1.1", "Slackbot-LinkExpanding 1.0",
                                   "WhatsApp/2.23", "Mozilla/5.0 (compatible; Googlebot/2.1)", "", None])
def test_preview_bots_are_recognised(agent):
    assert is_link_preview_bot(agent)


def test_browsers_are_not_bots():
    assert not is_link_preview_bot("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
                                   "Version/17.0 Mobile/15E148 Safari/604.1")


def test_visitor_hash_is_salted_and_scoped_to_a_link():
    base = visitor_hash("salt", "code", "203.0.113.7", "UA")
    assert base != visitor_hash("other", "code", "203.0.113.7", "UA")
    assert base != visitor_hash("salt", "code2", "203.0.113.7", "UA")
    assert "203.0.113.7" not in base


def test_engagement_id_is_deterministic():
    assert engagement_id("t", "li", "1") == engagement_id("t", "li", "1") != engagement_id("t", "li", "2")


def test_signature_roundtrip_and_rotation():
    body = b'{"id":"1"}'
    verify_signature("secret", sign("secret", T, body), body, NOW, 300)
    rotated = sign("old", T, body) + "," + sign("secret", T, body).split(",")[1]
    verify_signature("secret", rotated, body, NOW, 300)


@pytest.mark.parametrize(("header", "message"), [
    (None, "missing"),
    ("v1=abc", "timestamp"),
    (f"t={T - 301},v1=abc", "300 seconds"),
    (f"t={T + 301},v1=abc", "300 seconds"),
    (sign("secret", T, b'{"id":"2"}'), "does not match"),
    (sign("wrong", T, b'{"id":"1"}'), "does not match"),
])
def test_signature_refusals(header, message):
    with pytest.raises(SignatureRejected, match=message):
        verify_signature("secret", header, b'{"id":"1"}', NOW, 300)


@pytest.mark.parametrize("agent", ["XING-contenttabreceiver/2.0", "Microsoft Preview", "TelegramBot (like TwitterBot)",
                                   "Discordbot/2.0", "Mozilla/5.0 (compatible; Embedly/0.2)", "  "])
def test_our_additions_and_crawlerdetects_list_are_both_used(agent):
    assert is_link_preview_bot(agent)


def test_in_app_browsers_of_the_networks_are_people():
    assert not is_link_preview_bot("Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) "
                                   "Chrome/126.0 Mobile Safari/537.36 [LinkedInApp]")
    assert not is_link_preview_bot("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
                                   "(KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/440.0]")
