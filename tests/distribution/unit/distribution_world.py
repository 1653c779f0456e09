"""The use cases over one set of fakes, with a content and two opted-in ambassadors (shared by the unit tests
of the use cases; a module name no other service's tests use)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from advocacy_common.auth import Principal
from advocacy_common.cursors import CursorCodec
from advocacy_common.events import AmbassadorProfile, NetworkPresence, SharingPreferences
from distribution.models.projections import AmbassadorStatus, AmbassadorView, ContentView
from distribution.options import Options
from distribution.schemas import PrepareShare
from distribution.service import Engagement, Sharing, Tracking

from distribution_fakes import FakePublisher, fake_repositories
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
TENANT = "acme"
SUGGESTED = ("We are proud to announce that our new plant in Lyon is now running on 100% renewable energy. "
             "This is a major step towards our goal of carbon neutrality by 2030. Thanks to all the teams who "
             "made this possible!")
OWN = ("I visited our Lyon site last month and watched the solar panels go up. Today the whole plant runs on "
       "renewable power, and honestly it makes me proud to work here.")
BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"
OPTIONS = Options(public_base_url="https://go.example.com", link_code_secret="links", visitor_hash_salt="salt",
                  slot_spacing=timedelta(minutes=30), webhook_tolerance_seconds=300)


def principal(login: str, *roles: str) -> Principal:
    return Principal(subject=login, tenant=TENANT, roles=frozenset(roles or ("ambassador",)), claims={})


class World:
    """The use cases over one set of fakes, with a content and two opted-in ambassadors."""

    def __init__(self) -> None:
        self.repositories = fake_repositories()
        self.publisher = FakePublisher()
        self.sharing = Sharing(self.repositories, OPTIONS, CursorCodec(b"unit-key"))
        self.tracking = Tracking(self.repositories, OPTIONS)
        self.engagement = Engagement(self.repositories, self.publisher, OPTIONS)
        self.repositories.contents.items[(TENANT, "c1")] = ContentView(
            tenant=TENANT, content_id="c1", version=1, campaign_id="camp-1", link_url="https://acme.com/green",
            suggested_texts={"linkedin": SUGGESTED}, topics=["energy"], language="en", networks=["linkedin", "x"],
            publish_at=NOW - timedelta(hours=2), expires_at=NOW + timedelta(days=5))
        for login in ("amb-1", "amb-2"):
            self.opt_in(login)

    def opt_in(self, login: str, **preferences) -> None:
        me = principal(login).subject_key
        profile = AmbassadorProfile(persona="expert", topics=["energy"], languages=["en"], team_id="ops",
                                    networks=[NetworkPresence(network="linkedin", audience_size=850)],
                                    preferences=SharingPreferences(**preferences))
        self.repositories.ambassadors.items[(TENANT, me)] = AmbassadorView(
            tenant=TENANT, ambassador_id=me, status=AmbassadorStatus.OPTED_IN, accepted_charter_version=1,
            profile=profile)

    async def prepare(self, login: str = "amb-1", text: str = OWN, key: str | None = None, **extra):
        request = PrepareShare(content_id="c1", network="linkedin", text=text, **extra)
        return await self.sharing.prepare(principal(login), request, key, NOW)
