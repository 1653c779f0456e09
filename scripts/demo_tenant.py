"""The demo tenant "acme": a few hundred employees, campaigns, reviewed content, weeks of engagement.

    demo_tenant.py [urls, --key-file, --state] load     a first useful slice, fast (run by `make up`)
    demo_tenant.py [...] trickle                        the rest of the load, then a light live trickle
    demo_tenant.py [...] tokens                         the dashboard URL and a ready token per role

Sizes and the tenant are flags (`--tenant`, `--people`, `--first-slice`; `--steps` ends the trickle after
that many live steps; `--again` sends the whole load again), so that tests/e2e/test_demo_tenant.py runs a
small copy against the real stack and checks that a second run changes nothing.

Everything goes through the public APIs, as the real actors would: HR's directory sync provisions people
by SCIM, an admin publishes the charter, each person opts in with a profile, editors write content that a
reviewer approves and the scheduler publishes, people share in their own words (personalised texts that
pass the authenticity rules), readers and preview bots follow the tracked links, and connectors report
engagement and conversions in signed webhooks. Tokens come from the dev issuer's key.

History: shares and clicks happen "now" (the API stamps them), so the weeks of history are the
engagement and conversion reports, whose `occurred_at` spreads over the last four weeks.

Idempotent: every write carries a deterministic Idempotency-Key or report id (people are found again by
SCIM userName, campaigns and items by name), and connectors registered as markers say how far a load got:
`demo-first-slice` (a second `load` does nothing) and `demo-loaded` (the trickle skips straight to live).
The loader paces itself (at most CONCURRENCY requests in flight) and honours 429/503 `Retry-After`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import random
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from advocacy_common.dev_issuer import DevIssuer

TENANT = "acme"  # defaults of the flags
PEOPLE = 300
FIRST_SLICE = 20  # people loaded before `make up` returns; the rest in the background
OPT_IN_SHARE = 0.85
HISTORY_DAYS = 28
CONCURRENCY = 10
MARKER = "demo-loaded"  # connectors registered as markers, read back with GET /v1/connectors
FIRST_SLICE_MARKER = "demo-first-slice"
BACKGROUND_CONCURRENCY = 3  # the rest of the load leaves room for the services' own workers
TOKEN_TTL = 8 * 3600
NAMESPACE = uuid.UUID("6d1f3c2a-8b4e-4f5a-9c7d-0e1a2b3c4d5e")
CHARTER = {"title": "Acme social media charter",
           "body": "Share only what you want to, in your own words. Never share confidential figures; say you work here.",
           "red_lines": ["No confidential figures", "No comments on competitors"], "tone": "Personal, factual",
           "disclosure_required": True, "disclosure_line": "#EmployeeOfAcme"}
DISCLOSURES = "#WeAreAcme #EmployeeOfAcme"
GIVEN = ["Alice", "Bruno", "Chloé", "David", "Emma", "Farid", "Gaëlle", "Hugo", "Inès", "Jonas", "Karin", "Lucas",
         "Maya", "Nils", "Olivia", "Paul", "Quentin", "Rosa", "Samir", "Tina", "Ugo", "Vera", "Wei", "Xavier",
         "Yasmine", "Zoé", "Anna", "Ben", "Clara", "Dario", "Elena", "Felix", "Greta", "Henrik", "Ivy", "Jules"]
FAMILY = ["Martin", "Bernard", "Dubois", "Schmidt", "Müller", "Rossi", "Garcia", "Nguyen", "Kowalski", "Jensen",
          "Moreau", "Laurent", "Weber", "Fischer", "Costa", "Silva", "Novak", "Berg", "Lefèvre", "Haddad",
          "Petit", "Roux", "Wagner", "Becker", "Romano", "Lopez", "Janssen", "Olsen"]
TEAMS = [("Sales", 0.22), ("R&D", 0.2), ("Marketing", 0.12), ("Engineering", 0.2), ("HR", 0.08),
         ("Operations", 0.12), ("Finance", 0.06)]
CITIES = ["Lyon", "Paris", "Munich", "Hamburg", "Milan", "Barcelona", "Amsterdam"]
PERSONAS = [("supporter", 0.45), ("expert", 0.25), ("reporter", 0.15), ("talent", 0.15)]
CAMPAIGNS = [
    {"key": "brand", "name": "Powering tomorrow (brand)", "objective": "awareness"},
    {"key": "webinar", "name": "Battery storage webinar series", "objective": "leads"},
    {"key": "careers", "name": "Join the Lyon lab", "objective": "talent"},
]
CONTENT = [
    {"key": "brand-report", "campaign": "brand", "title": "Our 2026 impact report is out",
     "link_url": "https://acme.example/impact-2026", "topics": ["Sustainability"],
     "text": "Our 2026 impact report is out: 40% less CO2 per battery pack. #WeAreAcme"},
    {"key": "brand-recycling", "campaign": "brand", "title": "Closing the loop on battery recycling",
     "link_url": "https://acme.example/recycling", "topics": ["Sustainability", "Research"],
     "text": "We now recycle 95% of the materials in our battery packs. #WeAreAcme"},
    {"key": "webinar-grid", "campaign": "webinar", "title": "Webinar: storage for the grid",
     "link_url": "https://acme.example/webinars/grid", "topics": ["Energy"],
     "text": "Join our webinar on grid-scale storage on the 15th. #WeAreAcme"},
    {"key": "webinar-fleet", "campaign": "webinar", "title": "Webinar: electrifying delivery fleets",
     "link_url": "https://acme.example/webinars/fleet", "topics": ["Energy", "Mobility"],
     "text": "Fleet managers: see how electric vans cut running costs. #WeAreAcme"},
    {"key": "careers-lab", "campaign": "careers", "title": "Our new Lyon lab is hiring",
     "link_url": "https://acme.example/careers/lyon", "topics": ["Careers", "Research"],
     "text": "Our new lab in Lyon is hiring 30 engineers. #WeAreAcme"},
    {"key": "careers-interns", "campaign": "careers", "title": "Summer internships 2027",
     "link_url": "https://acme.example/careers/interns", "topics": ["Careers"],
     "text": "Applications for our 2027 summer internships are open. #WeAreAcme"},
]
NETWORKS = ["linkedin", "xing", "x"]
BROWSERS = ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 Version/18.1 Safari/605.1.15",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
            "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
            "Mozilla/5.0 (Linux; Android 15; Pixel 9) AppleWebKit/537.36 Chrome/131.0 Mobile Safari/537.36"]
PREVIEW_BOTS = {"linkedin": "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
                "xing": "XING-contenttabreceiver/2.0", "x": "Twitterbot/1.0"}

# Wording pools: a text is drawn word group by word group, so two colleagues' texts rarely share three
# words in a row (the authenticity rules compare 3-word shingles with the suggested text and colleagues).
OPENERS = ["Honestly,", "Quick one:", "Sharing this because", "A bit of news from work:", "Something I'm glad about:",
           "Not an ad, just pride:", "From my desk in {city}:", "After {years} years here,", "Small thing, big deal:",
           "This made my week:", "Worth a look:", "Friends in {field},", "If you follow {field},",
           "One of those days where", "Proud moment for team {team}:", "I rarely post, but"]
MIDDLES = {
    "brand-report": ["the figures in this report come from people I sit next to", "we cut emissions per pack by forty percent",
                     "I helped collect data for chapter three", "the numbers surprised even our {team} crew",
                     "it took a year of measuring every plant", "my favourite page is the one about water use"],
    "brand-recycling": ["almost every gram of a used pack goes back into new ones", "our recycling line in {city} is finally running",
                        "I watched the first recovered cathodes come out", "nobody believed ninety-five percent was doable",
                        "{team} spent months on the sorting process", "recycled lithium behaves just like fresh material"],
    "webinar-grid": ["utilities keep asking us how storage stabilises a grid", "our experts explain it in forty minutes",
                     "I will be answering questions in the chat", "bring your hardest question about peak demand",
                     "it is free and there is a recording", "you will see real data from three wind farms"],
    "webinar-fleet": ["delivery vans are where electrification pays off first", "we compared costs on two hundred vehicles",
                      "charging at the depot changes everything", "our {team} folks ran the pilot with a courier",
                      "the maintenance savings surprised the drivers", "bring your fleet numbers and ask away"],
    "careers-lab": ["we are looking for thirty engineers in {city}", "the lab has the best test benches I have used",
                    "interns run their own experiments from day one", "my team {team} is growing too",
                    "people here actually listen to new ideas", "ping me if you want to know what it's like"],
    "careers-interns": ["my own internship here turned into {years} years", "interns get a real project and a mentor",
                        "last summer's cohort shipped a tool we still use", "applications close at the end of the month",
                        "you can choose between {city} and two other sites", "happy to review a CV or answer questions"],
}
ASIDES = ["it reminded me why I joined", "my kids asked me about it at dinner", "we celebrated with coffee in the {city} office",
          "a customer called to congratulate us", "I learned a lot from the {team} people", "the debate in our stand-up was lively",
          "my manager let me present a slide of it", "it was a long road with many late evenings",
          "I still have the first draft on my desk", "my former colleagues will recognise the story",
          "nobody here takes it for granted", "the best ideas came from the shop floor",
          "I was sceptical at first, I admit", "after {years} years I am still surprised by this place",
          "it is the kind of work I hoped to do", "my neighbour in {city} saw it in the local paper"]
CLOSERS = ["Have a look.", "Curious what you think.", "Link below.", "Feel free to share.", "Questions welcome!",
           "More in the link.", "Tell me what you'd add.", "That's all, back to work.", "Comments open.", ""]
WORDING = 2  # version of the wording scheme below, part of the shares' Idempotency-Keys
FIELDS = ["energy", "climate tech", "mobility", "engineering", "batteries", "manufacturing"]


@dataclass(frozen=True)
class Demo:
    """A person of the demo directory: who HR provisions and what they chose."""

    login: str
    given: str
    family: str
    team: str
    city: str
    persona: str
    networks: tuple[tuple[str, int], ...]
    opts_in: bool
    years: int


@dataclass
class Shared:
    """A confirmed share the trickle keeps feeding (the loader's own notes, read back from its state file)."""

    share_id: str
    code: str
    network: str
    login: str
    content: str


def weighted(rng: random.Random, choices: list[tuple[str, float]]) -> str:
    return rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]


