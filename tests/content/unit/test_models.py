"""Workflow, validation and targeting rules of the content domain (pure, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from advocacy_common.events import ContentPublished, ContentRetired, ContentUpdated, Network, Objective
from content.models import (
    ANYONE, NETWORK_TEXT_LIMITS, Action, Audience, Campaign, ContentItem, FourEyesViolation, HistoryEntry,
    InvalidTransition, KeyUsedForAnotherAction, RetireReason, RuleViolation, Status, TargetingProfile,
    check_approver, check_content, check_ready_for_review, check_web_url, event_id, is_targeted, next_status,
    published_event, retired_event, status_after_edit, targeting_keys, to_stored_time, updated_event,
)
from content.schemas import ContentIn, ContentPatch

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
CAMPAIGN = Campaign(id="c-1", tenant="acme", name="C", objective="leads", starts_on="2026-11-01",
                    ends_on="2026-12-31", disclosure_line="#Acme", created_by="ed", created_at=NOW, updated_at=NOW)


def item(**overrides) -> ContentItem:
    fields = {"id": "i-1", "tenant": "acme", "campaign_id": "c-1", "title": "T", "link_url": "https://example.com",
              "media": [], "suggested_texts": {"linkedin": "Hello #acme"}, "topics": ["ai"], "language": "en",
              "audience": {"teams": [], "locations": ["paris"], "languages": [], "personas": ["expert"]},
              "networks": ["linkedin"], "publish_at": NOW, "expires_at": NOW + timedelta(days=1),
              "status": "draft", "created_by": "ed", "created_at": NOW, "updated_at": NOW, "authors": ["ed"],
              "history": [HistoryEntry(action=Action.CREATE, status=Status.DRAFT, by="ed", at=NOW)]}
    return ContentItem(**{**fields, **overrides})


@pytest.mark.parametrize(("action", "start", "end"), [
    (Action.SUBMIT, Status.DRAFT, Status.IN_REVIEW),
    (Action.APPROVE, Status.IN_REVIEW, Status.APPROVED),
    (Action.REJECT, Status.IN_REVIEW, Status.DRAFT),
    (Action.PUBLISH, Status.APPROVED, Status.PUBLISHED),
    (Action.EXPIRE, Status.PUBLISHED, Status.RETIRED),
    (Action.EXPIRE, Status.APPROVED, Status.RETIRED),
    (Action.WITHDRAW, Status.PUBLISHED, Status.RETIRED),
    (Action.WITHDRAW, Status.DRAFT, Status.RETIRED),
])
def test_allowed_transitions(action, start, end):
    assert next_status(action, start) is end


@pytest.mark.parametrize(("action", "start"), [
    (Action.APPROVE, Status.DRAFT), (Action.PUBLISH, Status.IN_REVIEW), (Action.SUBMIT, Status.APPROVED),
    (Action.WITHDRAW, Status.RETIRED), (Action.PUBLISH, Status.PUBLISHED), (Action.REJECT, Status.APPROVED),
])
def test_invalid_transitions(action, start):
    with pytest.raises(InvalidTransition) as raised:
        next_status(action, start)
    assert raised.value.status is start


def test_edits_send_approved_content_back_to_review_and_retired_content_is_frozen():
    assert status_after_edit(Status.APPROVED) is Status.IN_REVIEW
    assert status_after_edit(Status.PUBLISHED) is Status.PUBLISHED
    assert status_after_edit(Status.DRAFT) is Status.DRAFT
    with pytest.raises(InvalidTransition):
        status_after_edit(Status.RETIRED)


def test_four_eyes():
    with pytest.raises(FourEyesViolation):
        check_approver("ann", ["bob", "ann"], four_eyes=True)
    check_approver("cid", ["bob", "ann"], four_eyes=True)
    check_approver("ann", ["ann"], four_eyes=False)


@pytest.mark.parametrize("url", ["javascript:alert(1)", "data:text/html,x", "file:///etc", "//example.com",
                                 "https://", "http://exa mple.com", "mailto:a@b.c", "https://x/" + "a" * 2050])
def test_links_must_be_http_or_https(url):
    with pytest.raises(ValueError):
        check_web_url(url)


def test_good_links_pass_unchanged():
    assert check_web_url(" HTTPS://Example.com/a?b=c#d ") == "HTTPS://Example.com/a?b=c#d"


@pytest.mark.parametrize(("overrides", "field"), [
    ({"networks": []}, "networks"),
    ({"suggested_texts": {"x": "#acme"}}, "suggested_texts.x"),
    ({"suggested_texts": {"linkedin": "no disclosure"}}, "suggested_texts.linkedin"),
    ({"suggested_texts": {"linkedin": "#Acme " + "a" * 3000}}, "suggested_texts.linkedin"),
    ({"publish_at": datetime(2027, 1, 1, tzinfo=UTC), "expires_at": None}, "publish_at"),
    ({"expires_at": NOW}, "expires_at"),
])
def test_cross_field_rules_name_the_field(overrides, field):
    with pytest.raises(RuleViolation) as raised:
        check_content(item(**overrides), CAMPAIGN)
    assert raised.value.field == field


def test_each_network_limit_is_the_boundary():
    for network, limit in NETWORK_TEXT_LIMITS.items():
        text = ("#Acme " + "a" * limit)[:limit]
        check_content(item(networks=[network.value], suggested_texts={network.value: text}), CAMPAIGN)
        with pytest.raises(RuleViolation):
            check_content(item(networks=[network.value], suggested_texts={network.value: text + "a"}), CAMPAIGN)
    assert NETWORK_TEXT_LIMITS[Network.X] == 280


def test_without_disclosure_line_any_text_goes_and_review_needs_a_time():
    check_content(item(suggested_texts={"linkedin": "plain"}), CAMPAIGN.model_copy(update={"disclosure_line": None}))
    with pytest.raises(RuleViolation) as raised:
        check_ready_for_review(item(publish_at=None))
    assert raised.value.field == "publish_at"


def test_targeting_open_axes_match_anyone():
    audience = Audience(teams=["r&d"], locations=[], languages=["fr", "en"], personas=[])
    assert targeting_keys(audience)["locations"] == [ANYONE] and targeting_keys(audience)["topics"] == [ANYONE]
    targeted = item(audience=audience)
    profile = TargetingProfile(persona="talent", team_id="R&D", location="Lyon", languages=["EN"],
                               networks=["linkedin"])
    assert is_targeted(targeted, profile)
    assert not is_targeted(targeted, profile.model_copy(update={"team_id": "sales"}))
    assert not is_targeted(targeted, profile.model_copy(update={"languages": ["de"]}))
    assert not is_targeted(item(audience=audience.model_copy(update={"personas": ["expert"]})), profile)
    open_item = item(audience=Audience())
    assert is_targeted(open_item, TargetingProfile(persona="expert"))
    assert not is_targeted(targeted, None)  # no profile: only open audiences
    assert is_targeted(open_item, None)


def test_topics_target_through_the_audience_and_language_and_networks_count_as_in_the_feed():
    profile = TargetingProfile(persona="expert", topics=["Energy", "hiring"], languages=["fr"], networks=["x"])
    for_energy = item(audience=Audience(topics=["energy"]), language="fr", networks=["linkedin", "x"])
    assert is_targeted(for_energy, profile)
    assert not is_targeted(for_energy, profile.model_copy(update={"topics": ["ai"]}))
    assert not is_targeted(for_energy, profile.model_copy(update={"topics": []}))  # a named axis needs a value
    # The item's own topics describe it; they do not exclude anybody.
    assert is_targeted(item(audience=Audience(), topics=["quantum"], language="fr", networks=["x"]), profile)
    # Someone who lists languages only gets items in one of them; someone who lists none gets any.
    assert not is_targeted(for_energy.model_copy(update={"language": "en"}), profile)
    assert is_targeted(for_energy.model_copy(update={"language": "en"}), profile.model_copy(update={"languages": []}))
    # The item must allow one of the person's networks; a projection from before networks were kept: no constraint.
    assert not is_targeted(for_energy, profile.model_copy(update={"networks": ["tiktok"]}))
    assert is_targeted(for_energy, profile.model_copy(update={"networks": None}))


def test_snapshots_carry_campaign_objective_and_disclosure():
    published = published_event(item(), CAMPAIGN, version=4)
    assert isinstance(published, ContentPublished)
    assert (published.content_id, published.version, published.objective, published.disclosure_line) == \
        ("i-1", 4, Objective.LEADS, "#Acme")
    assert published.suggested_texts == {Network.LINKEDIN: "Hello #acme"}
    assert published.aggregate_id() == "i-1"
    assert isinstance(updated_event(item(), CAMPAIGN, version=5), ContentUpdated)
    retired = retired_event(item(), 6, RetireReason.EXPIRED, NOW)
    assert isinstance(retired, ContentRetired) and retired.reason == "expired" and retired.version == 6


def test_times_are_kept_at_millisecond_precision_in_utc():
    value = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert to_stored_time(value) == datetime(2026, 1, 1, 12, 0, 0, 123000, tzinfo=UTC)


def test_request_models_normalise_and_refuse():
    body = ContentIn(campaign_id="c", title="t", link_url="https://e.com", language="FR-ca",
                     topics=[" AI ", "ai", "Cloud"], networks=["x", "x"], suggested_texts={"x": "hi"})
    assert body.language == "fr-ca" and body.topics == ["ai", "cloud"] and body.networks == [Network.X]
    with pytest.raises(ValidationError) as raised:
        ContentIn(campaign_id="c", title="t", link_url="https://e.com", language="en", networks=["x"],
                  publish_at="2026-01-01T10:00:00")
    assert raised.value.errors()[0]["loc"] == ("publish_at",)
    with pytest.raises(ValidationError):
        ContentPatch(title=None)
    with pytest.raises(ValidationError):
        ContentPatch(suggested_texts={"x": "   "})
    assert ContentPatch(expires_at=None).model_fields_set == {"expires_at"}


def test_event_ids_are_deterministic_per_transition():
    first = published_event(item(), CAMPAIGN, version=3)
    assert event_id("acme", first) == event_id("acme", published_event(item(), CAMPAIGN, version=3))
    assert event_id("acme", first) != event_id("acme", published_event(item(), CAMPAIGN, version=4))
    assert event_id("acme", first) != event_id("other", first)
    assert event_id("acme", first) != event_id("acme", updated_event(item(), CAMPAIGN, version=3))


def test_a_workflow_step_is_recorded_and_an_action_key_is_bound_to_its_action():
    draft = item()
    submitted = draft.moved(Action.SUBMIT, Status.IN_REVIEW, "ed", NOW + timedelta(minutes=1), key="k1")
    assert (submitted.status, submitted.updated_at, submitted.version) == (Status.IN_REVIEW, NOW + timedelta(minutes=1),
                                                                           draft.version)
    assert [(h.action, h.idempotency_key) for h in submitted.history] == [(Action.CREATE, None), (Action.SUBMIT, "k1")]
    assert draft.status is Status.DRAFT and len(draft.history) == 1  # values are immutable
    assert submitted.step_done_with_key(Action.SUBMIT, "k1") and not submitted.step_done_with_key(Action.SUBMIT, "k2")
    with pytest.raises(KeyUsedForAnotherAction):
        submitted.step_done_with_key(Action.WITHDRAW, "k1")


def test_anonymising_replaces_only_the_erased_person():
    proposal = item(created_by="amb-1", proposed_by="amb-1", authors=["amb-1", "ed"], updated_by="ed",
                    history=[HistoryEntry(action=Action.PROPOSE, status=Status.IN_REVIEW, by="amb-1", at=NOW),
                             HistoryEntry(action=Action.EDIT, status=Status.IN_REVIEW, by="ed", at=NOW)])
    erased = proposal.anonymised("amb-1")
    assert (erased.created_by, erased.proposed_by, erased.updated_by) == ("erased", "erased", "ed")
    assert erased.authors == ["erased", "ed"] and [h.by for h in erased.history] == ["erased", "ed"]
