// The motadata-actors dashboard: renders each tenant's snapshot (see _dashboard.py) and
// follows /api/events. Everything shown goes through textContent: no markup from data.
"use strict";

const views = new Map(); // tenant -> its <section>

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null) continue;
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function clock(seconds) {
  if (!seconds) return "";
  return new Date(seconds * 1000).toLocaleTimeString([], { hour12: false });
}

function fixed(value, digits) {
  return value === null || value === undefined ? "\u2014" : Number(value).toFixed(digits);
}

// A table: columns are [key, header, render(row) -> text or node, numeric?].
function table(testid, caption, columns, rows, keyOf) {
  if (!rows.length) return el("p", { class: "empty", "data-testid": testid + "-empty" }, "none");
  const head = el("tr", {}, ...columns.map(([, header]) => el("th", { scope: "col" }, header)));
  const body = rows.map((row) =>
    el("tr", { "data-key": keyOf ? keyOf(row) : null },
      ...columns.map(([key, , render, numeric]) =>
        el("td", { "data-col": key, class: numeric ? "num" : null },
          render ? render(row) : row[key] ?? ""))));
  return el("table", { "data-testid": testid },
    el("caption", { class: "visually-hidden" }, caption), el("thead", {}, head),
    el("tbody", {}, ...body));
}

function trace(id) {
  return id ? el("code", { "data-testid": "trace-id" }, id) : "\u2014";
}

// The supervision tree of one process, from its agents' paths (/workers/writer).
function tree(agents) {
  const root = new Map();
  for (const agent of agents) {
    let level = root;
    for (const part of agent.path.split("/").filter(Boolean)) {
      if (!level.has(part)) level.set(part, new Map());
      level = level.get(part);
    }
  }
  const list = (level, prefix) => el("ul", { class: "tree" },
    ...[...level.entries()].map(([name, below]) => {
      const path = prefix + "/" + name;
      return el("li", { "data-path": path }, name, below.size ? list(below, path) : null);
    }));
  return list(root, "");
}

function replay(tenant, body) {
  const result = document.getElementById("action");
  result.textContent = "replaying\u2026";
  fetch(`/api/tenants/${encodeURIComponent(tenant)}/dead-letters/replay`, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-Sdk-Dashboard": "1" },
    body: JSON.stringify(body),
  }).then(async (response) => {
    if (!response.ok) throw new Error(await response.text());
    const answer = await response.json();
    result.textContent = `replayed ${answer.replayed}, kept ${answer.kept}: ` +
      answer.output.trim().split("\n").join("; ");
  }).catch((error) => { result.textContent = `replay failed: ${error.message}`; });
}

// Any other panel (sections): a list of objects as a table, an object as name/value rows.
function generic(name, value) {
  if (value && value.error) return el("p", { class: "error" }, value.error);
  let rows = Array.isArray(value) ? value : Object.entries(value || {}).map(
    ([key, v]) => ({ name: key, value: typeof v === "object" ? JSON.stringify(v) : v }));
  rows = rows.map((r) => (typeof r === "object" && r !== null ? r : { value: r }));
  const keys = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const columns = keys.map((k) => [k, k, (r) => {
    const v = r[k];
    return typeof v === "object" && v !== null ? JSON.stringify(v) : v ?? "";
  }]);
  return table("section-" + name, name, columns, rows);
}

