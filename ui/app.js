// Ferry's operator UI: plain JavaScript over the /api/v1 REST API, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { token: sessionStorage.getItem("ferry-token") || "", view: "streams", detail: null, server: null, types: [], hls: null };

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body) {
  const res = await fetch("/api/v1" + path, {
    method,
    headers: Object.assign({ Authorization: "Bearer " + state.token }, body ? { "Content-Type": "application/json" } : {}),
    body: body ? JSON.stringify(body) : undefined,
  });
  if (res.status === 204) return null;
  let data = null;
  try { data = await res.json(); } catch (_) { /* not JSON */ }
  if (!res.ok) {
    if (res.status === 401) signOut("Your token was refused; sign in again.");
    throw new ApiError(res.status, (data && data.error) || res.statusText);
  }
  return data;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children.flat()) e.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return e;
}

function bitrate(bps) {
  if (!bps) return "–";
  return bps >= 1e6 ? (bps / 1e6).toFixed(2) + " Mbit/s" : Math.round(bps / 1e3) + " kbit/s";
}

function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 60 ? s + " s ago" : Math.round(s / 60) + " min ago";
}

// --- sign in ---------------------------------------------------------------

function show(view) {
  state.view = view;
  for (const v of ["signin", "streams", "tasks", "nodes"]) $(v).hidden = v !== view;
  $("nav").hidden = view === "signin";
  document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("active", t.dataset.view === view));
  refresh();
}

function signOut(message) {
  state.token = "";
  sessionStorage.removeItem("ferry-token");
  closeDetail();
  show("signin");
  $("signin-error").textContent = message || "";
}

$("signin-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  state.token = $("token").value.trim();
  $("signin-error").textContent = "";
  try {
    await api("GET", "/streams");
    sessionStorage.setItem("ferry-token", state.token);
    await loadStatic();
    show("streams");
  } catch (err) {
    state.token = "";
    $("signin-error").textContent = err.status === 401 ? "That token is not valid." : "Cannot reach Ferry: " + err.message;
  }
});
$("signout").addEventListener("click", () => signOut());
document.querySelectorAll(".tab").forEach((t) => t.addEventListener("click", () => show(t.dataset.view)));

async function loadStatic() {
  state.server = await api("GET", "/server");
  state.types = await api("GET", "/task-types");
  state.settingsSchema = await api("GET", "/stream-settings");
}

// --- streams ---------------------------------------------------------------

$("new-stream").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("streams-error").textContent = "";
  const name = $("new-stream-name").value.trim();
  try {
    const created = await api("POST", "/streams", { name });
    $("new-stream-name").value = "";
    $("created-name").textContent = created.stream.name;
    $("created-server").textContent = `rtmp://${location.hostname}:${state.server.rtmp_port}/${state.server.rtmp_app}`;
    $("created-key").textContent = created.key.key;
    $("created").hidden = false;
    refresh();
  } catch (err) {
    $("streams-error").textContent = err.message;
  }
});
$("created-close").addEventListener("click", () => { $("created").hidden = true; $("created-key").textContent = ""; });
document.querySelectorAll(".copy").forEach((b) => b.addEventListener("click", async () => {
  const text = $(b.dataset.copy).textContent;
  try { await navigator.clipboard.writeText(text); b.textContent = "Copied"; } catch (_) { b.textContent = "Select and copy"; }
  setTimeout(() => (b.textContent = "Copy"), 1500);
}));

async function act(what, fn) {
  $("streams-error").textContent = "";
  try { await fn(); } catch (err) { $("streams-error").textContent = what + ": " + err.message; }
  refresh();
}

