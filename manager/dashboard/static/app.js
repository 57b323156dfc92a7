// The dashboard page: reads /api/* with the session cookie, follows /api/events (server-sent
// events) and re-reads what an event changed, so nothing needs a reload. Every value from the
// cluster goes into the page as text (textContent), never as markup. Charts are SVG drawn here.
"use strict";

const state = {
  me: null, nodes: [], services: [], tasks: [], events: [], load: null, secrets: [],
  seen: new Set(),  // services already shown once (new ones flash)
};
const SVG = "http://www.w3.org/2000/svg";
const MAX_EVENTS = 300;
const LOAD_PERIOD_MS = 2000;
let source = null;

// -- small helpers -------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function pill(text, tone) { return el("span", {class: `pill ${tone || ""}`}, text); }

function ago(seconds) {
  if (!seconds) return "";
  const delta = Math.max(0, Date.now() / 1000 - seconds);
  if (delta >= 86400) return `${Math.floor(delta / 86400)}d ago`;
  if (delta >= 3600) return `${Math.floor(delta / 3600)}h ago`;
  if (delta >= 60) return `${Math.floor(delta / 60)}m ago`;
  return `${Math.floor(delta)}s ago`;
}

function size(bytes) {
  if (bytes === null || bytes === undefined) return "";
  const units = [["TiB", 2 ** 40], ["GiB", 2 ** 30], ["MiB", 2 ** 20], ["KiB", 2 ** 10]];
  for (const [unit, scale] of units) {
    if (bytes >= scale) return `${+(bytes / scale).toFixed(2)} ${unit}`;
  }
  return `${bytes} B`;
}

function cores(value) { return value === null || value === undefined ? "" : (+value.toFixed(2)).toString(); }

function bar(share, tone) {
  const inner = el("span");
  inner.style.width = `${Math.max(0, Math.min(1, share || 0)) * 100}%`;  // CSSOM: allowed by the CSP
  return el("span", {class: `bar ${tone || ""}`}, inner);
}

function tone(stateName) {
  if (["ready", "running", "healthy", "completed", "active"].includes(stateName)) return "ok";
  if (["down", "failed", "rejected", "orphaned", "unhealthy", "paused", "rolled back",
       "rollback paused"].includes(stateName)) return "bad";
  if (["suspect", "agent-down", "pending", "starting", "preparing", "updating",
       "rolling back", "canary", "drain", "pause"].includes(stateName)) return "warn";
  return "idle";
}

function fill(tableId, rows, render, emptyText) {
  const body = document.querySelector(`#tbl-${tableId} tbody`);
  const columns = document.querySelectorAll(`#tbl-${tableId} thead th`).length;
  body.replaceChildren(...(rows.length ? rows.map(render)
    : [el("tr", {}, el("td", {class: "empty", colSpan: columns}, emptyText))]));
}

// -- reading the API -------------------------------------------------------------------------

class SignedOut extends Error {}

async function api(path) {
  const reply = await fetch(path, {credentials: "same-origin", cache: "no-store"});
  if (reply.status === 401) {
    const body = await reply.json().catch(() => ({}));
    signedOut(body.error || "the session ended");
    throw new SignedOut(body.error);
  }
  if (!reply.ok) throw new Error(`${path}: ${reply.status}`);
  return reply.json();
}

const readers = {
  nodes: async () => { state.nodes = await api("/api/nodes"); renderNodes(); },
  services: async () => { state.services = await api("/api/services"); renderServices(); },
  tasks: async () => { state.tasks = await api("/api/tasks"); renderTasks(); },
  load: async () => { state.load = await api("/api/load"); renderLoad(); },
  secrets: async () => {
    if (!state.me || !state.me.secrets) return;
    state.secrets = await api("/api/secrets"); renderSecrets();
  },
};
const inflight = {};
const again = {};

// Reads a list now, or once more right after the read in flight: never two at once, never a
// change left unread.
function refresh(...names) {
  for (const name of names) {
    if (inflight[name]) { again[name] = true; continue; }
    inflight[name] = (async () => {
      try { await readers[name](); } catch (err) { if (!(err instanceof SignedOut)) console.warn(err); }
      inflight[name] = null;
      if (again[name]) { again[name] = false; refresh(name); }
    })();
  }
  renderSummary();
}

