// worker.js: serve methods written in JavaScript to nexo's gateways over
// NATS, in the format the Go workers speak (docs/services.md, "A worker in
// any language, over NATS"), so that a gateway calls them like any other
// method, on every door. Node only; it needs the packages of
// package.json (`npm ci`), unlike nexo.js.
//
//   import { serve, NexoError } from "nexo-client/worker";
//   const worker = await serve({
//     nats: "nats://127.0.0.1:4222",
//     methods: {
//       "greet.js": {
//         summary: "greets a name of 1 to 64 characters",
//         params: { type: "object", properties: { name: { type: "string", minLength: 1, maxLength: 64 } },
//                   required: ["name"], additionalProperties: false },
//         result: { type: "object", properties: { greeting: { type: "string" } }, required: ["greeting"] },
//         idempotent: true,
//         handler: async ({ name }) => ({ greeting: `Hello, ${name}!` }),
//       },
//     },
//   });
//   process.once("SIGTERM", () => worker.stop());
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { connect, headers as natsHeaders } from "nats";
import Ajv2020 from "ajv/dist/2020.js";
import { NexoError as ClientError, CODES } from "./nexo.js";

// The protocol's codes (spec section 1.4) a worker answers with.
/** No such method. */
export const UNKNOWN_METHOD = 4;
/** The params do not fit the method: not JSON, or not what its schema says. */
export const BAD_PAYLOAD = 5;
/** math.div by zero. */
export const DIVISION_BY_ZERO = 6;
/** An int64 overflowed. */
export const OVERFLOW = 7;
/** Too many requests; retry later. */
export const BUSY = 8;
/** The worker is stopping and did not run the request; retry elsewhere. */
export const SHUTTING_DOWN = 9;
/** The deadline passed. */
export const TIMEOUT = 10;
/** A bug or unexpected failure; its details are logged, not sent. */
export const INTERNAL = 11;
/** No backend serves the method now. */
export const UNAVAILABLE = 13;
/** The first of the codes a service defines for its own errors (1000..65535). */
export const MIN_APPLICATION_CODE = 1000;

/**
 * An error a handler throws to answer with a code: a protocol code (the
 * constants above, such as OVERFLOW) or the service's own, 1000..65535,
 * which every door carries unchanged. Anything else a handler throws is
 * answered INTERNAL. It is a NexoError of nexo.js too, so a NexoError a
 * call to another nexo service rejected with passes its code on as well.
 */
export class NexoError extends ClientError {
  /**
   * @param {number} code a code of 4..13 but 12, or 1000..65535
   * @param {string} message text for people, sent as is
   */
  constructor(code, message) {
    super(CODES[code] ?? `CODE_${code}`, message, code);
    this.number = code;
  }
}

/** The micro service every worker is part of, and the queue group its endpoints share. */
export const SERVICE_NAME = "nexo-worker";
export const QUEUE_GROUP = "nexo";
/** Header names of the format. */
export const DEADLINE_HEADER = "Nexo-Deadline";
export const BATCH_HEADER = "Nexo-Batch";

/** What sys.describe says serves a method of this worker. */
const SERVED_BY = "node worker";
/** Time allowed to a request without a deadline, as the Go worker does. */
const DEFAULT_TIMEOUT = 30_000;
/** The most requests in one batch message. */
const MAX_BATCH = 1024;
const REQUEST_ENTRY = 8 + 4; // deadline, length
const ANSWER_ENTRY = 2 + 4; // code, length
/** setTimeout's longest delay; a later deadline re-arms the timer. */
const MAX_TIMER = 2 ** 31 - 1;

const VERSION = JSON.parse(readFileSync(new URL("./package.json", import.meta.url), "utf8")).version;
const NUMBERS = Object.fromEntries(Object.entries(CODES).map(([n, name]) => [name, Number(n)]));
const utf8 = new TextEncoder();
const fromUTF8 = new TextDecoder();
const EXPIRED = "the deadline passed before a worker took the request";
const STOPPING = "the worker is stopping";
const MALFORMED = "malformed request batch";

