// The nexo GUI: a calculator, the automatic client, live charts, the live
// client list, a wire inspector of one client's traffic and, on a gateway
// (nexo serve --nats), the whole cluster, all over one WebSocket through
// nexo.js.
import { connect, CODES, NexoError, TYPES, formatQuotient, parseJSON, stringifyJSON } from "/nexo.js";

const $ = (id) => document.getElementById(id);
const wsURL = new URL("/ws", location.href);
wsURL.protocol = location.protocol === "https:" ? "wss:" : "ws:";

let client = null; // the live WebSocketClient, or null between connections
let retry = 500; // ms before the next reconnect attempt

// ---- connection -----------------------------------------------------------

function setState(state, text) {
  const el = $("conn");
  el.className = "state " + state;
  el.textContent = text;
  document.body.dataset.state = state;
}

async function run() {
  for (;;) {
    setState("connecting", "connecting…");
    try {
      const token = sessionStorage.getItem("nexo-token") || undefined;
      client = await connect(wsURL.href, { name: "gui", token });
    } catch (e) {
      client = null;
      if (sessionStorage.getItem("nexo-token")) {
        // A wrong token is refused before the upgrade: forget it.
        sessionStorage.removeItem("nexo-token");
        $("whoami").textContent = "admin login failed; connecting without a token";
        continue;
      }
      await countdown();
      continue;
    }
    retry = 500;
    const w = client.welcome;
    setState("connected", "connected");
    document.body.classList.toggle("admin", w.admin);
    $("whoami").textContent = `client #${w.client_id} · ${w.server}${w.admin ? " · admin" : ""}`;
    $("login").hidden = w.admin;
    client.on("stats", onStats);
    client.on("clients", onClients);
    client.on("goodbye", (p) => setState("disconnected", "server said goodbye: " + p.reason));
    client.on("monitor", onMonitor);
    try {
      const st = await client.call("sys.stats");
      samples = st.history || [];
      drawCharts();
      const last = samples[samples.length - 1]; // the figures from the first second, not after the next push
      if (last) showNow(last);
      await client.subscribe(["stats", "clients"]);
    } catch (e) {
      console.warn("subscribe failed", e);
    }
    loadServices();
    // A gateway shows the cluster to admins: sys.cluster, every 2 s.
    let clusterTimer = null;
    if (w.admin && (await pollCluster())) clusterTimer = setInterval(pollCluster, 2000);
    const { code, reason } = await client.closed;
    clearInterval(clusterTimer);
    client = null;
    if (inspected) stopInspecting("stopped: the connection to the server ended");
    setState("disconnected", `disconnected (${reason || "code " + code})`);
    await countdown();
  }
}

// countdown waits before reconnecting, with backoff up to 5 s, and shows it.
async function countdown() {
  const until = Date.now() + retry;
  retry = Math.min(retry * 2, 5000);
  while (Date.now() < until) {
    const s = Math.ceil((until - Date.now()) / 1000);
    setState("disconnected", `disconnected; reconnecting in ${s} s`);
    await new Promise((r) => setTimeout(r, Math.min(250, until - Date.now())));
  }
}

$("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const t = $("token").value;
  if (!t) return;
  sessionStorage.setItem("nexo-token", t);
  $("token").value = "";
  if (client) client.close(); // reconnect with the token
});

// ---- calculator -----------------------------------------------------------

// Numbers are int64, read exactly as BigInt: a Number would round
// anything beyond 2^53.
function parseInt64(text, label) {
  const s = text.trim().replace(/^\+/, "");
  if (!/^-?\d+$/.test(s)) throw new NexoError("BAD_PAYLOAD", `${label} must be a whole number, not "${text}"`);
  const n = BigInt(s);
  if (BigInt.asIntN(64, n) !== n) throw new NexoError("BAD_PAYLOAD", `${label} must fit in 64 bits (±9223372036854775807)`);
  return n;
}

// show prints a result exactly: integers (BigInt beyond 2^53) in full,
// quotients as the server writes them.
function show(method, v) {
  return method === "math.div" ? formatQuotient(Number(v)) : String(v);
}

const describe = {
  DIVISION_BY_ZERO: "division by zero",
  OVERFLOW: "overflow: the result does not fit in 64 bits",
  BAD_PAYLOAD: "bad input",
  UNAVAILABLE: "not connected to the server",
};

function explain(e) {
  const what = describe[e.name] || e.name || "error";
  return `${what}${e.message && e.message !== what ? " (" + e.message + ")" : ""}`;
}

