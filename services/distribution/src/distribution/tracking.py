"""Pure rules of tracked links and engagement reports: codes, UTM, share intents, bots, hashes, signatures."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from datetime import datetime
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from advocacy_common.events import Network

ENGAGEMENT_NAMESPACE = uuid.UUID("0b7e4a52-31c6-4f0e-9a55-6a4d2f1c9e30")
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


def with_utm(url: str, *, network: str, campaign_id: str, code: str) -> str:
    """The content's link with UTM parameters, keeping any query it already has."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not k.startswith("utm_")]
    query += [("utm_source", network), ("utm_medium", "employee_advocacy"), ("utm_campaign", campaign_id),
              ("utm_content", code)]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


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


_PREVIEW_BOTS = re.compile(
    r"linkedinbot|twitterbot|facebookexternalhit|facebot|slackbot|slack-imgproxy|discordbot|telegrambot|"
    r"whatsapp|skypeuripreview|teamsbot|microsoftpreview|googlebot|bingbot|applebot|pinterest|embedly|"
    r"redditbot|mastodon|bot\b|crawler|spider|preview", re.IGNORECASE)


def is_link_preview_bot(user_agent: str | None) -> bool:
    """Link-preview fetchers and crawlers: redirected like anyone, but not counted as clicks."""
    return not user_agent or bool(_PREVIEW_BOTS.search(user_agent))


def visitor_hash(salt: str, code: str, client_ip: str, user_agent: str) -> str:
    """Who clicked, as a salted hash scoped to one link: counts unique visitors, never stores an IP."""
    return hashlib.sha256(f"{salt}\x1f{code}\x1f{client_ip}\x1f{user_agent}".encode()).hexdigest()


def engagement_id(tenant: str, source: str, source_event_id: str) -> str:
    """Deterministic: the same report from the same source is always the same engagement."""
    return str(uuid.uuid5(ENGAGEMENT_NAMESPACE, f"{tenant}\x1f{source}\x1f{source_event_id}"))


def new_connector_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int, raw_body: bytes) -> str:
    """The `X-Advocacy-Signature` value a connector sends: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + raw_body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


class SignatureRejected(Exception):
    pass


def verify_signature(secret: str, header: str | None, raw_body: bytes, now: datetime, tolerance_seconds: int) -> None:
    """Raise SignatureRejected unless the header signs this body within the time window."""
    if not header:
        raise SignatureRejected("The X-Advocacy-Signature header is missing.")
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        fields.setdefault(name, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError):
        raise SignatureRejected("The signature has no valid timestamp t=<unix seconds>.") from None
    if abs(now.timestamp() - timestamp) > tolerance_seconds:
        raise SignatureRejected(f"The signature timestamp is more than {tolerance_seconds} seconds away from now.")
    expected = sign(secret, timestamp, raw_body).split("v1=", 1)[1]
    # Several v1 values are accepted, so a connector can sign with an old and a new secret while rotating.
    if not any(hmac.compare_digest(expected, candidate) for candidate in fields.get("v1", [])):
        raise SignatureRejected("The signature does not match the body.")
