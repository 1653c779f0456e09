// The reference dashboard: plain ES module, Chart.js (window.Chart), only the public metrics API.
// The access token arrives in the URL fragment (#token=..., never sent to a server) or is pasted,
// and is kept in sessionStorage for this tab. The live stream opens with a single-use ticket.

const TOKEN_KEY = "advocacy.dashboard.token";
const API_KEY = "advocacy.dashboard.api";
const NETWORKS = ["linkedin", "x", "facebook", "instagram", "tiktok", "xing"];
const GROUP_TOO_SMALL = "https://advocacy.example/problems/group-too-small";
const MAX_BREAKDOWN_VALUES = 20;
const OVERVIEW_KPIS = [
  ["active_ambassadors", "Active ambassadors", "int"], ["ambassadors_opted_in", "Opted in", "int"],
  ["activation_rate", "Activation", "pct"], ["shares", "Shares", "int"],
  ["personalization_rate", "Personalised", "pct"], ["potential_reach", "Potential reach", "int"],
  ["impressions", "Impressions", "int"], ["engagements", "Engagements", "int"],
  ["engagement_rate", "Engagement rate", "pct"], ["clicks", "Clicks", "int"],
  ["click_through_rate", "Click-through", "pct"], ["conversions", "Conversions", "int"],
  ["earned_media_value", "Earned media value", "money"],
];
const LIVE_KPIS = [["shares", "Shares", "int"], ["impressions", "Impressions", "int"],
  ["engagements", "Engagements", "int"], ["clicks", "Clicks", "int"], ["conversions", "Conversions", "int"]];
const ROW_KPIS = [["shares", "int"], ["impressions", "int"], ["engagements", "int"],
  ["engagement_rate", "pct"], ["clicks", "int"], ["conversions", "int"]];

const $ = (id) => document.getElementById(id);
const charts = {};
let session = null; // {token, api, claims}
let streamRetry = 1000;

// --- session ------------------------------------------------------------------------------

function readSession() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get("token")) sessionStorage.setItem(TOKEN_KEY, fragment.get("token"));
  if (fragment.get("api")) sessionStorage.setItem(API_KEY, fragment.get("api"));
  if (location.hash) history.replaceState(null, "", location.pathname); // the token leaves the address bar
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return null;
  const claims = decodeClaims(token);
  if (!claims) return null;
  return { token, api: (sessionStorage.getItem(API_KEY) || location.origin).replace(/\/$/, ""), claims };
}

function decodeClaims(token) {
  // For display and choosing a view only: the API verifies the token on every call.
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
  } catch {
    return null;
  }
}

function roles() {
  const value = session.claims.roles || [];
  return new Set(typeof value === "string" ? value.split(" ") : value);
}

// --- API ------------------------------------------------------------------------------------

class ApiProblem extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

async function api(path, params = {}, init = {}) {
  const url = new URL(session.api + path);
  for (const [key, value] of Object.entries(params)) if (value) url.searchParams.set(key, value);
  const response = await fetch(url, { ...init, headers: { Authorization: `Bearer ${session.token}` } });
  const text = await response.text();
  if (!response.ok) {
    let problem = {};
    try { problem = JSON.parse(text); } catch { /* not a problem document */ }
    throw new ApiProblem(response.status, problem);
  }
  return path.endsWith(".csv") ? text : JSON.parse(text);
}

function period() {
  return { from: $("from").value, to: $("to").value };
}

// --- rendering ------------------------------------------------------------------------------

function format(value, kind) {
  if (value === null || value === undefined) return "–";
  if (kind === "pct") return `${(value * 100).toFixed(2)} %`;
  if (kind === "money") return value.toLocaleString("en-US", { style: "currency", currency: "EUR" });
  return value.toLocaleString("en-US");
}

function cards(container, kpis, list, attribute) {
  container.replaceChildren(...list.map(([name, label, kind]) => {
    const card = document.createElement("div");
    card.className = "card";
    const title = document.createElement("div");
    title.className = "label";
    title.textContent = label;
    const value = document.createElement("div");
    value.className = "value";
    value.dataset[attribute] = name;
    value.dataset.raw = JSON.stringify(kpis[name]);
    value.textContent = format(kpis[name], kind);
    card.append(title, value);
    return card;
  }));
}

function table(element, header, rows) {
  const head = document.createElement("tr");
  head.append(...header.map((text) => Object.assign(document.createElement("th"), { textContent: text })));
  element.tHead.replaceChildren(head);
  element.tBodies[0].replaceChildren(...rows.map((cells) => {
    const row = document.createElement("tr");
    for (const cell of cells) {
      const td = document.createElement("td");
      if (typeof cell === "object" && cell !== null) Object.assign(td, cell);
      else td.textContent = cell;
      row.append(td);
    }
    return row;
  }));
}

function kpiCells(kpis) {
  return ROW_KPIS.map(([name, kind]) => ({ textContent: format(kpis[name], kind), title: name }));
}

