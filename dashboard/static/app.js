// DeepFER page: cameras, live previews, charts (plotly.js from the installed plotly package), upload, add-camera form.
"use strict";
const EMOTIONS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"];
const COLOURS = {angry: "#e63946", disgust: "#6a994e", fear: "#9b5de5", happy: "#ffc828", neutral: "#c8c8c8", sad: "#3a86ff", surprise: "#ff7800"};
const PLOT_LAYOUT = {barmode: "stack", paper_bgcolor: "#1e293b", plot_bgcolor: "#1e293b", font: {color: "#e2e8f0"},
  margin: {l: 40, r: 10, t: 10, b: 30}, legend: {orientation: "h"}, yaxis: {title: "share"}};
const cameras = {};  // id -> view from the API
let selectedPerson = null;

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  // styles through the CSSOM: the Content-Security-Policy refuses inline style attributes
  for (const [k, v] of Object.entries(attrs)) k === "class" ? e.className = v : k === "style" ? Object.assign(e.style, v) : e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
};

async function api(path, options = {}) {
  const res = await fetch(path, {credentials: "same-origin", ...options});
  if (res.status === 401) { location.href = "/login"; throw new Error("sign in"); }
  const body = res.status === 204 ? null : await res.json().catch(() => null);
  if (!res.ok) throw new Error((body && body.detail) || res.statusText);
  return body;
}

// An alert's "chart then" opens the page at ?camera=ID&at=T: every chart, table and download then covers 30 min
// before to 10 min after T (the same window as the alert's metrics link) until "back to live".
const focus = (() => {
  const q = new URLSearchParams(location.search), at = Number(q.get("at"));
  return q.has("at") && Number.isFinite(at) && at > 0 ? {at, camera: q.get("camera")} : null;
})();

function range() {
  if (focus) return {start: focus.at - 1800, end: focus.at + 600, interval: "minute"};
  const [seconds, interval] = $("#range").value.split(",");
  const end = Date.now() / 1000;
  return {start: end - Number(seconds), end, interval};
}

// ----- downloads and reports (the cookie signs them in: same origin) ----------------------------------------------
function exportUrl(path, params) {
  const r = range();
  const q = new URLSearchParams({format: $("#export-format").value, start: r.start.toFixed(3), end: r.end.toFixed(3), ...params});
  return `${path}?${q}`;
}

function download(url) {
  const a = el("a", {href: url, download: ""});
  document.body.append(a);
  a.click();
  a.remove();
}

function reportUrl(camera) {
  const r = range(), q = new URLSearchParams({start: r.start.toFixed(3), end: r.end.toFixed(3)});
  return camera ? `/api/cameras/${encodeURIComponent(camera)}/report?${q}` : `/api/report?${q}`;
}

$("#download-overall").onclick = () => download(exportUrl("/api/export", {interval: range().interval}));
$("#report-link").onclick = (ev) => { ev.currentTarget.href = reportUrl(); };

