// taskhost dashboard: polls api/state and api/history every POLL_MS, renders the tables and
// draws the charts on <canvas>. Plain JS, no libraries (the page's CSP is default-src 'self').
// Mutating calls (job actions) send the X-Taskhost-Action header the admin listener requires.
"use strict";

const POLL_MS = 2000;
const KEEP_SAMPLES = 600;
const PAGE = 20;
const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];
const hist = { t: [], series: {} };
let lastState = null;
let renders = 0;
// The job browser: the cursor of each page seen (pages[0] = 0, the first).
const jobs = { queue: "", state: "", pages: [0], page: 0, next: null };

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(k === undefined || k === null ? "" : String(k)));
  return e;
}

const fmt = (v, d = 2) => (v === null || v === undefined || Number.isNaN(v) ? "–" : (Math.round(v * 10 ** d) / 10 ** d).toString());
const time = (ms) => (ms ? new Date(ms).toLocaleTimeString() : "–");

async function api(path, opts) {
  const r = await fetch(path, Object.assign({ credentials: "same-origin", cache: "no-store" }, opts || {}));
  if (r.status === 401) { location.href = "login"; throw new Error("signed out"); }
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || r.status + " " + r.statusText);
  return body;
}

function fill(tbody, rows, cols) {
  const tb = typeof tbody === "string" ? document.querySelector(tbody + " tbody") : tbody;
  tb.replaceChildren(...rows);
  if (!rows.length) tb.append(el("tr", { class: "empty" }, el("td", { colSpan: cols }, "none")));
}

function cell(f, v, cls) { return el("td", { "data-f": f, class: cls }, v); }

// ---- tables -----------------------------------------------------------------------------

function renderHosts(s) {
  fill("#hosts", s.hosts.map((h) => el("tr", { "data-host": h.id },
    cell("id", h.id), cell("kind", h.kind), cell("workers", h.workers, "n"), cell("processes", h.processes, "n"),
    cell("started", h.started, "n"), cell("run_queue", h.run_queue, "n"),
    cell("utilisation", h.utilisation === null ? "–" : fmt(h.utilisation * 100, 1) + " %", "n"))), 7);
  fill("#busiest", s.busiest.map((p) => el("tr", { "data-pid": p.pid },
    cell("pid", p.pid), cell("host", p.host), cell("entry", p.entry), cell("mailbox", p.mailbox, "n"),
    cell("lua_heap", fmt(p.lua_heap / 1024, 1), "n"))), 5);
  $("totals").textContent = `Messages sent ${s.messages_sent} · heap ${(s.memory.heap / 1048576).toFixed(1)} MiB · RSS ${(s.memory.rss / 1048576).toFixed(1)} MiB`;
}

function renderServices(s) {
  fill("#services", s.services.map((v) => el("tr", { "data-service": v.id },
    cell("id", v.id), cell("process", v.process), cell("host", v.host), cell("state", v.state, "state-" + v.state),
    cell("restarts", v.restarts, "n"), cell("last_error", v.last_error || "", "err"))), 6);
}

function renderHttp(s) {
  const rows = s.http.filter((r) => r.requests > 0 || r.route !== "(unmatched)").map((r) => {
    const codes = Object.entries(r.status).map(([c, n]) => `${c}: ${n}`).join("  ");
    return el("tr", { "data-route": r.service + " " + r.route },
      cell("service", r.service), cell("route", r.route), cell("requests", r.requests, "n"),
      cell("rps", fmt(r.rps), "n"), cell("p50", fmt(r.p50_ms, 3), "n"), cell("p99", fmt(r.p99_ms, 3), "n"),
      cell("status", codes));
  });
  fill("#http", rows, 7);
}