/**
 * Starts a worker: one NATS micro service "nexo-worker" whose endpoints
 * serve the methods on "<prefix>.svc.<method>" in the queue group "nexo",
 * each describing its method in its metadata, then tells the gateways
 * (`<prefix>.admin.joined`) so that they call it at once.
 *
 * @param {object} o
 * @param {string|string[]|import("nats").NatsConnection} o.nats NATS server
 *   URL(s) ("nats://127.0.0.1:4222", comma-separated for a cluster), or a
 *   connection of the caller's own (credentials, TLS), which stop() leaves open
 * @param {Record<string, MethodDefinition>} o.methods methods by name
 * @param {string} [o.prefix] subject prefix of the cluster ("nexo")
 * @param {string} [o.name] this worker in the cluster view (host-pid)
 * @param {{error?: (msg: string) => void, warn?: (msg: string) => void}} [o.log]
 *   where handler failures (error) and answers that could not be sent
 *   (warn) are told: console, say; console.error when not given
 * @returns {Promise<Worker>}
 *
 * @typedef {object} MethodDefinition
 * @property {string} [summary] one line for listings
 * @property {object|boolean} params JSON Schema (draft 2020-12) every call's params are checked against
 * @property {object|boolean} result JSON Schema of the result, published, not checked
 * @property {Array<string|number>} [errors] codes the method answers besides BAD_PAYLOAD, by name or number
 * @property {boolean} [idempotent] may run twice, so gateways may retry it
 * @property {Array<{name?: string, params: any, result?: any, error?: string}>} [examples]
 * @property {(params: any, ctx: Context) => any} handler returns (or resolves with) the result
 *
 * @typedef {object} Context
 * @property {Date} deadline when the caller stops waiting
 * @property {AbortSignal} signal aborts at the deadline, or when stop() gives up waiting
 * @property {string} method the method's name
 */
export async function serve({ nats = "nats://127.0.0.1:4222", methods, prefix = "nexo", name, log } = {}) {
  checkPrefix(prefix);
  log = logger(log);
  name ||= `${hostname()}-${process.pid}`;
  const defs = define(methods, prefix);
  const own = !(typeof nats === "object" && typeof nats?.subscribe === "function");
  if (own && !(typeof nats === "string" && nats !== "" || Array.isArray(nats) && nats.length > 0)) {
    throw new TypeError("serve: nats must be a NATS URL, a list of them, or a NatsConnection");
  }
  const nc = own ? await dial(nats, name, log) : nats;
  try {
    return await start(nc, own, defs, prefix, name, log);
  } catch (e) {
    if (own) await nc.close();
    throw e;
  }
}

// dial connects to NATS as the Go worker does: NATS may start later or go
// away for a while, so it keeps trying, and says so.
async function dial(urls, name, log) {
  const servers = typeof urls === "string" ? urls.split(",").map((s) => s.trim()) : urls;
  const waiting = setTimeout(() => log.warn(`nexo worker: still trying to connect to NATS at ${servers.join(", ")}`), 2000);
  try {
    return await connect({
      servers,
      name: `nexo-worker ${name}`,
      waitOnFirstConnect: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      pingInterval: 5000,
      maxPingOut: 2,
    });
  } finally {
    clearTimeout(waiting);
  }
}

/**
 * A running worker.
 * @typedef {object} Worker
 * @property {(opts?: {timeout?: number}) => Promise<void>} stop drains: stops taking requests
 *   (NATS sends new ones to the other workers), answers those it holds,
 *   then drains and closes its connection (not one the caller passed).
 *   Handlers still running after `timeout` ms (30 s) are aborted and the
 *   connection closed. Calling it again returns the same promise.
 * @property {object} info the micro service's INFO: name, id, version, metadata, endpoints
 */

