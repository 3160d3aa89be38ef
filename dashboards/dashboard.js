"use strict";
// The dashboard: every figure comes from the API's aggregates (/dashboard/summary, /chart);
// the browser only lays them out. Every value from the API goes through textContent.

const FEED_MS = 2000;
const PANELS_MS = 5000;
const PAGE = 100;
const MAX_LIVE = 1000; // the most rows the live refresh re-reads in one request
const SEVERITIES = ["critical", "high", "medium", "low"];
const SVG = "http://www.w3.org/2000/svg";

const state = { rows: [], cursor: null, seen: new Set(), firstLoad: true, paused: false, range: "24h", drawer: null };
const $ = (id) => document.getElementById(id);

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    // Through the CSSOM: the Content-Security-Policy refuses inline style attributes.
    else if (key === "style") Object.assign(node.style, value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== null) node.textContent = text;
  return node;
}

const when = (iso) => new Date(iso).toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
const number = (n) => n.toLocaleString();

// Filters change while answers are on their way: only the newest call of each kind is shown.
const tickets = {};

async function newest(kind, request) {
  const ticket = (tickets[kind] = (tickets[kind] || 0) + 1);
  try {
    const value = await request;
    return ticket === tickets[kind] ? value : null;
  } catch (error) {
    if (ticket === tickets[kind]) throw error;
    return null;
  }
}

// ---- the API token: kept in this browser tab's session only ----

const TOKEN_KEY = "privtrail.token";

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function showLogin(message) {
  $("login").hidden = false;
  $("signed-in").hidden = true;
  $("login-note").textContent = message || "";
}

function signedIn() {
  $("login").hidden = true;
  $("signed-in").hidden = false;
}