function draw(canvasId, type, labels, datasets) {
  charts[canvasId]?.destroy();
  charts[canvasId] = new window.Chart($(canvasId), {
    type, data: { labels, datasets },
    options: { animation: false, maintainAspectRatio: false, responsive: true,
      plugins: { legend: { display: datasets.length > 1 } }, scales: { y: { beginAtZero: true } } },
  });
}

function showError(error) {
  const box = $("error");
  box.textContent = error ? `${error.message}` : "";
  box.hidden = !error;
}

// --- the programme (analysts, admins) --------------------------------------------------------

async function loadOverview() {
  const report = await api("/v1/metrics/overview", period());
  $("overview-period").textContent = `${report.period.first_day} to ${report.period.last_day}`;
  cards($("kpis"), report.kpis, OVERVIEW_KPIS, "kpi");
}

async function loadSeries() {
  const dimension = $("series-dimension").value;
  const value = dimension === "tenant" ? null : $("series-value").value.trim();
  const metric = $("series-metric").value;
  $("series-message").textContent = "";
  try {
    const series = await api("/v1/metrics/timeseries",
      { ...period(), dimension, value, granularity: $("granularity").value });
    draw("series-chart", "line", series.points.map((p) => p.period_start),
      [{ label: metric, data: series.points.map((p) => p.kpis[metric]), borderColor: "#2563eb",
        backgroundColor: "#93c5fd", fill: true, tension: 0.2 }]);
    $("series-chart").dataset.points = JSON.stringify(series.points.map((p) => p.kpis[metric]));
  } catch (error) {
    charts["series-chart"]?.destroy();
    $("series-message").textContent = tooSmall(error) ? "Group too small" : error.message;
  }
}

function tooSmall(error) {
  return error instanceof ApiProblem && error.problem.type === GROUP_TOO_SMALL;
}

async function valuesOf(dimension) {
  // The API lists no campaigns or contents to analysts: their ids come from the CSV export.
  if (dimension === "network") return NETWORKS;
  const csv = await api("/v1/metrics/export.csv", { ...period(), dimension, granularity: "month" });
  const [header, ...lines] = csv.trim().split("\n").map(csvFields);
  const column = header.indexOf("value");
  const values = new Set(lines.map((fields) => fields[column]).filter(Boolean));
  return [...values].sort().slice(0, MAX_BREAKDOWN_VALUES);
}

function csvFields(line) {
  // One CSV line (RFC 4180 quoting: titles may hold commas and quotes).
  const fields = [];
  let field = "", quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quoted && c === '"' && line[i + 1] === '"') { field += '"'; i++; }
    else if (c === '"') quoted = !quoted;
    else if (c === "," && !quoted) { fields.push(field); field = ""; }
    else field += c;
  }
  fields.push(field);
  return fields;
}

async function loadBreakdown() {
  const dimension = $("breakdown-dimension").value;
  let reports;
  let hidden = 0;
  if (dimension === "team") {
    const teams = await api("/v1/metrics/teams", { ...period(), limit: "100" });
    reports = teams.items;
    hidden = teams.hidden_teams;
    $("breakdown-message").textContent =
      `Teams of at least ${teams.min_team_size} opted-in ambassadors are shown.`;
  } else {
    const path = { campaign: "campaigns", content: "contents", network: "networks" }[dimension];
    const values = await valuesOf(dimension);
    reports = await Promise.all(values.map((v) => api(`/v1/metrics/${path}/${encodeURIComponent(v)}`, period())));
    $("breakdown-message").textContent = reports.length ? "" : "Nothing in this period.";
  }
  const rows = reports.map((r) => [r.value, ...kpiCells(r.kpis)]);
  if (hidden) {
    rows.push([`${hidden} more team${hidden > 1 ? "s" : ""}`,
      { textContent: "group too small", className: "too-small", colSpan: ROW_KPIS.length }]);
  }
  table($("breakdown-table"), [dimension, ...ROW_KPIS.map(([name]) => name.replace(/_/g, " "))], rows);
  draw("breakdown-chart", "bar", reports.map((r) => r.value), [
    { label: "impressions", data: reports.map((r) => r.kpis.impressions), backgroundColor: "#60a5fa" },
    { label: "engagements", data: reports.map((r) => r.kpis.engagements), backgroundColor: "#f59e0b" }]);
}

async function showTeam() {
  const team = $("team-lookup").value.trim();
  const result = $("team-result");
  if (!team) return;
  try {
    const report = await api(`/v1/metrics/teams/${encodeURIComponent(team)}`, period());
    result.textContent = "";
    const t = document.createElement("table");
    t.append(document.createElement("thead"), document.createElement("tbody"));
    table(t, ["team", ...ROW_KPIS.map(([name]) => name.replace(/_/g, " "))], [[report.value, ...kpiCells(report.kpis)]]);
    result.replaceChildren(t);
  } catch (error) {
    const message = document.createElement("p");
    message.className = tooSmall(error) ? "too-small" : "error";
    message.textContent = tooSmall(error) ? `${team}: group too small` : error.message;
    result.replaceChildren(message);
  }
}