async function start(nc, own, defs, prefix, name, log) {
  const served = new Map(defs.map((d) => [d.subject, 0])); // requests by subject, each of a batch counted
  const running = new Set(); // promises of the messages in hand
  const controllers = new Set(); // of the handlers running now
  let refusing = false; // set once the subscriptions are drained: nothing more is run
  let stopping = null;

  const svc = await nc.services.add({
    name: SERVICE_NAME,
    version: VERSION,
    description: "nexo service worker (Node.js)",
    queue: QUEUE_GROUP,
    metadata: { runtime: "node", services: defs.map((d) => d.name).join(","), host: name },
    // What nexo's cluster view reads: micro counts messages, a batch is many requests.
    statsHandler: (ep) => ({ requests: served.get(ep.subject) ?? 0 }),
  });
  const ctx = { log, controllers, maxPayload: () => nc.info?.max_payload ?? 1 << 20 };
  const deliver = (def) => (err, msg) => {
    if (err) return; // the service stops itself, and says why (svc.stopped)
    if (refusing) {
      answerError(msg, SHUTTING_DOWN, STOPPING, log);
      return;
    }
    const n = batchCount(msg.headers?.get(BATCH_HEADER) ?? "");
    served.set(def.subject, served.get(def.subject) + Math.max(n, 1));
    const p = (n === 0 ? single(def, msg, ctx) : batch(def, msg, n, ctx))
      .catch((e) => log.error(`nexo worker: ${def.name}: ${e?.stack ?? e}`))
      .finally(() => running.delete(p));
    running.add(p);
  };
  try {
    for (const def of defs) {
      svc.addEndpoint(def.endpoint, { subject: def.subject, metadata: def.metadata, handler: deliver(def) });
    }
    // Gateways gather the catalog again when a worker joins, so its
    // methods are callable at once, not at their next periodic gather.
    // Once NATS has it (the flush), serve resolves.
    nc.publish(`${prefix}.admin.joined`);
    await nc.flush();
  } catch (e) {
    await svc.stop();
    throw e;
  }
  svc.stopped.then((err) => {
    if (err && !stopping) log.error(`nexo worker: the NATS service stopped: ${err.message ?? err}`);
  });

  async function drain(timeout) {
    // Unsubscribes at once (the UNSUBs leave before anything sent on this
    // connection after stop() is called), and delivers what NATS sent
    // before it took them: those requests are run and answered.
    const end = Date.now() + timeout;
    const drained = nc.isClosed() ? Promise.resolve() : svc.stop();
    let timer;
    const late = new Promise((resolve) => { timer = setTimeout(resolve, timeout, "late"); });
    try {
      if (await Promise.race([drained.then(() => "drained"), late]) === "drained") {
        refusing = true; // anything delivered from now on is answered SHUTTING_DOWN, not run
        while (running.size > 0) {
          if (await Promise.race([Promise.allSettled([...running]).then(() => "idle"), late]) === "late") break;
        }
      }
      refusing = true;
      if (running.size > 0) {
        log.warn(`nexo worker: drain incomplete after ${timeout} ms: ${running.size} messages still running; cancelling them`);
        for (const c of controllers) c.abort(new NexoError(SHUTTING_DOWN, "the worker stopped before the handler finished"));
      }
    } finally {
      clearTimeout(timer);
    }
    // Send the answers (flush, or drain, which then closes), within what
    // is left of the timeout: NATS may be unreachable.
    const left = Math.max(end - Date.now(), 0);
    if (!nc.isClosed() && running.size === 0) {
      await Promise.race([(own ? nc.drain() : nc.flush()).catch(() => {}), new Promise((r) => { timer = setTimeout(r, left); })]);
      clearTimeout(timer);
    }
    if (own && !nc.isClosed()) await nc.close(); // a drain that failed leaves it open
  }

  return {
    stop({ timeout = DEFAULT_TIMEOUT } = {}) {
      stopping ??= drain(timeout);
      return stopping;
    },
    get info() {
      return svc.info();
    },
  };
}

// single answers one request: its data is the params' JSON text, the
// answer's the result's, or an error in the micro error headers.
async function single(def, msg, ctx) {
  const deadline = parseDeadline(msg.headers?.get(DEADLINE_HEADER) ?? "");
  if (deadline !== null && Date.now() >= deadline) {
    answerError(msg, TIMEOUT, EXPIRED, ctx.log);
    return;
  }
  const out = await call(def, msg.data, deadline ?? Date.now() + DEFAULT_TIMEOUT, ctx);
  if (out.code === 0 && out.body.length > ctx.maxPayload()) {
    ctx.log.error(`nexo worker: ${def.name}: a result of ${out.body.length} bytes is over NATS's max_payload (${ctx.maxPayload()})`);
    answerError(msg, INTERNAL, "the result is larger than NATS's max_payload", ctx.log);
  } else if (out.code === 0) {
    respond(msg, out.body, undefined, ctx.log);
  } else {
    answerError(msg, out.code, out.message, ctx.log);
  }
}