// A link may carry the token in its fragment (#token=...), which never reaches a server.
function tokenFromLink() {
  const match = location.hash.match(/^#token=([\w-]+)$/);
  if (!match) return;
  sessionStorage.setItem(TOKEN_KEY, match[1]);
  history.replaceState(null, "", location.pathname + location.search);
}

async function authorized(path, options = {}) {
  if (!sessionStorage.getItem(TOKEN_KEY)) {
    showLogin("sign in with an API token");
    throw new Error("sign in with an API token");
  }
  const response = await fetch(path, { ...options, headers: { ...(options.headers || {}), ...authHeaders() } });
  if (response.status === 401) {
    const body = await response.clone().json().catch(() => ({}));
    showLogin(sessionStorage.getItem(TOKEN_KEY) ? body.detail : "sign in with an API token");
  } else if (response.ok) {
    signedIn();
  }
  return response;
}

async function api(path, options = {}) {
  const response = await authorized(path, { ...options, headers: { Accept: "application/json", "Content-Type": "application/json" } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = Array.isArray(body.detail) ? body.detail.map((d) => `${d.loc.at(-1)}: ${d.msg}`).join("; ") : body.detail;
    throw new Error(detail || `${path} answered HTTP ${response.status}`);
  }
  return body;
}

// ---- filters ----

function localInput(id) {
  const value = $(id).value;
  return value ? new Date(value).toISOString() : null;
}

function filterParams() {
  const params = new URLSearchParams();
  for (const name of ["org", "rule", "severity"]) {
    const value = $(name).value.trim();
    if (value) params.set(name, value);
  }
  const period = $("period").value;
  if (period === "custom") {
    if (localInput("since")) params.set("since", localInput("since"));
    if (localInput("until")) params.set("until", localInput("until"));
  } else if (period) {
    params.set("since", new Date(Date.now() - Number(period) * 3600e3).toISOString());
  }
  params.set("triage", $("triage").value);
  return params;
}

function chartParams() {
  const params = new URLSearchParams({ range: state.range });
  for (const name of ["org", "rule", "severity"]) if ($(name).value.trim()) params.set(name, $(name).value.trim());
  return params;
}

function updateExports() {
  $("export-csv").href = `/dashboard/export.csv?${filterParams()}`;
  $("export-json").href = `/dashboard/export.json?${filterParams()}`;
}

// A link cannot send the token: the export is fetched with it and saved from memory.
async function download(event) {
  event.preventDefault();
  updateExports();
  const link = event.currentTarget;
  const response = await authorized(link.getAttribute("href"));
  if (!response.ok) {
    $("feed-error").textContent = `export failed: HTTP ${response.status}`;
    $("feed-error").hidden = false;
    return;
  }
  const name = (response.headers.get("Content-Disposition") || "").match(/filename="([^"]+)"/);
  const url = URL.createObjectURL(await response.blob());
  const save = el("a", { href: url, download: name ? name[1] : "privtrail-export" });
  document.body.append(save);
  save.click();
  save.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

// ---- the feed ----

function triageCell(t) {
  if (!t) return el("td", { class: "tri muted", text: "new" });
  return el("td", { class: `tri ${t.state}` }, [
    el("strong", { text: t.state }),
    el("div", { class: "muted", text: `${t.analyst}, ${when(t.at)}` }),
    t.note ? el("div", { class: "muted", text: `“${t.note}”` }) : "",
  ]);
}

function flows(v) {
  return [v.actor && `by ${v.actor}`, v.recipient && `to ${v.recipient}`, v.data_use && `for ${v.data_use}`]
    .filter(Boolean).join(" · ");
}

function violationRow(v) {
  const fresh = !state.firstLoad && !state.seen.has(v.violation_id);
  state.seen.add(v.violation_id);
  const detail = [`org ${v.org}`, `subject ${v.subject_pseudonym.slice(0, 12)}…`, flows(v)].filter(Boolean).join(" · ");
  const row = el("tr", { "data-violation": v.violation_id, ...(fresh ? { class: "fresh" } : {}) }, [
    el("td", { class: "muted nowrap", text: when(v.occurred_at) }),
    el("td", { class: "muted nowrap", text: when(v.detected_at) }),
    el("td", {}, [el("span", { class: `sev ${v.severity}`, text: v.severity })]),
    el("td", { class: "rule", text: v.rule_id, title: v.policy_text }),
    el("td", {}, [el("div", { text: v.explanation }), el("div", { class: "muted", text: detail })]),
    triageCell(v.triage),
  ]);
  row.addEventListener("click", () => openDrawer(v.org, v.violation_id));
  return row;
}

function showRows() {
  $("violations").replaceChildren(...state.rows.map(violationRow));
  $("violations-empty").hidden = state.rows.length > 0;
  $("more").hidden = !state.cursor;
  const live = state.paused ? "paused" : state.rows.length > MAX_LIVE ? "live updates stop past 1000 rows" : "live";
  $("feed-note").textContent = `${state.rows.length} shown, newest first · ${live} · ${new Date().toLocaleTimeString()}`;
  state.firstLoad = false;
}

async function fetchPage(limit, cursor) {
  const params = filterParams();
  params.set("limit", String(limit));
  if (cursor) params.set("cursor", cursor);
  return api(`/dashboard/violations?${params}`);
}

// Feed reads run one after another: a live refresh answered after a "load more" (or the other
// way round) would otherwise put back rows and a cursor from before it.
let feedQueue = Promise.resolve();

function guarded(work) {
  feedQueue = feedQueue.then(async () => {
    try {
      await work();
      $("feed-error").hidden = true;
    } catch (error) {
      $("feed-error").textContent = error.message;
      $("feed-error").hidden = false;
    }
  });
  return feedQueue;
}

async function refreshFeed() {
  await guarded(async () => {
    if (state.paused || state.rows.length > MAX_LIVE) return;
    const page = await fetchPage(Math.max(PAGE, state.rows.length), null);
    state.rows = page.rows;
    state.cursor = page.next_cursor;
    showRows();
  });
}

async function loadMore() {
  await guarded(async () => {
    const page = await fetchPage(PAGE, state.cursor);
    state.rows = state.rows.concat(page.rows);
    state.cursor = page.next_cursor;
    showRows();
  });
}

function restartFeed() {
  updateExports();
  guarded(async () => {
    state.rows = [];
    state.cursor = null;
    state.seen.clear();
    state.firstLoad = true;
  });
  refreshFeed();
  refreshChart();
}

// ---- counters, chart, top rules ----

function setOrgs(orgs) {
  const select = $("org");
  const known = new Set([...select.options].map((o) => o.value));
  for (const org of orgs) if (!known.has(org)) select.append(el("option", { value: org, text: org }));
}

function ruleRow(r, top) {
  const link = el("a", { class: "filter rule", text: r.rule_id, title: `show only ${r.rule_id}` });
  link.addEventListener("click", () => {
    $("org").value = r.org;
    $("rule").value = r.rule_id;
    restartFeed();
  });
  const bar = el("div", { class: "bar" }, [el("div", { style: { width: `${(100 * r.count) / top}%`, background: `var(--${r.severity})` } })]);
  return el("tr", {}, [
    el("td", {}, [el("span", { class: `sev ${r.severity}`, text: r.severity }), " ", link, bar]),
    el("td", { class: "muted", text: r.org }),
    el("td", { class: "num", text: number(r.count) }),
  ]);
}

async function refreshSummary() {
  const org = $("org").value;
  const s = await newest("summary", api(`/dashboard/summary${org ? `?org=${encodeURIComponent(org)}` : ""}`));
  if (!s) return;
  $("c-open").textContent = number(s.open_violations);
  for (const sev of SEVERITIES) $(`c-${sev}`).textContent = number(s.by_severity[sev] || 0);
  $("c-24h").textContent = number(s.last_24h);
  $("c-acknowledged").textContent = number(s.triage.acknowledged);
  $("c-resolved").textContent = number(s.triage.resolved);
  $("c-events").textContent = number(s.events);
  // null: rejected inputs belong to no org, so a token of some orgs does not count them.
  $("c-rejected").textContent = s.rejected === null ? "–" : number(s.rejected);
  const top = Math.max(1, ...s.top_rules.map((r) => r.count));
  $("rules").replaceChildren(...s.top_rules.map((r) => ruleRow(r, top)));
  $("rules-empty").hidden = s.top_rules.length > 0;
  setOrgs(s.orgs);
}

function drawChart(chart) {
  const width = 800, height = 220, left = 34, bottom = 18;
  const totals = chart.buckets.map((b) => SEVERITIES.reduce((sum, sev) => sum + b[sev], 0));
  const peak = Math.max(1, ...totals);
  const step = (width - left) / chart.buckets.length;
  const scale = (height - bottom - 6) / peak;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none", role: "img",
    "aria-label": `open violations per ${chart.bucket_hours} h, last ${chart.range}` });
  root.append(svg("line", { x1: left, x2: width, y1: height - bottom, y2: height - bottom }));
  root.append(svg("text", { x: 0, y: 10 }, number(peak)), svg("text", { x: 0, y: height - bottom }, "0"));
  const labelEvery = Math.ceil(chart.buckets.length / 8);
  chart.buckets.forEach((bucket, i) => {
    let y = height - bottom;
    const x = left + i * step + 1;
    for (const sev of [...SEVERITIES].reverse()) {
      if (!bucket[sev]) continue;
      const h = bucket[sev] * scale;
      y -= h;
      const rect = svg("rect", { x, y, width: Math.max(1, step - 2), height: h, class: sev });
      rect.append(svg("title", {}, `${when(bucket.start)}: ${bucket[sev]} ${sev}`));
      root.append(rect);
    }
    if (i % labelEvery === 0) {
      const start = new Date(bucket.start);
      const label = chart.range === "24h" ? start.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
        : start.toLocaleDateString([], { month: "short", day: "numeric" });
      root.append(svg("text", { x, y: height - 4 }, label));
    }
  });
  $("chart").replaceChildren(root);
  $("chart-note").textContent = `${number(totals.reduce((a, b) => a + b, 0))} in the last ${chart.range}, ${chart.bucket_hours} h per bar`;
}