// -- the live stream ---------------------------------------------------------------------

const AFFECTS = {
  node: ["nodes"], service: ["services", "tasks"], task: ["tasks", "services", "nodes"],
  secret: ["secrets"], config: ["secrets"],
};

function follow() {
  if (source) source.close();
  source = new EventSource("/api/events");
  source.addEventListener("hello", (message) => {
    const hello = JSON.parse(message.data);
    state.events = hello.recent.slice().reverse();
    setLive(true);
    refresh("nodes", "services", "tasks", "secrets");
    renderEvents();
  });
  source.addEventListener("change", (message) => {
    const event = JSON.parse(message.data);
    state.events.unshift(event);
    state.events.length = Math.min(state.events.length, MAX_EVENTS);
    refresh(...(AFFECTS[event.kind] || []));
    renderEvents();
  });
  source.addEventListener("end", (message) => {
    source.close();
    setLive(false);
    checkSession(JSON.parse(message.data).reason);
  });
  source.onerror = () => {
    setLive(false);
    if (source.readyState === EventSource.CLOSED) checkSession("");
  };
}

// After the stream ended (`reason`: why, when the manager said) or broke: signed out, or back.
async function checkSession(reason) {
  try {
    state.me = await api("/api/me");
  } catch (err) {
    if (err instanceof SignedOut) { if (reason) signedOut(reason); }
    else setTimeout(() => checkSession(reason), 2000);
    return;
  }
  setTimeout(follow, 1000);  // still signed in: the stream broke for another reason
}

function setLive(on) {
  const live = document.getElementById("live");
  live.classList.toggle("off", !on);
  live.textContent = on ? "live" : "disconnected";
}

function signedOut(reason) {
  if (source) source.close();
  setLive(false);
  document.getElementById("signedout-reason").textContent = reason;
  document.getElementById("signedout").hidden = false;
  document.getElementById("signout").hidden = true;
  document.getElementById("summary").replaceChildren();
  for (const page of document.querySelectorAll(".page")) page.hidden = true;
  document.getElementById("secrets-tab").hidden = true;
  state.me = null;
}

// -- pages ------------------------------------------------------------------------------

function renderSummary() {
  if (!state.me) return;
  const ready = state.nodes.filter((n) => n.state === "ready").length;
  const converged = state.services.filter((s) => s.running >= s.desired).length;
  const running = state.tasks.filter((t) => t.live && t.state === "running").length;
  const live = state.tasks.filter((t) => t.live).length;
  const stat = (figure, label) => el("div", {class: "stat"},
    el("div", {class: "figure"}, figure), el("div", {class: "label"}, label));
  document.getElementById("summary").replaceChildren(
    stat(`${ready}/${state.nodes.length}`, "nodes ready"),
    stat(`${converged}/${state.services.length}`, "services converged"),
    stat(`${running}/${live}`, "tasks running"),
    stat(String(state.events.length), "events seen"));
}

function renderServices() {
  const known = new Set(state.seen);
  fill("services", state.services, (s) => {
    const fresh = known.size > 0 && !known.has(s.name);  // new since the page opened
    state.seen.add(s.name);
    const share = s.desired ? s.running / s.desired : 1;
    const scaling = s.autoscale;
    let autoscale = el("span", {class: "muted"}, "off");
    if (scaling) {
      const targets = scaling.targets.map((t) => `${t.name} ${t.current ?? "–"}/${t.target}`);
      autoscale = el("div", {},
        el("div", {}, `${scaling.min}..${scaling.max}, wants ${scaling.desired ?? scaling.replicas}`),
        el("div", {class: "small"}, targets.join(", ")),
        scaling.last_decision ? el("div", {class: "small"},
          `last, ${ago(scaling.last_time)}: ${scaling.last_decision}`) : null,
        scaling.holding ? el("div", {class: "small"}, `holding: ${scaling.holding}`) : null,
        scaling.at_capacity ? el("div", {class: "small"}, `at capacity: ${scaling.at_capacity}`) : null);
    }
    const update = s.update.text ? el("div", {}, pill(s.update.text, tone(s.update.state)),
      s.update.message ? el("div", {class: "small"}, s.update.message) : null)
      : el("span", {class: "muted"}, "–");
    return el("tr", {class: fresh ? "fresh" : "", "data-service": s.name},
      el("td", {}, el("strong", {}, s.name), el("div", {class: "small"}, s.mode)),
      el("td", {}, bar(share, share >= 1 ? "ok" : "warn"),
        el("span", {"data-replicas": s.name}, `${s.running}/${s.desired}`),
        el("div", {class: "small"}, `${s.ready} ready`)),
      el("td", {}, s.image),
      el("td", {}, update),
      el("td", {}, autoscale),
      el("td", {}, s.ports.join(", ")),
      el("td", {class: "num"}, `v${s.version}`));
  }, "No services yet: podium deploy -f FILE");
  renderSummary();
}