function streamRow(s) {
  const live = s.live;
  const stateBadge = !s.enabled ? el("span", { class: "badge disabled" }, "disabled")
    : live.live ? el("span", { class: "badge live", "data-live": s.name }, "LIVE") : el("span", { class: "badge" }, "offline");
  // People (the cluster's reports) apart from what Ferry itself feeds.
  const audience = live.audience || { hls: 0, rtmp: 0 };
  const consumers = Object.entries(live.consumers || {}).map(([k, n]) => `${k} ${n}`).join(", ");
  const viewers = el("td", { class: "audience", "data-audience": s.name },
    el("span", { class: "hls-viewers", title: "HLS viewers placed by directors" }, `HLS ${audience.hls}`),
    " · ",
    el("span", { class: "rtmp-players", title: "RTMP players on origins and edges" }, `RTMP ${audience.rtmp}`),
    consumers ? el("div", { class: "muted", title: "Ferry's own consumers on this process" }, "feeds: " + consumers) : "");
  const activeKeys = s.keys.filter((k) => !k.revoked_at);
  return el("tr", { "data-stream": s.name },
    el("td", { class: "name" }, s.name),
    el("td", {}, stateBadge, live.live ? el("div", { class: "muted" }, live.publisher || "") : "",
      (live.warnings || []).map((w) => el("div", { class: "stream-warning", "data-warning": w.code }, "⚠ " + w.message))),
    el("td", { class: "bitrate" }, live.live ? bitrate(live.bitrate) : "–"),
    el("td", {}, live.live ? live.fps.toFixed(1) : "–",
      live.live && live.keyframe_interval_s != null ? el("div", { class: "muted", title: "Seconds between the source's keyframes" }, `GOP ${live.keyframe_interval_s.toFixed(1)} s`) : ""),
    el("td", { class: "muted" }, [live.video_codec, live.audio_codec].filter(Boolean).join(", ") || "–"),
    viewers,
    el("td", {}, activeKeys.map((k) => el("div", { class: "muted" }, k.hint,
      el("button", { class: "small", title: "Replace this key with a new one", onclick: () => act("Rotate", async () => {
        const nk = await api("POST", `/streams/${s.name}/keys/${k.id}/rotate`);
        $("created-name").textContent = s.name + " (new key)";
        $("created-server").textContent = `rtmp://${location.hostname}:${state.server.rtmp_port}/${state.server.rtmp_app}`;
        $("created-key").textContent = nk.key;
        $("created").hidden = false;
      }) }, "Rotate")))),
    el("td", {},
      el("button", { class: "small", onclick: () => openDetail(s.name) }, "Open"),
      live.live ? el("button", { class: "small", onclick: () => act("Kick", () => api("POST", `/streams/${s.name}/kick`)) }, "Kick") : "",
      el("button", { class: "small", onclick: () => act(s.enabled ? "Disable" : "Enable", () => api("PATCH", `/streams/${s.name}`, { enabled: !s.enabled })) }, s.enabled ? "Disable" : "Enable"),
      el("button", { class: "small danger", onclick: () => confirm(`Delete stream ${s.name}, its keys and tasks?`) && act("Delete", () => api("DELETE", `/streams/${s.name}`)) }, "Delete")));
}

// --- stream detail: preview and tasks -----------------------------------------

function openDetail(name) {
  state.detail = name;
  $("detail").hidden = false;
  $("detail-name").textContent = name;
  startPreview(name);
  renderTaskForm();
  renderSettings(name);
  renderPlayback(name);
  refresh();
}

// Where viewers point their players: the directors (spread over the edges),
// each live edge, the origin's own HLS, and RTMP.
async function renderPlayback(name) {
  const host = (url) => url.replace("//0.0.0.0", "//" + location.hostname).replace("//[::]", "//" + location.hostname);
  const [nodes, edges] = await Promise.all([api("GET", "/nodes"), api("GET", "/edges")]);
  const urls = [];
  for (const d of nodes.filter((n) => n.role === "director" && n.address.startsWith("http"))) {
    urls.push(["Director " + d.id, `${host(d.address)}/hls/${name}/master.m3u8`]);
  }
  for (const e of edges.filter((e) => e.state === "live")) {
    urls.push([`Edge ${e.id} (pool ${e.load.pool})`, `${host(e.url)}/hls/${name}/master.m3u8`]);
  }
  urls.push(["Origin HLS", `${location.origin}/hls/${name}/master.m3u8`]);
  urls.push(["RTMP", `rtmp://${location.hostname}:${state.server.rtmp_port}/${state.server.rtmp_app}/${name}`]);
  urls.push(["Publish (OBS Server; the stream key is the key, not the name)", `rtmp://${location.hostname}:${state.server.rtmp_port}/${state.server.rtmp_app}`]);
  $("detail-urls").replaceChildren(...urls.map(([label, url]) => el("li", { "data-url": label.split(" ")[0].toLowerCase() },
    el("span", { class: "muted" }, label + ": "), el("code", {}, url),
    el("button", { class: "small", onclick: async (ev) => {
      try { await navigator.clipboard.writeText(url); ev.target.textContent = "Copied"; } catch (_) { ev.target.textContent = "Select and copy"; }
      setTimeout(() => (ev.target.textContent = "Copy"), 1500);
    } }, "Copy"))));
}