async function refreshChart() {
  try {
    const chart = await newest("chart", api(`/dashboard/chart?${chartParams()}`));
    if (chart) drawChart(chart);
  } catch (error) {
    $("chart").replaceChildren(el("div", { class: "empty error", text: error.message }));
  }
}

async function refreshRejected() {
  const rows = await api("/rejected?limit=10");
  $("rejected").replaceChildren(...rows.map((r) => el("tr", {}, [
    el("td", { class: "muted nowrap", text: when(r.received_at) }),
    el("td", {}, [
      el("div", { text: r.field ? `${r.field}: ${r.reason}` : r.reason }),
      el("div", { class: "muted", text: [r.event_type, r.event_id && `id ${r.event_id}`, `${r.source_topic}[${r.source_partition}]@${r.source_offset}`].filter(Boolean).join(" · ") }),
    ]),
  ])));
  $("rejected-empty").hidden = rows.length > 0;
}

async function refreshHealth() {
  const badge = $("health");
  try {
    const health = await (await fetch("/health")).json();
    const parts = [`store ${health.store.ok ? "ok" : "down"}`];
    if (health.ingest) parts.push(health.ingest.running ? (health.ingest.connected ? "ingesting" : "waiting for Kafka") : "ingest stopped");
    badge.textContent = parts.join(" · ");
    badge.title = (health.reasons || []).join("\n");
    badge.className = health.status;
  } catch (error) {
    badge.textContent = "service not reachable";
    badge.className = "degraded";
  }
}