function render(snap) {
  const tenant = snap.tenant;
  const byProcess = new Map();
  for (const agent of snap.agents || []) {
    if (!byProcess.has(agent.process)) byProcess.set(agent.process, []);
    byProcess.get(agent.process).push(agent);
  }
  const letters = snap.dead_letters || { letters: [], error: "" };
  const replayAll = el("button", { type: "button", "data-testid": "replay-all" },
    "Replay all");
  replayAll.addEventListener("click", () => replay(tenant, { seq: [], all: true }));
  const section = el("section", { class: "tenant", "data-testid": "tenant",
    "data-tenant": tenant, "aria-labelledby": `h-${tenant}` },
    el("h2", { id: `h-${tenant}` }, `Tenant ${tenant}`),
    el("p", { "data-testid": "updated" }, `polled ${clock(snap.time)}`,
      snap.error ? el("span", { class: "error" }, ` \u2014 ${snap.error}`) : null),
    el("h3", {}, "Processes"),
    table("processes", "Processes", [
      ["process", "process"], ["host", "host"], ["pid", "pid", null, true],
      ["agents", "agents", null, true],
    ], snap.processes || [], (p) => p.process),
    el("h3", {}, "Supervision tree"),
    ...[...byProcess.entries()].map(([process, agents]) =>
      el("div", { "data-testid": "tree", "data-process": process },
        el("p", {}, `${process} (pid ${agents[0].pid} on ${agents[0].host})`), tree(agents))),
    el("h3", {}, "Agents"),
    table("agents", "Agents", [
      ["name", "agent"], ["path", "path"], ["host", "process", (a) => `${a.host}:${a.pid}`],
      ["mailbox", "mailbox"],
      ["depth", "depth / capacity", (a) => `${a.queued} / ${a.capacity}`, true],
      ["handled", "handled", null, true], ["failed", "failed", null, true],
      ["restarts", "restarts", null, true],
      ["rate", "msgs/s", (a) => fixed(a.rate, 1), true],
      ["p50", "p50 ms (1 min)", (a) => fixed(a.latency_p50_ms, 2), true],
      ["avg", "avg ms (1 min)", (a) => fixed(a.latency_avg_ms, 2), true],
    ], snap.agents || [], (a) => a.name),
    el("h3", {}, "Dead letters"),
    letters.error ? el("p", { class: "error" }, letters.error) : null,
    letters.letters.length ? replayAll : null,
    table("dead-letters", "Dead letters", [
      ["seq", "seq", null, true], ["time", "kept", (d) => clock(d.time)], ["to", "to"],
      ["type", "type"], ["reason", "reason"], ["trace", "trace id", (d) => trace(d.trace_id)],
      ["body", "body", (d) => el("code", {}, d.body)],
      ["action", "action", (d) => {
        const button = el("button", { type: "button", "data-testid": "replay",
          "aria-label": `Replay dead letter ${d.seq}` }, "Replay");
        button.addEventListener("click", () => replay(tenant, { seq: [d.seq] }));
        return button;
      }],
    ], letters.letters, (d) => String(d.seq)),
    el("h3", {}, "Recent failures"),
    table("failures", "Recent failures", [
      ["time", "when", (f) => clock(f.time)], ["agent", "agent"], ["path", "path"],
      ["reason", "reason"], ["trace", "trace id", (f) => trace(f.trace_id)],
      ["where", "process", (f) => `${f.host}:${f.pid}`],
    ], snap.failures || [], (f) => f.agent),
    el("h3", {}, "Recent changes"),
    table("changes", "Recent changes", [
      ["time", "when", (c) => clock(c.time)], ["change", "change"], ["agent", "agent"],
      ["reason", "reason"], ["where", "process", (c) => `${c.host}:${c.pid}`],
    ], snap.changes || [], (c) => c.agent),
    ...Object.entries(snap.sections || {}).flatMap(([name, value]) =>
      [el("h3", {}, name), generic(name, value)]),
  );
  const main = document.getElementById("tenants");
  const old = views.get(tenant);
  if (old) old.replaceWith(section); else main.append(section);
  views.set(tenant, section);
}

function live(text, stale) {
  const node = document.getElementById("live");
  node.textContent = text;
  node.classList.toggle("stale", Boolean(stale));
}

async function start() {
  const response = await fetch("/api/snapshot", { credentials: "same-origin" });
  if (!response.ok) {
    live(await response.text(), true);
    return;
  }
  const first = await response.json();
  for (const snap of Object.values(first.tenants)) render(snap);
  const events = new EventSource("/api/events");
  events.addEventListener("snapshot", (event) => {
    render(JSON.parse(event.data));
    live(`live \u00b7 updated ${new Date().toLocaleTimeString([], { hour12: false })}`);
  });
  events.addEventListener("open", () => live("live"));
  events.addEventListener("error", () => live("disconnected: retrying\u2026", true));
}

start().catch((error) => live(`failed: ${error.message}`, true));
