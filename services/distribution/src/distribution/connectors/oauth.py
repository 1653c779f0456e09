"""OAuth 2.0 authorization code flow with PKCE (RFC 7636, S256) and `state` (RFC 6749 §10.12), pure.

Only read scopes are ever asked for. LinkedIn: `openid profile` (OpenID Connect, to learn the member's id
through /v2/userinfo) and `r_member_postAnalytics` (the member's own post analytics). Never
`w_member_social` nor any other posting scope: the platform never posts (the test pins this list).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import urlencode

LINKEDIN_SCOPES = ("openid", "profile", "r_member_postAnalytics")
POSTING_SCOPES = frozenset({"w_member_social", "w_organization_social", "w_member_social_feed",
                            "tweet.write", "offline.access"})


def new_state() -> str:
    """256 random bits: binds the callback to the person who started it (and is the pending record's id)."""
    return secrets.token_urlsafe(32)


def new_code_verifier() -> str:
    """43 to 128 characters of [A-Z a-z 0-9 - . _ ~] (RFC 7636 §4.1); 64 random bytes give 86."""
    return secrets.token_urlsafe(64)


def code_challenge(verifier: str) -> str:
    """S256: BASE64URL(SHA256(verifier)) without padding (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorization_url(authorize_endpoint: str, *, client_id: str, redirect_uri: str, scopes: tuple[str, ...],
                      state: str, verifier: str) -> str:
    """Where the person's browser goes to consent; refuses to build one with a posting scope."""
    posting = POSTING_SCOPES.intersection(scopes)
    if posting:
        raise ValueError(f"posting scopes are never requested: {sorted(posting)}")
    query = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
             "scope": " ".join(scopes), "state": state, "code_challenge": code_challenge(verifier),
             "code_challenge_method": "S256"}
    return f"{authorize_endpoint}?{urlencode(query)}"


def granted_scopes(raw: str | None, requested: tuple[str, ...]) -> list[str]:
    """The scopes the token endpoint says it granted (LinkedIn: comma-separated; RFC 6749: spaces)."""
    if not raw:
        return list(requested)
    return [scope for scope in raw.replace(",", " ").split() if scope]