function renderNodes() {
  fill("nodes", state.nodes, (n) => {
    const cpu = n.cpu_total ? n.cpu_used / n.cpu_total : 0;
    const mem = n.memory_total ? n.memory_used / n.memory_total : 0;
    return el("tr", {"data-node": n.name},
      el("td", {}, el("strong", {}, n.name), el("div", {class: "small"}, n.id.slice(0, 12))),
      el("td", {}, pill(n.state_text, tone(n.state)),
        n.message ? el("div", {class: "small"}, n.message) : null),
      el("td", {}, pill(n.availability, tone(n.availability))),
      el("td", {}, n.addr),
      el("td", {}, n.cpu_total === null ? el("span", {class: "muted"}, "no report") : [
        bar(cpu), `${cores(n.cpu_used)} / ${cores(n.cpu_total)} cores`]),
      el("td", {}, n.memory_total === null ? "" : [
        bar(mem), `${size(n.memory_used)} / ${size(n.memory_total)}`]),
      el("td", {class: "num"}, n.tasks),
      el("td", {}, n.engine),
      el("td", {}, n.reported_ago === null ? "never" : `${n.reported_ago}s ago`));
  }, "No nodes have joined: podium token agent, then podium agent --token-file ...");
  renderSummary();
}

function renderTasks() {
  const all = document.getElementById("finished").checked;
  const rows = state.tasks.filter((t) => all || t.live);
  fill("tasks", rows, (t) => el("tr", {"data-task": t.name, class: t.live ? "" : "muted"},
    el("td", {}, el("strong", {}, t.name), el("div", {class: "small"}, t.id.slice(0, 12))),
    el("td", {}, t.node),
    el("td", {}, pill(t.state, tone(t.state))),
    el("td", {}, t.desired),
    el("td", {}, t.health === "none" ? el("span", {class: "muted"}, "no check")
      : pill(t.health, tone(t.health))),
    el("td", {class: "num"}, t.restarts),
    el("td", {class: "num"}, cores(t.cpu)),
    el("td", {class: "num"}, size(t.memory)),
    el("td", {"data-ago": t.since}, ago(t.since)),
    el("td", {class: "small"}, t.message)), "No tasks");
  renderSummary();
}

function renderEvents() {
  fill("events", state.events.slice(0, 100), (e) => el("tr", {"data-event": e.kind},
    el("td", {"data-ago": e.time}, ago(e.time)),
    el("td", {}, e.kind),
    el("td", {}, el("strong", {}, e.name)),
    el("td", {}, `${e.action}: ${e.text}`),
    el("td", {class: "small"}, e.actor)), "Waiting for changes…");
}

function renderSecrets() {
  fill("secrets", state.secrets, (s) => el("tr", {"data-secret": s.name},
    el("td", {}, el("strong", {}, s.name)),
    el("td", {}, s.kind),
    el("td", {}, s.versions.map((v) => `v${v.version} (${ago(v.created)})`).join(", ")),
    el("td", {}, s.used_by.join(", ") || el("span", {class: "muted"}, "unused"))),
  "No secrets or configs");
}

// -- charts --------------------------------------------------------------------------------