async function refreshPanels() {
  await Promise.allSettled([refreshSummary(), refreshChart(), refreshRejected(), refreshHealth()]);
}

// ---- drill-down and triage ----

function facts(pairs) {
  return pairs.filter(([, v]) => v !== null && v !== undefined && v !== "" && !(Array.isArray(v) && !v.length))
    .map(([k, v]) => el("tr", {}, [el("td", { text: k }), el("td", { text: Array.isArray(v) ? v.join(", ") : String(v) })]));
}

function timelineItem(edges, brokenEvents, currentEvent) {
  const e = edges[0];
  const party = e.action === "shared" ? `shared with ${e.recipient_kind || ""} ${e.recipient_id || ""}${e.recipient_country ? ` (${e.recipient_country})` : ""}`
    : `accessed by ${e.actor_kind || ""} ${e.actor_id || ""}`;
  const categories = edges.map((x) => x.data_category).join(", ");
  const broke = brokenEvents.get(e.event_id);
  const classes = [broke && "broke", e.event_id === currentEvent && "current"].filter(Boolean).join(" ");
  return el("li", classes ? { class: classes } : {}, [
    el("strong", { text: when(e.event_time) }), ` ${party}: ${categories}`,
    e.data_use ? el("span", { class: "muted", text: ` for ${e.data_use}` }) : "",
    broke ? el("div", { text: `broke ${broke.join(", ")}${e.event_id === currentEvent ? " ← this violation" : ""}` }) : "",
  ]);
}

function showTimeline(subject, current) {
  // `current`: the violation the drawer shows; its event is marked in the timeline.
  const byEvent = new Map();
  for (const edge of subject.edges) byEvent.set(edge.event_id, [...(byEvent.get(edge.event_id) || []), edge]);
  const broken = new Map();
  for (const v of subject.violations) broken.set(v.event_id, [...(broken.get(v.event_id) || []), v.rule_id]);
  const items = [...byEvent.values()].map((edges) => timelineItem(edges, broken, current.event_id));
  $("d-timeline").replaceChildren(...(items.length ? items : [el("li", { class: "muted", text: "No access or share of this subject's data is recorded." })]));
  const others = subject.violations.filter((v) => v.violation_id !== current.violation_id);
  $("d-others").replaceChildren(...(others.length ? others.map((v) => {
    const row = el("tr", { "data-violation": v.violation_id }, [
      el("td", { class: "muted nowrap", text: when(v.occurred_at) }),
      el("td", {}, [el("span", { class: `sev ${v.severity}`, text: v.severity })]),
      el("td", { class: "rule", text: v.rule_id }), el("td", { text: v.explanation }),
    ]);
    row.addEventListener("click", () => openDrawer(v.org, v.violation_id));
    return row;
  }) : [el("tr", {}, [el("td", { class: "muted", text: "None." })])]));
}

