// The live view: one WebSocket (/view/ws) brings the stream list, the sampled pictures of the
// chosen stream (binary: 4-byte header length, JSON header, JPEG), its decisions, verdicts and
// the daemon's events. Hand-written, no build step, no CDN.
"use strict";

// What a test (or a curious person) can read from the console.
const view = window.edgeVlaView = {
  state: "connecting", streams: [], stream: null, frames: 0, frameSeqs: [], lastFrame: null,
  decisions: 0, lastDecision: null, decisionLog: [], actions: [], verdicts: {}, events: [],
  chartPoints: 0, lastPoint: null, goals: [], errors: [], memory: false, memoryHits: null,
};

const $ = (id) => document.getElementById(id);
const PIPELINE_STAGES = new Set(["wait", "policy", "total", "transport", "arrival_to_action"]);
const VERDICT_COLOUR = { changed: "#38d96b", unchanged: "#e9a23b", timeout: "#888888" };
const POINT_COLOUR = "#ff00ff";
const WINDOW_S = 60, CHART_SPAN_S = 120, MAX_ROWS = 60, MAX_EVENTS = 100;

let ws = null, retry = 0;
let regression = null;   // the last regression event's changed tiles, drawn for a few seconds
let picture = null;      // the last decoded picture (ImageBitmap) and its header
let decision = null;     // the last decision of the chosen stream
// per stream, kept while the page is open so that switching back shows what was seen:
// decisions (the table), samples {t, g2a, model} per action (the chart's input), series (chart points)
const history = {};
const hist = (s) => history[s] || (history[s] = { decisions: [], samples: [], series: [] });

function fail(where, err) {
  const text = `${where}: ${err && err.message ? err.message : err}`;
  view.errors.push(text);
  console.warn(text);
}

function connect() {
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/view/ws`;
  ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => { retry = 0; setConn("live", true); if (view.stream) watch(view.stream); };
  ws.onclose = (ev) => {
    setConn(`disconnected (${ev.code}); retrying`, false);
    setTimeout(connect, Math.min(5000, 500 * 2 ** retry++));
  };
  ws.onmessage = (ev) => {
    try {
      if (typeof ev.data === "string") onMessage(JSON.parse(ev.data));
      else onFrame(ev.data).catch((err) => fail("picture", err));
    } catch (err) { fail("message", err); }
  };
}

function setConn(text, up) {
  view.state = up ? "live" : "down";
  $("conn").textContent = text;
  $("conn").className = up ? "" : "down";
}

function send(obj) { if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(obj)); }

function watch(stream) {
  if (view.stream !== stream) {
    view.stream = stream; picture = null;
    const h = hist(stream);
    decision = h.decisions.length ? h.decisions[h.decisions.length - 1] : null;
    $("actions").tBodies[0].textContent = "";
    h.decisions.forEach(addRow);
    window.history.replaceState(null, "", `#stream=${encodeURIComponent(stream)}`);
  }
  $("picture-title").textContent = `picture: ${stream}`;
  send({ op: "watch", stream });
  renderStreams();
}

function onMessage(m) {
  switch (m.type) {
    case "hello":
      view.memory = !!m.memory;
      $("memory-panel").hidden = !m.memory;
      m.events.forEach(addEvent);
      onStreams(m.streams);
      break;
    case "streams": onStreams(m.streams); break;
    case "decision": onDecision(m); break;
    case "verdict": onVerdict(m); break;
    case "event": addEvent(m); break;
    case "goal": onGoal(m); break;
    case "watching": break;
    case "error": fail("server", m.error); break;
    default: break;
  }
}

