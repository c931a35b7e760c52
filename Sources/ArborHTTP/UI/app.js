// Arbor's chat UI: plain JavaScript, no build step. Talks to /ui/api/* (catalog, start, state,
// trade-off curve) and streams chats from /v1/chat/completions like any OpenAI client.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { history: [], charts: {}, ready: false, stats: [], serverModels: {} };

function key() { return localStorage.getItem("arbor-api-key") || ""; }
function headers(json) {
  const h = {};
  if (json) h["Content-Type"] = "application/json";
  if (key()) h["Authorization"] = "Bearer " + key();
  return h;
}
function banner(text) {
  const b = $("banner");
  b.textContent = text || "";
  b.hidden = !text;
}
async function api(path, options = {}) {
  const r = await fetch(path, { ...options, headers: headers(options.body !== undefined) });
  let body = null;
  try { body = await r.json(); } catch (_) { /* not JSON */ }
  if (!r.ok) {
    const message = (body && body.error && body.error.message) || `${r.status} ${r.statusText}`;
    if (r.status === 401) $("key-box").hidden = false;
    throw new Error(message);
  }
  return body;
}
const fmt = (x, d = 2) => (x === null || x === undefined || !isFinite(x)) ? "–" : Number(x).toFixed(d);

// ---- State, catalog, start ----

async function refreshState() {
  let s;
  try { s = await api("/ui/api/state"); } catch (e) { banner("Cannot reach this Arbor server: " + e.message); return; }
  if (s.auth) $("key-box").hidden = false;
  if (!$("objective").options.length) {
    for (const o of s.objectives) $("objective").add(new Option(o, o));
  }
  const badge = $("status");
  badge.className = "badge " + s.status;
  if (s.status === "ready") {
    badge.textContent = `${s.target.model} on ${s.target.server}`;
    if (!state.ready) applyDefaults(s);
    state.ready = true;
    state.model = s.target.model;
  } else if (s.status === "loading") {
    badge.textContent = "starting the target…";
    state.ready = false;
  } else {
    badge.textContent = "not running";
    state.ready = false;
    banner("The target could not be started: " + s.error);
  }
  $("draft-model").textContent = s.draft_model || "none (start arbor api with --draft)";
  return s;
}

function applyDefaults(s) {
  const d = $("drafter");
  const previous = d.value;
  d.innerHTML = "";
  for (const name of s.drafters) d.add(new Option(name, name));
  d.value = s.drafters.includes(previous) ? previous : s.drafter;
  if (!$("objective").dataset.touched) $("objective").value = s.objective;
  if (!$("cs").dataset.touched) setCS(s.cs);
  $("proactive").checked = s.proactive;
  loadCurve();
}

async function refreshServers() {
  let servers;
  try { servers = await api("/ui/api/servers"); } catch (e) { banner("Server catalog: " + e.message); return; }
  const list = $("servers");
  list.innerHTML = "";
  const select = $("target-select");
  const chosen = select.value;
  select.innerHTML = "";
  select.add(new Option("as started (--model or --target-host)", "local"));
  for (const s of servers) {
    const li = document.createElement("li");
    li.dataset.name = s.name;
    li.innerHTML = `<b></b> <span class="muted"></span><span class="actions"><button data-act="probe">probe</button><button data-act="remove">remove</button></span><div class="probe"></div>`;
    li.querySelector("b").textContent = s.name;
    li.querySelector(".muted").textContent = `${s.host}:${s.port}${s.has_token ? " · token" : ""}`;
    list.appendChild(li);
    select.add(new Option(s.name, s.name));
  }
  if ([...select.options].some((o) => o.value === chosen)) select.value = chosen;
}

async function probe(name, li) {
  const out = li.querySelector(".probe");
  out.className = "probe";
  out.textContent = "probing…";
  try {
    const p = await api(`/ui/api/servers/${encodeURIComponent(name)}/probe`, { method: "POST", body: "{}" });
    if (!p.reachable) {
      out.className = "probe bad";
      out.textContent = "unreachable: " + p.problem;
    } else {
      out.className = "probe" + (p.vocabulary_matches === false ? " bad" : "");
      out.textContent = `${p.model} · ${fmt(p.round_trip_ms, 1)} ms round trip · vocabulary ${p.vocabulary_matches === false ? "DIFFERS from the draft model's" : p.vocabulary_matches ? "matches" : "not compared"}${p.price_per_hour != null ? ` · $${fmt(p.price_per_hour, 3)}/h` : ""}`;
      if (p.models && p.models.length > 1) {
        out.textContent += ` · models: ${p.models.map((m) => `${m.name}${m.loaded ? " (loaded)" : ""}${m.vocabulary_matches === false ? " [other vocabulary]" : ""}`).join(", ")}`;
      }
      state.serverModels[name] = p.models || [];
      if ($("target-select").value === name) fillServerModels(name);
    }
  } catch (e) {
    out.className = "probe bad";
    out.textContent = e.message;
  }
}

