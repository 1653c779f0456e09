"""Authenticity: how close a text is to the suggested one and to colleagues' posts of the same content.

Texts become sets of word 3-shingles. Against the suggested texts the Jaccard similarity is exact; against
colleagues we keep only a MinHash signature per confirmed share (datasketch), and an LSH index of band keys
(datasketch's MinHashLSH banding) names the colleagues worth comparing, so a preparation never loads every
colleague's signature.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH
from datasketch.hashfunc import sha1_hash32
from pydantic import BaseModel, Field

from .sharing import Refusal

SHINGLE_SIZE = 3
# Signatures are stored and compared across processes and releases: the number of permutations, the seed
# and the hash function are part of the stored format. Changing any of them makes old signatures useless.
MINHASH_PERMUTATIONS = 128
MINHASH_SEED = 1
MINHASH_SCHEME = "affine32"  # datasketch >= 2.0's default, named so that an upgrade cannot change it silently
# LSH banding: 64 bands of 2 rows. A colleague's post of similarity s shares a band with probability
# 1 - (1 - s^2)^64: 0.93 at s = 0.2, 0.998 at 0.3, > 0.9999 from 0.4 (the default threshold) up. Fixed
# (not datasketch's optimiser) because the band keys are stored with each share.
LSH_BANDS, LSH_ROWS = 64, 2
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


def signature_bands(signature: list[int]) -> list[str]:
    """The LSH band keys of a signature: two posts sharing one are compared (see LSH_BANDS)."""
    if len(signature) != MINHASH_PERMUTATIONS:
        return []
    index = MinHashLSH(num_perm=MINHASH_PERMUTATIONS, params=(LSH_BANDS, LSH_ROWS))
    sketch = LeanMinHash(seed=MINHASH_SEED, hashvalues=np.array(signature, dtype=np.uint64), scheme=MINHASH_SCHEME)
    index.insert("self", sketch)
    return [f"{band}:{key.hex()}" for band, key in enumerate(index.keys.get("self"))]


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


def score_authenticity(text: str, suggested: list[str], colleague_signatures: list[list[int]],
                       ignore: tuple[str, ...] = ()) -> AuthenticityScores:
    """Similarity of my text to the suggested ones (exact shingle Jaccard, the closest of the content's
    suggested texts) and to colleagues' posts of the same content (MinHash, the closest one)."""
    mine = shingles(normalized_words(text, ignore))
    signature = minhash(mine)
    to_suggested = max((jaccard(mine, shingles(normalized_words(s, ignore))) for s in suggested), default=0.0)
    to_colleagues = max((minhash_similarity(signature, other) for other in colleague_signatures), default=0.0)
    return AuthenticityScores(round(to_suggested, 4), round(to_colleagues, 4), signature)


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
