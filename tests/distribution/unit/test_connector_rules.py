"""Pure rules of the network connectors: post URLs to URNs and ids, PKCE, scopes, the polling schedule,
backoff, Retry-After, and totals to exact deltas (including a total that goes down)."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from advocacy_common.events import EngagementKind, Network
from distribution.connectors import linkedin, oauth, x
from distribution.connectors.calls import retry_after_seconds
from distribution.connectors.deltas import deltas
from distribution.connectors.schedule import PollSchedule, backoff
from distribution.models.sharing import composer_url, post_text

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


# --- LinkedIn post URLs --------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "urn"), [
    ("https://www.linkedin.com/feed/update/urn:li:activity:7212345678901234567/",
     "urn:li:activity:7212345678901234567"),
    ("https://www.linkedin.com/feed/update/urn:li:share:7212345678901234567", "urn:li:share:7212345678901234567"),
    ("https://www.linkedin.com/feed/update/urn:li:ugcPost:7212345678901234567/?utm_source=share",
     "urn:li:ugcPost:7212345678901234567"),
    ("https://www.linkedin.com/feed/update/urn%3Ali%3Aactivity%3A7212345678901234567/",
     "urn:li:activity:7212345678901234567"),
    ("https://www.linkedin.com/embed/feed/update/urn:li:share:7212345678901234567",
     "urn:li:share:7212345678901234567"),
    ("https://www.linkedin.com/posts/jane-doe-123_renewables-lyon-activity-7212345678901234567-AbCd/",
     "urn:li:activity:7212345678901234567"),
    ("https://www.linkedin.com/posts/jane-doe_plant-ugcPost-7212345678901234567-x9Yz?utm_medium=ios",
     "urn:li:ugcPost:7212345678901234567"),
    ("https://fr.linkedin.com/posts/jean_activity-7212345678901234567-QwEr", "urn:li:activity:7212345678901234567"),
    ("linkedin.com/feed/update/urn:li:share:42/", "urn:li:share:42"),
    ("urn:li:share:7212345678901234567", "urn:li:share:7212345678901234567"),
])
def test_linkedin_post_urls_give_their_urn(url, urn):
    assert str(linkedin.post_urn(url)) == urn


@pytest.mark.parametrize("url", [
    "https://www.linkedin.com/in/jane-doe/",  # a profile
    "https://www.linkedin.com/pulse/my-article-jane-doe",  # an article
    "https://lnkd.in/eAbCdEf",  # a short link: we would have to fetch it
    "https://www.linkedin.com.evil.example/feed/update/urn:li:share:1",
    "https://evil.example/www.linkedin.com/feed/update/urn:li:share:1",
    "javascript:alert(1)//linkedin.com/feed/update/urn:li:share:1",
    "https://www.linkedin.com/feed/update/urn:li:person:123",
    "https://www.linkedin.com/posts/jane-doe_no-id-here",
    "urn:li:share:abc",
])
def test_other_urls_are_not_linkedin_posts(url):
    with pytest.raises(linkedin.NotAPostUrl):
        linkedin.post_urn(url)


def test_an_activity_is_tried_as_share_then_ugc_post_and_a_share_only_as_itself():
    assert linkedin.post_urn("urn:li:activity:9").candidates() == ["urn:li:share:9", "urn:li:ugcPost:9"]
    assert linkedin.post_urn("urn:li:ugcPost:9").candidates() == ["urn:li:ugcPost:9"]


# --- X post URLs ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "post"), [
    ("https://x.com/janedoe/status/1801234567890123456", "1801234567890123456"),
    ("https://twitter.com/janedoe/status/1801234567890123456?s=20", "1801234567890123456"),
    ("https://mobile.twitter.com/janedoe/status/1801234567890123456/photo/1", "1801234567890123456"),
    ("https://x.com/i/web/status/1801234567890123456", "1801234567890123456"),
    ("x.com/jane_doe/status/18", "18"),
])
def test_x_post_urls_give_their_id(url, post):
    assert x.post_id(url) == post


@pytest.mark.parametrize("url", ["https://x.com/janedoe", "https://x.com.evil.example/a/status/1",
                                 "https://x.com/janedoe/status/abc", "https://www.linkedin.com/feed/update/urn:li:share:1"])
def test_other_urls_are_not_x_posts(url):
    with pytest.raises(x.NotAPostUrl):
        x.post_id(url)


# --- OAuth ---------------------------------------------------------------------------------------

def test_pkce_challenge_is_s256_of_the_verifier_rfc7636_example():
    # RFC 7636, Appendix B.
    assert oauth.code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == \
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_verifier_and_state_are_long_and_fresh():
    verifier = oauth.new_code_verifier()
    assert 43 <= len(verifier) <= 128 and verifier != oauth.new_code_verifier()
    assert len(oauth.new_state()) >= 43


def test_authorization_url_asks_read_scopes_only_with_pkce_and_state():
    url = oauth.authorization_url("https://www.linkedin.com/oauth/v2/authorization", client_id="cid",
                                  redirect_uri="https://app.example.com/cb", scopes=oauth.LINKEDIN_SCOPES,
                                  state="st", verifier="v" * 43)
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert query["scope"] == "openid profile r_member_postAnalytics"
    assert query["code_challenge_method"] == "S256"
    assert query["code_challenge"] == base64.urlsafe_b64encode(hashlib.sha256(b"v" * 43).digest()).rstrip(b"=").decode()
    assert (query["state"], query["response_type"], query["client_id"]) == ("st", "code", "cid")
    assert not oauth.POSTING_SCOPES & set(oauth.LINKEDIN_SCOPES)
    with pytest.raises(ValueError):
        oauth.authorization_url("https://l/a", client_id="c", redirect_uri="https://r", state="s", verifier="v" * 43,
                                scopes=("r_member_postAnalytics", "w_member_social"))


def test_granted_scopes_read_linkedin_commas_and_rfc_spaces():
    assert oauth.granted_scopes("openid,profile,r_member_postAnalytics", ()) == \
        ["openid", "profile", "r_member_postAnalytics"]
    assert oauth.granted_scopes("openid profile", ()) == ["openid", "profile"]
    assert oauth.granted_scopes(None, ("a",)) == ["a"]


# --- schedule ------------------------------------------------------------------------------------

def test_hourly_for_48_hours_then_daily_until_14_days_after_the_last_change():
    schedule = PollSchedule(spread=0)
    assert schedule.next_poll("p", T0, T0, T0) == T0 + timedelta(hours=1)
    at_47h = T0 + timedelta(hours=47)
    assert schedule.next_poll("p", T0, T0, at_47h) == at_47h + timedelta(hours=1)
    at_48h = T0 + timedelta(hours=48)
    assert schedule.next_poll("p", T0, T0, at_48h) == at_48h + timedelta(days=1)
    # No change since linking: finished 14 days later.
    assert schedule.next_poll("p", T0, T0, T0 + timedelta(days=14)) is None
    # A change on day 10 keeps the daily polls until day 24.
    day_10 = T0 + timedelta(days=10)
    assert schedule.next_poll("p", T0, day_10, T0 + timedelta(days=23)) == T0 + timedelta(days=24)
    assert schedule.next_poll("p", T0, day_10, T0 + timedelta(days=24)) is None


def test_a_short_quiet_period_still_polls_through_the_early_period():
    schedule = PollSchedule(spread=0, quiet_period=timedelta(hours=1))
    assert schedule.next_poll("p", T0, T0, T0 + timedelta(hours=5)) == T0 + timedelta(hours=6)


def test_posts_are_spread_inside_a_tenth_of_their_interval_and_always_the_same_way():
    schedule = PollSchedule()
    offsets = {schedule.offset(f"post-{n}", timedelta(hours=1)) for n in range(200)}
    assert all(timedelta(0) <= offset <= timedelta(minutes=6) for offset in offsets)
    assert len(offsets) > 100  # spread, not bunched
    assert schedule.offset("post-1", timedelta(hours=1)) == PollSchedule().offset("post-1", timedelta(hours=1))


def test_backoff_honours_retry_after_else_doubles_up_to_a_ceiling():
    assert backoff(1, 30) == timedelta(seconds=30)
    assert backoff(3, None) == timedelta(minutes=4)
    assert backoff(1, None) == timedelta(minutes=1)
    assert backoff(30, None) == timedelta(hours=6)
    assert backoff(1, 10**9) == timedelta(hours=6)


def test_retry_after_in_seconds_as_a_date_or_as_x_reset():
    now = 1_800_000_000.0
    assert retry_after_seconds(httpx.Response(429, headers={"Retry-After": "7"}), now) == 7
    assert retry_after_seconds(httpx.Response(429, headers={"Retry-After": "Fri, 15 Jan 2027 08:00:10 GMT"}),
                               1_800_000_000.0) == pytest.approx(
        datetime(2027, 1, 15, 8, 0, 10, tzinfo=UTC).timestamp() - now)
    assert retry_after_seconds(httpx.Response(429, headers={"x-rate-limit-reset": str(int(now) + 42)}), now) == 42
    assert retry_after_seconds(httpx.Response(429), now) is None


# --- deltas --------------------------------------------------------------------------------------

KINDS = linkedin.METRICS


def test_first_totals_are_deltas_from_zero_with_ids_from_share_metric_and_total():
    found, marks = deltas("s1", {}, {"IMPRESSION": 120, "REACTION": 0, "COMMENT": 3}, KINDS, T0)
    assert [(d.id, d.kind, d.count) for d in found] == [("s1:COMMENT:3", EngagementKind.COMMENT, 3),
                                                        ("s1:IMPRESSION:120", EngagementKind.IMPRESSION, 120)]
    assert marks == {"IMPRESSION": 120, "COMMENT": 3}


def test_same_totals_again_give_nothing_and_increases_give_the_difference():
    _, marks = deltas("s1", {}, {"IMPRESSION": 120}, KINDS, T0)
    assert deltas("s1", marks, {"IMPRESSION": 120}, KINDS, T0) == ([], marks)
    found, marks = deltas("s1", marks, {"IMPRESSION": 150}, KINDS, T0)
    assert [(d.id, d.count) for d in found] == [("s1:IMPRESSION:150", 30)]


def test_a_total_that_goes_down_emits_nothing_until_it_passes_the_high_water_mark():
    marks = {"REACTION": 50}
    assert deltas("s1", marks, {"REACTION": 45}, KINDS, T0) == ([], marks)  # no negative correction
    assert deltas("s1", marks, {"REACTION": 50}, KINDS, T0) == ([], marks)
    found, marks = deltas("s1", marks, {"REACTION": 53}, KINDS, T0)
    assert [(d.id, d.count) for d in found] == [("s1:REACTION:53", 3)]  # 50 -> 53, not 45 -> 53
    assert marks == {"REACTION": 53}


def test_the_sum_of_deltas_is_the_highest_total_seen_whatever_the_path():
    marks: dict[str, int] = {}
    counted = 0
    ids = set()
    for total in [0, 10, 10, 25, 20, 18, 30, 30, 29, 40]:
        found, marks = deltas("s1", marks, {"IMPRESSION": total}, KINDS, T0)
        counted += sum(d.count for d in found)
        ids |= {d.id for d in found}
    assert counted == 40 and len(ids) == 4  # 10, 25, 30, 40: each id once


def test_x_quotes_and_reposts_are_separate_metrics_of_the_same_kind():
    found, _ = deltas("s1", {}, {"retweet_count": 2, "quote_count": 1, "like_count": 5}, x.METRICS, T0)
    assert {(d.metric, d.kind, d.count) for d in found} == {("retweet_count", EngagementKind.RESHARE, 2),
                                                           ("quote_count", EngagementKind.RESHARE, 1),
                                                           ("like_count", EngagementKind.REACTION, 5)}


def test_unknown_metrics_and_negative_totals_are_ignored():
    assert deltas("s1", {}, {"POST_SAVE": 3, "IMPRESSION": -1}, KINDS, T0) == ([], {})


# --- share intent ----------------------------------------------------------------------------------

def test_linkedin_composer_carries_the_whole_text_and_the_tracked_link():
    url = composer_url(Network.LINKEDIN, "Proud of Lyon & co #green", "https://go.example.com/r/abc")
    assert url.startswith("https://www.linkedin.com/feed/?shareActive=true&text=")
    text = parse_qs(urlsplit(url).query)["text"][0]
    assert text == "Proud of Lyon & co #green\n\nhttps://go.example.com/r/abc"
    assert post_text("Hi", "https://l") == "Hi\n\nhttps://l"
    assert composer_url(Network.X, "Hi", "https://l") is None and composer_url(Network.LINKEDIN, None, "l") is None


def test_delta_times_are_kept_to_the_millisecond_as_bson_stores_them():
    found, _ = deltas("s1", {}, {"IMPRESSION": 1}, KINDS, T0.replace(microsecond=123_456))
    assert found[0].observed_at.microsecond == 123_000
