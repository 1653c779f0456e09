"""What distribution knows of other services (projections) and who gets which suggestion.

Pure: the adapters turn documents into these types, the use cases call these rules.
"""

from __future__ import annotations

import heapq
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


@dataclass(frozen=True)
class Person:
    """Who holds a login now and what the feed needs of them: their projection (None when distribution knows
    nothing of them) and the contents they confirmed a share of."""

    ambassador_id: str
    ambassador: AmbassadorView | None
    shared_content_ids: frozenset[str] = frozenset()


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
    `topics` rank the feed (affinity), they do not exclude. (The rule itself is `Targeting.misses`.)
    """
    recipient = Recipient.of(ambassador)
    return Targeting.of(content).misses(recipient) if recipient is not None else ["profile"]


@dataclass(frozen=True, slots=True)
class Recipient:
    """An ambassador's profile as targeting compares it, folded once (per feed request, not per item)."""

    team: frozenset[str]
    location: frozenset[str]
    languages: frozenset[str]
    persona: str
    topics: frozenset[str]
    networks: frozenset[str]

    @classmethod
    def of(cls, ambassador: AmbassadorView) -> Recipient | None:
        profile = ambassador.profile
        if profile is None:
            return None
        return cls(team=frozenset(folded([profile.team_id])), location=frozenset(folded([profile.location])),
                   languages=frozenset(folded(profile.languages)), persona=profile.persona,
                   topics=frozenset(folded(profile.topics)), networks=frozenset(ambassador.networks()))


@dataclass(frozen=True, slots=True)
class Targeting:
    """One content's audience, folded once (the feed's snapshot keeps one per content): the targeting rule."""

    teams: frozenset[str]
    locations: frozenset[str]
    language: frozenset[str]  # the content's own language, folded (empty when it has none)
    languages: frozenset[str]
    personas: frozenset[str]
    topics: frozenset[str]
    networks: frozenset[str]

    @classmethod
    def of(cls, content: ContentView) -> Targeting:
        audience = content.audience
        return cls(teams=frozenset(folded(audience.teams)), locations=frozenset(folded(audience.locations)),
                   language=frozenset(folded([content.language])), languages=frozenset(folded(audience.languages)),
                   personas=frozenset(audience.personas), topics=frozenset(folded(audience.topics)),
                   networks=frozenset(content.networks))

    def misses(self, me: Recipient) -> list[str]:
        misses = []
        if self.teams and not me.team & self.teams:
            misses.append("team")
        if self.locations and not me.location & self.locations:
            misses.append("location")
        if (me.languages and not self.language & me.languages) or (self.languages and not me.languages & self.languages):
            misses.append("language")
        if self.personas and me.persona not in self.personas:
            misses.append("persona")
        if self.topics and not me.topics & self.topics:
            misses.append("topics")
        if not self.networks & me.networks:
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
MAX_AFFINITY_SCORE = TOPIC_WEIGHT  # affinity is at most 1
RANKING_STARTS_KEPT = 4096  # per snapshot: distinct topic sets of the tenant's ambassadors (~80 lists each)


