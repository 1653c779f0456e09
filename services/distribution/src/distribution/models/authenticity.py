"""Authenticity: how close a text is to the suggested one and to colleagues' posts of the same content.

Texts become sets of word 3-shingles. Against the suggested texts the Jaccard similarity is exact; against
colleagues we keep only a MinHash signature per confirmed share (datasketch), in the content's signature
book, which preparation and confirmation read by id and compare with in one vectorised pass.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

import numpy as np
from datasketch import MinHash
from datasketch.hashfunc import sha1_hash32
from pydantic import BaseModel, ConfigDict, Field

from .sharing import Refusal

SHINGLE_SIZE = 3
# Signatures are stored and compared across processes and releases: the number of permutations, the seed
# and the hash function are part of the stored format. Changing any of them makes old signatures useless.
MINHASH_PERMUTATIONS = 128
MINHASH_SEED = 1
MINHASH_SCHEME = "affine32"  # datasketch >= 2.0's default, named so that an upgrade cannot change it silently
_TEMPLATE = MinHash(num_perm=MINHASH_PERMUTATIONS, seed=MINHASH_SEED, hashfunc=sha1_hash32, scheme=MINHASH_SCHEME)
_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_TAG = re.compile(r"[#@][\w-]+")
_WORD = re.compile(r"[^\W_]+")


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


def minhash(shingle_set: set[str]) -> list[int]:
    """A MinHash signature (its hash values): agreement with another estimates the Jaccard similarity."""
    if not shingle_set:
        return []
    signature = MinHash(num_perm=MINHASH_PERMUTATIONS, seed=MINHASH_SEED, hashfunc=sha1_hash32,
                        permutations=_TEMPLATE.permutations, scheme=MINHASH_SCHEME)
    signature.update_batch([s.encode() for s in sorted(shingle_set)])
    return [int(value) for value in signature.hashvalues]


def minhash_similarity(a: list[int], b: list[int]) -> float:
    if not a or not b or len(a) != len(b):
        return 0.0
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)


def colleague_key(secret: str, tenant: str, ambassador_id: str, content_id: str) -> str:
    """Whose post an entry of the signature book is, without the person's id (erasure removes that id from
    everything kept; this keyed hash, like a tracked-link code, names no one without the service's secret).
    One person's posts of one content on several networks are never compared with each other."""
    message = f"{tenant}\x1f{ambassador_id}\x1f{content_id}".encode()
    return hmac.new(secret.encode(), b"colleague\x1f" + message, hashlib.sha256).hexdigest()[:32]


SIGNATURE_BYTES = 4 * MINHASH_PERMUTATIONS  # a packed signature


def packed(signature: list[int]) -> bytes:
    """A signature as 128 little-endian 32-bit values (datasketch's affine32 hash values are below 2**32)."""
    return np.array(signature, dtype="<u4").tobytes()


class BookEntry(BaseModel):
    """One confirmed share in its content's signature book: all a later comparison needs (never the text)."""

    model_config = ConfigDict(frozen=True)

    share_id: str
    colleague: str  # colleague_key of its author
    signature: bytes  # packed(...)


class SignatureBook(BaseModel):
    """Every confirmed share's signature of one content, as read from storage.

    Storage keeps it in chunks of one document each; `last_chunk`, `last_chunk_size` and `last_version`
    (0: no chunk yet) say where the next entry goes, so that an addition is a compare-and-set on one
    document read by `_id`: of two confirmations racing, the second reads again and sees the first.
    """

    tenant: str
    content_id: str
    entries: list[BookEntry] = Field(default_factory=list)
    last_chunk: int = 0
    last_chunk_size: int = 0
    last_version: int = 0

    def holds(self, share_id: str) -> bool:
        return any(entry.share_id == share_id for entry in self.entries)

    def colleagues_of(self, colleague: str) -> np.ndarray:
        """Signatures of the others' posts (not those of `colleague`, the caller), one row each."""
        rows = b"".join(entry.signature for entry in self.entries
                        if entry.colleague != colleague and len(entry.signature) == SIGNATURE_BYTES)
        return np.frombuffer(rows, dtype="<u4").reshape(-1, MINHASH_PERMUTATIONS)


def closest_colleague(signature: list[int], others: np.ndarray | list[list[int]]) -> float:
    """The highest MinHash similarity of `signature` to any of `others` (one vectorised pass: books hold
    thousands of signatures)."""
    if len(signature) != MINHASH_PERMUTATIONS or len(others) == 0:
        return 0.0
    matrix = np.asarray(others, dtype=np.uint32).reshape(-1, MINHASH_PERMUTATIONS)
    matches = (matrix == np.array(signature, dtype=np.uint32)).mean(axis=1)
    return round(float(matches.max()), 4)


class AuthenticityPolicy(BaseModel):
    """Per-tenant thresholds; defaults justified in the README from the French and English corpus."""

    max_similarity_to_suggested: float = Field(default=0.4, ge=0, le=1)
    max_similarity_to_colleagues: float = Field(default=0.4, ge=0, le=1)
    near_copy_action: Literal["refuse", "flag"] = Field(
        default="refuse", description="refuse: a near-copy is a 422; flag: accepted but marked not personalised")


class TenantPolicy(BaseModel):
    """A tenant's stored policy and its version (the ETag); version 0 means the defaults were never changed."""

    tenant: str
    policy: AuthenticityPolicy = Field(default_factory=AuthenticityPolicy)
    version: int = 0


@dataclass(frozen=True)
class AuthenticityScores:
    to_suggested: float
    to_colleagues: float
    signature: list[int]

    def personalized(self, policy: AuthenticityPolicy) -> bool:
        return (self.to_suggested <= policy.max_similarity_to_suggested
                and self.to_colleagues <= policy.max_similarity_to_colleagues)


def score_authenticity(text: str, suggested: list[str], colleague_signatures: np.ndarray | list[list[int]],
                       ignore: tuple[str, ...] = ()) -> AuthenticityScores:
    """Similarity of my text to the suggested ones (exact shingle Jaccard, the closest of the content's
    suggested texts) and to colleagues' posts of the same content (MinHash, the closest one)."""
    mine = shingles(normalized_words(text, ignore))
    signature = minhash(mine)
    to_suggested = max((jaccard(mine, shingles(normalized_words(s, ignore))) for s in suggested), default=0.0)
    return AuthenticityScores(round(to_suggested, 4), closest_colleague(signature, colleague_signatures), signature)


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