function showDetail(detail) {
  const v = detail.violation;
  $("d-title").replaceChildren(el("span", { class: `sev ${v.severity}`, text: v.severity }), " ", el("span", { class: "rule", text: v.rule_id }));
  $("d-summary").replaceChildren(el("p", { text: v.explanation }), el("table", { class: "facts" }, facts([
    ["event time", when(v.occurred_at)], ["detected", when(v.detected_at)], ["deadline", v.deadline && when(v.deadline)],
    ["org", v.org], ["status", v.status], ["actor", v.actor], ["recipient", v.recipient],
    ["data", v.data_categories], ["use", v.data_use], ["violation id", v.violation_id],
  ])));
  $("d-policy").replaceChildren(el("div", { class: "muted", text: `${v.org} policy ${v.policy_version}, §${v.policy_section}` }), el("div", { text: v.policy_text }));
  const e = detail.event;
  $("d-event").replaceChildren(...(e ? facts([
    ["type", e.event_type], ["event id", e.event_id], ["source", e.source], ["event time", when(e.event_time)],
    ["judged", when(e.judged_at)], ["actor", e.actor_kind && `${e.actor_kind} ${e.actor_id}`],
    ["recipient", e.recipient_kind && `${e.recipient_kind} ${e.recipient_id}${e.recipient_country ? ` (${e.recipient_country})` : ""}`],
    ["data", e.data_categories], ["use", e.data_use], ["legal basis", e.legal_basis], ["encrypted", e.encrypted],
    ["rules broken", e.violated_rules], ["kafka", `partition ${e.partition}, offset ${e.offset}`],
  ]) : [el("tr", {}, [el("td", { class: "muted", text: `Event ${v.event_id} is not stored.` })])]));
  $("d-history").replaceChildren(...detail.triage_history.map((t) => el("li", {}, [
    el("strong", { text: t.state }), ` by ${t.analyst}, ${when(t.at)}`, t.note ? el("div", { class: "muted", text: t.note }) : "",
  ])));
  $("d-subject").textContent = `pseudonym ${v.subject_pseudonym} (${v.subject_kind})`;
}

async function openDrawer(org, violationId) {
  state.drawer = { org, violationId };
  $("drawer").hidden = false;
  $("d-error").hidden = true;
  try {
    const base = `/dashboard/violations/${encodeURIComponent(org)}/${encodeURIComponent(violationId)}`;
    const detail = await api(base);
    showDetail(detail);
    const v = detail.violation;
    showTimeline(await api(`/dashboard/subjects/${encodeURIComponent(org)}/${encodeURIComponent(v.subject_pseudonym)}`), v);
  } catch (error) {
    $("d-error").textContent = error.message;
    $("d-error").hidden = false;
  }
}

async function submitTriage(event) {
  event.preventDefault();
  const { org, violationId } = state.drawer;
  localStorage.setItem("privtrail.analyst", $("d-analyst").value.trim());
  const body = { state: event.submitter.value, note: $("d-note").value, analyst: $("d-analyst").value };
  try {
    await api(`/dashboard/violations/${encodeURIComponent(org)}/${encodeURIComponent(violationId)}/triage`, { method: "POST", body: JSON.stringify(body) });
    $("d-note").value = "";
    await openDrawer(org, violationId);
    refreshFeed();
    refreshSummary();
  } catch (error) {
    $("d-error").textContent = error.message;
    $("d-error").hidden = false;
  }
}

// ---- wiring ----

$("d-analyst").value = localStorage.getItem("privtrail.analyst") || "";
$("d-triage").addEventListener("submit", submitTriage);
$("d-close").addEventListener("click", () => { $("drawer").hidden = true; state.drawer = null; });
$("more").addEventListener("click", loadMore);
// A relative period ends now: the links are brought up to date as they are followed.
for (const id of ["export-csv", "export-json"]) $(id).addEventListener("click", download);
$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  $("token").value = "";
  restartFeed();
  refreshPanels();
});
$("logout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  showLogin("signed out");
  $("violations").replaceChildren();
  $("rejected").replaceChildren();
  restartFeed();
  refreshPanels();
});
$("pause").addEventListener("click", () => {
  state.paused = !state.paused;
  $("pause").textContent = state.paused ? "Resume" : "Pause";
  refreshFeed();
});
$("period").addEventListener("change", () => { $("custom-period").hidden = $("period").value !== "custom"; });
for (const id of ["org", "rule", "severity", "period", "since", "until", "triage"]) $(id).addEventListener("change", restartFeed);
$("org").addEventListener("change", refreshSummary);
for (const button of document.querySelectorAll("[data-range]")) {
  button.addEventListener("click", () => {
    state.range = button.dataset.range;
    for (const b of document.querySelectorAll("[data-range]")) b.classList.toggle("on", b === button);
    refreshChart();
  });
}

tokenFromLink();
if (!sessionStorage.getItem(TOKEN_KEY)) showLogin("sign in with an API token");
updateExports();
refreshFeed();
refreshPanels();
setInterval(refreshFeed, FEED_MS);
setInterval(refreshPanels, PANELS_MS);