// -- streams -----------------------------------------------------------------------------------
function onStreams(rows) {
  view.streams = rows;
  const names = rows.map((r) => r.stream);
  if (!view.stream || !names.includes(view.stream)) {
    const wanted = decodeURIComponent((location.hash.match(/stream=([^&]+)/) || [])[1] || "");
    const pick = names.includes(wanted) ? wanted : names[0];
    if (pick) watch(pick);
  }
  renderStreams();
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function renderStreams() {
  const body = $("streams").tBodies[0];
  body.textContent = "";
  for (const r of view.streams) {
    const tr = document.createElement("tr");
    if (r.stream === view.stream) tr.className = "chosen";
    tr.onclick = () => watch(r.stream);
    cell(tr, r.stream);
    cell(tr, r.source);
    cell(tr, r.fps_in == null ? "…" : r.fps_in.toFixed(1));
    cell(tr, r.fps_sampled == null ? "…" : r.fps_sampled.toFixed(1));
    cell(tr, r.model);
    cell(tr, String(r.actions));
    cell(tr, r.last_action_age_s == null ? "never" : `${r.last_action_age_s.toFixed(1)} s ago`);
    cell(tr, r.healthy ? "healthy" : `unhealthy: ${r.reason}`, r.healthy ? "ok" : "bad");
    cell(tr, r.goal || "(from the source)");
    body.appendChild(tr);
  }
}

// -- the picture and its overlays -----------------------------------------------------------------
async function onFrame(buf) {
  const n = new DataView(buf).getUint32(0);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, n)));
  if (header.stream !== view.stream) return;
  const bitmap = await createImageBitmap(new Blob([new Uint8Array(buf, 4 + n)], { type: "image/jpeg" }));
  if (picture) picture.bitmap.close();
  picture = { bitmap, header };
  view.frames += 1;
  view.lastFrame = header;
  view.frameSeqs.push(header.seq);
  if (view.frameSeqs.length > 50) view.frameSeqs.shift();
  draw();
}

function draw() {
  const c = $("picture");
  if (!picture) return;
  const { bitmap } = picture;
  if (c.width !== bitmap.width || c.height !== bitmap.height) { c.width = bitmap.width; c.height = bitmap.height; }
  const g = c.getContext("2d");
  g.drawImage(bitmap, 0, 0);
  if (!decision) return;
  const W = c.width / 1000, H = c.height / 1000;
  const rect = (b) => [b[0] * W, b[1] * H, (b[2] - b[0]) * W, (b[3] - b[1]) * H];
  g.lineWidth = 1;
  g.strokeStyle = "rgba(60, 200, 255, 0.75)";
  for (const e of decision.elements) g.strokeRect(...rect(e.box));
  if (decision.focus) {
    g.setLineDash([6, 4]); g.lineWidth = 2; g.strokeStyle = "#ff8c00";
    g.strokeRect(...rect(decision.focus)); g.setLineDash([]);
  }
  if (regression && regression.stream === view.stream && regression.until > Date.now()) {
    g.lineWidth = 2; g.strokeStyle = "rgba(255, 40, 40, 0.9)";
    for (const c of regression.changes) for (const b of c.tile_boxes || [c.box]) g.strokeRect(...rect(b));
  }
  const a = decision.action;
  if (a.target) {
    g.lineWidth = 3; g.strokeStyle = "#ffd21f";
    g.strokeRect(...rect(a.target.box));
  }
  const verdict = view.verdicts[a.id];
  const label = `${a.type}${a.text ? ` "${a.text}"` : ""}${a.key ? ` ${a.key}` : ""}` +
    `${a.dy ? ` dy=${a.dy}` : ""}${decision.sent ? "" : " (not sent)"}${verdict ? ` → ${verdict.result}` : ""}`;
  if (a.x != null && a.y != null) {
    const x = a.x * W, y = a.y * H;
    g.lineWidth = 4; g.strokeStyle = verdict ? VERDICT_COLOUR[verdict.result] : "#ffffff";
    g.beginPath(); g.arc(x, y, 12, 0, 2 * Math.PI); g.stroke();
    g.fillStyle = POINT_COLOUR;
    g.beginPath(); g.arc(x, y, 7, 0, 2 * Math.PI); g.fill();
    if (a.type === "drag" && a.x2 != null) {
      g.strokeStyle = POINT_COLOUR; g.lineWidth = 2;
      g.beginPath(); g.moveTo(x, y); g.lineTo(a.x2 * W, a.y2 * H); g.stroke();
    }
    view.lastPoint = { x: Math.round(x), y: Math.round(y), id: a.id };
    tag(g, label, x + 16, y - 8, verdict);
  } else {
    view.lastPoint = null;
    tag(g, label, 8, 20, verdict);
  }
}