$("servers").addEventListener("click", async (ev) => {
  const button = ev.target.closest("button");
  if (!button) return;
  const li = button.closest("li");
  if (button.dataset.act === "probe") return probe(li.dataset.name, li);
  try {
    await api(`/ui/api/servers/${encodeURIComponent(li.dataset.name)}`, { method: "DELETE" });
    await refreshServers();
  } catch (e) { banner(e.message); }
});

$("add-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const body = { name: $("server-name").value.trim(), host: $("server-host").value.trim(), port: Number($("server-port").value), token: $("server-token").value };
  try {
    await api("/ui/api/servers", { method: "POST", body: JSON.stringify(body) });
    banner("");
    $("server-name").value = $("server-host").value = $("server-token").value = "";
    await refreshServers();
    $("target-select").value = body.name;
    const li = [...$("servers").children].find((x) => x.dataset.name === body.name);
    if (li) probe(body.name, li);
  } catch (e) { banner("Could not add the server: " + e.message); }
});

function fillServerModels(name) {
  const select = $("server-model");
  select.innerHTML = "";
  select.add(new Option("its default", ""));
  for (const m of state.serverModels[name] || []) {
    const label = `${m.name}${m.loaded ? " (loaded)" : ""}${m.vocabulary_matches === false ? " — other vocabulary" : ""}`;
    const option = new Option(label, m.name);
    option.disabled = m.vocabulary_matches === false;
    select.add(option);
  }
}
$("target-select").addEventListener("change", () => fillServerModels($("target-select").value));

$("start").addEventListener("click", async () => {
  banner("");
  try {
    await api("/ui/api/start", { method: "POST", body: JSON.stringify({ server: $("target-select").value, model: $("server-model").value }) });
  } catch (e) { banner("Could not start: " + e.message); return; }
  state.ready = false;
  for (let i = 0; i < 600; i++) {
    const s = await refreshState();
    if (s && s.status !== "loading") break;
    await new Promise((r) => setTimeout(r, 250));
  }
});

$("api-key").addEventListener("change", () => {
  localStorage.setItem("arbor-api-key", $("api-key").value);
  refreshState();
  refreshServers();
});

// ---- Knobs ----

function setCS(v) {
  $("cs").value = v;
  $("cs-value").textContent = fmt(v);
}
$("cs").addEventListener("input", () => { $("cs").dataset.touched = "1"; $("cs-value").textContent = fmt($("cs").value); });
document.querySelectorAll(".presets button").forEach((b) => b.addEventListener("click", () => { $("cs").dataset.touched = "1"; setCS(b.dataset.cs); }));
$("objective").addEventListener("change", () => { $("objective").dataset.touched = "1"; loadCurve(); });
$("drafter").addEventListener("change", loadCurve);
$("colour").addEventListener("change", () => $("messages").classList.toggle("colour", $("colour").checked));
$("messages").classList.add("colour");

// ---- Charts ----

function makeChart(id, config) {
  if (typeof Chart === "undefined") return null;
  state.charts[id] = new Chart($(id), config);
  return state.charts[id];
}

function setupCharts() {
  if (typeof Chart === "undefined") {
    document.querySelectorAll(".chart").forEach((c) => { c.innerHTML = '<p class="muted">Charts need Chart.js (Debian: apt install libjs-chart.js).</p>'; });
    return;
  }
  const line = (label, color) => ({
    type: "line",
    data: { labels: [], datasets: [{ label, data: [], borderColor: color, backgroundColor: color, tension: 0.2 }] },
    options: { responsive: true, maintainAspectRatio: false, animation: false, scales: { x: { title: { display: true, text: "message" } } } },
  });
  makeChart("speed-chart", line("tokens/s", "#2f6f4f"));
  makeChart("cost-chart", line("cost per million tokens", "#b45309"));
  makeChart("curve-chart", {
    type: "scatter",
    data: { datasets: [] },
    options: {
      responsive: true, maintainAspectRatio: false, animation: false,
      scales: { x: { title: { display: true, text: "cost per Mtok" } }, y: { title: { display: true, text: "tokens/s" } } },
      onClick: (_, elements, chart) => {
        if (!elements.length) return;
        const p = chart.data.datasets[elements[0].datasetIndex].data[elements[0].index];
        if (p.cs !== null && p.cs !== undefined) { $("cs").dataset.touched = "1"; setCS(p.cs); }
      },
      plugins: { tooltip: { callbacks: { label: (c) => `${c.raw.name}: ${fmt(c.raw.y)} tok/s, ${fmt(c.raw.x, 4)} per Mtok` } } },
    },
  });
}

