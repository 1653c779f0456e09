"""The claims a worker remembers: what was put is found, the latest ones are kept, nothing else is invented."""

from metrics.aggregation import Position
from metrics.recent_claims import RecentClaims, digest


def test_a_remembered_claim_reads_back_with_its_position_and_others_are_unknown():
    claims = RecentClaims(100)
    assert claims.get(digest("t|share:s1")) is None  # nothing allocated yet
    claims.put(digest("t|share:s1"), Position("advocacy_share_0", 4))
    claims.put(digest("t|engagement:e1"), Position("advocacy_engagement_5", 0))
    claims.put(digest("t|engagement:e2"), RecentClaims.ELSEWHERE)
    assert claims.get(digest("t|share:s1")) == Position("advocacy_share_0", 4)
    assert claims.get(digest("t|engagement:e1")) == Position("advocacy_engagement_5", 0)
    assert claims.get(digest("t|engagement:e2")) == RecentClaims.ELSEWHERE
    assert claims.get(digest("other|share:s1")) is None  # another tenant's fact of the same id
    claims.put(digest("t|share:s1"), Position("advocacy_share_0", 9))  # put again: the latest answer
    assert claims.get(digest("t|share:s1")) == Position("advocacy_share_0", 9) and len(claims) == 3


def test_between_capacity_and_twice_capacity_of_the_latest_claims_are_kept():
    claims = RecentClaims(1000)
    for n in range(3500):
        claims.put(digest(f"t|e{n}"), Position(f"p{n % 7}", 2 ** 40 + n))
    kept = [n for n in range(3500) if claims.get(digest(f"t|e{n}")) is not None]
    assert kept == list(range(2000, 3500))  # the older table holds 2000-2999, the newer 3000-3499
    assert all(claims.get(digest(f"t|e{n}")) == Position(f"p{n % 7}", 2 ** 40 + n) for n in kept)
    assert 1000 <= len(claims) <= 2000