async function loadTop() {
  const ranking = await api("/v1/metrics/top/contents", { ...period(), limit: "10" });
  // Titles come with the ranking (the metrics service projects them from the content events).
  table($("top-table"), ["content", "id", "engagement rate", "engagements", "impressions", "shares"],
    ranking.items.map((i) => [{ textContent: i.title ?? i.key, className: i.title ? "" : "muted" },
      { textContent: i.key, className: "muted" }, format(i.engagement_rate, "pct"),
      format(i.engagements, "int"), format(i.impressions, "int"), format(i.shares, "int")]));
}

// --- the live stream -------------------------------------------------------------------------

async function openStream() {
  let ticket;
  try {
    ticket = (await api("/v1/stream-tickets", {}, { method: "POST" })).ticket;
  } catch (error) {
    setLive(error.status === 401 ? "signed out: token expired" : "offline", false);
    if (error.status !== 401) setTimeout(openStream, nextRetry());
    return;
  }
  // The ticket opens one stream once; the token itself never appears in a URL.
  const source = new EventSource(`${session.api}/v1/metrics/stream?ticket=${encodeURIComponent(ticket)}`);
  source.addEventListener("open", () => { streamRetry = 1000; setLive("live", true); });
  source.addEventListener("kpis", (event) => {
    const report = JSON.parse(event.data);
    cards($("live"), report.kpis, LIVE_KPIS, "live");
    $("live").dataset.updates = String(Number($("live").dataset.updates || 0) + 1);
  });
  source.addEventListener("expired", () => { source.close(); setLive("token expired: sign in again", false); });
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED && $("live-status").textContent.startsWith("token")) return;
    source.close(); // a ticket is single-use: reconnect with a new one
    setLive("reconnecting", false);
    setTimeout(openStream, nextRetry());
  });
}

function nextRetry() {
  streamRetry = Math.min(streamRetry * 2, 30000);
  return streamRetry;
}

function setLive(text, live) {
  $("live-status").textContent = text;
  $("live-status").classList.toggle("live", live);
}

// --- an ambassador's own statistics ------------------------------------------------------

async function loadMine() {
  const series = await api("/v1/metrics/me", { ...period(), granularity: $("granularity").value });
  $("me-period").textContent = `${series.period.first_day} to ${series.period.last_day}`;
  const totals = {};
  for (const [name] of LIVE_KPIS) totals[name] = series.points.reduce((sum, p) => sum + p.kpis[name], 0);
  cards($("me-kpis"), totals, LIVE_KPIS, "mine");
  draw("me-chart", "bar", series.points.map((p) => p.period_start), [
    { label: "impressions", data: series.points.map((p) => p.kpis.impressions), backgroundColor: "#60a5fa" },
    { label: "engagements", data: series.points.map((p) => p.kpis.engagements), backgroundColor: "#f59e0b" }]);
  table($("me-table"), ["from", ...ROW_KPIS.map(([name]) => name.replace(/_/g, " "))],
    series.points.map((p) => [p.period_start, ...kpiCells(p.kpis)]));
}

// --- start ------------------------------------------------------------------------------------

async function refresh() {
  showError(null);
  document.body.dataset.ready = "loading";
  try {
    const mine = roles().has("ambassador") && !roles().has("analyst") && !roles().has("admin");
    if (mine) await loadMine();
    else await Promise.all([loadOverview(), loadSeries(), loadBreakdown(), loadTop()]);
  } catch (error) {
    showError(error);
  }
  document.body.dataset.ready = "yes";
}

function defaultPeriod() {
  const today = new Date();
  const first = new Date(today.getTime() - 29 * 86400000);
  $("to").value = today.toISOString().slice(0, 10);
  $("from").value = first.toISOString().slice(0, 10);
}

function start() {
  session = readSession();
  if (!session) {
    $("sign-in").hidden = false;
    $("sign-in-button").addEventListener("click", () => {
      sessionStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
      location.reload();
    });
    return;
  }
  $("who").textContent = `${session.claims.tenant} · ${[...roles()].join(", ")}`;
  $("sign-out").hidden = false;
  $("sign-out").addEventListener("click", () => { sessionStorage.clear(); location.reload(); });
  $("controls").hidden = false;
  defaultPeriod();
  $("refresh").addEventListener("click", refresh);
  const analyst = roles().has("analyst") || roles().has("admin");
  if (analyst) {
    $("programme").hidden = false;
    $("series-show").addEventListener("click", loadSeries);
    $("breakdown-dimension").addEventListener("change", () => loadBreakdown().catch(showError));
    $("team-show").addEventListener("click", showTeam);
    $("live-status").hidden = false;
    openStream();
  } else if (roles().has("ambassador")) {
    $("me").hidden = false;
    $("granularity").value = "week";
  } else {
    showError(new Error("This dashboard is for analysts, admins and ambassadors."));
    return;
  }
  refresh();
}

// Chart.js is a deferred classic script: it has run once the document is parsed, like this module.
start();