// batch answers n requests of one message with one message, in order.
// The data is checked whole before anything runs or is allocated for it:
// a malformed batch is refused with BAD_PAYLOAD.
async function batch(def, msg, n, ctx) {
  const data = msg.data;
  if (n < 0 || data.length < n * REQUEST_ENTRY) {
    answerError(msg, BAD_PAYLOAD, MALFORMED, ctx.log);
    return;
  }
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const entries = [];
  let off = 0;
  for (let i = 0; i < n; i++) {
    if (data.length - off < REQUEST_ENTRY) break;
    const deadline = Number(view.getBigInt64(off)); // signed, as the Go worker reads it
    const length = view.getUint32(off + 8);
    off += REQUEST_ENTRY;
    if (length > data.length - off) break;
    entries.push({ deadline, payload: data.subarray(off, off + length) });
    off += length;
  }
  if (entries.length !== n || off !== data.length) {
    answerError(msg, BAD_PAYLOAD, MALFORMED, ctx.log);
    return;
  }
  const now = Date.now();
  const outs = await Promise.all(entries.map((e) => e.deadline !== 0 && e.deadline <= now
    ? { code: TIMEOUT, message: EXPIRED }
    : call(def, e.payload, e.deadline || now + DEFAULT_TIMEOUT, ctx)));
  const bodies = outs.map((o) => (o.code === 0 ? o.body : utf8.encode(o.message)));
  let size = bodies.reduce((s, b) => s + ANSWER_ENTRY + b.length, 0);
  // Too large for one NATS message (with its header): the largest results
  // become errors until it fits, rather than none of the answers arriving.
  const room = ctx.maxPayload() - 64;
  if (size > room) {
    const big = outs.map((o, i) => i).filter((i) => outs[i].code === 0).sort((a, b) => bodies[b].length - bodies[a].length);
    for (const i of big) {
      if (size <= room) break;
      ctx.log.error(`nexo worker: ${def.name}: a result of ${bodies[i].length} bytes does not fit NATS's max_payload in its batch`);
      outs[i] = { code: INTERNAL, message: "the result is larger than NATS's max_payload" };
      const b = utf8.encode(outs[i].message);
      size += b.length - bodies[i].length;
      bodies[i] = b;
    }
  }
  const out = new Uint8Array(size);
  const w = new DataView(out.buffer);
  off = 0;
  outs.forEach((o, i) => {
    w.setUint16(off, o.code);
    w.setUint32(off + 2, bodies[i].length);
    out.set(bodies[i], off + ANSWER_ENTRY);
    off += ANSWER_ENTRY + bodies[i].length;
  });
  const h = natsHeaders();
  h.set(BATCH_HEADER, String(n));
  respond(msg, out, h, ctx.log);
}

// call runs one request's handler: parses and checks its params, runs it
// with a signal that aborts at the deadline, and serialises its result.
// It returns {code: 0, body} or {code, message}; it never throws.
async function call(def, payload, deadline, ctx) {
  let params;
  try {
    const s = fromUTF8.decode(payload);
    params = JSON.parse(s.trim() === "" ? "{}" : s); // no params: an empty object
  } catch (e) {
    return { code: BAD_PAYLOAD, message: `not JSON: ${e.message}` };
  }
  if (!def.check(params)) return { code: BAD_PAYLOAD, message: schemaMessage(def.check.errors[0]) };

  const ac = new AbortController();
  let timer;
  const arm = () => {
    const left = deadline - Date.now();
    if (left <= 0) ac.abort(new NexoError(TIMEOUT, "the deadline passed while the handler ran"));
    else timer = setTimeout(arm, Math.min(left, MAX_TIMER)).unref(); // the connection keeps the process alive, not this
  };
  arm();
  ctx.controllers.add(ac);
  try {
    const result = await def.handler(params, { deadline: new Date(deadline), signal: ac.signal, method: def.name });
    if (ac.signal.aborted || Date.now() >= deadline) return aborted(ac);
    let json;
    try {
      json = JSON.stringify(result);
    } catch (e) {
      return internal(ctx, def, `its result is not JSON: ${e.message}`);
    }
    if (json === undefined) return internal(ctx, def, `its result is not JSON: ${typeof result}`);
    return { code: 0, body: utf8.encode(json) };
  } catch (e) {
    if (ac.signal.aborted || Date.now() >= deadline) return aborted(ac);
    return failure(ctx, def, e);
  } finally {
    clearTimeout(timer);
    ctx.controllers.delete(ac);
  }
}

