"""Domain types and pure rules of distribution: matching, authenticity, share checks, time slots.

No I/O here: the store turns documents into these types, the use cases call these rules.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import StrEnum
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field

from advocacy_common.events import AmbassadorProfile, Audience, Network, QuietHours

ERASED = "erased"  # replaces the ambassador id in anything kept after an erasure


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

    An empty audience list means 'anyone' on that axis; topics exclude only when both
    sides name topics and none is shared.
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
    if languages and (not folded([content.language]) & languages
                      or (audience.languages and not languages & folded(audience.languages))):
        misses.append("language")
    if audience.personas and profile.persona not in audience.personas:
        misses.append("persona")
    if content.topics and profile.topics and not folded(content.topics) & folded(profile.topics):
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


def after_cursor(ranked: list[tuple[float, ContentView]], cursor: list | None) -> list[tuple[float, ContentView]]:
    if not cursor:
        return ranked
    last_score, last_id = float(cursor[-2]), str(cursor[-1])
    return [(s, c) for s, c in ranked if (-s, c.content_id) > (-last_score, last_id)]


# --- authenticity -------------------------------------------------------------------------

SHINGLE_SIZE = 3
MINHASH_PERMUTATIONS = 128
_MERSENNE = (1 << 61) - 1
_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_TAG = re.compile(r"[#@][\w-]+")
_WORD = re.compile(r"[^\W_]+")
# Fixed seed: signatures stored today must stay comparable with those computed tomorrow.
_PERMUTATIONS = [(random.Random(i).randrange(1, _MERSENNE), random.Random(-i - 1).randrange(0, _MERSENNE))
                 for i in range(MINHASH_PERMUTATIONS)]


def normalized_words(text: str, ignore: tuple[str, ...] = ()) -> list[str]:
    """Words without case, accents, punctuation, URLs, hashtags, mentions or the given phrases."""
    for phrase in ignore:
        if phrase:
            text = re.sub(re.escape(phrase), " ", text, flags=re.IGNORECASE)
    text = _TAG.sub(" ", _URL.sub(" ", text))
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _WORD.findall(bare)


def shingles(words: list[str], size: int = SHINGLE_SIZE) -> set[str]:
    if len(words) < size:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i:i + size]) for i in range(len(words) - size + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def _shingle_hash(shingle: str) -> int:
    return int.from_bytes(hashlib.blake2b(shingle.encode(), digest_size=8).digest(), "big")


def minhash(shingle_set: set[str]) -> list[int]:
    """A MinHash signature: its agreement with another estimates the Jaccard similarity of the two sets."""
    if not shingle_set:
        return []
    hashes = [_shingle_hash(s) for s in shingle_set]
    return [min((a * h + b) % _MERSENNE for h in hashes) for a, b in _PERMUTATIONS]


def minhash_similarity(a: list[int], b: list[int]) -> float:
    if not a or not b or len(a) != len(b):
        return 0.0
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)


class AuthenticityPolicy(BaseModel):
    """Per-tenant thresholds; defaults justified in the README from the French and English corpus."""

    max_similarity_to_suggested: float = Field(default=0.4, ge=0, le=1)
    max_similarity_to_colleagues: float = Field(default=0.4, ge=0, le=1)
    near_copy_action: Literal["refuse", "flag"] = Field(
        default="refuse", description="refuse: a near-copy is a 422; flag: accepted but marked not personalised")


@dataclass(frozen=True)
class AuthenticityScores:
    to_suggested: float
    to_colleagues: float
    signature: list[int]

    def personalized(self, policy: AuthenticityPolicy) -> bool:
        return (self.to_suggested <= policy.max_similarity_to_suggested
                and self.to_colleagues <= policy.max_similarity_to_colleagues)


def score_authenticity(text: str, suggested: list[str], colleague_signatures: list[list[int]],
                       ignore: tuple[str, ...] = ()) -> AuthenticityScores:
    """Similarity of my text to the suggested ones (exact shingle Jaccard, the closest of the content's
    suggested texts) and to colleagues' posts of the same content (MinHash, the closest one)."""
    mine = shingles(normalized_words(text, ignore))
    signature = minhash(mine)
    to_suggested = max((jaccard(mine, shingles(normalized_words(s, ignore))) for s in suggested), default=0.0)
    to_colleagues = max((minhash_similarity(signature, other) for other in colleague_signatures), default=0.0)
    return AuthenticityScores(round(to_suggested, 4), round(to_colleagues, 4), signature)