// ----- cameras ---------------------------------------------------------------------------------------------------
function cameraCard(cam) {
  const card = el("div", {class: "camera", id: `camera-${cam.id}`, "data-camera": cam.id});
  const img = el("img", {class: "preview", alt: `live preview of ${cam.id}`});
  const pause = el("button", {class: "secondary pause"}, cam.paused ? "Resume" : "Pause");
  pause.onclick = async () => {
    await api(`/api/cameras/${encodeURIComponent(cam.id)}/${cameras[cam.id].paused ? "resume" : "pause"}`, {method: "POST"});
    refreshCameras();
  };
  const remove = el("button", {class: "danger"}, cam.kind === "webrtc" ? "End session" : "Remove");
  remove.onclick = async () => {
    // a live-demo visitor is ended through its WebRTC session; a configured camera is removed (its history stays)
    if (!confirm(cam.kind === "webrtc" ? `End the live-demo session of ${cam.id}?` : `Remove camera ${cam.id}? Its history stays.`)) return;
    const path = cam.kind === "webrtc" ? `/api/webrtc/sessions/${encodeURIComponent(cam.webrtc_session)}` : `/api/cameras/${encodeURIComponent(cam.id)}`;
    await api(path, {method: "DELETE"});
    refreshCameras();
  };
  if (cam.kind === "webrtc") pause.hidden = true;  // visitors are live or gone, never paused
  const save = el("button", {class: "secondary download", title: "Every stored point of the range"}, "Download");
  save.onclick = () => download(exportUrl(`/api/cameras/${encodeURIComponent(cam.id)}/export`, {interval: "point"}));
  const report = el("a", {class: "link report", href: reportUrl(cam.id), target: "_blank", rel: "noopener"}, "Report");
  report.onclick = () => { report.href = reportUrl(cam.id); };
  const right = el("div", {},
    el("div", {class: "head"}, el("strong", {}, cam.id), el("span", {class: "status"}, ""), el("span", {class: "muted url"}, cam.url), save, report, pause, remove),
    el("p", {class: "summary"}),  // the metrics in words (the API's summary), set as text only
    el("p", {class: "error camera-error"}),
    // engineering counters (frames, fps, drops, latency) for whoever runs the cameras, folded away for everyone else
    el("details", {class: "engineering"}, el("summary", {class: "muted"}, "details"), el("p", {class: "muted counters"})),
    el("p", {class: "live-faces"}, ""),
    el("div", {class: "chart camera-chart", id: `chart-${cam.id}`, "data-points": "0"}),
    el("h3", {class: "muted"}, "People in range (click for a timeline)"),
    el("table", {class: "people"}, el("thead", {}, el("tr", {}, ...["person", "now", "dominant", "seen", "dwell"].map(h => el("th", {}, h)))), el("tbody")));
  card.append(img, right);
  previews.observe(card);
  return card;
}

// ----- previews: polled JPEGs of the cards on screen -------------------------------------------------------------
// An MJPEG stream holds one of the browser's six HTTP/1.1 connections per host for as long as it is shown: five
// previews and the event stream left none for the API, and the page stopped updating. Instead the page fetches the
// latest JPEG of each camera whose card is on screen, one after another, while the tab is visible: the previews use
// at most one connection, and only for as long as one picture takes. Nobody watching: no face image leaves memory.
const PREVIEW_PERIOD_MS = 200;  // 5 per second per camera at most (dashboard.preview_fps of the MJPEG route)
const onScreen = new Set();
const previews = new IntersectionObserver((entries) => {
  for (const e of entries) e.isIntersecting ? onScreen.add(e.target.dataset.camera) : onScreen.delete(e.target.dataset.camera);
});

async function showPreview(id) {
  const img = document.querySelector(`#camera-${CSS.escape(id)} img.preview`);
  if (!img) return;
  const res = await fetch(`/api/cameras/${encodeURIComponent(id)}/preview.jpg`, {credentials: "same-origin", cache: "no-store"});
  if (!res.ok) return;  // no frame yet (404), or the camera was just removed
  const url = URL.createObjectURL(await res.blob()), old = img.dataset.url;
  img.dataset.url = url;
  img.src = url;
  if (old) URL.revokeObjectURL(old);
}

async function previewLoop() {
  for (;;) {
    const began = Date.now();
    if (!document.hidden) for (const id of [...onScreen]) await showPreview(id).catch(() => {});
    await new Promise(done => setTimeout(done, Math.max(50, PREVIEW_PERIOD_MS - (Date.now() - began))));
  }
}