function renderQueues(s) {
  const states = ["queued", "scheduled", "running", "retrying", "done", "failed", "cancelled"];
  fill("#queues", s.queues.map((q) => el("tr", { "data-queue": q.id }, cell("id", q.id),
    ...states.map((k) => cell(k, q.states ? q.states[k] : "–", "n")),
    cell("finished_per_s", fmt(q.finished_per_s), "n"), cell("wait_p50", fmt(q.wait_p50_ms, 3), "n"),
    cell("wait_p99", fmt(q.wait_p99_ms, 3), "n"))), 11);
  const fails = [];
  for (const q of s.queues) for (const j of q.failures || []) {
    const e = j.errors && j.errors.length ? j.errors[j.errors.length - 1].error : "";
    fails.push(el("tr", { "data-job": j.id }, cell("queue", q.id), cell("id", j.id), cell("attempt", j.attempt, "n"), cell("error", e, "err")));
  }
  fill("#failures", fails, 4);
  const sel = $("j-queue");
  const ids = s.queues.map((q) => q.id);
  if ([...sel.options].map((o) => o.value).join() !== ids.join()) {
    sel.replaceChildren(...ids.map((id) => el("option", { value: id }, id)));
    if (ids.includes(jobs.queue)) sel.value = jobs.queue;
    else { jobs.queue = ids[0] || ""; resetPages(); }
  }
}

function renderRegistry(s) {
  const r = s.registry;
  $("r-version").textContent = r.version;
  $("r-entries").textContent = r.entries;
  $("r-reloads").textContent = r.reloads;
  $("r-refused").textContent = r.refused;
  const l = r.last_reload;
  $("r-last").textContent = l ? `Last reload ${time(l.at)}: version ${l.version}, ${l.entries} entries (${l.why})` : "No reload since the start.";
  const f = r.last_refused;
  $("r-refused-box").hidden = !f;
  if (f) {
    $("r-refused-why").textContent = `${time(f.at)}: ${f.why}`;
    $("r-errors").replaceChildren(...(f.errors.length ? f.errors : ["(no diagnostics)"]).map((e) => el("li", {}, e)));
  }
  fill("#kinds", Object.entries(r.kinds).map(([k, n]) => el("tr", { "data-kind": k }, cell("kind", k), cell("n", n, "n"))), 2);
}

// ---- job browser ------------------------------------------------------------------------

function resetPages() { jobs.pages = [0]; jobs.page = 0; }

function jobActions(j) {
  const acts = [];
  if (j.state === "failed" || j.state === "cancelled") acts.push("retry");
  if (j.state === "scheduled" || j.state === "retrying") acts.push("requeue");
  if (["queued", "scheduled", "retrying", "running"].includes(j.state)) acts.push("cancel");
  return acts.map((a) => {
    const b = el("button", { type: "button", class: "act", "data-act": a, "data-job": j.id }, a);
    b.addEventListener("click", () => act(a, j.id));
    return b;
  });
}

async function loadJobs() {
  if (!jobs.queue) { fill("#jobs", [], 7); return; }
  const q = new URLSearchParams({ queue: jobs.queue, limit: PAGE, after: jobs.pages[jobs.page] });
  if (jobs.state) q.set("state", jobs.state);
  const r = await api("api/jobs?" + q);
  jobs.next = r.next;
  $("j-next").disabled = !r.next;
  $("j-first").disabled = jobs.page === 0;
  $("j-page").textContent = `page ${jobs.page + 1}`;
  fill("#jobs", r.jobs.map((j) => {
    const e = j.errors && j.errors.length ? j.errors[j.errors.length - 1].error : "";
    return el("tr", { "data-job": j.id, "data-state": j.state }, cell("id", j.id), cell("state", j.state, "state-" + j.state),
      cell("attempt", `${j.attempt}/${j.max_retries + 1}`, "n"), cell("created", j.created_at || "–"),
      cell("run_at", j.run_at || "–"), cell("error", e, "err"), el("td", { "data-f": "actions" }, ...jobActions(j)));
  }), 7);
}

async function act(action, id) {
  const msg = $("j-msg");
  try {
    const q = new URLSearchParams({ queue: jobs.queue, id });
    const r = await api(`api/job/${action}?` + q, { method: "POST", headers: { "X-Taskhost-Action": "1" } });
    msg.textContent = `${action} ${id}: ${r.was} → ${r.state}`;
  } catch (e) {
    msg.textContent = `${action} ${id}: ${e.message}`;
  }
  await refresh(false);
}

// ---- charts -----------------------------------------------------------------------------

function mergeHistory(h) {
  const n0 = hist.t.length;
  hist.t.push(...h.t);
  for (const name of Object.keys(hist.series)) if (!(name in h.series)) hist.series[name].push(...h.t.map(() => null));
  for (const [name, vals] of Object.entries(h.series)) {
    if (!(name in hist.series)) hist.series[name] = new Array(n0).fill(null);
    hist.series[name].push(...vals);
  }
  const drop = hist.t.length - KEEP_SAMPLES;
  if (drop > 0) {
    hist.t.splice(0, drop);
    for (const v of Object.values(hist.series)) v.splice(0, drop);
  }
}