function tag(g, text, x, y, verdict) {
  g.font = "bold 13px system-ui, sans-serif";
  const w = g.measureText(text).width + 8;
  if (x + w > g.canvas.width) x = Math.max(2, x - 32 - w);  // near the right edge: left of the point
  y = Math.max(16, y);
  g.fillStyle = "rgba(0, 0, 0, 0.75)"; g.fillRect(x, y - 14, w, 19);
  g.fillStyle = verdict ? VERDICT_COLOUR[verdict.result] : "#ffffff"; g.fillText(text, x + 4, y);
}

// -- decisions, verdicts, the action table ---------------------------------------------------------
function onDecision(m) {
  if (m.stream !== view.stream) return;
  decision = view.lastDecision = m;
  view.decisions += 1;
  m.n = view.decisions;  // its place in this page's decisions (tests wait for ones after an event)
  view.decisionLog.push(m);
  if (view.decisionLog.length > 50) view.decisionLog.shift();
  const h = hist(m.stream);
  h.decisions.push(m);
  if (h.decisions.length > MAX_ROWS) h.decisions.shift();
  const a = m.action;
  $("now").textContent = `instruction: ${m.instruction}  ·  ${m.elements.length} candidates  ·  model ${m.model}`;
  if (m.sent) {
    view.actions.push(a);
    if (view.actions.length > 200) view.actions.shift();
    const lat = a.latency_ms || {};
    let model = 0, own = false;
    for (const [k, v] of Object.entries(lat)) if (!PIPELINE_STAGES.has(k)) { model += v; own = true; }
    h.samples.push({ t: Date.now() / 1000, g2a: lat.total, model: own ? model : lat.policy });
  }
  addRow(m);
  draw();
}

function addRow(m) {
  const a = m.action;
  const tr = document.createElement("tr");
  tr.id = `a-${a.id || m.seq}`;
  if (!m.sent) tr.className = "stale";
  cell(tr, new Date((a.published_ts || m.frame_ts) * 1000).toISOString().slice(11, 23));
  cell(tr, a.seq == null ? "–" : String(a.seq));
  cell(tr, a.type + (a.text ? ` "${a.text}"` : "") + (a.key ? ` ${a.key}` : "") + (a.dy ? ` dy=${a.dy}` : ""));
  cell(tr, a.target ? `${a.target.kind}${a.target.text ? `: ${a.target.text}` : ""}` : "");
  cell(tr, a.x != null ? `${a.x},${a.y}` : "");
  const v = view.verdicts[a.id];
  cell(tr, v ? v.result : (m.sent ? "…" : "not sent (stale or held back)"), v ? `v-${v.result}` : "")
    .className += " verdict";
  const lat = a.latency_ms || {};
  cell(tr, Object.entries(lat).map(([k, x]) => `${k} ${x.toFixed(1)}`).join(" · "));
  const body = $("actions").tBodies[0];
  body.insertBefore(tr, body.firstChild);
  while (body.rows.length > MAX_ROWS) body.deleteRow(body.rows.length - 1);
}

function onVerdict(m) {
  if (m.stream !== view.stream) return;
  view.verdicts[m.action_id] = m;
  const tr = document.getElementById(`a-${m.action_id}`);
  if (tr) {
    const td = tr.querySelector(".verdict");
    td.textContent = `${m.result} (${(m.changed_fraction * 100).toFixed(1)}%, ${m.latency_ms.toFixed(0)} ms)`;
    td.className = `verdict v-${m.result}`;
  }
  if (decision && decision.action.id === m.action_id) draw();
}