$("calc").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("result").textContent = "";
  $("calc-error").textContent = "";
  try {
    const a = parseInt64($("a").value, "First number");
    const b = parseInt64($("b").value, "Second number");
    if (!client) throw new NexoError("UNAVAILABLE", "");
    const op = $("op").value;
    $("result").textContent = show(op, await client.call(op, [a, b]));
  } catch (e) {
    $("calc-error").textContent = explain(e);
  }
});

// ---- services: every method of the catalog, a form from its schema -------

let services = new Map(); // name -> description (sys.describe)

async function loadServices() {
  try {
    const cat = await client.call("sys.describe");
    services = new Map(cat.methods.map((d) => [d.name, d]));
  } catch (e) {
    $("svc-error").textContent = "cannot list the services: " + explain(e);
    return;
  }
  const sel = $("svc-method");
  const keep = sel.value;
  sel.replaceChildren(...[...services.keys()].map((name) => new Option(name, name)));
  if (services.has(keep)) sel.value = keep;
  showMethod();
}

// fieldsOf reads a params schema: "object" (by name) or "array" (by
// position), and its fields in order; an anyOf is read as its first branch
// with fields, which are then optional.
function fieldsOf(s) {
  if (!s || typeof s !== "object") return { kind: "", fields: [] };
  for (const b of [...(s.anyOf || []), ...(s.oneOf || [])]) {
    const r = fieldsOf(b);
    if (r.fields.length) return { kind: r.kind, fields: r.fields.map((f) => ({ ...f, required: false })) };
  }
  const fields = [];
  (s.prefixItems || []).forEach((it, i) =>
    fields.push({ name: it.title || `param${i + 1}`, type: it.type, required: i < (s.minItems || 0) }));
  const req = new Set(s.required || []);
  for (const [name, p] of Object.entries(s.properties || {})) fields.push({ name, type: p.type, required: req.has(name) });
  return { kind: s.type === "object" ? "object" : s.type === "array" ? "array" : "", fields };
}

function showMethod() {
  const d = services.get($("svc-method").value);
  const box = $("svc-fields");
  box.replaceChildren(box.firstElementChild); // the legend
  $("svc-result").textContent = "";
  $("svc-error").textContent = "";
  if (!d) return;
  $("svc-summary").textContent = d.summary || "";
  $("svc-served").textContent = (d.served_by || []).join(", ");
  for (const f of fieldsOf(d.params).fields) {
    const id = "svc-f-" + f.name;
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = `${f.name} (${f.type || "JSON"}${f.required ? "" : ", optional"})`;
    let input;
    if (f.type === "boolean") {
      input = document.createElement("input");
      input.type = "checkbox";
    } else {
      input = document.createElement(f.type === "object" || f.type === "array" ? "textarea" : "input");
      input.autocomplete = "off";
      if (f.type === "integer") input.inputMode = "numeric";
      input.required = f.required;
    }
    input.id = id;
    input.dataset.field = f.name;
    input.dataset.type = f.type || "";
    box.append(label, input);
  }
}

// fieldValue reads one field as its schema type says: integers exactly
// (BigInt), JSON for objects, arrays and untyped fields.
function fieldValue(input) {
  const t = input.dataset.type, v = input.value.trim();
  if (t === "boolean") return input.checked;
  if (v === "") return undefined;
  if (t === "integer") {
    if (!/^-?\d+$/.test(v)) throw new NexoError("BAD_PAYLOAD", `${input.dataset.field} must be a whole number`);
    return BigInt(v);
  }
  if (t === "number") {
    const n = Number(v);
    if (!Number.isFinite(n)) throw new NexoError("BAD_PAYLOAD", `${input.dataset.field} must be a number`);
    return n;
  }
  if (t === "string") return v;
  try {
    return parseJSON(v);
  } catch {
    if (t === "") return v; // untyped: a bare word is a string
    throw new NexoError("BAD_PAYLOAD", `${input.dataset.field} must be JSON`);
  }
}

$("svc-method").addEventListener("change", showMethod);

$("svc").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("svc-result").textContent = "";
  $("svc-error").textContent = "";
  const method = $("svc-method").value;
  const d = services.get(method);
  try {
    if (!client || !d) throw new NexoError("UNAVAILABLE", "");
    const { kind } = fieldsOf(d.params);
    const inputs = [...$("svc-fields").querySelectorAll("[data-field]")];
    let params;
    if (kind === "object") {
      params = {};
      for (const i of inputs) {
        const v = fieldValue(i);
        if (v !== undefined) params[i.dataset.field] = v;
      }
    } else if (inputs.length) {
      params = inputs.map(fieldValue);
      while (params.length && params[params.length - 1] === undefined) params.pop(); // optional ones left out
    }
    const r = await client.call(method, params);
    $("svc-result").textContent = method === "math.div" ? formatQuotient(Number(r)) : stringifyJSON(r);
  } catch (e) {
    $("svc-error").textContent = explain(e);
  }
});

