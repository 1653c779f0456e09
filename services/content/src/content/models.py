"""The content domain: the editorial workflow, validation rules, targeting, event snapshots.

Pure rules on plain values and stored documents; no I/O. The store and the
service layer call these so that one function holds each rule.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from advocacy_common.events import (
    Audience, ContentPublished, ContentRetired, ContentSnapshot, ContentUpdated, MediaRef, Network, Objective,
)

# Each network's limit on a post's text, in characters (what the network's composer accepts).
NETWORK_TEXT_LIMITS: dict[Network, int] = {
    Network.LINKEDIN: 3000,
    Network.X: 280,
    Network.FACEBOOK: 63206,
    Network.INSTAGRAM: 2200,
    Network.TIKTOK: 2200,
    Network.XING: 3000,
}
MAX_URL_LENGTH = 2048
LANGUAGE_TAG = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
# The proposer's name is personal data: after an erasure only this stays.
ERASED = "erased"
# In the stored targeting keys, an axis left empty by the editor matches everybody.
ANYONE = "*"
AUDIENCE_AXES = ("teams", "locations", "languages", "personas")


class Status(StrEnum):
    DRAFT = "draft"
    IN_REVIEW = "in_review"
    APPROVED = "approved"
    PUBLISHED = "published"
    RETIRED = "retired"


class Action(StrEnum):
    CREATE = "create"
    PROPOSE = "propose"
    EDIT = "edit"
    SUBMIT = "submit"
    APPROVE = "approve"
    REJECT = "reject"
    WITHDRAW = "withdraw"
    PUBLISH = "publish"
    EXPIRE = "expire"
    CAMPAIGN_CHANGE = "campaign_change"


class RetireReason(StrEnum):
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"


# action -> (statuses it may start from, status it leads to)
TRANSITIONS: dict[Action, tuple[frozenset[Status], Status]] = {
    Action.SUBMIT: (frozenset({Status.DRAFT}), Status.IN_REVIEW),
    Action.APPROVE: (frozenset({Status.IN_REVIEW}), Status.APPROVED),
    Action.REJECT: (frozenset({Status.IN_REVIEW}), Status.DRAFT),
    Action.WITHDRAW: (frozenset({Status.DRAFT, Status.IN_REVIEW, Status.APPROVED, Status.PUBLISHED}),
                      Status.RETIRED),
    Action.PUBLISH: (frozenset({Status.APPROVED}), Status.PUBLISHED),
    Action.EXPIRE: (frozenset({Status.APPROVED, Status.PUBLISHED}), Status.RETIRED),
}
# Campaign fields that travel in every snapshot: a change re-announces the published items.
SNAPSHOT_CAMPAIGN_FIELDS = ("objective", "disclosure_line")
EDITABLE = frozenset({Status.DRAFT, Status.IN_REVIEW, Status.APPROVED, Status.PUBLISHED})


class RuleViolation(ValueError):
    """Input that breaks a rule; `field` names the offending field for the 422."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class InvalidTransition(Exception):
    def __init__(self, action: Action, status: Status):
        super().__init__(f"Cannot {action} an item that is {status}.")
        self.action = action
        self.status = status


class FourEyesViolation(Exception):
    """A reviewer tried to approve an item they wrote while the tenant requires a second person."""


def next_status(action: Action, current: Status) -> Status:
    allowed_from, target = TRANSITIONS[action]
    if current not in allowed_from:
        raise InvalidTransition(action, current)
    return target


def status_after_edit(current: Status) -> Status:
    """An edit keeps the status, except that approved content goes back to review:
    nothing a second person has not seen may publish itself."""
    if current not in EDITABLE:
        raise InvalidTransition(Action.EDIT, current)
    return Status.IN_REVIEW if current is Status.APPROVED else current


def check_approver(approver: str, authors: Iterable[str], four_eyes: bool) -> None:
    if four_eyes and approver in set(authors):
        raise FourEyesViolation("Four-eyes rule: you cannot approve an item you wrote or edited.")


# --- validation of single values ----------------------------------------------------

def check_web_url(value: str) -> str:
    """Only absolute http(s) links with a host: no javascript:, data:, file: or relative links."""
    value = value.strip()
    if len(value) > MAX_URL_LENGTH:
        raise ValueError(f"must be at most {MAX_URL_LENGTH} characters")
    if any(ch.isspace() for ch in value):
        raise ValueError("must not contain spaces")
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http or https URL")
    return value


def check_language(value: str) -> str:
    if not LANGUAGE_TAG.match(value):
        raise ValueError("must be a language tag such as 'en' or 'fr-CA'")
    return value


def normalize_labels(values: Iterable[str]) -> list[str]:
    """Topics, teams and locations compare case-insensitively; keep one of each, in order."""
    seen: dict[str, None] = {}
    for value in values:
        label = value.strip().lower()
        if not label:
            raise ValueError("must not contain empty values")
        seen.setdefault(label, None)
    return list(seen)


def to_stored_time(value: datetime) -> datetime:
    """UTC at millisecond precision: what BSON keeps, so a value reads back equal."""
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


