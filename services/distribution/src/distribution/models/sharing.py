"""Shares and tracked links: the domain types and the rules a share must pass (text, limits, time)."""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Collection
from datetime import datetime, time, timedelta
from enum import StrEnum
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field

from advocacy_common.events import Network, QuietHours

from .projections import CharterView, ContentView


class ShareStatus(StrEnum):
    PREPARED = "prepared"
    CONFIRMED = "confirmed"


class Share(BaseModel):
    """A share prepared by an ambassador and, once they posted it themselves, confirmed."""

    id: str
    tenant: str
    version: int = 1
    status: ShareStatus = ShareStatus.PREPARED
    ambassador_id: str
    content_id: str
    campaign_id: str
    team_id: str | None = None
    network: Network
    text: str | None
    tracked_link_code: str
    tracked_link: str
    share_intent_url: str | None
    recommended_at: datetime
    similarity_to_suggested: float
    similarity_to_colleagues: float
    personalized: bool
    # The MinHash signature: all that later comparisons need (never the text); see SignatureBook.
    signature: list[int] = Field(default_factory=list)
    post_url: str | None = None
    created_at: datetime
    confirmed_at: datetime | None = None

    def confirmed(self, post_url: str | None, now: datetime) -> Share:
        return self.model_copy(update={"status": ShareStatus.CONFIRMED, "post_url": post_url, "confirmed_at": now})


class TrackedLink(BaseModel):
    """One per (ambassador, content, network); the code is its id and the public redirect's path."""

    code: str
    tenant: str
    ambassador_id: str
    content_id: str
    campaign_id: str | None = None
    network: str
    team_id: str | None = None
    link_url: str = ""
    confirmed_share_id: str | None = None  # one confirmed share per link
    created_at: datetime | None = None


_CODE_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"  # no 0/o/1/l/i: codes get read aloud and retyped
CODE_LENGTH = 10


def link_code(secret: str, tenant: str, ambassador_id: str, content_id: str, network: str) -> str:
    """One unguessable code per (ambassador, content, network): preparing again finds the same link."""
    digest = hmac.new(secret.encode(), f"{tenant}\x1f{ambassador_id}\x1f{content_id}\x1f{network}".encode(),
                      hashlib.sha256).digest()
    number = int.from_bytes(digest[:10], "big")
    chars = []
    for _ in range(CODE_LENGTH):
        number, index = divmod(number, len(_CODE_ALPHABET))
        chars.append(_CODE_ALPHABET[index])
    return "".join(chars)


def share_intent_url(network: Network, tracked_link: str, text: str) -> str | None:
    """Where the person posts themselves; None for networks without a web share intent (they paste the text)."""
    link = quote(tracked_link, safe="")
    if network is Network.LINKEDIN:
        return f"https://www.linkedin.com/sharing/share-offsite/?url={link}"
    if network is Network.X:
        return f"https://x.com/intent/post?text={quote(text, safe='')}&url={link}"
    if network is Network.FACEBOOK:
        return f"https://www.facebook.com/sharer/sharer.php?u={link}"
    if network is Network.XING:
        return f"https://www.xing.com/spi/shares/new?url={link}"
    return None


def post_text(text: str | None, tracked_link: str) -> str | None:
    """The whole post to copy and paste: the person's own words, then the tracked link."""
    return f"{text}\n\n{tracked_link}" if text else None


def composer_url(network: Network, text: str | None, tracked_link: str) -> str | None:
    """LinkedIn's composer opened with the whole post prefilled (`/feed/?shareActive=true&text=`).

    Undocumented by LinkedIn (it works in browsers today and may stop without notice); share-offsite,
    which is documented, carries only the link, so both are offered, and the text for copy-paste.
    """
    whole = post_text(text, tracked_link)
    if network is not Network.LINKEDIN or whole is None:
        return None
    return f"https://www.linkedin.com/feed/?shareActive=true&text={quote(whole, safe='')}"


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


def recommend_slot(now: datetime, publish_at: datetime, held: Collection[datetime], spacing: timedelta,
                   quiet: QuietHours | None, time_zone: str) -> datetime:
    """The first slot from `now` on a grid anchored at publication that no share holds, outside quiet hours.

    Shares of one content are thereby spread `spacing` apart instead of arriving in a burst. `held` are the
    slots other shares hold (confirmed ones, and prepares not yet timed out): a slot given back by an
    abandoned prepare is recommended again.
    """
    elapsed = max(0.0, (now - publish_at).total_seconds())
    slot = publish_at + math.ceil(elapsed / spacing.total_seconds()) * spacing
    held = set(held)
    for _ in range(len(held) + int(timedelta(days=1) / spacing) + 1):
        if slot not in held and not in_quiet_hours(slot, quiet, time_zone):
            break
        slot += spacing
    return slot