// ---- automatic client (the seed's: a random operation every N seconds) ----

const ops = [["math.add", "+"], ["math.sub", "−"], ["math.mul", "×"], ["math.div", "÷"]];
let autoTimer = null;

function logLine(text, bad) {
  const li = document.createElement("li");
  li.textContent = text;
  if (bad) li.className = "err";
  const log = $("auto-log");
  log.prepend(li);
  while (log.children.length > 100) log.lastChild.remove();
  markScrollers();
}

async function autoOnce() {
  const [method, sym] = ops[Math.floor(Math.random() * ops.length)];
  const int16 = () => Math.floor(Math.random() * 65536) - 32768;
  const a = int16(), b = int16();
  const time = new Date().toLocaleTimeString();
  try {
    if (!client) throw new NexoError("UNAVAILABLE", "");
    logLine(`${time}  ${a} ${sym} ${b} = ${show(method, await client.call(method, [a, b]))}`);
  } catch (e) {
    logLine(`${time}  ${a} ${sym} ${b}: ${explain(e)}`, true);
  }
}

$("auto").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const btn = $("auto-toggle");
  if (autoTimer) {
    clearInterval(autoTimer);
    autoTimer = null;
    btn.textContent = "Start";
    btn.setAttribute("aria-pressed", "false");
    return;
  }
  const every = Math.max(0.1, Number($("every").value) || 10);
  autoOnce();
  autoTimer = setInterval(autoOnce, every * 1000);
  btn.textContent = "Stop";
  btn.setAttribute("aria-pressed", "true");
});

// ---- charts (SVG, drawn at the chart's own size in CSS pixels) -----------

let samples = [];
const WINDOW = 300; // seconds shown
const svgNS = "http://www.w3.org/2000/svg";
const charts = [
  { svg: $("rps-chart"), value: (s) => s.rps, what: "Requests per second" },
  { svg: $("p99-chart"), value: (s) => s.p99_us, what: "p99 latency in microseconds" },
];

function onStats(s) {
  samples.push(s);
  if (samples.length > WINDOW) samples.splice(0, samples.length - WINDOW);
  showNow(s);
  drawCharts();
}

function showNow(s) {
  $("rps-now").textContent = s.rps.toLocaleString();
  $("p99-now").textContent = s.p99_us.toLocaleString();
}

function drawCharts() {
  for (const c of charts) draw(c);
}

// A chart is redrawn when its width changes (a phone turned, a window
// resized), so that its text is never stretched or clipped.
const resized = new ResizeObserver(drawCharts);
for (const c of charts) resized.observe(c.svg);

// niceCeil rounds up to 1, 2 or 5 times a power of ten: the top of the
// value axis.
function niceCeil(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 5, 10].map((m) => m * p).find((n) => n >= v);
}