# --- rules across fields ------------------------------------------------------------

def check_content(item: Mapping[str, Any], campaign: Mapping[str, Any]) -> None:
    """Rules that involve several fields of an item (stored form) and its campaign."""
    networks = set(item["networks"])
    if not networks:
        raise RuleViolation("networks", "at least one network is required")
    for network, text in item["suggested_texts"].items():
        field = f"suggested_texts.{network}"
        if network not in networks:
            raise RuleViolation(field, "this network is not among the allowed networks")
        limit = NETWORK_TEXT_LIMITS[Network(network)]
        if len(text) > limit:
            raise RuleViolation(field, f"is {len(text)} characters; {network} allows {limit}")
        disclosure = campaign.get("disclosure_line")
        if disclosure and disclosure.lower() not in text.lower():
            raise RuleViolation(field, f"must carry the campaign's disclosure line {disclosure!r}")
    publish_at, expires_at = item.get("publish_at"), item.get("expires_at")
    if publish_at is not None:
        day = publish_at.date().isoformat()
        if not campaign["starts_on"] <= day <= campaign["ends_on"]:
            raise RuleViolation("publish_at", f"must fall within the campaign ({campaign['starts_on']} to "
                                              f"{campaign['ends_on']})")
    if expires_at is not None and publish_at is not None and expires_at <= publish_at:
        raise RuleViolation("expires_at", "must be after publish_at")


def check_campaign_period(starts_on: date, ends_on: date) -> None:
    if ends_on < starts_on:
        raise RuleViolation("ends_on", "must not be before starts_on")


def check_ready_for_review(item: Mapping[str, Any]) -> None:
    """What a reviewer needs to see before an item can be scheduled."""
    if item.get("publish_at") is None:
        raise RuleViolation("publish_at", "is required before the item goes to review")
    if not item["suggested_texts"]:
        raise RuleViolation("suggested_texts", "at least one suggested text is required before review")


# --- targeting ----------------------------------------------------------------------

def targeting_keys(audience: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """The stored form the feed query matches with `$in`: an empty axis becomes 'anyone'."""
    return {axis: list(audience.get(axis) or []) or [ANYONE] for axis in AUDIENCE_AXES}


def profile_values(profile: Mapping[str, Any]) -> dict[str, list[str]]:
    """An ambassador's value on each axis, lower-cased like the audience labels."""
    return {
        "teams": [profile["team_id"].lower()] if profile.get("team_id") else [],
        "locations": [profile["location"].lower()] if profile.get("location") else [],
        "languages": [language.lower() for language in profile.get("languages") or []],
        "personas": [profile["persona"]] if profile.get("persona") else [],
    }


def is_targeted(audience: Mapping[str, list[str]], profile: Mapping[str, Any]) -> bool:
    """On every axis the audience is open, or it names one of the ambassador's values."""
    keys, values = targeting_keys(audience), profile_values(profile)
    return all(ANYONE in keys[axis] or set(keys[axis]) & set(values[axis]) for axis in AUDIENCE_AXES)


# --- events ---------------------------------------------------------------------------

EVENT_ID_NAMESPACE = uuid.UUID("0f5b8a52-3c1e-4d7a-9a57-5c2e8f1d6b40")


def event_id(tenant: str, event: ContentSnapshot | ContentRetired) -> str:
    """The same transition of the same item at the same version always has the same event id.

    Two writers that both believe they made a transition (a retried write, or two
    schedulers on a server whose conditional updates are not atomic, as FerretDB 1.x)
    then produce one event as far as consumers, who dedupe by id, can tell.
    """
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{tenant}/{event.content_id}/{event.version}/{event.type_name}"))


def snapshot_fields(item: Mapping[str, Any], campaign: Mapping[str, Any], version: int) -> dict[str, Any]:
    return {
        "content_id": item["_id"],
        "version": version,
        "campaign_id": item["campaign_id"],
        "objective": Objective(campaign["objective"]),
        "title": item["title"],
        "link_url": item["link_url"],
        "media": [MediaRef(**media) for media in item["media"]],
        "suggested_texts": {Network(network): text for network, text in item["suggested_texts"].items()},
        "topics": item["topics"],
        "language": item["language"],
        "audience": Audience(**item["audience"]),
        "networks": [Network(network) for network in item["networks"]],
        "disclosure_line": campaign.get("disclosure_line"),
        "publish_at": item["publish_at"],
        "expires_at": item.get("expires_at"),
    }


def published_event(item: Mapping[str, Any], campaign: Mapping[str, Any], version: int) -> ContentSnapshot:
    return ContentPublished(**snapshot_fields(item, campaign, version))


def updated_event(item: Mapping[str, Any], campaign: Mapping[str, Any], version: int) -> ContentSnapshot:
    return ContentUpdated(**snapshot_fields(item, campaign, version))


def retired_event(item: Mapping[str, Any], version: int, reason: RetireReason, at: datetime) -> ContentRetired:
    return ContentRetired(content_id=item["_id"], version=version, campaign_id=item["campaign_id"],
                          reason=reason.value, retired_at=at)