# --- share checks ---------------------------------------------------------------------------

# Characters a post may hold; on X a link always counts as 23 characters and we append one.
NETWORK_TEXT_LIMITS = {Network.LINKEDIN: 3000, Network.X: 280 - 24, Network.FACEBOOK: 63206,
                       Network.INSTAGRAM: 2200, Network.TIKTOK: 2200, Network.XING: 3000}


class Refusal(Exception):
    """A share that cannot go ahead: which rule, in words an employee understands."""

    def __init__(self, rule: str, message: str, score: float | None = None, threshold: float | None = None):
        super().__init__(message)
        self.rule, self.message, self.score, self.threshold = rule, message, score, threshold


def required_disclosures(content: ContentView, charter: CharterView) -> list[str]:
    lines = [content.disclosure_line] if content.disclosure_line else []
    if charter.disclosure_required and charter.disclosure_line:
        lines.append(charter.disclosure_line)
    return lines


def check_text(text: str, network: Network, disclosures: list[str]) -> None:
    limit = NETWORK_TEXT_LIMITS[network]
    if len(text) > limit:
        raise Refusal("length_limit", f"Your text has {len(text)} characters; {network.value} allows {limit} here. "
                      "Please shorten it.", score=float(len(text)), threshold=float(limit))
    for line in disclosures:
        if line.casefold() not in text.casefold():
            raise Refusal("disclosure_missing", f"Please include \"{line}\" so your audience knows you work here.")


def check_weekly_limit(shares_last_7_days: int, limit: int) -> None:
    if shares_last_7_days >= limit:
        raise Refusal("weekly_limit", f"You already shared {shares_last_7_days} posts in the last 7 days, the limit "
                      f"you chose is {limit}. Take a break and come back later.",
                      score=float(shares_last_7_days), threshold=float(limit))


def check_authenticity(scores: AuthenticityScores, policy: AuthenticityPolicy) -> None:
    if policy.near_copy_action == "flag":
        return
    if scores.to_suggested > policy.max_similarity_to_suggested:
        raise Refusal("too_similar_to_suggested",
                      f"Your text is {scores.to_suggested:.0%} identical to the suggested text (at most "
                      f"{policy.max_similarity_to_suggested:.0%} allowed). Say it in your own words: why does "
                      "it matter to you?", scores.to_suggested, policy.max_similarity_to_suggested)
    if scores.to_colleagues > policy.max_similarity_to_colleagues:
        raise Refusal("too_similar_to_colleagues",
                      f"Your text is {scores.to_colleagues:.0%} identical to what a colleague already posted (at "
                      f"most {policy.max_similarity_to_colleagues:.0%} allowed). Add your own angle so the posts "
                      "don't look copied.", scores.to_colleagues, policy.max_similarity_to_colleagues)


# --- time: quiet hours and slots ---------------------------------------------------------------

def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _clock(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def in_quiet_hours(moment: datetime, quiet: QuietHours | None, time_zone: str) -> bool:
    if quiet is None:
        return False
    start, end, local = _clock(quiet.start), _clock(quiet.end), moment.astimezone(_zone(time_zone)).time()
    if start == end:
        return False
    return start <= local < end if start < end else (local >= start or local < end)


def recommend_slot(now: datetime, publish_at: datetime, future_slots_taken: int, spacing: timedelta,
                   quiet: QuietHours | None, time_zone: str) -> datetime:
    """The next free slot on a grid anchored at publication, after those already recommended, outside quiet hours.

    Shares of one content are thereby spread `spacing` apart instead of arriving in a burst.
    """
    elapsed = max(0.0, (now - publish_at).total_seconds())
    first_free = math.ceil(elapsed / spacing.total_seconds())
    slot = publish_at + (first_free + future_slots_taken) * spacing
    for _ in range(int(timedelta(days=1) / spacing) + 1):
        if not in_quiet_hours(slot, quiet, time_zone):
            break
        slot += spacing
    return slot