function el(parent, name, attrs, text) {
  const e = document.createElementNS(svgNS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  parent.append(e);
  return e;
}

// draw lays a chart out in its own pixels: the value axis on the left (0,
// half and the top), the time axis below (a tick a minute, or fewer when
// the labels would not fit, up to "now"), the samples of the last WINDOW
// seconds of server time as a line, broken where samples are missing.
function draw({ svg, value, what }) {
  const w = svg.clientWidth, h = svg.clientHeight;
  if (!w || !h) return; // not laid out (hidden): drawn when it is
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.replaceChildren();
  const end = samples.length ? Date.parse(samples[samples.length - 1].t) : Date.now();
  const shown = samples.filter((s) => end - Date.parse(s.t) <= WINDOW * 1000);
  const peak = Math.max(0, ...shown.map(value));
  const top = niceCeil(Math.max(1, peak));
  const fontPx = parseFloat(getComputedStyle(svg).fontSize) || 12;

  // Labels are measured once drawn; the plot fits between them.
  const yLabels = [top, top / 2, 0].map((v) => el(svg, "text", { class: "y", "text-anchor": "end", "dominant-baseline": "middle" }, v.toLocaleString()));
  const left = Math.ceil(Math.max(...yLabels.map((t) => t.getComputedTextLength()))) + 8;
  const plot = { x0: left, x1: w - 6, y0: Math.ceil(fontPx / 2) + 3, y1: h - fontPx - 12 };
  const x = (t) => plot.x1 - ((end - t) / (WINDOW * 1000)) * (plot.x1 - plot.x0);
  const y = (v) => plot.y1 - (v / top) * (plot.y1 - plot.y0);
  yLabels.forEach((t, i) => {
    const gy = plot.y0 + (i * (plot.y1 - plot.y0)) / 2;
    el(svg, "line", { class: "grid", x1: plot.x0, x2: plot.x1, y1: gy, y2: gy });
    t.setAttribute("x", plot.x0 - 5);
    t.setAttribute("y", gy);
  });

  // The time axis: a tick every step seconds back from now, with the
  // smallest step whose labels keep a gap between them. A label is centred
  // on its tick but stays right of the value axis and inside the chart.
  const tickLabel = (sec) => (sec === 0 ? "now" : sec % 60 === 0 ? `−${sec / 60} min` : `−${sec} s`);
  const scratch = el(svg, "text", { class: "x" });
  const perSec = (plot.x1 - plot.x0) / WINDOW;
  const layout = (step) => {
    const ticks = [];
    for (let sec = 0; sec <= WINDOW; sec += step) {
      const tx = plot.x1 - sec * perSec;
      scratch.textContent = tickLabel(sec);
      const lw = scratch.getComputedTextLength();
      ticks.push({ sec, tx, lw, lx: Math.min(Math.max(tx - lw / 2, plot.x0), w - lw - 1) });
    }
    return ticks;
  };
  const fits = (ticks) => ticks.every((k, i) => i === 0 || k.lx + k.lw + 8 <= ticks[i - 1].lx);
  const ticks = [60, 120, 300].map(layout).find(fits) || layout(Infinity); // at worst, "now" alone
  scratch.remove();
  for (const k of ticks) {
    el(svg, "line", { class: "tick", x1: k.tx, x2: k.tx, y1: plot.y1, y2: plot.y1 + 4 });
    el(svg, "text", { class: "x", x: k.lx, y: h - 4 }, tickLabel(k.sec));
  }

  let d = "", last = 0;
  for (const s of shown) {
    const t = Date.parse(s.t);
    d += `${t - last > 2500 ? "M" : "L"}${x(t).toFixed(1)},${y(value(s)).toFixed(1)}`;
    last = t;
  }
  if (d) el(svg, "path", { class: "line", d });
  const now = shown.length ? value(shown[shown.length - 1]).toLocaleString() : "no samples yet";
  svg.setAttribute("aria-label", `${what} over the last 5 minutes: now ${now}, highest ${peak.toLocaleString()}`);
}

// ---- client list ----------------------------------------------------------

function ago(t) {
  const s = Math.max(0, (Date.now() - Date.parse(t)) / 1000);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.append(td);
  return td;
}

// syncRows makes a table body's rows those of items, in order, one per
// key(item), and fill(tr, item) writes a row's cells. A row that stays is
// kept in place with its elements, so that a Disconnect button keeps the
// keyboard focus, and a screen reader its place, through the updates
// every second. When the row holding the focus goes, the focus moves to
// the status line after the table, not to the top of the page.
function syncRows(body, items, key, fill) {
  const want = new Set(items.map((it) => String(key(it))));
  let lostFocus = false;
  for (const tr of [...body.rows]) {
    if (want.has(tr.dataset.id)) continue;
    lostFocus ||= tr.contains(document.activeElement);
    tr.remove();
  }
  const rows = new Map([...body.rows].map((tr) => [tr.dataset.id, tr]));
  let at = body.firstElementChild;
  for (const it of items) {
    const id = String(key(it));
    let tr = rows.get(id);
    if (!tr) {
      tr = document.createElement("tr");
      tr.dataset.id = id;
    }
    fill(tr, it);
    if (tr === at) at = at.nextElementSibling;
    else body.insertBefore(tr, at); // a new row, or one that moved
  }
  if (lostFocus) $("clients-status").focus();
}

// setCells writes a row's first cells, [text, class] each, touching only
// those that changed.
function setCells(tr, cells) {
  cells.forEach(([text, cls = ""], i) => {
    const td = tr.cells[i] || tr.insertCell();
    if (td.textContent !== String(text)) td.textContent = text;
    if (td.className !== cls) td.className = cls;
  });
}

// armed is the Disconnect button pressed once: a second press within
// armFor confirms.
let armed = { id: 0, until: 0 };
const armFor = 5000; // ms
const maxClosedRows = 20;

function disconnectButton(id) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "danger";
  const set = (on) => {
    b.textContent = on ? "Confirm disconnect" : "Disconnect";
    b.setAttribute("aria-label", `${on ? "Confirm disconnect" : "Disconnect"} client ${id}`);
  };
  set(false);
  b.addEventListener("click", () => {
    if (armed.id === id && Date.now() < armed.until) {
      armed = { id: 0, until: 0 };
      kick(id);
      return;
    }
    armed = { id, until: Date.now() + armFor };
    set(true);
    setTimeout(() => { if (armed.id !== id || Date.now() >= armed.until) set(false); }, armFor);
  });
  return b;
}