// aborted answers a handler that ended once its signal aborted (or its
// deadline passed): the abort's reason, whatever the handler did.
function aborted(ac) {
  if (!ac.signal.aborted) ac.abort(new NexoError(TIMEOUT, "the deadline passed while the handler ran"));
  const r = ac.signal.reason;
  return { code: r.number, message: r.message };
}

// failure turns what a handler threw into its answer: a NexoError with an
// answerable code keeps its code and message; anything else is INTERNAL,
// its details logged.
function failure(ctx, def, e) {
  if (e instanceof ClientError) {
    const code = e.number ?? Number(/^CODE_(\d+)$/.exec(e.name)?.[1]); // a client's error has a name
    if (answerable(code)) return { code, message: e.message || (CODES[code] ?? `CODE_${code}`) };
    return internal(ctx, def, `it threw a NexoError with code ${code || e.name}, which no request may be answered with ` +
      `(4..13 but 12, or ${MIN_APPLICATION_CODE}..65535): ${e.message}`);
  }
  return internal(ctx, def, e?.stack ?? String(e));
}

function internal(ctx, def, why) {
  ctx.log.error(`nexo worker: ${def.name} failed: ${why}`);
  return { code: INTERNAL, message: "internal error" };
}

/** answerable reports whether a request may be answered with code. */
function answerable(code) {
  return Number.isInteger(code) && (code >= UNKNOWN_METHOD && code <= UNAVAILABLE && code !== 12 ||
    code >= MIN_APPLICATION_CODE && code <= 0xffff);
}

function respond(msg, data, headers, log) {
  try {
    msg.respond(data, headers ? { headers } : undefined);
  } catch (e) {
    log.warn(`nexo worker: cannot answer on ${msg.subject}: ${e.message}`);
  }
}

// answerError refuses a message: empty data, the code and message in the
// micro error headers (a header value cannot hold a line break).
function answerError(msg, code, message, log) {
  try {
    msg.respondError(code, message.replace(/[\r\n]+/g, " ") || (CODES[code] ?? `CODE_${code}`));
  } catch (e) {
    log.warn(`nexo worker: cannot answer on ${msg.subject}: ${e.message}`);
  }
}

// schemaMessage says in one line which field does not fit and why:
// "name: must NOT have fewer than 1 characters".
function schemaMessage(err) {
  const where = err.instancePath
    ? err.instancePath.slice(1).split("/").map((s) => s.replaceAll("~1", "/").replaceAll("~0", "~")).join("/")
    : "params";
  const extra = err.keyword === "additionalProperties" ? `: '${err.params.additionalProperty}'` : "";
  return `${where}: ${err.message}${extra}`;
}

// batchCount reads the Nexo-Batch header as Go's strconv.Atoi does:
// 0 when absent, -1 when not a number of 1..1024.
function batchCount(v) {
  if (v === "") return 0;
  if (!/^[+-]?\d+$/.test(v)) return -1;
  const n = Number(v);
  return n >= 1 && n <= MAX_BATCH ? n : -1;
}

// parseDeadline reads Nexo-Deadline, decimal Unix milliseconds; anything
// else (or nothing) is no deadline, as the Go worker takes it.
function parseDeadline(v) {
  if (!/^[+-]?\d{1,19}$/.test(v)) return null;
  const ms = BigInt(v);
  if (ms > 0x7fffffffffffffffn || ms < -0x8000000000000000n) return null;
  return Number(ms);
}