class FeedIndex:
    """A tenant's published contents, arranged so that one page of `rank_feed` costs about the page, not
    the number of contents.

    Built once per snapshot of the contents: one list per distinct set of topics, freshest first, each
    entry with its audience folded (`Targeting`) and its publication time as a number. For one
    ambassador, every content of a list has the same topic affinity, so its score is that affinity's share
    plus its freshness (monotone in `publish_at`, whatever the scoring time): a page is a merge of the lists
    by score that stops once no entry left can beat the page. Which entries target the ambassador is one
    bit set (`Audiences`), so the merge visits only those (most of a tenant's contents target someone
    else: ~70 % of the entries a page looked at were misses). Same results, order and scores as
    `rank_feed` then `after_position` (a unit test compares them). Cost: the number of distinct topic sets
    plus the entries of the page, not the number of contents.
    """

    def __init__(self, contents: list[ContentView]):
        self.by_topics: dict[frozenset[str], list[_Entry]] = {}
        for content in sorted(contents, key=_published_key, reverse=True):  # freshest first
            self.by_topics.setdefault(frozenset(folded(content.topics)), []).append(_Entry(content))
        self.size = len(contents)
        # Bit `start + i` of a set is the list's entry i: each list's entries are consecutive bits.
        self._lists: list[tuple[frozenset[str], list[_Entry], int, int]] = []
        start = 0
        for topics, entries in self.by_topics.items():
            self._lists.append((topics, entries, start, (1 << len(entries)) - 1))
            start += len(entries)
        self._audiences = Audiences([entry.targeting for _, entries, _, _ in self._lists for entry in entries])
        self._starts: dict[frozenset[str], tuple[list[float], list[tuple[float, int, int]]]] = {}

    def _ranking_start(self, topics: frozenset[str]) -> tuple[list[float], list[tuple[float, int, int]]]:
        """For someone following `topics`: each list's affinity share, and the heap of the lists' ceilings.

        The same for everyone with the same topics (a few hundred sets), so kept per snapshot: building
        them for every list on every request was most of a page's cost (~80 lists at 5,000 contents)."""
        start = self._starts.get(topics)
        if start is None:
            # A content's own topics only rank (see `targeting_misses`): no list is skipped for them.
            weights = [TOPIC_WEIGHT * (len(listed & topics) / len(listed) if listed else 0.5)  # as in `feed_score`
                       for listed, _, _, _ in self._lists]
            # Each list enters the heap with its ceiling (its affinity's share plus the highest freshness, 1), and
            # its first entry's bound is computed only when that ceiling comes up: most lists never get there.
            ceilings = [(-(weight + (1 - TOPIC_WEIGHT)), n, -1) for n, weight in enumerate(weights)]
            heapq.heapify(ceilings)
            if len(self._starts) >= RANKING_STARTS_KEPT:
                self._starts.clear()
            start = self._starts[topics] = (weights, ceilings)
        return start

    def __len__(self) -> int:
        return self.size

    def page(self, ambassador: AmbassadorView, now: datetime, shared_content_ids: set[str] | frozenset[str],
             scored_at: datetime, position: FeedPosition | None, limit: int) -> list[tuple[float, ContentView]]:
        """The first `limit` entries of `after_position(rank_feed(...), position)`."""
        me = Recipient.of(ambassador)
        if me is None:
            return []  # no profile: targeted to nobody (`targeting_misses`)
        targeted = self._audiences.targeting(me)
        weights, ceilings = self._ranking_start(me.topics)
        # Per list, once its ceiling came up: its entries that target me.
        mine_of = [0] * len(weights)
        scored = scored_at.timestamp()

        def bound(n: int, at: int) -> float:
            # In floating seconds: an upper bound for the heap (within 1e-9 of the score, see the break below).
            published = self._lists[n][1][at].published
            age_hours = max(0.0, (scored - published) / 3600) if published is not None else 0.0
            return weights[n] + (1 - TOPIC_WEIGHT) * 0.5 ** (age_hours / FRESHNESS_HALF_LIFE_HOURS)

        heap = ceilings.copy()  # a heap already: a copy is one too
        last = (-position.score_micros, position.content_id) if position else None
        found: list[tuple[float, ContentView]] = []
        while heap:
            negative_bound, n, at = heapq.heappop(heap)
            if len(found) >= limit:
                found.sort(key=lambda pair: (-pair[0], pair[1].content_id))
                del found[limit:]
                # Scores are rounded to 6 decimals: an entry left can tie the page's last only within that.
                if -negative_bound + 1e-6 < found[-1][0]:
                    break
            if at < 0:  # the list's ceiling: now its first entry that targets me, by its own bound
                _, _, start, full = self._lists[n]
                mine = mine_of[n] = (targeted >> start) & full
                if mine:
                    first = _lowest_bit(mine)
                    heapq.heappush(heap, (-bound(n, first), n, first))
                continue
            weight, entries, mine = weights[n], self._lists[n][1], mine_of[n]
            after = mine >> (at + 1)
            if after:
                following = at + 1 + _lowest_bit(after)
                heapq.heappush(heap, (-bound(n, following), n, following))
            content = entries[at].content
            if not content.is_active(now) or content.content_id in shared_content_ids:
                continue
            # Exactly `feed_score` (same operations on the same values), without folding again.
            score = round(weight + (1 - TOPIC_WEIGHT) * _freshness(content, scored_at), 6)
            if last is not None and (-round(score * SCORE_SCALE), content.content_id) <= last:
                continue
            found.append((score, content))
        found.sort(key=lambda pair: (-pair[0], pair[1].content_id))
        return found[:limit]