function onClients(ev) {
  $("clients-count").textContent = `(${ev.total})`;
  $("doors").textContent = Object.entries(ev.doors).map(([d, n]) => `${d}: ${n}`).join(" · ") || "no clients";
  const admin = document.body.classList.contains("admin");
  const me = client && client.welcome ? client.welcome.client_id : 0;
  syncRows($("clients").tBodies[0], ev.clients, (c) => c.id, (tr, c) => {
    setCells(tr, [
      [c.id + (c.id === me ? " (you)" : "")],
      [c.door],
      [c.name || ""],
      [c.remote || "", "admin-only"],
      [new Date(c.connected_at).toLocaleTimeString()],
      [c.requests.toLocaleString()],
      [ago(c.last_seen)],
      [c.heartbeat_rtt_us ? `${(c.heartbeat_rtt_us / 1000).toFixed(2)} ms` : "–"],
    ]);
    const td = tr.cells[8] || tr.insertCell();
    td.className = "admin-only";
    const may = admin && c.id !== me; // never your own session (nor can a watcher see its own requests)
    if (may && !td.firstChild) td.append(inspectButton(c.id), disconnectButton(c.id));
    if (!may && td.firstChild) td.replaceChildren();
    const ib = td.querySelector("button.inspect");
    if (ib) ib.setAttribute("aria-pressed", String(c.id === inspected));
  });
  if (inspected && !ev.clients.some((c) => c.id === inspected)) {
    $("inspector-target").textContent = `(client ${inspected}, gone)`;
  }
  const closed = [...ev.closed].sort((x, y) => Date.parse(y.closed_at) - Date.parse(x.closed_at)).slice(0, maxClosedRows);
  syncRows($("closed").tBodies[0], closed, (c) => c.id, (tr, c) => setCells(tr, [
    [c.id],
    [c.door],
    [c.name || ""],
    [c.remote || "", "admin-only"],
    [new Date(c.closed_at).toLocaleTimeString()],
    [c.requests.toLocaleString()],
    [c.reason],
  ]));
  markScrollers();
}

// ---- cluster --------------------------------------------------------------

// pollCluster shows sys.cluster; it returns false when this server is not a
// gateway, so that the panel stays hidden.
async function pollCluster() {
  if (!client) return false;
  try {
    onCluster(await client.call("sys.cluster"));
    $("cluster-section").hidden = false;
    return true;
  } catch (e) {
    if (e instanceof NexoError && e.name === "UNKNOWN_METHOD") {
      $("cluster-section").hidden = true;
      return false;
    }
    $("cluster-totals").textContent = `(cannot gather: ${explain(e)})`;
    return true;
  }
}

function onCluster(c) {
  const t = c.totals;
  $("cluster-totals").textContent = `(${t.gateways} gateways · ${t.workers} workers · ${t.clients} clients)`;
  $("gateways").tBodies[0].replaceChildren(...c.gateways.map((g) => {
    const tr = document.createElement("tr");
    cell(tr, g.gateway);
    cell(tr, g.stats.clients);
    cell(tr, g.stats.requests.toLocaleString());
    cell(tr, g.forward.sent.toLocaleString());
    cell(tr, g.forward.retried.toLocaleString());
    cell(tr, g.forward.unavailable.toLocaleString());
    cell(tr, g.forward.timed_out.toLocaleString());
    return tr;
  }));
  $("workers").tBodies[0].replaceChildren(...c.workers.map((w) => {
    const tr = document.createElement("tr");
    const md = w.metadata || {};
    cell(tr, w.id);
    cell(tr, md.host || "");
    cell(tr, md.runtime || "");
    const up = (w.endpoints || []).map((e) => e.upstream).find(Boolean);
    cell(tr, (md.services || "") + (up ? ` from ${up.url} (${up.up ? "up" : "down: " + (up.error || "")})` : ""));
    cell(tr, (w.endpoints || []).map((e) => e.method).join(", "));
    cell(tr, w.requests.toLocaleString());
    cell(tr, w.errors.toLocaleString());
    cell(tr, ago(w.started));
    return tr;
  }));
  $("cluster-clients").tBodies[0].replaceChildren(...c.clients.map((k) => {
    const tr = document.createElement("tr");
    cell(tr, k.gateway);
    cell(tr, k.id);
    cell(tr, k.door);
    cell(tr, k.name || "");
    cell(tr, k.remote || "");
    cell(tr, new Date(k.connected_at).toLocaleTimeString());
    cell(tr, k.requests.toLocaleString());
    return tr;
  }));
}