// -- events timeline ---------------------------------------------------------------------------------
function addEvent(e) {
  $("no-events").hidden = true;
  if (e.kind === "regression" && Array.isArray(e.changes)) {
    regression = { stream: e.stream, changes: e.changes, until: Date.now() + 5000 };
  }
  view.events.push(e);
  if (view.events.length > MAX_EVENTS) view.events.shift();
  const tr = document.createElement("tr");
  const ts = e.ts ? new Date(e.ts * 1000) : new Date();
  cell(tr, ts.toISOString().slice(11, 19));
  cell(tr, e.kind, e.kind === "watchdog" || e.kind === "unhealthy" || e.kind === "regression" ? "bad" : "");
  const rest = Object.entries(e).filter(([k]) => !["type", "v", "kind", "ts"].includes(k))
    .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(" ");
  cell(tr, rest);
  const body = $("events").tBodies[0];
  body.insertBefore(tr, body.firstChild);
  while (body.rows.length > MAX_EVENTS) body.deleteRow(body.rows.length - 1);
}

// -- goal box ----------------------------------------------------------------------------------------
$("goal-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = $("goal").value.trim();
  if (!view.stream || !text) return;
  send({ op: "goal", stream: view.stream, instruction: text });
  $("goal-state").textContent = "sending…";
});

function onGoal(m) {
  view.goals.push(m);
  $("goal-state").textContent = m.ok ? `goal of ${m.stream} set: ${m.instruction}` : `goal refused: ${m.error}`;
}

// -- chart: drawn by hand ---------------------------------------------------------------------------
function pct(values, p) {
  if (!values.length) return null;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * (s.length - 1) + 0.5))];
}

function tick() {
  const now = Date.now() / 1000;
  for (const h of Object.values(history)) {
    const { samples, series } = h;
    while (samples.length && samples[0].t < now - WINDOW_S) samples.shift();
    const recent = samples.filter((s) => s.t >= now - 10).length / 10;
    if (samples.length) {
      const g = samples.map((s) => s.g2a), m = samples.map((s) => s.model);
      series.push({ t: now, g50: pct(g, 0.5), g95: pct(g, 0.95), m50: pct(m, 0.5), m95: pct(m, 0.95), aps: recent });
    }
    while (series.length && series[0].t < now - CHART_SPAN_S) series.shift();
  }
  const series = view.stream ? hist(view.stream).series : [];
  view.chartPoints = series.length;
  drawChart(now, series);
  if (picture && decision) draw();
}