// A small line chart of `values` (SVG, no library): the last value and the
// range are written beside it.
function chart(label, points, value, format, w = 260, h = 48) {
  const vs = points.map(value);
  const max = Math.max(...vs, 1e-9), min = Math.min(...vs, 0);
  const t0 = points.length ? points[0].t_ms : 0, t1 = points.length ? points[points.length - 1].t_ms : 1;
  const xy = points.map((p, i) => {
    const x = t1 > t0 ? ((p.t_ms - t0) / (t1 - t0)) * w : 0;
    const y = h - ((vs[i] - min) / (max - min || 1)) * (h - 4) - 2;
    return `${x.toFixed(1)},${y.toFixed(1)}`;
  }).join(" ");
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("width", w);
  svg.setAttribute("height", h);
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", xy);
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", "currentColor");
  line.setAttribute("stroke-width", "1.5");
  svg.append(line);
  const last = vs.length ? format(vs[vs.length - 1]) : "–";
  return el("div", { class: "chart", "data-chart": label, "data-points": String(points.length) },
    el("div", {}, el("strong", {}, label), " ", el("span", { class: "muted" }, `${last} (max ${format(max)})`)), svg);
}

async function renderCharts(name) {
  const since = Date.now() - 3600 * 1000;
  const points = await api("GET", `/history/streams/${name}?since_ms=${since}`);
  $("detail-charts").replaceChildren(
    chart("Viewers", points, (p) => p.hls_viewers + p.rtmp_players, (v) => v.toFixed(0)),
    chart("Bitrate", points, (p) => p.bitrate, bitrate),
    chart("FPS", points, (p) => p.fps, (v) => v.toFixed(1)),
    chart("GOP", points, (p) => p.keyframe_interval_s, (v) => v.toFixed(1) + " s"),
    chart("Egress", points, (p) => p.egress_bps || 0, bitrate));
}

// Who watches which variant, what the edges served, and whether each rung
// of the ladder keeps up with the source.
function renderLive(s) {
  const live = s.live;
  if (!live.live) { $("detail-live").replaceChildren(el("p", { class: "muted" }, "Offline.")); return; }
  const a = live.audience || {};
  const variants = a.variants || {};
  const rungs = live.rungs || [];
  const names = [...new Set(["source", ...rungs.map((r) => r.name), ...Object.keys(variants)])];
  const rows = names.map((name) => {
    const r = rungs.find((x) => x.name === name);
    const src = name === "source";
    const behind = (live.warnings || []).some((w) => w.code === "rung_behind" && w.message.includes(`rung ${name} `));
    return el("tr", { "data-variant": name, class: behind ? "over" : "" },
      el("td", { class: "name" }, name), el("td", {}, variants[name] ?? 0),
      el("td", {}, src ? (live.recent_fps ?? live.fps).toFixed(1) : r ? r.fps.toFixed(1) : "–"),
      el("td", {}, src ? bitrate(live.recent_bitrate ?? live.bitrate) : r ? bitrate(r.bitrate) : "–"),
      el("td", {}, r && r.lag_ms != null ? (r.lag_ms / 1000).toFixed(1) + " s" : "–"));
  });
  const table = el("table", { class: "compact" },
    el("thead", {}, el("tr", {}, el("th", {}, "Variant"), el("th", {}, "HLS viewers"), el("th", {}, "fps"), el("th", {}, "Bit rate"), el("th", { title: "How far the rung's newest frame trails the source's" }, "Lag"))),
    el("tbody", {}, ...rows));
  const nominal = live.nominal_fps ? ` (encoder announced ${live.nominal_fps.toFixed(0)} fps)` : "";
  $("detail-live").replaceChildren(
    el("p", { "data-edge-traffic": s.name }, `HLS ${a.hls ?? 0} · RTMP ${a.rtmp ?? 0}; edges answered ${a.requests ?? 0} requests, sent ${((a.egress_bytes ?? 0) / 1e6).toFixed(1)} MB` + nominal),
    table,
    (live.origins || []).length ? el("p", { class: "muted" }, "Origins: " + live.origins.join(", ")) : "");
}