def directory(count: int = PEOPLE) -> list[Demo]:
    """The same few hundred people on every run (a fixed seed), with realistic spreads."""
    alice = Demo("alice.martin@acme.example", "Alice", "Martin", "R&D", "Lyon", "expert",
                 (("linkedin", 640), ("xing", 120)), True, 6)  # the demo ambassador whose token is printed
    rng, people, seen = random.Random(13), [alice], {alice.login}
    while len(people) < count:
        given, family = rng.choice(GIVEN), rng.choice(FAMILY)
        base = f"{given}.{family}".lower().translate(str.maketrans("éèëüöç", "eeeuoc"))
        login, n = f"{base}@acme.example", 2
        while login in seen:
            login, n = f"{base}{n}@acme.example", n + 1
        seen.add(login)
        audience = int(rng.lognormvariate(6.0, 0.9))  # median ~400 connections, a long tail
        networks = [("linkedin", audience)]
        if rng.random() < 0.3:
            networks.append(("xing", int(audience * rng.uniform(0.1, 0.5))))
        if rng.random() < 0.2:
            networks.append(("x", int(rng.lognormvariate(5.0, 1.2))))
        people.append(Demo(login, given, family, weighted(rng, TEAMS), rng.choice(CITIES), weighted(rng, PERSONAS),
                           tuple(networks), rng.random() < OPT_IN_SHARE, rng.randint(1, 15)))
    return people