async function kick(id) {
  const status = $("clients-status");
  try {
    if (!client) throw new NexoError("UNAVAILABLE", "");
    const gone = await client.call("sys.kick", [id, "disconnected from the GUI"]);
    status.textContent = gone ? `client ${id} disconnected` : `client ${id} had already left`;
  } catch (e) {
    status.textContent = `cannot disconnect client ${id}: ${explain(e)}`;
  }
}

// ---- wire inspector: one client's traffic, decoded (sys.monitor) ----------

let inspected = 0; // the client being inspected; 0: none
let listed = 0; // the client whose traffic the list holds
const maxExchanges = 200;

function inspectButton(id) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "inspect";
  b.textContent = "Inspect";
  b.setAttribute("aria-label", `Inspect client ${id}`);
  b.setAttribute("aria-pressed", "false");
  b.addEventListener("click", () => inspect(id));
  return b;
}

// inspect watches one client's requests and answers, with their frames.
// One connection has one watch: a second sys.monitor replaces the filter.
async function inspect(id) {
  const status = $("inspector-status");
  $("inspector-section").hidden = false;
  try {
    if (!client) throw new NexoError("UNAVAILABLE", "");
    await client.call("sys.monitor", { client: id, frames: true });
  } catch (e) {
    status.textContent = `cannot inspect client ${id}: ${explain(e)}`;
    status.focus();
    return;
  }
  if (listed !== id) { // another client's: a list of its own
    arrived = [];
    $("inspector-log").replaceChildren();
  }
  inspected = listed = id;
  for (const b of document.querySelectorAll("button.inspect")) {
    b.setAttribute("aria-pressed", String(b.getAttribute("aria-label") === `Inspect client ${id}`));
  }
  $("inspector-target").textContent = `(client ${id})`;
  status.textContent = `inspecting client ${id}: its requests appear below as they pass`;
  status.focus(); // a keyboard user lands here, and a screen reader says it
  markScrollers();
}

function stopInspecting(why) {
  inspected = 0;
  for (const b of document.querySelectorAll("button.inspect")) b.setAttribute("aria-pressed", "false");
  $("inspector-status").textContent = why;
}

$("inspector-stop").addEventListener("click", async () => {
  if (!inspected) return;
  const id = inspected;
  stopInspecting(`stopped inspecting client ${id}`);
  try {
    if (client) await client.call("sys.unmonitor");
  } catch (e) {
    $("inspector-status").textContent = `cannot stop: ${explain(e)}`;
  }
});

$("inspector-clear").addEventListener("click", () => {
  arrived = [];
  $("inspector-log").replaceChildren();
  markScrollers();
});

// The events of the monitor stream not drawn yet, oldest first, and the
// animation frame that will draw them (0: none asked for). A busy client
// may cause thousands of events a second: the inspector draws them at most
// once a frame, together, and only the last maxExchanges of them, which
// are all it keeps.
let arrived = [];
let drawing = 0;

// onMonitor keeps an event of the monitor stream (a request and its
// answer, or how many were lost) for the next frame.
function onMonitor(ev) {
  if (!inspected) return;
  if (!ev.lost && ev.client !== inspected) return; // of the watch before this one
  arrived.push(ev);
  if (arrived.length >= 2 * maxExchanges) arrived.splice(0, arrived.length - maxExchanges); // older ones would not be kept
  if (!drawing) drawing = requestAnimationFrame(drawArrived);
}

// drawArrived shows the events that arrived since the last frame, newest
// first, above the others, and keeps the last maxExchanges.
function drawArrived() {
  drawing = 0;
  const items = arrived.slice(-maxExchanges).map(exchangeItem).reverse();
  arrived = [];
  const log = $("inspector-log");
  log.prepend(...items);
  while (log.children.length > maxExchanges) log.lastChild.remove();
  markScrollers(); // once a frame: it forces a layout
}