function showCamera(cam) {
  let card = document.getElementById(`camera-${cam.id}`);
  if (!card) {
    const box = $("#cameras");
    if (!Object.keys(cameras).length) box.innerHTML = "";
    card = cameraCard(cam);
    box.append(card);
  }
  cameras[cam.id] = cam;
  const status = $(".status", card);
  status.textContent = cam.status;
  status.className = `status ${cam.status}`;
  $(".head button.pause", card).textContent = cam.paused ? "Resume" : "Pause";
  const s = cam.stats;
  $(".camera-error", card).textContent = cam.error ? `error: ${cam.error}` : "";
  $(".counters", card).textContent = s ? `${s.frames_processed} frames · ${s.recent_fps} fps · ${s.faces} faces · ` +
    `dropped ${s.frames_dropped} · latency p50 ${s.latency_p50_ms ?? "–"} ms, p95 ${s.latency_p95_ms ?? "–"} ms` : "no counters yet";
}

async function refreshCameras(list) {
  list = list || await api("/api/cameras");
  const ids = new Set(list.map(c => c.id));
  for (const id of Object.keys(cameras)) if (!ids.has(id)) {
    const card = document.getElementById(`camera-${id}`);
    if (card) {
      previews.unobserve(card);
      if ($("img.preview", card).dataset.url) URL.revokeObjectURL($("img.preview", card).dataset.url);
      card.remove();
    }
    onScreen.delete(id);
    delete cameras[id];
  }
  list.forEach(showCamera);
  if (!list.length) $("#cameras").innerHTML = '<p class="muted">No camera yet: add one below.</p>';
}

// ----- charts ----------------------------------------------------------------------------------------------------
function mixTraces(buckets) {
  const x = buckets.map(b => new Date(b.start * 1000));
  return EMOTIONS.map(e => ({type: "bar", name: e, x, y: buckets.map(b => b.emotion_mix[e]), marker: {color: COLOURS[e]}}));
}

// A chart with nothing to draw says so: plotly would invent axes (-1..6, or the year 2000) around no data.
const PLOT_CONFIG = {displayModeBar: false, responsive: true};
function plot(div, traces, layout, hasData) {
  if (typeof div === "string") div = document.getElementById(div);
  if (!hasData) {
    if (div.dataset.empty !== "1") {
      Plotly.purge(div);
      div.replaceChildren(el("p", {class: "muted no-data"}, "no data yet"));
      div.dataset.empty = "1";
    }
    return;
  }
  if (div.dataset.empty === "1") { div.replaceChildren(); div.dataset.empty = "0"; }
  Plotly.react(div, traces, layout, PLOT_CONFIG);
}

async function refreshMetrics() {
  const r = range();
  const m = await api(`/api/metrics?interval=${r.interval}&start=${r.start}&end=${r.end}`);
  const t = m.overall.totals;
  // the sentences come from the API (aggregator.summary) and are set as text, never as HTML
  $("#summary-overall").textContent = m.overall.summary ?? "";
  $("#kpi-people").textContent = t.unique_people;
  $("#kpi-satisfaction").textContent = t.satisfaction === null ? "–" : t.satisfaction.toFixed(2);
  $("#kpi-dwell").textContent = `${t.mean_dwell_s.toFixed(1)} s`;
  $("#chart-overall").dataset.start = r.start;  // the window shown (tests read it)
  const overall = m.overall.buckets.filter(b => b.points);
  plot("chart-overall", mixTraces(overall), PLOT_LAYOUT, overall.length > 0);
  for (const [id, data] of Object.entries(m.cameras)) {
    const div = document.getElementById(`chart-${id}`);
    if (!div) continue;
    const words = $(`#camera-${CSS.escape(id)} p.summary`);
    if (words) words.textContent = data.summary ?? "";
    const buckets = data.buckets.filter(b => b.points);
    plot(div, mixTraces(buckets), {...PLOT_LAYOUT, height: 220}, buckets.length > 0);
    div.dataset.points = data.totals.points;
    div.dataset.satisfaction = data.totals.satisfaction ?? "";
    refreshPeople(id, r);
  }
}