// Settings form from the settings schema: booleans as a yes/no/default select,
// enums as a select; other kinds (rung lists) are left to the API.
async function renderSettings(name) {
  const stream = await api("GET", `/streams/${name}`);
  const current = stream.settings || {};
  const props = (state.settingsSchema && state.settingsSchema.properties) || {};
  const fields = [];
  for (const [key, p] of Object.entries(props)) {
    const options = p.type === "boolean" ? ["true", "false"] : p.enum || null;
    if (!options) continue;
    const value = current[key] === undefined ? "" : String(current[key]);
    fields.push(el("div", {},
      el("label", { for: "setting-" + key }, p.description || key),
      el("select", { id: "setting-" + key, "data-setting": key, "data-type": p.type },
        el("option", { value: "" }, "default (configuration file)"),
        options.map((o) => { const opt = el("option", { value: o }, p.type === "boolean" ? (o === "true" ? "yes" : "no") : o); if (o === value) opt.selected = true; return opt; }))));
  }
  $("settings-fields").replaceChildren(...fields);
  state.settingsRest = Object.fromEntries(Object.entries(current).filter(([k]) => !fields.some((f) => f.querySelector(`[data-setting="${k}"]`))));
}

$("settings-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("settings-error").textContent = "";
  $("settings-saved").textContent = "";
  const settings = Object.assign({}, state.settingsRest || {});
  document.querySelectorAll("#settings-fields select").forEach((s) => {
    if (s.value === "") return;
    settings[s.dataset.setting] = s.dataset.type === "boolean" ? s.value === "true" : s.value;
  });
  try {
    await api("PATCH", `/streams/${state.detail}`, { settings });
    $("settings-saved").textContent = "Saved.";
  } catch (err) {
    $("settings-error").textContent = err.message;
  }
});

function closeDetail() {
  state.detail = null;
  $("detail").hidden = true;
  if (state.hls) { state.hls.destroy(); state.hls = null; }
  $("preview").removeAttribute("src");
}
$("detail-close").addEventListener("click", closeDetail);

function startPreview(name) {
  const video = $("preview");
  const url = `/hls/${encodeURIComponent(name)}/master.m3u8`;
  if (state.hls) { state.hls.destroy(); state.hls = null; }
  $("preview-state").textContent = "Waiting for the stream…";
  if (window.Hls && window.Hls.isSupported()) {
    const hls = new window.Hls({ liveSyncDurationCount: 2, manifestLoadingMaxRetry: 1000, manifestLoadingRetryDelay: 1000 });
    hls.on(window.Hls.Events.MANIFEST_PARSED, () => { $("preview-state").textContent = "Playing " + url; video.play().catch(() => {}); });
    hls.on(window.Hls.Events.ERROR, (_, d) => {
      if (d.fatal) { $("preview-state").textContent = "Not playing: " + d.details + " (retrying)"; setTimeout(() => state.detail === name && startPreview(name), 2000); }
    });
    hls.loadSource(url);
    hls.attachMedia(video);
    state.hls = hls;
  } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = url;
    video.play().catch(() => {});
  } else {
    $("preview-state").textContent = "This browser cannot play HLS here (hls.js missing: run scripts/setup.sh before building).";
  }
}

function renderTaskForm() {
  const select = $("task-kind");
  select.replaceChildren(...state.types.map((t) => el("option", { value: t.kind }, t.kind)));
  const draw = () => {
    const t = state.types.find((x) => x.kind === select.value);
    $("task-description").textContent = t ? t.description : "";
    const props = (t && t.schema.properties) || {};
    const required = (t && t.schema.required) || [];
    $("task-fields").replaceChildren(...Object.entries(props).map(([key, p]) => el("div", {},
      el("label", { for: "field-" + key }, key + (required.includes(key) ? "" : " (optional)")),
      el("input", { id: "field-" + key, "data-field": key, "data-type": p.type || "string", placeholder: p.example || "", required: required.includes(key) ? "" : null }),
      p.description ? el("p", { class: "field-help" }, p.description) : "")));
  };
  select.onchange = draw;
  draw();
}