def own_words(person: Demo, content: dict, attempt: int) -> str:
    rng = random.Random(f"{person.login}/{content['key']}/{attempt}")
    facts = {"city": person.city, "team": person.team, "years": person.years, "field": rng.choice(FIELDS)}
    middle, aside = rng.choice(MIDDLES[content["key"]]), rng.choice(ASIDES)
    parts = [rng.choice(OPENERS), middle + ";", aside + ".", rng.choice(CLOSERS), DISCLOSURES]
    return " ".join(p for p in parts if p).format(**facts)


def reader(rng: random.Random) -> str:
    """A browser of a reader; the build number makes visitors distinct (a visitor is its address and agent)."""
    return rng.choice(BROWSERS).replace("131.0", f"131.0.{rng.randint(1000, 9999)}.{rng.randint(10, 99)}", 1) \
        .replace("rv:133.0", f"rv:133.{rng.randint(0, 9)}", 1).replace("18_1", f"18_{rng.randint(0, 6)}", 1) \
        + f" (build {rng.randint(10**5, 10**6)})"


def key(*parts: object) -> str:
    return str(uuid.uuid5(NAMESPACE, "/".join(map(str, parts))))


class Api:
    """The public APIs with dev-issuer tokens, bounded concurrency and Retry-After handling."""

    def __init__(self, args: argparse.Namespace):
        self.issuer = DevIssuer.from_key_file(Path(args.key_file), args.issuer)
        self.tenant = args.tenant
        self.urls = {"content": args.content, "ambassador": args.ambassador, "distribution": args.distribution,
                     "metrics": args.metrics}
        self.client = httpx.AsyncClient(timeout=30)
        self.slots = asyncio.Semaphore(CONCURRENCY)
        self.tokens: dict[tuple[str, str], str] = {}

    def token(self, sub: str, role: str) -> str:
        if (sub, role) not in self.tokens:
            self.tokens[(sub, role)] = self.issuer.mint(tenant=self.tenant, subject=sub, roles=[role],
                                                        ttl_seconds=TOKEN_TTL)
        return self.tokens[(sub, role)]

    async def call(self, method: str, service: str, path: str, *, sub: str | None = None, role: str | None = None,
                   idem: str | None = None, headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        sent = dict(headers or {})
        if role:
            sent["Authorization"] = f"Bearer {self.token(sub or role, role)}"
        if idem:
            sent["Idempotency-Key"] = idem
        for attempt in range(8):
            async with self.slots:
                try:
                    response = await self.client.request(method, self.urls[service] + path, headers=sent, **kwargs)
                except httpx.TransportError:
                    response = None
            if response is not None and response.status_code not in (429, 502, 503, 504):
                return response
            wait = float(response.headers.get("Retry-After", 1)) if response is not None else 1.0
            await asyncio.sleep(min(wait, 10) * (1 + attempt / 4))
        raise RuntimeError(f"{method} {service}{path}: still unavailable after retries")

    async def close(self) -> None:
        await self.client.aclose()


def expect(response: httpx.Response, *ok: int) -> dict:
    if response.status_code not in ok:
        raise RuntimeError(f"{response.request.method} {response.request.url.path}: {response.status_code} {response.text[:300]}")
    return response.json() if response.content else {}


async def eventually(probe, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := await probe():
            return result
        await asyncio.sleep(0.5)
    raise RuntimeError(f"not reached within {timeout} s: {probe.__name__}")


class Loader:
    def __init__(self, api: Api, state: Path, people: int = PEOPLE, first_slice: int = FIRST_SLICE):
        self.api, self.state = api, state
        self.people = directory(people)
        self.first_count = first_slice
        self.contents: dict[str, dict] = {}
        self.connector: dict = {}
        self.shared: list[Shared] = []
        self.rng = random.Random(29)

    # --- the programme: charter, campaigns, content through review --------------------------

    async def loaded(self, marker: str = MARKER) -> bool:
        connectors = await self.listed("distribution", "/v1/connectors", "admin", "demo-admin")
        return any(c.get("name") == marker for c in connectors)

    async def mark(self, marker: str) -> None:
        expect(await self.api.call("POST", "distribution", "/v1/connectors", role="admin", sub="demo-admin",
                                   idem=key("connector", marker), json={"name": marker}), 200, 201)

    async def charter(self) -> int:
        charter = expect(await self.api.call("POST", "ambassador", "/v1/charters", role="admin", sub="demo-admin",
                                             idem=key("charter", 1), json=CHARTER), 200, 201)
        return charter["version"]

    async def programme(self) -> None:
        today = datetime.now(UTC).date()
        # Dates depend on the day of the first run, so a re-run finds campaigns and items by name, not by key.
        existing = {c["name"]: c for c in await self.listed("content", "/v1/campaigns", "editor", "demo-editor")}
        campaigns = {c["key"]: existing[c["name"]]["id"] for c in CAMPAIGNS if c["name"] in existing}
        for campaign in CAMPAIGNS:
            if campaign["key"] in campaigns:
                continue
            created = expect(await self.api.call(
                "POST", "content", "/v1/campaigns", role="editor", sub="demo-editor", idem=key("campaign", campaign["key"]),
                json={"name": campaign["name"], "objective": campaign["objective"],
                      "starts_on": (today - timedelta(days=HISTORY_DAYS)).isoformat(),
                      "ends_on": (today + timedelta(days=60)).isoformat(), "disclosure_line": "#WeAreAcme"}), 200, 201)
            campaigns[campaign["key"]] = created["id"]
        publish_at = datetime.now(UTC) + timedelta(seconds=3)
        items = {i["title"]: i for i in await self.listed("content", "/v1/content", "editor", "demo-editor")}
        for item in CONTENT:
            if item["title"] in items:
                self.contents[item["key"]] = items[item["title"]]
                continue
            created = expect(await self.api.call(
                "POST", "content", "/v1/content", role="editor", sub="demo-editor", idem=key("content", item["key"]),
                json={"campaign_id": campaigns[item["campaign"]], "title": item["title"], "link_url": item["link_url"],
                      "suggested_texts": {n: item["text"] for n in NETWORKS}, "topics": item["topics"],
                      "language": "en", "networks": NETWORKS, "publish_at": publish_at.isoformat(),
                      "expires_at": (publish_at + timedelta(days=45)).isoformat()}), 200, 201)
            self.contents[item["key"]] = created
            if created["status"] == "draft":
                expect(await self.api.call("POST", "content", f"/v1/content/{created['id']}/submit", role="editor",
                                           sub="demo-editor"), 200)
            if created["status"] in ("draft", "in_review"):
                expect(await self.api.call("POST", "content", f"/v1/content/{created['id']}/approve", role="reviewer",
                                           sub="demo-reviewer"), 200)
        self.connector = expect(await self.api.call("POST", "distribution", "/v1/connectors", role="integrator",
                                                    sub="demo-listening", idem=key("connector", "social-listening"),
                                                    json={"name": "social-listening"}), 200, 201)

    async def listed(self, service: str, path: str, role: str, sub: str) -> list[dict]:
        found, cursor = [], None
        while True:
            params = {"limit": 100} | ({"cursor": cursor} if cursor else {})
            page = expect(await self.api.call("GET", service, path, role=role, sub=sub, params=params), 200)
            found += page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return found

    async def published(self) -> None:
        async def all_published():
            for item in self.contents.values():
                got = expect(await self.api.call("GET", "content", f"/v1/content/{item['id']}", role="editor",
                                                 sub="demo-editor"), 200)
                if got["status"] != "published":
                    return False
            return True
        await eventually(all_published)

    # --- people: SCIM, opt-in with a profile ---------------------------------------------------

    async def provision(self, person: Demo, charter_version: int) -> None:
        user = await self.api.call("POST", "ambassador", "/scim/v2/Users", role="integrator", sub="demo-scim", json={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "userName": person.login, "active": True, "displayName": f"{person.given} {person.family}",
            "name": {"givenName": person.given, "familyName": person.family},
            "emails": [{"value": person.login, "primary": True}],
            "addresses": [{"type": "work", "locality": person.city}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": person.team}})
        expect(user, 201, 409)  # 409: provisioned by an earlier run
        if not person.opts_in:
            return
        handle = person.login.split("@")[0].replace(".", "-")
        profile = {"persona": person.persona, "topics": ["Sustainability", "Energy", "Careers", "Research"],
                   "languages": ["en"], "team_id": person.team, "location": person.city,
                   "networks": [{"network": n, "handle": handle, "audience_size": size} for n, size in person.networks],
                   "preferences": {"max_shares_per_week": 10, "time_zone": "Europe/Paris"},
                   "leaderboard_opt_in": person.years % 3 == 0}
        expect(await self.api.call("POST", "ambassador", "/v1/me/opt-in", role="ambassador", sub=person.login,
                                   json={"charter_version": charter_version, "profile": profile}), 200)

    # --- sharing, clicks, signed reports ---------------------------------------------------------

    async def share_all(self, person: Demo) -> None:
        rng = random.Random(f"shares/{person.login}")
        activity = {"expert": 0.8, "reporter": 0.9, "talent": 0.7, "supporter": 0.55}[person.persona]
        if not person.opts_in or rng.random() > activity:
            return
        picks = rng.sample(CONTENT, rng.choice([1, 1, 2, 2, 3, 4]))
        # Every choice is drawn before any share: what a share's history draws (from its own generator)
        # must not change which network the next share goes to when a second run skips the history.
        networks = [rng.choices([n for n, _ in person.networks], weights=[4] + [1] * (len(person.networks) - 1))[0]
                    for _ in picks]
        for item, network in zip(picks, networks, strict=True):
            await self.share(person, item, network)

    async def share(self, person: Demo, item: dict, network: str) -> None:
        content_id = self.contents[item["key"]]["id"]
        attempt, waited, refusals = 0, 0, []
        while attempt < 6:
            prepared = await self.api.call(
                "POST", "distribution", "/v1/shares", role="ambassador", sub=person.login,
                idem=key("share", WORDING, person.login, item["key"], network, attempt),
                json={"content_id": content_id, "network": network, "text": own_words(person, item, attempt)})
            if prepared.status_code == 201 or prepared.status_code == 200:
                break
            rule = prepared.json().get("rule") if prepared.status_code == 422 else None
            refusals.append(rule)
            if rule == "already_shared":
                return
            if rule in ("not_opted_in", "charter_not_accepted", "content_not_available") and waited < 60:
                # Opt-ins and publications reach distribution through Kafka: a moment after the answer.
                waited += 1
                await asyncio.sleep(1)
                continue
            attempt += 1
            if rule not in ("too_similar_to_colleagues", "too_similar_to_suggested"):
                expect(prepared, 201)
        else:
            # Six wordings too close to colleagues': this person skips it, as a real one might.
            print(f"  skipped: {person.login} {item['key']} on {network} ({', '.join(map(str, refusals))})",
                  file=sys.stderr, flush=True)
            return
        share = prepared.json()
        handle = person.login.split("@")[0]
        confirmed = expect(await self.api.call(
            "POST", "distribution", f"/v1/shares/{share['share_id']}/confirm", role="ambassador", sub=person.login,
            json={"post_url": f"https://www.{network}.com/posts/{handle}-{share['share_id'][:8]}"}), 200)
        first_time = share.get("status") != "confirmed" and confirmed.get("status") == "confirmed"
        shared = Shared(share["share_id"], share["tracked_link_code"], network, person.login, item["key"])
        self.shared.append(shared)
        if first_time:
            await self.history(shared, dict(person.networks)[network], random.Random(f"history/{shared.share_id}"),
                               item)

    async def click(self, code: str, user_agent: str) -> None:
        response = await self.api.call("GET", "distribution", f"/r/{code}", headers={"User-Agent": user_agent},
                                       follow_redirects=False)
        expect(response, 302)

    async def report(self, path: str, payload: dict) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        stamp = str(int(time.time()))
        mac = hmac.new(self.connector["secret"].encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
        response = await self.api.call(
            "POST", "distribution", f"/v1/connectors/{self.connector['connector_id']}/{path}", role="integrator",
            sub="demo-listening", content=body,
            headers={"content-type": "application/json", "X-Advocacy-Signature": f"t={stamp},v1={mac}"})
        expect(response, 202, 409)  # 409: this report id was received by an earlier run, counted once

    @staticmethod
    async def in_turn(*steps) -> None:
        for n, step in enumerate(steps):
            try:
                await step
            except BaseException:
                for later in steps[n + 1:]:
                    later.close()  # never started: closed, so no "never awaited" warning
                raise

    async def history(self, shared: Shared, audience: int, rng: random.Random, item: dict) -> None:
        """Weeks of a post's life: impressions decaying from the day it went out, engagement, clicks, conversions."""
        now, jobs = datetime.now(UTC), []
        age = min(int(rng.expovariate(1 / 9)), HISTORY_DAYS - 1)  # more recent posts than old ones
        reach = audience * rng.uniform(0.3, 1.6)
        for day in range(min(age, 6) + 1):  # most impressions in the first week
            occurred = now - timedelta(days=age - day, hours=rng.uniform(0, 8))
            impressions = int(reach * 0.6 ** day)
            if impressions < 1:
                break
            jobs.append(self.report("engagements", {"id": f"{shared.share_id}/imp/{day}", "kind": "impression",
                                              "count": impressions, "occurred_at": occurred.isoformat(),
                                              "share_id": shared.share_id}))
        for kind, rate in (("reaction", 0.03), ("comment", 0.006), ("reshare", 0.002)):
            count = int(reach * rate * rng.uniform(0.4, 1.8))
            if count:
                occurred = now - timedelta(days=age, hours=-rng.uniform(1, 30))
                report = self.report("engagements", {"id": f"{shared.share_id}/{kind}", "kind": kind, "count": count,
                                                     "occurred_at": min(occurred, now).isoformat(),
                                                     "share_id": shared.share_id})
                replies = rng.randint(0, count) if kind == "comment" else 0
                if replies:  # replies only after their comments were counted: never more replies than comments
                    report = self.in_turn(report, self.report("engagements", {
                        "id": f"{shared.share_id}/reply", "kind": "comment_reply", "count": replies,
                        "occurred_at": min(occurred, now).isoformat(), "share_id": shared.share_id}))
                jobs.append(report)
        jobs.append(self.click(shared.code, PREVIEW_BOTS[shared.network]))  # the network fetches the preview first
        humans = min(int(reach * 0.012 * rng.uniform(0.3, 2.0)), 12)
        for _ in range(humans):
            jobs.append(self.click(shared.code, reader(rng)))
        objective = next(c["objective"] for c in CAMPAIGNS if c["key"] == item["campaign"])
        kind = {"awareness": "download", "leads": "lead", "talent": "application"}[objective]
        conversions = sum(rng.random() < 0.12 for _ in range(humans))
        if conversions:
            occurred = now - timedelta(days=max(age - 1, 0), hours=rng.uniform(0, 12))
            jobs.append(self.report("conversions", {"id": f"{shared.share_id}/conv", "tracked_link_code": shared.code,
                                              "conversion_type": kind, "count": conversions,
                                              "occurred_at": min(occurred, now).isoformat()}))
        await asyncio.gather(*jobs)  # bounded by the client's CONCURRENCY

    # --- the phases ------------------------------------------------------------------------------

    async def people_slice(self, people: list[Demo], charter_version: int) -> None:
        report_failures(await asyncio.gather(*(self.provision(p, charter_version) for p in people),
                                             return_exceptions=True))

    async def shares_slice(self, people: list[Demo]) -> None:
        report_failures(await asyncio.gather(*(self.share_all(p) for p in people), return_exceptions=True))
        self.save()

    async def feed_ready(self, person: Demo) -> None:
        async def ready():
            feed = expect(await self.api.call("GET", "distribution", "/v1/feed", role="ambassador", sub=person.login), 200)
            return feed.get("items")  # the programme's content has reached distribution
        await eventually(ready)

    async def first_slice(self) -> None:
        charter_version = await self.charter()
        first = self.people[:self.first_count]
        await asyncio.gather(self.programme(), self.people_slice(first, charter_version))
        await self.published()
        await self.feed_ready(first[0])
        await self.shares_slice(first)
        await self.mark(FIRST_SLICE_MARKER)

    async def rest(self) -> None:
        self.api.slots = asyncio.Semaphore(BACKGROUND_CONCURRENCY)
        charter_version = await self.charter()  # idempotent: the same version, the same ids, the connector's secret
        await self.programme()
        rest = self.people[self.first_count:]
        for start in range(0, len(rest), 40):
            batch = rest[start:start + 40]
            await self.people_slice(batch, charter_version)
            await self.shares_slice(batch)
        await self.mark(MARKER)

    async def trickle(self, steps: int | None = None, again: bool = False) -> None:
        """A light live flow so that the dashboard moves: a click, an impression report, now and then more
        (after `steps` steps, if given, it stops). `again` sends the whole load again first."""
        if again or not await self.loaded():
            await self.rest()
        else:
            await self.programme()
        self.load_state()
        n = 0
        while steps is None or n < steps:
            try:
                await self.live_step(n)
            except RuntimeError as error:  # a refused report or a service restarting: the next step tries again
                print(f"trickle: {error}", file=sys.stderr, flush=True)
            n += 1
            await asyncio.sleep(self.rng.uniform(1.5, 4.0))

    async def live_step(self, n: int) -> None:
        """One step of live activity: a reader clicks, the network reports impressions, now and then more."""
        shared = self.rng.choice(self.shared)
        now = datetime.now(UTC).isoformat()
        await self.click(shared.code, reader(self.rng))
        await self.report("engagements", {"id": f"live/{uuid.uuid4()}", "kind": "impression",
                                          "count": self.rng.randint(5, 80), "occurred_at": now,
                                          "share_id": shared.share_id})
        if n % 3 == 0:
            await self.report("engagements", {"id": f"live/{uuid.uuid4()}", "kind": "reaction",
                                              "count": self.rng.randint(1, 4), "occurred_at": now,
                                              "share_id": shared.share_id})
        if n % 10 == 0:
            await self.report("conversions", {"id": f"live/{uuid.uuid4()}", "tracked_link_code": shared.code,
                                              "conversion_type": self.rng.choice(["lead", "application", "download"]),
                                              "occurred_at": now})

    def save(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        known = {s.share_id: s for s in self.load_shared()} | {s.share_id: s for s in self.shared}
        (self.state / "shares.json").write_text(json.dumps([asdict(s) for s in known.values()]))

    def load_shared(self) -> list[Shared]:
        path = self.state / "shares.json"
        return [Shared(**s) for s in json.loads(path.read_text())] if path.exists() else []

    def load_state(self) -> None:
        self.shared = self.load_shared() or self.shared
        if not self.shared:
            raise RuntimeError(f"no shares noted in {self.state}; run `load` first")


def report_failures(results: list[Any]) -> None:
    """One person's refusal must not stop the others: say what failed and go on."""
    for result in results:
        if isinstance(result, Exception):
            print(f"  demo tenant: {result}", file=sys.stderr, flush=True)


def print_tokens(api: Api, metrics_url: str) -> None:
    alice = directory(1)[0].login
    tenant = api.tenant
    roles = [("admin", "demo-admin"), ("editor", "demo-editor"), ("reviewer", "demo-reviewer"),
             ("analyst", "demo-analyst"), ("ambassador", alice), ("integrator", "demo-listening")]
    print(f"Dashboard (tenant {tenant}, analyst, 8 h; the token rides in the fragment, never sent to a server):")
    print(f"  {metrics_url}/dashboard/#token={api.token('demo-analyst', 'analyst')}")
    print("APIs (OpenAPI at /docs, every path under /v1):")
    for name in ("content", "ambassador", "distribution", "metrics"):
        print(f"  {name:<13} {api.urls[name]}")
    print(f"Tokens (tenant {tenant}, 8 h), e.g. curl -H \"Authorization: Bearer $ANALYST\" "
          f"{metrics_url}/v1/metrics/overview")
    for role, sub in roles:
        print(f"  export {role.upper()}={api.token(sub, role)}   # sub {sub}")


async def run(args: argparse.Namespace) -> None:
    api = Api(args)
    loader = Loader(api, Path(args.state), args.people, args.first_slice)
    try:
        if args.command == "tokens":
            print_tokens(api, args.dashboard_base or args.metrics)
        elif args.command == "load":
            if not args.again and await loader.loaded(FIRST_SLICE_MARKER):
                print(f"  demo tenant {args.tenant} already loaded; the trickle goes on "
                      "(and finishes the load if need be)")
                return
            started = time.monotonic()
            await loader.first_slice()
            print(f"  demo tenant {args.tenant}: first {loader.first_count} people, {len(CAMPAIGNS)} campaigns, "
                  f"{len(CONTENT)} items, {len(loader.shared)} shares loaded in {time.monotonic() - started:.0f} s; "
                  f"the other {len(loader.people) - loader.first_count} people load in the background")
        else:
            await loader.trickle(args.steps, args.again)
    finally:
        await api.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--key-file", required=True)
    parser.add_argument("--issuer", required=True)
    for service, port in (("content", 8101), ("ambassador", 8102), ("distribution", 8103), ("metrics", 8104)):
        parser.add_argument(f"--{service}", default=f"http://127.0.0.1:{port}")
    parser.add_argument("--state", default=".local/demo", help="the loader's notes (share ids for the trickle)")
    parser.add_argument("--tenant", default=TENANT)
    parser.add_argument("--people", type=int, default=PEOPLE, help="employees in the directory (Alice first)")
    parser.add_argument("--first-slice", type=int, default=FIRST_SLICE, help="people that `load` brings in")
    parser.add_argument("--steps", type=int, help="trickle: stop after this many live steps (default: never)")
    parser.add_argument("--again", action="store_true",
                        help="send every write of the load again, markers or not (the idempotency keys and report "
                             "ids make it change nothing)")
    parser.add_argument("--dashboard-base", help="the metrics URL a browser reaches (default: --metrics)")
    parser.add_argument("command", choices=["load", "trickle", "tokens"])
    args = parser.parse_args()
    try:
        asyncio.run(run(args))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
