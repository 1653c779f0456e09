"""The traffic of a chaos run: a programme per tenant (SCIM provisioning, opt-in with charter acceptance,
campaigns, content through review and publication, personalised shares), then mostly engagement on those
shares (signed connector reports, tracked-link clicks by people and bots, conversions) with opt-ins and opt-outs
in between. Only acknowledged answers go into the reference."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import string
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from advocacy_common.auth import ambassador_id_for

from .client import Api, InDoubt
from .reference import CONVERSION_TYPES, Reference, ShareRef

SCIM_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
HUMANS = ("Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0",
          "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 Safari/604.1",
          "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/129.0 Safari/537.36")
BOTS = ("LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
        "Twitterbot/1.0", "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)")
# (kind, weight, largest count): a report carries `count` events of its kind (e.g. 150 impressions).
KINDS = (("impression", 40, 200), ("reaction", 25, 20), ("comment", 15, 6), ("comment_reply", 10, 4),
         ("reshare", 10, 4))


class TrafficError(AssertionError):
    """An answer a correct system never gives to this traffic."""


def sign(secret: str, timestamp: int, raw_body: bytes) -> str:
    """X-Advocacy-Signature as the API documents it: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + raw_body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def words(rng: random.Random, count: int) -> str:
    return " ".join("".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 9))) for _ in range(count))


@dataclass
class Person:
    email: str
    team: str
    network: str
    audience: int

    def id(self, tenant: str) -> str:
        return ambassador_id_for(tenant, self.email)


@dataclass
class Tenant:
    name: str
    people: list[Person]
    charter_version: int = 0
    contents: list[tuple[str, str]] = field(default_factory=list)  # (content id, campaign id)
    connector: tuple[str, str] = ("", "")  # id, secret
    shares: list[ShareRef] = field(default_factory=list)
    late: list[Person] = field(default_factory=list)  # opt in during the engagement phase
    leaving: list[Person] = field(default_factory=list)  # opt out during the engagement phase

    @property
    def disclosure(self) -> str:
        return f"#EmployeeOf{self.name.capitalize()}"