$("task-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("task-error").textContent = "";
  const config = {};
  document.querySelectorAll("#task-fields input").forEach((i) => {
    if (i.value === "") return;
    config[i.dataset.field] = i.dataset.type === "integer" || i.dataset.type === "number" ? Number(i.value) : i.dataset.type === "boolean" ? i.value === "true" : i.value;
  });
  try {
    await api("POST", `/streams/${state.detail}/tasks`, { kind: $("task-kind").value, config });
    document.querySelectorAll("#task-fields input").forEach((i) => (i.value = ""));
    refresh();
  } catch (err) {
    $("task-error").textContent = err.message;
  }
});

function taskLine(t) {
  return el("li", {}, el("span", { class: "badge " + (t.enabled ? t.state : "disabled") }, t.enabled ? t.state : "disabled"), " ",
    t.kind, " → ", el("code", {}, t.config.url || JSON.stringify(t.config)),
    t.last_error ? el("div", { class: "error" }, "Last error: " + t.last_error + ` (restarts: ${t.restarts})`) : "");
}

// --- autoscaler ----------------------------------------------------------------

async function drawAutoscale() {
  let a;
  try {
    a = await api("GET", "/autoscale");
  } catch (err) {
    if (err.status === 404) { $("autoscale").hidden = true; return; }
    throw err;
  }
  $("autoscale").hidden = false;
  const last = a.decisions[a.decisions.length - 1];
  $("autoscale-summary").textContent = `${a.provider} provider: ${a.current} edges, ${a.desired} wanted ` +
    `(${a.min_edges}–${a.max_edges}), ${a.starting.length} starting, ${a.draining.length} draining` +
    (last ? `; last rule: ${last.reason}` : "") + (a.last_error ? `; last error: ${a.last_error}` : "");
  const changes = a.decisions.filter((d, i) => i === a.decisions.length - 1 || d.desired !== d.current).slice(-10).reverse();
  $("autoscale-decisions").querySelector("tbody").replaceChildren(...changes.map((d) => el("tr", {},
    el("td", {}, ago(d.at_ms)), el("td", {}, d.current), el("td", {}, d.desired), el("td", {}, d.reason),
    el("td", {}, d.readings.map((r) => `${r.metric} ${(r.utilisation * 100).toFixed(0)} % of ${(r.target * 100).toFixed(0)} % → ${r.recommendation}`).join("; ")))));
  $("autoscale-actions").replaceChildren(...a.actions.slice(-8).reverse().map((x) =>
    el("li", {}, `${ago(x.at_ms)}: ${x.kind} ${x.edge || ""} — ${x.detail}`)));
}

// What a node carries: an origin its live streams, a director its viewers,
// an edge its pool and audience.
function serves(n, tasks) {
  if (n.role === "worker") {
    const mine = (tasks || []).filter((t) => t.worker === n.id);
    return mine.length ? "tasks: " + mine.map((t) => `#${t.id} ${t.kind} ${t.stream} (${t.state})`).join(", ") : "no task";
  }
  const audience = Object.entries(n.audience || {}).map(([s, a]) => `${s}: ${a.hls + a.rtmp}`).join(", ");
  if (n.role === "director") {
    const viewers = Object.values(n.viewers || {}).reduce((a, b) => a + b, 0);
    return `${viewers} ${viewers === 1 ? "viewer" : "viewers"}` + (audience ? ` (${audience})` : "");
  }
  if (n.role === "edge") return `pool ${(n.edge && n.edge.pool) || "default"}` + (audience ? `; players ${audience}` : "");
  const streams = (n.streams || []).join(", ");
  return [streams ? `live: ${streams}` : "", audience ? `players ${audience}` : ""].filter(Boolean).join("; ") || "–";
}

// --- refresh -----------------------------------------------------------------