// The smallest of 1, 2 or 5 times a power of ten at or above `value` (the chart's top).
function niceCeil(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

function chart(points, pick, label, format, cls) {
  const width = 560, height = 130, left = 64, bottom = 16, top = 18;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  const now = state.load ? state.load.now : Date.now() / 1000;
  const start = now - 60;
  const values = points.map(pick);
  const peak = niceCeil(Math.max(...values, 0));
  const x = (t) => left + ((t - start) / 60) * (width - left - 4);
  const y = (v) => top + (1 - v / peak) * (height - top - bottom);
  const add = (tag, attrs, text) => {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    svg.append(node);
  };
  for (const share of [0, 0.5, 1]) {
    add("line", {class: "grid", x1: left, x2: width - 4, y1: y(peak * share), y2: y(peak * share)});
    add("text", {class: "axis", x: left - 4, y: y(peak * share) + 3, "text-anchor": "end"},
      format(peak * share));
  }
  add("text", {class: "title", x: left, y: 11}, label);
  add("text", {class: "axis", x: left, y: height - 2}, "-60s");
  add("text", {class: "axis", x: width - 4, y: height - 2, "text-anchor": "end"}, "now");
  const shown = points.filter((p) => p[0] >= start);
  if (shown.length) {
    const line = shown.map((p) => `${x(p[0]).toFixed(1)},${y(pick(p)).toFixed(1)}`);
    const last = shown[shown.length - 1];
    line.push(`${x(now).toFixed(1)},${y(pick(last)).toFixed(1)}`);  // holds until now
    add("polygon", {class: `area-${cls}`,
      points: `${x(shown[0][0]).toFixed(1)},${y(0)} ${line.join(" ")} ${x(now).toFixed(1)},${y(0)}`});
    add("polyline", {class: cls, points: line.join(" ")});
  }
  return svg;
}

function renderLoad() {
  const services = state.load ? state.load.services : [];
  const box = document.getElementById("charts");
  if (!services.length) {
    box.replaceChildren(el("p", {class: "muted"}, "No load reported yet."));
    return;
  }
  box.replaceChildren(...services.map((s) => {
    const last = s.points.length ? s.points[s.points.length - 1] : null;
    return el("div", {class: "card", "data-chart": s.name},
      el("h3", {}, s.name),
      el("div", {class: "figures"},
        `cpu ${last ? cores(last[1]) : "–"} cores · memory ${last ? size(last[2]) : "–"} · `
        + `${s.requests_per_second} req/s · ${s.connections} connections`),
      chart(s.points, (p) => p[1], "cpu, cores", (v) => `${+v.toPrecision(3)}`, "cpu"),
      chart(s.points, (p) => p[2], "memory", (v) => size(Math.round(v)), "mem"));
  }));
}

// -- navigation and start --------------------------------------------------------------------

function show() {
  if (!state.me) return;
  let tab = location.hash.slice(1) || "services";
  if (tab === "secrets" && !state.me.secrets) tab = "services";
  for (const page of document.querySelectorAll(".page")) page.hidden = page.id !== `page-${tab}`;
  for (const link of document.querySelectorAll("#tabs a")) {
    link.classList.toggle("active", link.dataset.tab === tab);
  }
  if (tab === "load") refresh("load");
  // Read again on each visit: a read that failed (or came before the session was known) would
  // otherwise leave the page empty until a secret changes.
  if (tab === "secrets") refresh("secrets");
}

async function signOut() {
  await fetch("/api/logout", {method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json"}, body: "{}"});
  signedOut("You signed out.");
}

async function start() {
  try {
    state.me = await api("/api/me");
  } catch (err) {
    if (!(err instanceof SignedOut)) signedOut(String(err));
    return;
  }
  document.getElementById("user").textContent = `${state.me.user} (${state.me.role})`;
  document.getElementById("secrets-tab").hidden = !state.me.secrets;
  document.getElementById("signout").hidden = false;
  document.getElementById("signout").addEventListener("click", signOut);
  document.getElementById("finished").addEventListener("change", renderTasks);
  window.addEventListener("hashchange", show);
  show();
  follow();
  // Load figures are measurements, not store changes: they are read again every period.
  setInterval(() => {
    if (!state.me) return;
    refresh("load");
    if (!document.getElementById("page-nodes").hidden) refresh("nodes");
    if (!document.getElementById("page-tasks").hidden) refresh("tasks");
  }, LOAD_PERIOD_MS);
  setInterval(() => {
    for (const cell of document.querySelectorAll("[data-ago]")) {
      cell.textContent = ago(+cell.dataset.ago);
    }
  }, 1000);
}

start();