def _lowest_bit(bits: int) -> int:
    return (bits & -bits).bit_length() - 1


class Audiences:
    """Which of a list of audiences (`Targeting`) target one ambassador, as one integer whose bit i says
    whether the i-th does: `Targeting.misses`, axis by axis, as bit sets built once per snapshot. A bit
    operation on a few thousand bits costs about what one `misses` call does, and a recipient needs ~15."""

    def __init__(self, audiences: list[Targeting]):
        self.all = (1 << len(audiences)) - 1
        self.teams, self.locations = _BitsByValue(), _BitsByValue()
        self.languages, self.own_language = _BitsByValue(), _BitsByValue()  # audience's, and content's own
        self.personas, self.topics, self.networks = _BitsByValue(), _BitsByValue(), _BitsByValue()
        for i, audience in enumerate(audiences):
            bit = 1 << i
            self.teams.add(bit, audience.teams)
            self.locations.add(bit, audience.locations)
            self.languages.add(bit, audience.languages)
            self.own_language.add(bit, audience.language, empty_is_anyone=False)
            self.personas.add(bit, audience.personas)
            self.topics.add(bit, audience.topics)
            self.networks.add(bit, audience.networks, empty_is_anyone=False)

    def targeting(self, me: Recipient) -> int:
        """Bit i set when audience i misses on no axis (`not audiences[i].misses(me)`)."""
        bits = self.teams.allowing(me.team) & self.locations.allowing(me.location)
        bits &= self.personas.allowing((me.persona,)) & self.topics.allowing(me.topics)
        bits &= self.networks.allowing(me.networks)
        # Someone who lists languages gets only items in one of them; an item listing languages needs one.
        if me.languages:
            bits &= self.own_language.allowing(me.languages)
        return bits & self.languages.allowing(me.languages)


class _BitsByValue:
    """One targeting axis: per value, the audiences listing it; and those listing none (open to anyone)."""

    __slots__ = ("by_value", "anyone")

    def __init__(self) -> None:
        self.by_value: dict[str, int] = {}
        self.anyone = 0

    def add(self, bit: int, values: frozenset[str], empty_is_anyone: bool = True) -> None:
        if not values and empty_is_anyone:
            self.anyone |= bit
        for value in values:
            self.by_value[value] = self.by_value.get(value, 0) | bit

    def allowing(self, mine) -> int:
        """The audiences open to anyone on this axis or listing one of `mine`."""
        bits = self.anyone
        for value in mine:
            bits |= self.by_value.get(value, 0)
        return bits


class _Entry:
    __slots__ = ("content", "targeting", "published")

    def __init__(self, content: ContentView):
        self.content = content
        self.targeting = Targeting.of(content)
        self.published = content.publish_at.timestamp() if content.publish_at else None


def _published_key(content: ContentView) -> float:
    return content.publish_at.timestamp() if content.publish_at else float("inf")


def _freshness(content: ContentView, scored_at: datetime) -> float:
    age_hours = max(0.0, (scored_at - (content.publish_at or scored_at)).total_seconds() / 3600)
    return 0.5 ** (age_hours / FRESHNESS_HALF_LIFE_HOURS)


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
               disclosure_lines: list[str], mine: set[str] | frozenset[str] | None = None) -> Suggestion:
    """`mine`: the ambassador's networks when the caller has them already (a page computes them once)."""
    mine = ambassador.networks() if mine is None else mine
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