// exchangeItem is an event of the monitor stream as a list item.
function exchangeItem(ev) {
  const li = document.createElement("li");
  if (ev.lost) {
    li.className = "lost";
    li.textContent = `${ev.lost} requests not shown: the page could not keep up`;
  } else {
    li.dataset.door = ev.door;
    li.dataset.method = ev.method;
    const p = document.createElement("p");
    p.className = "summary" + (ev.error ? " err" : "");
    const params = ev.params !== undefined ? stringifyJSON(ev.params) : `<${ev.params_len} bytes>`;
    const outcome = ev.error ? `${ev.error.name}: ${ev.error.message}` :
      ev.result !== undefined ? stringifyJSON(ev.result) : `<${ev.result_len} bytes>`;
    p.textContent = `${new Date(ev.time).toLocaleTimeString()} · ${ev.door} · ${ev.method} ${params} → ${outcome} · ${ev.duration_us} µs`;
    li.append(p);
    if (ev.frames) {
      li.append(...frameView("request", ev, ev.frames.request, ev.frames.request_len));
      if (ev.frames.answer) li.append(...frameView("answer", ev, ev.frames.answer, ev.frames.answer_len));
    }
  }
  return li;
}

function bytesOf(b64) {
  return Uint8Array.from(atob(b64 || ""), (c) => c.charCodeAt(0));
}

const hex = (b) => [...b].map((x) => x.toString(16).padStart(2, "0")).join(" ");
const ascii = (b) => new TextDecoder().decode(b);
const typeNames = Object.fromEntries(Object.entries(TYPES).map(([name, n]) => [n, name]));

// frameView is a heading and the decoded frame: a table of fields for the
// binary doors, the JSON for the JSON doors. which is "request" or
// "answer"; total is the frame's whole length (it may have been cut).
function frameView(which, ev, b64, total) {
  const bytes = bytesOf(b64);
  const h = document.createElement("p");
  h.className = "frame-title";
  h.textContent = `${which}: ${total} bytes${bytes.length < total ? `, the first ${bytes.length} shown` : ""}`;
  if (ev.door === "ws" || ev.door === "http") {
    const pre = document.createElement("pre");
    pre.className = which;
    pre.textContent = prettyJSON(ascii(bytes)) + (bytes.length < total ? "\n…" : "");
    return [h, pre];
  }
  const rows = ev.door === "legacy" ? legacyFields(which, ev, bytes) : nativeFields(which, ev, bytes, total);
  const wrap = document.createElement("div");
  wrap.className = "scroll";
  const table = document.createElement("table");
  table.className = which;
  const cap = table.createCaption();
  cap.className = "sr";
  cap.textContent = `The ${which} of ${ev.method}, field by field`;
  const head = table.createTHead().insertRow();
  for (const c of ["offset", "field", "bytes", "value"]) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = c;
    head.append(th);
  }
  const body = table.createTBody();
  for (const r of rows) {
    const tr = body.insertRow();
    tr.dataset.field = r.field;
    cell(tr, r.off);
    cell(tr, r.name);
    cell(tr, hex(r.bytes), "bytes");
    cell(tr, r.value, "value");
  }
  wrap.append(table);
  return [h, wrap];
}

// fields cuts bytes into named fields in order: each [field, name, size,
// decode] takes size bytes (Infinity: the rest of the frame, up to total),
// and decode(bytes) says what they mean. A field the cut left incomplete
// says so instead.
function fields(bytes, total, specs) {
  const rows = [];
  let off = 0;
  for (const [field, name, size, decode] of specs) {
    if (off >= total || off > bytes.length) break;
    const n = size === Infinity ? total - off : size;
    const b = bytes.subarray(off, off + n);
    const value = b.length < n ? `(${b.length} of ${n} bytes shown)` : decode(b);
    rows.push({ field, name, off, bytes: b, value });
    off += n;
  }
  return rows;
}

const view = (b) => new DataView(b.buffer, b.byteOffset, b.byteLength);