// checkPrefix refuses a prefix that cannot start NATS subjects.
function checkPrefix(prefix) {
  if (typeof prefix !== "string" || !validSubject(prefix)) {
    throw new TypeError(`NATS subject prefix ${JSON.stringify(prefix)}: want dot-separated tokens of printable characters, without * or >`);
  }
}

function validSubject(s) {
  return s !== "" && !s.startsWith(".") && !s.endsWith(".") && !s.includes("..") && /^[\x21-\x7e]+$/.test(s) && !/[*>]/.test(s);
}

// endpointName makes a micro endpoint name of a method name: micro allows
// only letters, digits, - and _.
function endpointName(method) {
  return method.replace(/[^A-Za-z0-9_-]/g, "_");
}

// define checks the methods and prepares what serving them needs: the
// params check, the description sys.describe publishes, the endpoint.
function define(methods, prefix) {
  if (!methods || typeof methods !== "object" || Object.keys(methods).length === 0) {
    throw new TypeError("serve: methods must map at least one method name to its definition");
  }
  const ajv = new Ajv2020({ strict: false, validateFormats: false, addUsedSchema: false });
  return Object.entries(methods).map(([name, m]) => {
    const fail = (why) => { throw new TypeError(`serve: method ${JSON.stringify(name)}: ${why}`); };
    if (!/^[\x21-\x7e]{1,255}$/.test(name)) fail("a name is 1 to 255 printable ASCII characters");
    if (!validSubject(`${prefix}.svc.${name}`)) fail("a name must be usable in a NATS subject: no empty tokens, * or >");
    if (typeof m?.handler !== "function") fail("handler must be a function");
    if (m.summary !== undefined && typeof m.summary !== "string") fail("summary must be a string");
    const schema = (what) => {
      const s = m[what];
      if (!(typeof s === "boolean" || s && typeof s === "object" && !Array.isArray(s))) fail(`${what} must be a JSON Schema`);
      try {
        return ajv.compile(s);
      } catch (e) {
        return fail(`${what}: not a usable JSON Schema (draft 2020-12): ${e.message}`);
      }
    };
    const check = schema("params");
    schema("result");
    const errors = ["BAD_PAYLOAD"];
    for (const c of m.errors ?? []) {
      const n = typeof c === "number" ? c : NUMBERS[c] ?? Number(/^CODE_(\d+)$/.exec(c)?.[1]);
      if (!answerable(n)) fail(`errors: ${JSON.stringify(c)} is not a code a method answers with`);
      const cname = CODES[n] ?? `CODE_${n}`;
      if (!errors.includes(cname)) errors.push(cname);
    }
    const examples = (m.examples ?? []).map((ex, i) => {
      if (!ex || typeof ex !== "object" || !("params" in ex) || ("result" in ex) === ("error" in ex)) {
        fail(`examples[${i}]: want {params, result} or {params, error}`);
      }
      const e = {};
      if (ex.name !== undefined) e.name = String(ex.name);
      e.params = ex.params;
      if ("result" in ex) e.result = ex.result;
      else e.error = String(ex.error);
      return e;
    });
    // The method as sys.describe publishes it (service.Described in Go).
    const described = { name, summary: m.summary ?? "", encoding: "json", params: m.params, result: m.result,
      errors, idempotent: Boolean(m.idempotent), served_by: [SERVED_BY] };
    if (!described.summary) delete described.summary;
    if (examples.length) described.examples = examples;
    return {
      name,
      handler: m.handler,
      check,
      subject: `${prefix}.svc.${name}`,
      endpoint: endpointName(name),
      metadata: { method: name, summary: m.summary ?? "", description: JSON.stringify(described) },
    };
  });
}

// logger fills in what a logger lacks; without one, errors and warnings
// go to stderr.
function logger(log) {
  const none = () => {};
  return {
    error: log?.error?.bind(log) ?? (log ? none : console.error),
    warn: log?.warn?.bind(log) ?? (log ? none : console.error),
  };
}