async function refreshPeople(id, r) {
  const data = await api(`/api/cameras/${encodeURIComponent(id)}/people?start=${r.start}&end=${r.end}`);
  const tbody = $(`#camera-${CSS.escape(id)} table.people tbody`);
  if (!tbody) return;
  tbody.innerHTML = "";
  for (const p of data.people) {
    const row = el("tr", {class: "person", "data-person": p.person_id},
      el("td", {class: "visitor", title: `person id ${p.person_id}`}, `Visitor ${p.visitor_number}`), el("td", {}, `${p.label} ${(p.confidence * 100).toFixed(0)}%`), el("td", {}, p.dominant),
      el("td", {}, new Date(p.last_seen * 1000).toLocaleTimeString()), el("td", {class: "dwell", title: `in view ${p.dwell_s.toFixed(1)} s between ${new Date(p.first_seen * 1000).toLocaleTimeString()} and ${new Date(p.last_seen * 1000).toLocaleTimeString()}`}, `${p.dwell_s.toFixed(1)} s`));
    row.onclick = () => { selectedPerson = {camera: id, person: p.person_id, visitor: `Visitor ${p.visitor_number} · ${id}`}; refreshPerson(); };
    tbody.append(row);
  }
}

async function refreshPerson() {
  if (!selectedPerson) return;
  const {camera, person} = selectedPerson;
  const data = await api(`/api/cameras/${encodeURIComponent(camera)}/people/${encodeURIComponent(person)}/series`);
  $("#person-hint").textContent = `${selectedPerson.visitor ?? person} (${person}): ${data.points.length} points (smoothed probabilities)`;
  const x = data.points.map(p => new Date(p.t * 1000));
  const traces = EMOTIONS.map(e => ({type: "scatter", mode: "lines", name: e, x, y: data.points.map(p => p.smoothed[e]), line: {color: COLOURS[e]}}));
  plot("chart-person", traces, {...PLOT_LAYOUT, barmode: undefined, yaxis: {title: "probability", range: [0, 1]}},
    data.points.length > 0);
  $("#chart-person").dataset.points = data.points.length;
}