@dataclass
class Traffic:
    api: Api
    reference: Reference
    rng: random.Random
    run_id: str
    events: int = 0  # acknowledged events: domain events, and each impression, reaction... a report carries
    operations: int = 0  # acknowledged API calls that emit something
    counts: Counter = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)  # stop early (time limit, SIGUSR1)
    # Per share: comments acknowledged, replies sent (or in doubt). The service refuses replies beyond the
    # comments it counted, so the traffic keeps within what it knows is counted: acknowledged comments only,
    # and every reply that might have been counted.
    comment_room: dict[str, list[int]] = field(default_factory=dict)
    _ids: int = 0

    def next_id(self) -> str:
        self._ids += 1
        return f"{self.run_id}-{self._ids}"

    def acked(self, kind: str, events: int = 1) -> None:
        self.counts[kind] += 1
        self.operations += 1
        self.events += events

    def refuse(self, what: str, response) -> None:
        self.unexpected.append(f"{what}: {response.status_code} {response.text[:300]}")
        if len(self.unexpected) > 20:
            raise TrafficError("too many unexpected answers:\n" + "\n".join(self.unexpected))

    # --- the programme ---------------------------------------------------------------------------

    async def programme(self, tenant: Tenant, campaigns: int, contents_per_campaign: int,
                        shares_per_person: int) -> None:
        api, t = self.api, tenant.name
        admin, editor = api.auth(t, "admin-1", "admin"), api.auth(t, "editor-1", "editor")
        charter = await api.call("ambassador", "POST", "/v1/charters", headers={**admin, "Idempotency-Key": "c1"},
                                 json={"title": "Charter", "body": "Be yourself.", "red_lines": ["No secrets"],
                                       "tone": "Personal", "disclosure_required": True,
                                       "disclosure_line": tenant.disclosure})
        if charter.status_code not in (200, 201):
            raise TrafficError(f"charter: {charter.status_code} {charter.text}")
        tenant.charter_version = charter.json()["version"]
        self.acked("charter")
        steady = [p for p in tenant.people if p not in tenant.late]
        await gather_limited([self.provision(tenant, p) for p in tenant.people], 8)
        await gather_limited([self.opt_in(tenant, p) for p in steady], 8)
        today = datetime.now(UTC).date()
        for c in range(campaigns):
            response = await api.call("content", "POST", "/v1/campaigns", headers={**editor, "Idempotency-Key": f"k{c}"},
                                      json={"name": f"Campaign {c}", "objective": "awareness",
                                            "starts_on": (today - timedelta(days=1)).isoformat(),
                                            "ends_on": (today + timedelta(days=30)).isoformat(),
                                            "disclosure_line": f"#Camp{c}"})
            if response.status_code not in (200, 201):
                raise TrafficError(f"campaign: {response.status_code} {response.text}")
            campaign_id = response.json()["id"]
            for i in range(contents_per_campaign):
                tenant.contents.append((await self.content(tenant, campaign_id, f"#Camp{c}", f"{c}-{i}"),
                                        campaign_id))
        await gather_limited([self.published(tenant, content_id) for content_id, _ in tenant.contents], 8)
        connector = await api.call("distribution", "POST", "/v1/connectors", json={"name": "analytics"},
                                   headers={**api.auth(t, "scim", "integrator"), "Idempotency-Key": "connector"})
        if connector.status_code != 201:
            raise TrafficError(f"connector: {connector.status_code} {connector.text}")
        tenant.connector = (connector.json()["connector_id"], connector.json()["secret"])
        sharers = [p for p in steady if p not in tenant.leaving]
        jobs = [self.share(tenant, p, content) for p in sharers
                for content in self.rng.sample(tenant.contents, min(shares_per_person, len(tenant.contents)))]
        await gather_limited(jobs, 12)

    async def provision(self, tenant: Tenant, person: Person) -> None:
        response = await self.api.call("ambassador", "POST", "/scim/v2/Users",
                                       headers=self.api.auth(tenant.name, "scim", "integrator"),
                                       json={"schemas": [SCIM_USER], "userName": person.email, "active": True,
                                             "emails": [{"value": person.email, "primary": True}]})
        if response.status_code not in (201, 409):  # 409: an earlier attempt of ours created it
            raise TrafficError(f"SCIM: {response.status_code} {response.text}")
        self.acked("scim_user")

    async def opt_in(self, tenant: Tenant, person: Person) -> None:
        profile = {"persona": "expert", "topics": ["energy"], "languages": ["en"], "team_id": person.team,
                   "networks": [{"network": person.network, "handle": person.email.split("@")[0],
                                 "audience_size": person.audience}],
                   "preferences": {"max_shares_per_week": 50}}
        response = await self.api.call("ambassador", "POST", "/v1/me/opt-in",
                                       headers=self.api.auth(tenant.name, person.email, "ambassador"),
                                       json={"charter_version": tenant.charter_version, "profile": profile})
        if response.status_code != 200:
            raise TrafficError(f"opt-in: {response.status_code} {response.text}")
        self.reference.opted_in[tenant.name].add(person.id(tenant.name))
        self.acked("opt_in", 2)

    async def opt_out(self, tenant: Tenant, person: Person) -> None:
        response = await self.api.call("ambassador", "POST", "/v1/me/opt-out", json={},
                                       headers=self.api.auth(tenant.name, person.email, "ambassador"))
        if response.status_code != 200:
            return self.refuse("opt-out", response)
        self.reference.opted_in[tenant.name].discard(person.id(tenant.name))
        self.acked("opt_out")

    async def content(self, tenant: Tenant, campaign_id: str, campaign_line: str, key: str) -> str:
        api, t = self.api, tenant.name
        editor, reviewer = api.auth(t, "editor-1", "editor"), api.auth(t, "reviewer-1", "reviewer")
        publish_at = datetime.now(UTC) + timedelta(seconds=3)
        suggested = f"Our plant now runs on renewable energy, proud of the team. {campaign_line} {tenant.disclosure}"
        response = await api.call("content", "POST", "/v1/content", headers={**editor, "Idempotency-Key": key}, json={
            "campaign_id": campaign_id, "title": f"Content {key}", "link_url": f"https://{t}.example/c/{key}",
            "suggested_texts": {"linkedin": suggested, "x": suggested}, "topics": ["energy"], "language": "en",
            "audience": {"languages": ["en"]}, "networks": ["linkedin", "x"], "publish_at": publish_at.isoformat(),
            "expires_at": (publish_at + timedelta(days=7)).isoformat()})
        if response.status_code not in (200, 201):
            raise TrafficError(f"content: {response.status_code} {response.text}")
        content_id = response.json()["id"]
        for action, headers, done in (("submit", editor, {"in_review", "approved", "scheduled", "published"}),
                                      ("approve", reviewer, {"approved", "scheduled", "published"})):
            answer = await api.call("content", "POST", f"/v1/content/{content_id}/{action}", headers=headers)
            if answer.status_code != 200:  # a retry after a lost answer: the first attempt did it
                status = (await api.call("content", "GET", f"/v1/content/{content_id}", headers=editor)).json()
                if status.get("status") not in done:
                    raise TrafficError(f"{action}: {answer.status_code} {answer.text}; item {status}")
        return content_id

    async def published(self, tenant: Tenant, content_id: str, timeout: float = 240) -> None:
        editor = self.api.auth(tenant.name, "editor-1", "editor")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            item = await self.api.call("content", "GET", f"/v1/content/{content_id}", headers=editor)
            if item.status_code == 200 and item.json().get("status") == "published":
                self.acked("published")
                return
            await asyncio.sleep(1)
        raise TrafficError(f"content {content_id} not published after {timeout} s")

    async def share(self, tenant: Tenant, person: Person, content: tuple[str, str], timeout: float = 240) -> None:
        """Prepare (retried until the projections know the content and the person) and confirm."""
        content_id, campaign_id = content
        headers = self.api.auth(tenant.name, person.email, "ambassador")
        deadline = time.monotonic() + timeout
        attempt = 0
        while True:
            attempt += 1
            text = f"{words(self.rng, 14)} {self._campaign_line(tenant, campaign_id)} {tenant.disclosure}"
            if self.rng.random() < 0.15:  # close to the suggested text: flagged or refused, never wrong
                text = (f"Our plant now runs on renewable energy, proud of the whole team. "
                        f"{self._campaign_line(tenant, campaign_id)} {tenant.disclosure}")
            prepared = await self.api.call(
                "distribution", "POST", "/v1/shares", headers={**headers, "Idempotency-Key": f"{content_id}-{attempt}"},
                json={"content_id": content_id, "network": person.network, "text": text})
            if prepared.status_code not in (200, 201):  # 200: a replay of the same key
                self.counts[f"prepare_refused_{refusal_rule(prepared)}"] += 1
                if time.monotonic() > deadline:
                    return self.refuse("prepare", prepared)
                if not (prepared.status_code == 422 and "similar" in prepared.text):
                    await asyncio.sleep(1)  # the content or the opt-in is not projected yet
                continue
            share = prepared.json()
            confirmed = await self.api.call("distribution", "POST", f"/v1/shares/{share['share_id']}/confirm",
                                            headers=headers, json={})
            if confirmed.status_code == 200:
                break
            if not (confirmed.status_code == 422 and "similar" in confirmed.text):
                return self.refuse("confirm", confirmed)
            # A colleague confirmed the same words first (both prepared before either confirmed): rewrite.
            self.counts[f"confirm_refused_{refusal_rule(confirmed)}"] += 1
        body = confirmed.json()
        ref = ShareRef(tenant.name, body["share_id"], content_id, campaign_id, body["ambassador_id"], person.network,
                       body["tracked_link_code"])
        self.reference.shared(ref, body["personalized"], person.audience)
        tenant.shares.append(ref)
        self.acked("share")

    def _campaign_line(self, tenant: Tenant, campaign_id: str) -> str:
        campaigns = list(dict.fromkeys(c for _, c in tenant.contents))
        return f"#Camp{campaigns.index(campaign_id)}"

    # --- engagement --------------------------------------------------------------------------------

    async def engagement(self, tenants: list[Tenant], until_events: int, concurrency: int) -> None:
        lifecycle = [(t, p, "in") for t in tenants for p in t.late] + [(t, p, "out") for t in tenants for p in t.leaving]
        self.rng.shuffle(lifecycle)
        every = max(1, (until_events - self.events) // (len(lifecycle) + 1))
        next_lifecycle = self.events + every

        async def one_worker() -> None:
            nonlocal next_lifecycle
            while self.events < until_events and not self.stopped.is_set():
                if lifecycle and self.events >= next_lifecycle:
                    next_lifecycle += every
                    tenant, person, move = lifecycle.pop()
                    await (self.opt_in(tenant, person) if move == "in" else self.opt_out(tenant, person))
                    continue
                tenant = self.rng.choice(tenants)
                share = self.rng.choice(tenant.shares)
                roll = self.rng.random()
                if roll < 0.55:
                    await self.report(tenant, share)
                elif roll < 0.95:
                    await self.click(share)
                else:
                    await self.conversion(tenant, share)

        await asyncio.gather(*(one_worker() for _ in range(concurrency)))

    async def _signed(self, tenant: Tenant, path: str, report: dict, label: str):
        connector_id, secret = tenant.connector
        raw = json.dumps(report).encode()
        headers = {**self.api.auth(tenant.name, "scim", "integrator"), "Content-Type": "application/json"}

        def fresh() -> dict:
            return {"content": raw, "headers": {**headers, "X-Advocacy-Signature": sign(secret, int(time.time()), raw)}}

        while True:
            response = await self.api.call("distribution", "POST", f"/v1/connectors/{connector_id}/{path}",
                                           body_factory=fresh, label=label)
            if response.status_code == 409 and "right now" in response.text:
                await asyncio.sleep(0.5)  # our own earlier attempt is still being received
                continue
            return response

    async def report(self, tenant: Tenant, share: ShareRef) -> None:
        kind, _, most = self.rng.choices(KINDS, weights=[k[1] for k in KINDS])[0]
        count = self.rng.randint(1, most)
        room = self.comment_room.setdefault(share.share_id, [0, 0])
        if kind == "comment_reply":
            if room[0] - room[1] < 1:
                kind = "comment"  # nothing to reply to yet: a reply now would be implausible
            else:
                count = min(count, room[0] - room[1])
                room[1] += count  # taken before sending, so concurrent replies never overshoot
        report = {"id": self.next_id(), "kind": kind, "count": count, "occurred_at": datetime.now(UTC).isoformat()}
        if self.rng.random() < 0.2:  # connectors may name the post by its tracked link instead
            report["tracked_link_code"] = share.code
        else:
            report["share_id"] = share.share_id
        response = await self._signed(tenant, "engagements", report, "report")
        # 409 "already received": an earlier attempt of ours was acknowledged by Kafka, its answer was lost.
        if response.status_code == 202 or (response.status_code == 409 and "already received" in response.text):
            self.reference.engaged(share, kind, count)
            self.acked("report", count)
            if kind == "comment":
                room[0] += count
        else:
            self.refuse("report", response)

    async def conversion(self, tenant: Tenant, share: ShareRef) -> None:
        kind, count = self.rng.choice(CONVERSION_TYPES), self.rng.randint(1, 3)
        report = {"id": self.next_id(), "tracked_link_code": share.code, "conversion_type": kind, "count": count,
                  "occurred_at": datetime.now(UTC).isoformat()}
        response = await self._signed(tenant, "conversions", report, "conversion")
        if response.status_code == 202 or (response.status_code == 409 and "already received" in response.text):
            self.reference.converted(share, kind, count)
            self.acked("conversion", count)
        else:
            self.refuse("conversion", response)

    async def click(self, share: ShareRef) -> None:
        bot = self.rng.random() < 0.2
        agent = self.rng.choice(BOTS if bot else HUMANS)
        visitor = (f"198.51.100.{self.rng.randint(1, 40)}", agent)
        headers = {"User-Agent": agent, "X-Forwarded-For": visitor[0]}
        try:
            response = await self.api.call("distribution", "GET", f"/r/{share.code}", headers=headers,
                                           retry_lost=False, label="click")
        except InDoubt:
            if not bot:
                self.reference.clicked(share, visitor, in_doubt=True)
            self.counts["click_in_doubt"] += 1
            return
        if response.status_code != 302:
            return self.refuse("click", response)
        if bot:
            self.counts["bot_click"] += 1
            return
        self.reference.clicked(share, visitor)
        self.acked("click")


def refusal_rule(response) -> str:
    try:
        return str(response.json().get("rule") or response.status_code)
    except ValueError:
        return str(response.status_code)


async def gather_limited(jobs, limit: int) -> None:
    gate = asyncio.Semaphore(limit)

    async def run(job):
        async with gate:
            await job

    await asyncio.gather(*(run(job) for job in jobs))