// Series of one kind ("http|app:gateway" → label "app:gateway").
function seriesOf(kind) {
  return Object.entries(hist.series).filter(([n]) => n.split("|").length === 2 && n.startsWith(kind + "|"))
    .map(([n, v]) => ({ label: n.slice(kind.length + 1), values: v }));
}

function draw(id, list) {
  const c = $(id), dpr = window.devicePixelRatio || 1;
  const w = c.clientWidth || 480, h = c.clientHeight || 160;
  c.width = w * dpr; c.height = h * dpr;
  const g = c.getContext("2d");
  g.scale(dpr, dpr);
  g.clearRect(0, 0, w, h);
  const t = hist.t, L = 44, R = 8, T = 8, B = 18;
  let max = 0;
  for (const s of list) for (const v of s.values) if (v !== null && v > max) max = v;
  max = max > 0 ? max * 1.15 : 1;
  g.strokeStyle = "#ddd"; g.fillStyle = "#666"; g.font = "11px sans-serif"; g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = T + (h - T - B) * (1 - i / 4);
    g.beginPath(); g.moveTo(L, y); g.lineTo(w - R, y); g.stroke();
    g.fillText(fmt(max * i / 4, max < 4 ? 2 : 0), 2, y + 4);
  }
  if (t.length > 1) {
    const t0 = t[0], t1 = t[t.length - 1], x = (ms) => L + (w - L - R) * ((ms - t0) / Math.max(1, t1 - t0));
    g.fillText(time(t0), L, h - 4);
    g.fillText(time(t1), w - R - 60, h - 4);
    list.forEach((s, k) => {
      g.strokeStyle = COLORS[k % COLORS.length]; g.lineWidth = 1.5; g.beginPath();
      let pen = false;
      s.values.forEach((v, i) => {
        if (v === null) { pen = false; return; }
        const y = T + (h - T - B) * (1 - v / max);
        if (pen) g.lineTo(x(t[i]), y); else g.moveTo(x(t[i]), y);
        pen = true;
      });
      g.stroke();
    });
  }
  $("l" + id.slice(1)).replaceChildren(...list.map((s, k) => {
    const last = [...s.values].reverse().find((v) => v !== null);
    const sw = el("i"); sw.style.background = COLORS[k % COLORS.length];
    return el("span", {}, sw, `${s.label} ${fmt(last)}`);
  }));
}

function drawCharts() {
  draw("c-http", seriesOf("http"));
  draw("c-jobs", seriesOf("finished"));
  draw("c-failed", seriesOf("failed"));
  draw("c-procs", [{ label: "processes", values: hist.series.processes || [] },
    ...seriesOf("run_queue").map((s) => ({ label: "run queue " + s.label, values: s.values }))]);
}

// ---- polling ----------------------------------------------------------------------------

async function refresh(withHistory) {
  const st = $("status");
  try {
    const since = hist.t.length ? hist.t[hist.t.length - 1] : 0;
    const [s, h] = await Promise.all([api("api/state"), withHistory ? api("api/history?since=" + since) : null]);
    lastState = s;
    $("version").textContent = "v" + s.version;
    renderHosts(s); renderServices(s); renderHttp(s); renderQueues(s); renderRegistry(s);
    await loadJobs();
    if (h) { mergeHistory(h); drawCharts(); }
    renders++;
    document.body.setAttribute("data-rendered", String(renders));
    st.textContent = "live · " + time(s.now);
    st.className = "status ok";
  } catch (e) {
    st.textContent = "error: " + e.message;
    st.className = "status bad";
  }
}

async function loop() {
  await refresh(true);
  setTimeout(loop, POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  $("j-queue").addEventListener("change", (e) => { jobs.queue = e.target.value; resetPages(); loadJobs(); });
  $("j-state").addEventListener("change", (e) => { jobs.state = e.target.value; resetPages(); loadJobs(); });
  $("j-first").addEventListener("click", () => { resetPages(); loadJobs(); });
  $("j-next").addEventListener("click", () => {
    if (!jobs.next) return;
    jobs.pages[jobs.page + 1] = Number(jobs.next); jobs.page++; loadJobs();
  });
  window.addEventListener("resize", drawCharts);
  loop();
});