// ----- forms -----------------------------------------------------------------------------------------------------
$("#add-camera").onsubmit = async (ev) => {
  ev.preventDefault();
  const f = ev.target, msg = $("#add-camera-message");
  const body = {id: f.id.value.trim(), url: f.url.value.trim(), options: {realtime: f.realtime.checked, snapshots: !!(f.snapshots && f.snapshots.checked)}};
  try {
    const cam = await api("/api/cameras", {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
    msg.textContent = `Added ${cam.id}.`; msg.className = "message";
    f.reset();
    refreshCameras();
  } catch (e) { msg.textContent = e.message; msg.className = "message error"; }
};

$("#predict-form").onsubmit = async (ev) => {
  ev.preventDefault();
  const out = $("#predict-result"), file = $("#predict-file").files[0];
  if (!file) return;
  out.textContent = "analysing…";
  const form = new FormData();
  form.append("file", file);
  let note = null, r;
  try {
    if ($("#predict-explain").checked) {
      // Grad-CAM pictures; an ONNX classifier has no gradients (409): then the plain answer, saying why
      try { r = await api("/api/explain", {method: "POST", body: form}); }
      catch (e) { if (!/ONNX/.test(e.message)) throw e; note = e.message; }
    }
    if (!r) r = await api("/api/predict", {method: "POST", body: form});
    out.innerHTML = "";
    out.dataset.faces = r.faces.length;
    if (note) out.append(el("p", {class: "muted"}, note));
    if (!r.faces.length) out.append(el("p", {class: "no-face"}, "No face found."));
    r.faces.forEach((f, i) => {
      const confidence = f.confidence ?? f.probabilities[f.emotion];
      const box = el("div", {class: "face"}, el("div", {}, el("span", {class: "face-emotion"}, f.emotion),
        el("span", {class: "muted"}, ` face ${i + 1}, ${(confidence * 100).toFixed(0)}% · box ${f.box.x1.toFixed(0)},${f.box.y1.toFixed(0)}–${f.box.x2.toFixed(0)},${f.box.y2.toFixed(0)}`)));
      if (f.picture) box.append(el("img", {class: "heatmap", src: f.picture, alt: `why ${f.explained}: heat map of face ${i + 1}`,
        title: `Grad-CAM: where the model looked to say ${f.explained} (red: most)`}));
      for (const e of EMOTIONS) box.append(el("div", {class: "bar"}, el("span", {}, e),
        el("div", {style: {width: `${(f.probabilities[e] * 200).toFixed(0)}px`, background: COLOURS[e]}}), el("span", {}, f.probabilities[e].toFixed(2))));
      out.append(box);
    });
  } catch (e) { out.innerHTML = ""; out.append(el("p", {class: "error"}, e.message)); }
};

// ----- alerts (rules in config.toml or through /api/alerts/rules) ------------------------------------------------
function alertRow(a) {
  return el("tr", {class: `alert ${a.state}`}, el("td", {}, a.state), el("td", {}, a.rule),
    el("td", {}, el("a", {class: "link", href: `#camera-${a.camera}`}, a.camera)),
    el("td", {}, `${a.value} (threshold ${a.threshold})`), el("td", {}, new Date(a.at * 1000).toLocaleString()),
    el("td", {}, el("a", {class: "link chart-then", href: a.page,
      title: "This page with the camera's charts from 30 min before to 10 min after"}, "chart then"), " · ",
      el("a", {class: "link", href: a.chart, target: "_blank", rel: "noopener",
        title: "The camera's per-minute metrics from 30 min before to 10 min after, as JSON"}, "metrics")));
}

async function refreshAlerts() {
  const data = await api("/api/alerts?limit=50");
  const fill = (sel, list, empty) => {
    const box = $(sel);
    box.innerHTML = "";
    box.append(list.length ? el("table", {}, ...list.map(alertRow)) : el("p", {class: "muted"}, empty));
  };
  fill("#alerts-active", data.active, data.rules.length ? "No alert firing." : "No alert rule: add [[alerts.rules]] to config.toml or PUT /api/alerts/rules/{name}.");
  fill("#alerts-recent", data.recent, "None yet.");
}

$("#range").onchange = () => refreshMetrics().catch(console.error);

// ----- visits: who came when, for how long, in what mood (GET /api/visits) ---------------------------------------
// Times in the browser's own time zone; the title of each shows it in UTC. A visitor is "Visitor 12 · door" (the
// camera's visitor number, unique across its runs, and the camera, from the API); the stored person id is in its
// title. The live line names the same number once the person is stored ("new face" until then).
const visitCameras = new Set();
const utc = (t) => new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";
const localTime = (t) => new Date(t * 1000).toLocaleString([], {dateStyle: "medium", timeStyle: "medium"});
const duration = (s) => s < 60 ? `${s.toFixed(1)} s` : s < 3600 ? `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`
  : `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;

function visitsRange() {
  const choice = $("#visits-range").value, until = Date.now() / 1000;
  if (choice === "today") {
    const midnight = new Date();
    midnight.setHours(0, 0, 0, 0);  // the browser's midnight, not UTC's
    return {since: midnight.getTime() / 1000, until};
  }
  return {since: until - Number(choice), until};
}

function visitsCameraOptions() {
  const select = $("#visits-camera"), have = new Set([...select.options].map(o => o.value));
  for (const id of [...Object.keys(cameras), ...visitCameras].sort()) {
    if (!have.has(id)) { select.append(el("option", {value: id}, id)); have.add(id); }
  }
}

async function refreshVisits() {
  const r = visitsRange(), camera = $("#visits-camera").value;
  // no limit: the server's dashboard.max_visits
  const q = new URLSearchParams({since: r.since.toFixed(3), until: r.until.toFixed(3)});
  if (camera) q.set("camera", camera);
  const data = await api(`/api/visits?${q}`);
  const tbody = $("#visits table.visits tbody");
  tbody.replaceChildren(...data.visits.map(v => {
    visitCameras.add(v.camera_id);
    const row = el("tr", {class: "visit person", "data-person": v.person_id, "data-camera": v.camera_id},
      el("td", {class: "visitor", title: `person id ${v.person_id}`}, v.visitor),
      el("td", {class: "came", title: utc(v.first_seen)}, localTime(v.first_seen)),
      el("td", {class: "in-view", title: `seen from ${utc(v.first_seen)} to ${utc(v.last_seen)}`}, duration(v.time_in_view_s)),
      el("td", {class: "mood"}, v.mood ?? "–"),
      el("td", {class: "satisfaction"}, v.satisfaction === null ? "–" : v.satisfaction.toFixed(2)),
      el("td", {}, v.camera_id));
    row.onclick = () => { selectedPerson = {camera: v.camera_id, person: v.person_id, visitor: v.visitor}; refreshPerson().catch(console.error); };
    return row;
  }));
  const note = $("#visits-empty");
  note.hidden = data.visits.length > 0 && !data.truncated;
  note.textContent = data.truncated ? `The newest ${data.limit} visits of the range only.` : "No visit in this range.";
  visitsCameraOptions();
}

$("#visits-zone").textContent = `times in ${Intl.DateTimeFormat().resolvedOptions().timeZone || "local time"}`;
function showVisits() {
  refreshVisits().catch((e) => {
    const note = $("#visits-empty");
    note.hidden = false;
    note.textContent = `Visits unavailable: ${e.message}`;
  });
}
$("#visits-camera").onchange = $("#visits-range").onchange = showVisits;

// ----- live updates (Server-Sent Events) -------------------------------------------------------------------------
function connectEvents() {
  const source = new EventSource("/api/events");
  let redisUp = true;
  source.addEventListener("redis", (ev) => { redisUp = JSON.parse(ev.data).connected; });
  source.addEventListener("cameras", (ev) => {
    $("#live-status").textContent = redisUp ? "live" : "live (Redis unavailable: faces and history resume when it is back)";
    refreshCameras(JSON.parse(ev.data));
  });
  source.addEventListener("faces", (ev) => {
    const e = JSON.parse(ev.data), card = document.getElementById(`camera-${e.camera_id}`);
    if (!card) return;
    card.dataset.liveFaces = e.faces.map(f => `${f.person_id ?? "?"}:${f.emotion}`).join(" ");
    $(".live-faces", card).textContent = e.faces.length ? "now: " + e.faces.map(f =>
      `${f.visitor != null ? "Visitor " + f.visitor : "new face"} ${f.emotion}${f.confidence != null ? " " + Math.round(f.confidence * 100) + "%" : ""}`).join(" · ") : "now: nobody";
  });
  source.onerror = () => { $("#live-status").textContent = "reconnecting…"; };
}

if (focus) {
  const note = $("#focus-note");
  note.hidden = false;
  $("#focus-when").textContent = `${focus.camera ? focus.camera + " " : ""}around ${new Date(focus.at * 1000).toLocaleString()}`;
  $("#range").disabled = true;
}
refreshCameras().then(() => {
  if (focus && focus.camera) { const card = document.getElementById(`camera-${focus.camera}`); if (card) card.scrollIntoView(); }
  return refreshMetrics();
}).catch(console.error);
connectEvents();
previewLoop();
setInterval(() => { refreshMetrics().catch(console.error); refreshPerson().catch(console.error); }, 3000);
refreshAlerts().catch(console.error);
showVisits();
setInterval(showVisits, 10000);
setInterval(() => refreshAlerts().catch(console.error), 10000);