// nativeFields decodes a native frame (docs/protocol.md, "Frames"): the
// header, then a REQUEST's deadline, trace context, method and payload, a
// RESPONSE's payload, or an ERROR's code and message.
function nativeFields(which, ev, bytes, total) {
  if (bytes.length < 12) return fields(bytes, total, [["frame", "frame", Infinity, () => ""]]);
  const h = view(bytes);
  const type = h.getUint8(5), flags = h.getUint16(6);
  const flagNames = [flags & 1 ? "DEADLINE" : "", flags & 2 ? "TRACE" : ""].filter(Boolean).join(" | ");
  const specs = [
    ["length", "length", 4, (b) => `${view(b).getUint32(0)} (8 + ${view(b).getUint32(0) - 8} bytes of body)`],
    ["version", "version", 1, (b) => String(b[0])],
    ["type", "type", 1, (b) => `${b[0]} ${typeNames[b[0]] || "unknown"}`],
    ["flags", "flags", 2, (b) => `0x${view(b).getUint16(0).toString(16).padStart(4, "0")}${flagNames ? " " + flagNames : ""}`],
    ["id", "id", 4, (b) => String(view(b).getUint32(0))],
  ];
  const shown = (v, n) => (v !== undefined ? stringifyJSON(v) : `${n} bytes`);
  if (type === TYPES.REQUEST) {
    if (flags & 1) specs.push(["deadline", "deadline (ms)", 4, (b) => `${view(b).getUint32(0)} ms`]);
    if (flags & 2) specs.push(["trace", "trace context", 25, (b) => `trace ${hex(b.subarray(0, 16)).replaceAll(" ", "")}, span ${hex(b.subarray(16, 24)).replaceAll(" ", "")}, flags ${b[24]}`]);
    const at = 12 + (flags & 1 ? 4 : 0) + (flags & 2 ? 25 : 0);
    const mlen = bytes.length > at ? bytes[at] : 0;
    specs.push(["method_length", "method length", 1, (b) => String(b[0])]);
    specs.push(["method", "method", mlen, (b) => ascii(b)]);
    specs.push(["payload", "payload", Infinity, (b) => shown(ev.params, b.length)]);
  } else if (type === TYPES.RESPONSE) {
    specs.push(["payload", "payload", Infinity, (b) => shown(ev.result, b.length)]);
  } else if (type === TYPES.ERROR) {
    specs.push(["code", "code", 2, (b) => { const c = view(b).getUint16(0); return `${c} ${CODES[c] || "CODE_" + c}`; }]);
    specs.push(["message", "message", Infinity, (b) => ascii(b)]);
  } else {
    specs.push(["body", "body", Infinity, (b) => `${b.length} bytes`]);
  }
  return fields(bytes, total, specs);
}

// legacyFields decodes a legacy packet (docs/protocol.md, "Legacy
// protocol"), in the byte order the client used: int32 length, int16 a,
// int16 b, the command; or the reply line.
function legacyFields(which, ev, bytes) {
  if (which === "answer") {
    return fields(bytes, bytes.length, [["reply", "reply line", Infinity, (b) => JSON.stringify(ascii(b))]]);
  }
  const little = ev.frames.order === "little-endian";
  const order = little ? "little-endian" : "big-endian";
  return fields(bytes, bytes.length, [
    ["length", `length (int32, ${order})`, 4, (b) => String(view(b).getInt32(0, little))],
    ["a", `a (int16, ${order})`, 2, (b) => String(view(b).getInt16(0, little))],
    ["b", `b (int16, ${order})`, 2, (b) => String(view(b).getInt16(0, little))],
    ["command", "command (ASCII)", Infinity, (b) => ascii(b)],
  ]);
}

// prettyJSON indents JSON text without parsing its numbers, which stay
// exactly as written (an int64 beyond 2^53 too). Text that is not whole
// JSON (a cut message) is indented as far as it goes.
function prettyJSON(text) {
  let out = "", depth = 0, inString = false;
  const nl = () => "\n" + "  ".repeat(depth);
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (inString) {
      out += ch;
      if (ch === "\\") out += text[++i] ?? "";
      else if (ch === '"') inString = false;
      continue;
    }
    switch (ch) {
      case '"': inString = true; out += ch; break;
      case "{": case "[":
        if (text[i + 1] === (ch === "{" ? "}" : "]")) { out += ch + text[++i]; break; }
        depth++; out += ch + nl(); break;
      case "}": case "]": depth = Math.max(0, depth - 1); out += nl() + ch; break;
      case ",": out += "," + nl(); break;
      case ":": out += ": "; break;
      case " ": case "\t": case "\n": case "\r": break;
      default: out += ch;
    }
  }
  return out;
}

// ---- keyboard -------------------------------------------------------------

// A box that scrolls (a wide table on a phone, a long log) is reachable
// with Tab, to scroll it with the arrow keys, while (and only while) its
// content overflows it.
const scrollers = [...document.querySelectorAll(".scroll, .log")];

function markScrollers() {
  for (const box of scrollers) {
    const over = box.scrollWidth > box.clientWidth + 1 || box.scrollHeight > box.clientHeight + 1;
    if (over && !box.hasAttribute("tabindex")) box.tabIndex = 0;
    else if (!over && box.hasAttribute("tabindex")) box.removeAttribute("tabindex");
  }
}

const boxResized = new ResizeObserver(markScrollers);
for (const box of scrollers) {
  boxResized.observe(box);
  if (box.firstElementChild) boxResized.observe(box.firstElementChild);
}

run();