async function loadCurve() {
  const chart = state.charts["curve-chart"];
  let c;
  try { c = await api(`/ui/api/tradeoff?objective=${encodeURIComponent($("objective").value)}&drafter=${encodeURIComponent($("drafter").value)}`); }
  catch (e) { $("curve-note").textContent = e.message; return; }
  $("curve-note").textContent = c.points.length ? `${c.points.length} settings measured (${c.unit} per Mtok); click an adaptive point to set cs` : c.note;
  if (!chart) return;
  const pt = (p) => ({ x: p.cost_per_million_tokens, y: p.tokens_per_second, cs: p.cs, name: p.name });
  chart.data.datasets = [
    { label: "adaptive (cs)", data: c.points.filter((p) => p.kind === "adaptive").map(pt).sort((a, b) => a.cs - b.cs), showLine: true, borderColor: "#2f6f4f", backgroundColor: "#2f6f4f" },
    { label: "baselines", data: c.points.filter((p) => p.kind !== "adaptive").map(pt), borderColor: "#9ca3af", backgroundColor: "#9ca3af" },
  ];
  chart.update();
}

function recordStats(s) {
  state.stats.push(s);
  const n = state.stats.length;
  for (const [id, value] of [["speed-chart", s.speed], ["cost-chart", s.cost]]) {
    const chart = state.charts[id];
    if (!chart) continue;
    chart.data.labels.push(String(n));
    chart.data.datasets[0].data.push(value);
    if (id === "cost-chart") chart.data.datasets[0].label = `cost per million tokens (${s.unit})`;
    chart.update();
  }
}

// ---- Chat ----

function addMessage(role, text) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  div.textContent = text || "";
  $("messages").appendChild(div);
  $("messages").scrollTop = $("messages").scrollHeight;
  return div;
}

async function send(text) {
  if (!state.ready) { banner("Start a target first (or wait until it is running)."); return; }
  banner("");
  state.history.push({ role: "user", content: text });
  addMessage("user", text);
  const out = addMessage("assistant", "");
  const body = {
    model: state.model, messages: state.history, stream: true, stream_options: { include_usage: true },
    max_tokens: Number($("max-tokens").value) || 256,
    drafter: $("drafter").value, objective: $("objective").value, cs: Number($("cs").value),
    speculative: { proactive: $("proactive").checked, adaptive: $("adaptive").checked },
  };
  let reply = "";
  let final = null;
  try {
    const r = await fetch("/v1/chat/completions", { method: "POST", headers: headers(true), body: JSON.stringify(body) });
    if (!r.ok) {
      let message = `${r.status} ${r.statusText}`;
      try { message = (await r.json()).error.message; } catch (_) { /* keep the status */ }
      throw new Error(message);
    }
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        if (!event.startsWith("data: ")) continue;
        const data = event.slice(6);
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        if (chunk.usage) final = chunk;
        for (const c of chunk.choices || []) {
          const piece = c.delta && c.delta.content;
          if (!piece) continue;
          reply += piece;
          const span = document.createElement("span");
          span.textContent = piece;
          if (chunk.arbor && chunk.arbor.drafted) span.className = "drafted";
          out.appendChild(span);
          $("messages").scrollTop = $("messages").scrollHeight;
        }
      }
    }
  } catch (e) {
    out.classList.add("error");
    out.appendChild(document.createTextNode((reply ? "\n" : "") + "Request failed: " + e.message));
    state.history.pop();
    return;
  }
  state.history.push({ role: "assistant", content: reply });
  if (final) {
    const t = final.timings, a = final.arbor;
    const cost = a.cost_unit === "-" ? a.dollars_per_million_tokens : a.cost_per_million_tokens;
    const unit = a.cost_unit === "-" ? "$" : a.cost_unit;
    const stats = document.createElement("span");
    stats.className = "stats";
    stats.textContent = `${fmt(t.predicted_per_second, 1)} tok/s · ${final.usage.completion_tokens} tokens · ${a.drafter}: acceptance ${fmt(100 * a.acceptance_rate, 0)}% (${t.draft_n_accepted}/${t.draft_n}), mean accepted length ${fmt(a.mean_accepted_length)} · ${unit === "$" ? "$" + fmt(cost, 4) : fmt(cost, 1) + " " + unit} per Mtok · ${a.bytes_up + a.bytes_down} bytes · energy ${a.energy}`;
    out.appendChild(stats);
    recordStats({ speed: t.predicted_per_second, cost, unit });
  }
}

$("send-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = $("message").value.trim();
  if (!text) return;
  $("message").value = "";
  send(text);
});
$("message").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); $("send-form").requestSubmit(); }
});

$("api-key").value = key();
setupCharts();
refreshState();
refreshServers();
setInterval(() => { if (!state.ready) refreshState(); }, 2000);
