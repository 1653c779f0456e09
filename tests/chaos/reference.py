"""What the KPIs must be, computed only from what the APIs acknowledged (2xx; a click's 302).

Every figure is kept per tenant for the tenant overview and for each campaign and content. Clicks whose answer
was lost are *in doubt*: the click may have been recorded. They widen the accepted range of `clicks` and
`unique_clicks` (and nothing else); every other KPI must be exact.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

CPM = {"linkedin": 12.0, "x": 6.0}  # passed to the metrics service too (METRICS_CPM_BY_NETWORK)
CONVERSION_TYPES = ("application", "download", "lead", "sign_up")
ENGAGEMENT_FIELDS = {"impression": "impressions", "reaction": "reactions", "comment": "comments",
                     "comment_reply": "comment_replies", "reshare": "reshares"}
TENANT = ("tenant", "")


@dataclass(frozen=True)
class ShareRef:
    tenant: str
    share_id: str
    content_id: str
    campaign_id: str
    ambassador_id: str
    network: str
    code: str

    @property
    def dimensions(self) -> tuple[tuple[str, str], ...]:
        return TENANT, ("campaign", self.campaign_id), ("content", self.content_id)


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


@dataclass
class Reference:
    parts: defaultdict = field(default_factory=lambda: defaultdict(Counter))
    sharers: defaultdict = field(default_factory=lambda: defaultdict(set))
    opted_in: defaultdict = field(default_factory=lambda: defaultdict(set))
    visitors: defaultdict = field(default_factory=lambda: defaultdict(set))
    doubtful_visitors: defaultdict = field(default_factory=lambda: defaultdict(set))

    def _add(self, share: ShareRef, **amounts: int) -> None:
        for dimension in share.dimensions:
            self.parts[share.tenant, dimension].update(amounts)

    def shared(self, share: ShareRef, personalized: bool, reach: int) -> None:
        self._add(share, shares=1, personalized_shares=int(personalized), potential_reach=reach)
        for dimension in share.dimensions:
            self.sharers[share.tenant, dimension].add(share.ambassador_id)

    def engaged(self, share: ShareRef, kind: str, count: int) -> None:
        name = ENGAGEMENT_FIELDS[kind]
        self._add(share, **{name: count}, **({f"impressions_{share.network}": count} if kind == "impression" else {}))

    def converted(self, share: ShareRef, conversion_type: str, count: int) -> None:
        self._add(share, conversions=count, **{f"conversions_{conversion_type}": count})

    def clicked(self, share: ShareRef, visitor: tuple[str, str], in_doubt: bool = False) -> None:
        self._add(share, **{"doubtful_clicks" if in_doubt else "clicks": 1})
        for dimension in share.dimensions:
            target = self.doubtful_visitors if in_doubt else self.visitors
            target[share.tenant, dimension].add((share.code, *visitor))

    def expected(self, tenant: str, dimension: tuple[str, str]) -> dict[str, Any]:
        """The KPIs that must be exact; clicks as (low, high)."""
        parts = self.parts[tenant, dimension]
        people = self.opted_in[tenant]
        engagements = parts["reactions"] + parts["comments"] + parts["reshares"]
        acked = self.visitors[tenant, dimension]
        return {
            "ambassadors_opted_in": len(people),
            "active_ambassadors": len(self.sharers[tenant, dimension] & people),
            "activation_rate": ratio(len(self.sharers[tenant, dimension] & people), len(people)),
            "shares": parts["shares"], "personalized_shares": parts["personalized_shares"],
            "personalization_rate": ratio(parts["personalized_shares"], parts["shares"]),
            "potential_reach": parts["potential_reach"], "impressions": parts["impressions"],
            "reactions": parts["reactions"], "comments": parts["comments"], "reshares": parts["reshares"],
            "engagements": engagements, "engagement_rate": ratio(engagements, parts["impressions"]),
            "comment_replies": parts["comment_replies"],
            "comment_response_rate": ratio(parts["comment_replies"], parts["comments"]),
            "conversions": parts["conversions"],
            "conversions_by_type": {kind: parts[f"conversions_{kind}"] for kind in CONVERSION_TYPES},
            "earned_media_value": round(sum(parts[f"impressions_{n}"] * cpm for n, cpm in CPM.items()) / 1000, 2),
            "clicks": (parts["clicks"], parts["clicks"] + parts["doubtful_clicks"]),
            "unique_clicks": (len(acked), len(acked | self.doubtful_visitors[tenant, dimension])),
        }

    def compare(self, tenant: str, dimension: tuple[str, str], measured: dict[str, Any]) -> list[str]:
        """Mismatches, as readable lines; empty when every KPI is right."""
        expected = self.expected(tenant, dimension)
        problems = []
        for name, want in expected.items():
            got = measured.get(name)
            if isinstance(want, tuple):
                ok = isinstance(got, int) and want[0] <= got <= want[1]
            elif isinstance(want, float) and isinstance(got, (int, float)):
                ok = abs(want - got) <= 1e-9 * max(1.0, abs(want)) or (name == "earned_media_value"
                                                                       and abs(want - got) < 0.011)
            else:
                ok = want == got
            if not ok:
                problems.append(f"{name}: expected {want}, measured {got}")
        clicks = measured.get("clicks") or 0
        for name, numerator, denominator in (("click_through_rate", clicks, expected["impressions"]),
                                             ("conversion_rate", expected["conversions"], clicks)):
            want, got = ratio(numerator, denominator), measured.get(name)
            if (want is None) != (got is None) or (want is not None and abs(want - got) > 1e-9):
                problems.append(f"{name}: expected {want}, measured {got}")
        return problems
