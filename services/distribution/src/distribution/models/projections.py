"""What distribution knows of other services (projections) and who gets which suggestion.

Pure: the adapters turn documents into these types, the use cases call these rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from advocacy_common.events import AmbassadorProfile, Audience

ERASED = "erased"  # replaces the ambassador id in anything kept after an erasure


def scoped_id(tenant: str, *parts: str) -> str:
    """An id unique across tenants, for what is only unique within one (contents, reports...)."""
    return "/".join((tenant, *parts))


# --- projections -------------------------------------------------------------------

class Projection(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ContentView(Projection):
    """What distribution knows of one content item (latest version)."""

    tenant: str
    content_id: str
    version: int
    campaign_id: str = ""
    title: str = ""
    link_url: str = ""
    suggested_texts: dict[str, str] = Field(default_factory=dict)
    topics: list[str] = Field(default_factory=list)
    language: str = ""
    audience: Audience = Field(default_factory=Audience)
    networks: list[str] = Field(default_factory=list)
    disclosure_line: str | None = None
    publish_at: datetime | None = None
    expires_at: datetime | None = None
    retired: bool = False

    def is_active(self, now: datetime) -> bool:
        if self.retired or self.publish_at is None or self.publish_at > now:
            return False
        return self.expires_at is None or self.expires_at > now


class AmbassadorStatus(StrEnum):
    UNKNOWN = "unknown"  # only a charter acceptance seen so far
    OPTED_IN = "opted_in"
    OPTED_OUT = "opted_out"
    ERASED = "erased"


class AmbassadorView(Projection):
    tenant: str
    ambassador_id: str
    status: AmbassadorStatus = AmbassadorStatus.UNKNOWN
    accepted_charter_version: int = 0
    profile: AmbassadorProfile | None = None

    def audience_on(self, network: str) -> int | None:
        if self.profile is None:
            return None
        sizes = [p.audience_size for p in self.profile.networks if p.network == network]
        return sizes[0] if sizes else None

    def networks(self) -> set[str]:
        return {p.network.value for p in self.profile.networks} if self.profile else set()


class CharterView(Projection):
    current_version: int = 0
    disclosure_required: bool = False
    disclosure_line: str | None = None


# --- who may receive suggestions ---------------------------------------------------------

INELIGIBILITY_REASONS = {
    "not_opted_in": "You have not opted in to the advocacy programme; nothing is suggested until you do.",
    "opted_out": "You opted out of the advocacy programme, so nothing is suggested or accepted from you.",
    "erased": "Your advocacy data was erased.",
    "charter_pending": "A new version of the social-media charter was published; accept it to receive "
                       "suggestions again.",
}


def ineligibility(ambassador: AmbassadorView | None, charter: CharterView) -> str | None:
    """Why this person may not receive suggestions nor share now, or None when they may."""
    if ambassador is not None and ambassador.status is AmbassadorStatus.OPTED_OUT:
        return "opted_out"
    if ambassador is not None and ambassador.status is AmbassadorStatus.ERASED:
        return "erased"
    if ambassador is None or ambassador.status is AmbassadorStatus.UNKNOWN or ambassador.profile is None:
        return "not_opted_in"
    if ambassador.accepted_charter_version < charter.current_version:
        return "charter_pending"
    return None


# --- matching and ranking -----------------------------------------------------------------

def folded(values) -> set[str]:
    """Labels compared across services ignore case and spacing ("R&D" is the content's "r&d")."""
    return {str(value).strip().casefold() for value in values if value}


def targeting_misses(content: ContentView, ambassador: AmbassadorView) -> list[str]:
    """The targeting axes on which this content is not for this ambassador (empty: it is).

    The rule content's `/v1/published` applies too (its `is_targeted`), so both show an item to the same
    people: on every audience axis (teams, locations, languages, personas, topics) an empty list means
    'anyone', otherwise the ambassador's value (or one of their values) must be listed; someone who lists
    languages gets only items in one of them; the item allows one of their networks. The content's own
    `topics` rank the feed (affinity), they do not exclude.
    """
    profile = ambassador.profile
    if profile is None:
        return ["profile"]
    audience = content.audience
    misses = []
    if audience.teams and not folded([profile.team_id]) & folded(audience.teams):
        misses.append("team")
    if audience.locations and not folded([profile.location]) & folded(audience.locations):
        misses.append("location")
    languages = folded(profile.languages)
    if (languages and not folded([content.language]) & languages) \
            or (audience.languages and not languages & folded(audience.languages)):
        misses.append("language")
    if audience.personas and profile.persona not in audience.personas:
        misses.append("persona")
    if audience.topics and not folded(profile.topics) & folded(audience.topics):
        misses.append("topics")
    if not set(content.networks) & ambassador.networks():
        misses.append("network")
    return misses


FRESHNESS_HALF_LIFE_HOURS = 72.0
TOPIC_WEIGHT = 0.7


def feed_score(content: ContentView, ambassador: AmbassadorView, now: datetime) -> float:
    """Topic affinity (share of the content's topics I follow) blended with freshness (halves every 3 days)."""
    mine = folded(ambassador.profile.topics) if ambassador.profile else set()
    topics = folded(content.topics)
    affinity = len(topics & mine) / len(topics) if topics else 0.5
    age_hours = max(0.0, (now - (content.publish_at or now)).total_seconds() / 3600)
    freshness = 0.5 ** (age_hours / FRESHNESS_HALF_LIFE_HOURS)
    return round(TOPIC_WEIGHT * affinity + (1 - TOPIC_WEIGHT) * freshness, 6)


def rank_feed(contents: list[ContentView], ambassador: AmbassadorView, now: datetime,
              shared_content_ids: set[str], scored_at: datetime | None = None) -> list[tuple[float, ContentView]]:
    """Active, targeted, not yet shared by me; best first (ties by content id, for stable pages).

    Scores are computed as of `scored_at` (the first page's time), so that freshness moving on between
    two pages does not reorder them.
    """
    ranked = [(feed_score(c, ambassador, scored_at or now), c) for c in contents
              if c.is_active(now) and c.content_id not in shared_content_ids and not targeting_misses(c, ambassador)]
    ranked.sort(key=lambda pair: (-pair[0], pair[1].content_id))
    return ranked


SCORE_SCALE = 1_000_000  # scores have 6 decimals: as integers they travel exactly in a cursor


@dataclass(frozen=True)
class FeedPosition:
    """Where a feed page ends: the first page's scoring time, and the last item's score and id."""

    scored_at: datetime
    score_micros: int
    content_id: str


def after_position(ranked: list[tuple[float, ContentView]],
                   position: FeedPosition | None) -> list[tuple[float, ContentView]]:
    if position is None:
        return ranked
    last = (-position.score_micros, position.content_id)
    return [(s, c) for s, c in ranked if (-round(s * SCORE_SCALE), c.content_id) > last]


@dataclass(frozen=True)
class Suggestion:
    """One feed item: a content, limited to the networks I use, and its score."""

    content: ContentView
    networks: list[str]
    suggested_texts: dict[str, str]
    score: float
    disclosure_lines: list[str] = field(default_factory=list)  # every line a share of it must carry


def suggestion(score: float, content: ContentView, ambassador: AmbassadorView,
               disclosure_lines: list[str]) -> Suggestion:
    mine = ambassador.networks()
    return Suggestion(content=content, networks=[n for n in content.networks if n in mine],
                      suggested_texts={n: t for n, t in content.suggested_texts.items() if n in mine}, score=score,
                      disclosure_lines=disclosure_lines)


@dataclass(frozen=True)
class FeedPage:
    items: list[Suggestion] = field(default_factory=list)
    next_cursor: str | None = None
    reason: str | None = None  # why the feed is empty on purpose (see INELIGIBILITY_REASONS)

    @property
    def message(self) -> str | None:
        return INELIGIBILITY_REASONS[self.reason] if self.reason else None


class CommentTally(Projection):
    """Comments and replies reported on one share."""

    tenant: str
    share_id: str
    ambassador_id: str
    content_id: str
    network: str
    comments: int = 0
    replies: int = 0

    @property
    def awaiting(self) -> int:
        return self.comments - self.replies