let refreshing = false;
async function refresh() {
  if (!state.token || refreshing) return;
  refreshing = true;
  try {
    if (state.view === "streams") {
      const streams = await api("GET", "/streams");
      $("stream-table").querySelector("tbody").replaceChildren(...streams.map(streamRow));
      $("no-streams").hidden = streams.length > 0;
      if (state.detail) {
        const tasks = await api("GET", `/streams/${state.detail}/tasks`);
        $("detail-tasks").replaceChildren(...(tasks.length ? tasks.map(taskLine) : [el("li", { class: "muted" }, "No tasks.")]));
        const shown = streams.find((s) => s.name === state.detail);
        if (shown) renderLive(shown);
        await renderCharts(state.detail);
      }
    } else if (state.view === "tasks") {
      const tasks = await api("GET", "/tasks");
      $("task-table").querySelector("tbody").replaceChildren(...tasks.map((t) => el("tr", {},
        el("td", {}, t.id), el("td", { class: "name" }, t.stream), el("td", {}, t.kind),
        el("td", {}, el("code", {}, t.config.url || JSON.stringify(t.config))),
        el("td", {}, el("span", { class: "badge " + (t.enabled ? t.state : "disabled") }, t.enabled ? t.state : "disabled")),
        el("td", {}, t.restarts), el("td", { class: "error" }, t.last_error || ""), el("td", { class: "muted" }, t.worker || "–"),
        el("td", {},
          el("button", { class: "small", onclick: () => api("PATCH", `/tasks/${t.id}`, { enabled: !t.enabled }).then(refresh) }, t.enabled ? "Disable" : "Enable"),
          el("button", { class: "small danger", onclick: () => confirm(`Delete task ${t.id}?`) && api("DELETE", `/tasks/${t.id}`).then(refresh) }, "Delete")))));
      $("no-tasks").hidden = tasks.length > 0;
    } else if (state.view === "nodes") {
      const [nodes, tasks] = await Promise.all([api("GET", "/nodes"), api("GET", "/tasks")]);
      $("node-table").querySelector("tbody").replaceChildren(...nodes.map((n) => el("tr", {},
        el("td", { class: "name" }, n.id), el("td", {}, n.role), el("td", {}, n.address), el("td", {}, n.version),
        el("td", {}, ago(n.last_heartbeat_ms)), el("td", {}, (n.load * 100).toFixed(0) + " %"),
        el("td", { class: "muted", "data-serves": n.id }, serves(n, tasks)))));
      const edges = await api("GET", "/edges");
      const since = Date.now() - 3600 * 1000;
      const loads = await Promise.all(edges.map((e) => e.state === "dead" ? [] :
        api("GET", `/history/nodes/${encodeURIComponent(e.id)}?since_ms=${since}`).catch(() => [])));
      $("edge-table").querySelector("tbody").replaceChildren(...edges.map((e, i) => el("tr", { "data-edge": e.id, "data-state": e.state },
        el("td", { class: "name" }, e.id), el("td", {}, e.url), el("td", {}, e.load.pool),
        el("td", {}, el("span", { class: "badge " + (e.state === "live" ? "running" : e.state === "draining" ? "pending" : "failed") }, e.state)),
        el("td", (e.viewers ?? 0) > e.load.capacity ? { class: "over", title: "more viewers than its capacity" } : {}, e.viewers ?? 0),
        el("td", {}, e.load.connections), el("td", {}, bitrate(e.load.egress_bps)),
        el("td", {}, (e.load.hit_ratio * 100).toFixed(0) + " %"), el("td", {}, (e.cpu * 100).toFixed(0) + " %"),
        el("td", {}, e.load.capacity), el("td", {}, ago(e.last_heartbeat_ms)),
        el("td", {}, loads[i].length ? chart("Viewers", loads[i], (p) => p.viewers, (v) => v.toFixed(0), 120, 24) : "–"),
        el("td", {}, e.state === "dead" ? "" : el("button", {
          class: "small",
          onclick: () => api("POST", `/edges/${encodeURIComponent(e.id)}/${e.state === "draining" ? "undrain" : "drain"}`).then(refresh),
        }, e.state === "draining" ? "Undrain" : "Drain")))));
      $("no-edges").hidden = edges.length > 0;
      await drawAutoscale();
    }
  } catch (err) {
    if (err.status !== 401) $("streams-error").textContent = "Refresh failed: " + err.message;
  } finally {
    refreshing = false;
  }
}

setInterval(refresh, 2000);
if (state.token) {
  loadStatic().then(() => show("streams")).catch(() => signOut());
} else {
  show("signin");
}