function drawChart(now, series) {
  const c = $("chart"), g = c.getContext("2d");
  const w = c.width = c.clientWidth || 520, h = c.height;
  g.clearRect(0, 0, w, h);
  const left = 40, right = 30, top = 8, bottom = 18;
  const max = Math.max(50, ...series.map((p) => p.g95 || 0)) * 1.1;
  const apsMax = Math.max(1, ...series.map((p) => p.aps)) * 1.2;
  const X = (t) => left + (w - left - right) * (1 - (now - t) / CHART_SPAN_S);
  const Y = (v) => top + (h - top - bottom) * (1 - v / max);
  const YA = (v) => top + (h - top - bottom) * (1 - v / apsMax);
  g.font = "10px system-ui, sans-serif"; g.fillStyle = "#888"; g.strokeStyle = "#2b2b2b"; g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4, y = Y(v);
    g.beginPath(); g.moveTo(left, y); g.lineTo(w - right, y); g.stroke();
    g.fillText(v.toFixed(0), 4, y + 3);
  }
  g.fillText(`${apsMax.toFixed(1)}/s`, w - right + 2, top + 8);
  g.fillText(`-${CHART_SPAN_S}s`, left, h - 4); g.fillText("now", w - right - 18, h - 4);
  for (const e of view.events) {  // events as marks on the time axis
    if (!e.ts || e.ts < now - CHART_SPAN_S) continue;
    g.strokeStyle = "rgba(255, 80, 80, 0.6)";
    g.beginPath(); g.moveTo(X(e.ts), top); g.lineTo(X(e.ts), h - bottom); g.stroke();
  }
  const line = (key, colour, dash, scale) => {
    g.strokeStyle = colour; g.lineWidth = 2; g.setLineDash(dash); g.beginPath();
    let started = false;
    for (const p of series) {
      if (p[key] == null) continue;
      const x = X(p.t), y = (scale || Y)(p[key]);
      if (started) g.lineTo(x, y); else { g.moveTo(x, y); started = true; }
    }
    g.stroke(); g.setLineDash([]);
    if (series.length === 1 && series[0][key] != null) {  // one point: a dot, not an invisible line
      g.fillStyle = colour; g.fillRect(X(series[0].t) - 2, (scale || Y)(series[0][key]) - 2, 4, 4);
    }
  };
  line("g50", "#3cc8ff", []); line("g95", "#3cc8ff", [4, 3]);
  line("m50", "#c98cff", []); line("m95", "#c98cff", [4, 3]);
  line("aps", "#7d7", [], YA);
  const legend = [["glass-to-action", "#3cc8ff"], ["model", "#c98cff"], ["actions/s", "#7d7"], ["event", "#ff5050"]];
  let lx = left + 4;
  for (const [name, colour] of legend) {
    g.fillStyle = colour; g.fillRect(lx, top + 18, 10, 3);
    g.fillStyle = "#aaa"; g.fillText(name, lx + 13, top + 22); lx += g.measureText(name).width + 26;
  }
  g.fillText("solid p50, dashed p95", lx, top + 22);
  const last = series[series.length - 1];
  g.fillStyle = "#ccc";
  if (last) {
    g.fillText(`glass-to-action p50 ${last.g50.toFixed(0)} / p95 ${last.g95.toFixed(0)} ms · model p50 ` +
      `${last.m50.toFixed(0)} / p95 ${last.m95.toFixed(0)} ms · ${last.aps.toFixed(1)} actions/s`, left + 4, top + 10);
  } else {
    g.fillText("waiting for actions…", left + 4, top + 10);
  }
}

// -- visual memory (memory.enabled): frames by time or by likeness to the current picture -------------
async function memoryQuery(path, what) {
  $("memory-state").textContent = "looking…";
  try {
    const r = await fetch(path, { cache: "no-store" });
    if (!r.ok) { $("memory-state").textContent = `${r.status}: ${(await r.text()).trim()}`; return; }
    const { hits } = await r.json();
    view.memoryHits = hits;
    $("memory-state").textContent = `${hits.length} ${what}`;
    const box = $("memory-hits");
    box.textContent = "";
    for (const h of hits) {
      const fig = document.createElement("figure");
      if (h.thumb != null) {
        const img = document.createElement("img");
        img.src = `/view/memory/thumb/${h.thumb}`; img.alt = `frame ${h.frame_id}`; img.loading = "lazy";
        fig.appendChild(img);
      }
      const cap = document.createElement("figcaption");
      const acts = h.actions.map((a) => `${a.type}${a.target && a.target.text ? ` ${a.target.text}` : ""}` +
        `${a.verdict ? ` → ${a.verdict}` : ""}`).join("; ");
      cap.textContent = `${new Date(h.ts * 1000).toISOString().slice(11, 19)} ${h.stream} #${h.seq}` +
        `${h.distance ? ` d=${h.distance.toFixed(3)}` : ""} · ${h.instruction || ""}${acts ? ` · ${acts}` : ""}`;
      fig.appendChild(cap);
      box.appendChild(fig);
    }
  } catch (err) { fail("memory", err); }
}

$("memory-recent").addEventListener("click", () => {
  const q = new URLSearchParams({ stream: view.stream || "", seconds: $("memory-span").value, limit: "24" });
  memoryQuery(`/view/memory/recent?${q}`, "frames, newest first");
});
$("memory-similar").addEventListener("click", () => {
  const q = new URLSearchParams({ stream: view.stream || "", k: "12" });
  memoryQuery(`/view/memory/similar?${q}`, "frames, most alike first");
});

window.addEventListener("error", (ev) => fail("page", ev.message));
setInterval(tick, 1000);
connect();
