// worker.js against a real gateway: `nexo serve --nats-embedded`, its NATS
// on an ephemeral port, and workers that serve methods written here (and
// examples/greet-js as a child process), called through the gateway's
// JSON-RPC door and directly over NATS, byte by byte.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { connect, headers } from "nats";
import { serve, NexoError, TIMEOUT, OVERFLOW, INTERNAL } from "../worker.js";
import { startServer } from "./server.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const bounded = { timeout: 60_000 }; // a test waiting for an answer that never comes fails instead of hanging
let srv; // the gateway
let natsURL;
let nc; // the tests' own NATS connection, a caller like any other

before(async () => {
  srv = await startServer("--nats-embedded", "127.0.0.1:0");
  natsURL = `nats://${/msg=listening door=nats addr=(\S+)/.exec(srv.log())[1]}`;
  nc = await connect({ servers: natsURL });
});
after(async () => {
  await nc?.close();
  assert.equal(await srv?.stop(), 0, "nexo serve exits cleanly");
});

const utf8 = new TextEncoder();
const text = (b) => new TextDecoder().decode(b);
const json = (v) => utf8.encode(JSON.stringify(v));

/** Calls a method on the gateway's POST /rpc and returns the JSON-RPC answer. */
async function rpc(method, params) {
  const res = await fetch(`http://${srv.web}/rpc`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }),
  });
  assert.equal(res.status, 200);
  return res.json();
}

/**
 * Waits until the gateway's catalog has the method. The worker told the
 * gateways when serve resolved; the gather it set off takes a moment, and
 * nothing the gateway says marks its end, so this asks until it is there.
 */
async function known(method) {
  for (const end = Date.now() + 10_000; Date.now() < end;) {
    const { result } = await rpc("sys.describe");
    if (result.methods.some((m) => m.name === method)) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.fail(`the gateway never learnt ${method}`);
}

/** Starts a worker of methods on the gateway's NATS, stopped after the test; what it logs is in w.logs. */
async function worker(t, methods, opts = {}) {
  const logs = [];
  const log = { error: (m) => logs.push(m), warn: (m) => logs.push(m) };
  const w = await serve({ nats: natsURL, methods, log, ...opts });
  t.after(() => w.stop());
  w.logs = logs;
  return w;
}

/** A method taking any object as params, answering anything, served by handler. */
const method = (handler, extra = {}) => ({ params: { type: "object" }, result: {}, handler, ...extra });

/** A promise with its resolve, for handlers that wait for the test. */
function deferred() {
  let resolve;
  const p = new Promise((r) => { resolve = r; });
  p.resolve = resolve;
  return p;
}

/** The error headers of a refused NATS answer, or null for an answer. */
function refusal(m) {
  const code = m.headers?.get("Nats-Service-Error-Code");
  return code ? { code: Number(code), message: m.headers.get("Nats-Service-Error"), data: m.data.length } : null;
}

/** A request batch: entries of [deadline (Unix ms, 0: none), payload bytes]. */
function requestBatch(entries) {
  const size = entries.reduce((s, [, p]) => s + 12 + p.length, 0);
  const b = new Uint8Array(size);
  const v = new DataView(b.buffer);
  let off = 0;
  for (const [deadline, p] of entries) {
    v.setBigUint64(off, BigInt(deadline));
    v.setUint32(off + 8, p.length);
    b.set(p, off + 12);
    off += 12 + p.length;
  }
  return b;
}

/** Reads an answer batch: [code, body bytes] per entry; fails unless the bytes are exactly that. */
function answerBatch(b) {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out = [];
  let off = 0;
  while (off < b.length) {
    assert.ok(b.length - off >= 6, `a whole entry header at byte ${off}`);
    const code = v.getUint16(off);
    const n = v.getUint32(off + 2);
    assert.ok(n <= b.length - off - 6, `entry at byte ${off} fits`);
    out.push([code, b.subarray(off + 6, off + 6 + n)]);
    off += 6 + n;
  }
  return out;
}

function batchHeaders(n) {
  const h = headers();
  h.set("Nexo-Batch", String(n));
  return h;
}

test("greet.js, as examples/greet-js serves it: through the gateway, described, drained on SIGTERM", bounded, async (t) => {
  const child = spawn(process.execPath, ["examples/greet-js/worker.js", "--nats", natsURL],
    { cwd: ROOT, stdio: ["ignore", "ignore", "pipe"] });
  const exited = once(child, "exit");
  t.after(() => child.exitCode === null && child.signalCode === null && child.kill("SIGKILL"));
  let log = "";
  child.stderr.setEncoding("utf8");
  await new Promise((resolve, reject) => {
    child.stderr.on("data", (s) => { log += s; if (log.includes("serving greet.js")) resolve(); });
    exited.then(([code]) => reject(new Error(`greet-js exited (${code}) before serving:\n${log}`)));
  });
  await known("greet.js");

  assert.deepEqual(await rpc("greet.js", { name: "Ann" }), { jsonrpc: "2.0", id: 1, result: { greeting: "Hello, Ann!" } });
  const long = "é".repeat(64); // 64 characters, 128 bytes: characters are counted
  assert.deepEqual((await rpc("greet.js", { name: long })).result, { greeting: `Hello, ${long}!` });

  for (const [params, message] of [
    [{ name: "" }, "name: must NOT have fewer than 1 characters"],
    [{ name: "x".repeat(65) }, "name: must NOT have more than 64 characters"],
    [{ name: 7 }, "name: must be string"],
    [{}, "params: must have required property 'name'"],
    [{ name: "Ann", age: 3 }, "params: must NOT have additional properties: 'age'"],
    [["Ann"], "params: must be object"],
  ]) {
    const { error } = await rpc("greet.js", params);
    assert.deepEqual(error, { code: -32602, message, data: { name: "BAD_PAYLOAD" } }, JSON.stringify(params));
  }

  const { result: d } = await rpc("sys.describe", ["greet.js"]);
  assert.deepEqual(d, {
    name: "greet.js",
    summary: "greets a name of 1 to 64 characters",
    encoding: "json",
    // The contract of greet.go (examples/greet-go), as it publishes it.
    params: {
      type: "object",
      properties: { name: { type: "string", minLength: 1, maxLength: 64, description: "who to greet" } },
      required: ["name"],
      additionalProperties: false,
    },
    result: {
      type: "object",
      properties: { greeting: { type: "string" } },
      required: ["greeting"],
      additionalProperties: false,
    },
    errors: ["BAD_PAYLOAD"],
    idempotent: true,
    examples: [
      { params: { name: "Ann" }, result: { greeting: "Hello, Ann!" } },
      { params: { name: "" }, error: "BAD_PAYLOAD" },
    ],
    served_by: ["node worker"],
  });

  child.kill("SIGTERM");
  const [code, signal] = await exited;
  assert.deepEqual({ code, signal }, { code: 0, signal: null }, `greet-js stops cleanly on SIGTERM:\n${log}`);
});

test("the micro service gateways read: name, queue group, metadata, each method's description", bounded, async (t) => {
  const w = await worker(t, {
    "test.info/ok": method(() => 1, { summary: "one", errors: [OVERFLOW, "CODE_1001"], examples: [{ params: {}, result: 1 }] }),
  }, { name: "the-tests" });
  const info = (await nc.request(`$SRV.INFO.nexo-worker.${w.info.id}`, undefined, { timeout: 5000 })).json();
  assert.equal(info.name, "nexo-worker");
  assert.match(info.version, /^\d+\.\d+\.\d+/);
  assert.deepEqual(info.metadata, { runtime: "node", services: "test.info/ok", host: "the-tests" });
  assert.equal(info.endpoints.length, 1);
  const [ep] = info.endpoints;
  assert.equal(ep.name, "test_info_ok");
  assert.equal(ep.subject, "nexo.svc.test.info/ok");
  assert.equal(ep.queue_group, "nexo");
  assert.equal(ep.metadata.method, "test.info/ok");
  assert.equal(ep.metadata.summary, "one");
  assert.deepEqual(JSON.parse(ep.metadata.description), {
    name: "test.info/ok", summary: "one", encoding: "json", params: { type: "object" }, result: {},
    errors: ["BAD_PAYLOAD", "OVERFLOW", "CODE_1001"], idempotent: false,
    examples: [{ params: {}, result: 1 }], served_by: ["node worker"],
  });
});

test("a batch over NATS: answered in order, an expired entry not run, bad params refused", bounded, async (t) => {
  const ran = [];
  await worker(t, { "test.batch": method((p) => { ran.push(p.n); return { twice: p.n * 2 }; }) });
  const now = Date.now();
  const m = await nc.request("nexo.svc.test.batch", requestBatch([
    [now - 1, json({ n: 1 })], // expired
    [0, json({ n: 2 })], // no deadline
    [now + 10_000, utf8.encode("{")], // not JSON
    [now + 10_000, json({ n: 4 })],
    [now + 10_000, new Uint8Array(0)], // no params: {}, and n is undefined
  ]), { headers: batchHeaders(5), timeout: 5000 });
  assert.equal(m.headers.get("Nexo-Batch"), "5");
  assert.equal(refusal(m), null);
  const got = answerBatch(m.data).map(([code, body]) => [code, text(body)]);
  assert.deepEqual(got.slice(0, 2), [
    [TIMEOUT, "the deadline passed before a worker took the request"],
    [0, '{"twice":4}'],
  ]);
  assert.equal(got[2][0], 5);
  assert.match(got[2][1], /^not JSON: /);
  assert.deepEqual(got.slice(3), [[0, '{"twice":8}'], [0, '{"twice":null}']]);
  assert.deepEqual(ran.sort(), [2, 4, undefined], "the expired entry did not run");

  // The whole answer, byte by byte: code uint16 BE, length uint32 BE, body.
  const first = "the deadline passed before a worker took the request";
  assert.deepEqual([...m.data.subarray(0, 6)], [0, 10, 0, 0, 0, first.length]);
  assert.equal(text(m.data.subarray(6, 6 + first.length)), first);
  assert.deepEqual([...m.data.subarray(6 + first.length, 6 + first.length + 6)], [0, 0, 0, 0, 0, 11]);
});

test("a thousand calls at once through the gateway: every answer to its call, every request counted", bounded, async (t) => {
  const w = await worker(t, { "test.double": method((p) => ({ twice: p.n * 2 }), { params: { type: "object", required: ["n"] } }) });
  await known("test.double");
  const n = 1000; // the most one JSON-RPC batch may hold
  const res = await fetch(`http://${srv.web}/rpc`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(Array.from({ length: n }, (_, i) =>
      ({ jsonrpc: "2.0", id: i, method: "test.double", params: i % 7 === 0 ? {} : { n: i } }))),
  });
  const answers = await res.json();
  assert.equal(answers.length, n);
  for (const a of answers) {
    if (a.id % 7 === 0) assert.equal(a.error?.code, -32602, JSON.stringify(a));
    else assert.deepEqual(a.result, { twice: 2 * a.id }, JSON.stringify(a));
  }
  // What the cluster view reads: requests, each of a batch counted (micro counts messages).
  const stats = (await nc.request(`$SRV.STATS.nexo-worker.${w.info.id}`, undefined, { timeout: 5000 })).json();
  assert.equal(stats.endpoints[0].data.requests, n);
});

test("a malformed batch is refused whole with BAD_PAYLOAD, none of it run", bounded, async (t) => {
  let ran = 0;
  await worker(t, { "test.malformed": method(() => ++ran) });
  const one = requestBatch([[0, json({})]]);
  for (const [what, n, data] of [
    ["fewer entries than N", "2", one],
    ["a trailing byte", "1", new Uint8Array([...one, 0])],
    ["a length past the end", "1", one.subarray(0, one.length - 1)],
    ["N of 0", "0", one],
    ["N over 1024", "1025", one],
    ["N not a number", "one", one],
    ["N far over the data", "1024", one],
  ]) {
    const m = await nc.request("nexo.svc.test.malformed", data, { headers: batchHeaders(n), timeout: 5000 });
    assert.deepEqual(refusal(m), { code: 5, message: "malformed request batch", data: 0 }, what);
  }
  assert.equal(ran, 0);
  // The same entry as a well-formed batch does run.
  const m = await nc.request("nexo.svc.test.malformed", one, { headers: batchHeaders(1), timeout: 5000 });
  assert.deepEqual(answerBatch(m.data).map(([c, b]) => [c, text(b)]), [[0, "1"]]);
});

test("one request over NATS: its deadline reaches the handler, which is not run once it has passed", bounded, async (t) => {
  const seen = [];
  await worker(t, {
    "test.deadline": method((p, ctx) => {
      seen.push(ctx.deadline.getTime());
      return new Promise((_, reject) => ctx.signal.addEventListener("abort", () => {
        seen.push(Date.now());
        reject(ctx.signal.reason);
      }));
    }),
    "test.quick": method((p, ctx) => ({ left: ctx.deadline.getTime() - Date.now(), aborted: ctx.signal.aborted })),
  });
  const h = (deadline) => {
    const hs = headers();
    hs.set("Nexo-Deadline", String(deadline));
    return hs;
  };

  const past = await nc.request("nexo.svc.test.deadline", json({}), { headers: h(Date.now() - 1), timeout: 5000 });
  assert.deepEqual(refusal(past), { code: TIMEOUT, message: "the deadline passed before a worker took the request", data: 0 });
  assert.equal(seen.length, 0, "not run");

  const deadline = Date.now() + 1000;
  const late = await nc.request("nexo.svc.test.deadline", json({}), { headers: h(deadline), timeout: 5000 });
  assert.deepEqual(refusal(late), { code: TIMEOUT, message: "the deadline passed while the handler ran", data: 0 });
  assert.equal(seen[0], deadline, "ctx.deadline is the header's");
  assert.ok(seen[1] >= deadline, `the signal aborted at the deadline, not ${deadline - seen[1]} ms before`);

  // Without the header a request has 30 s.
  const free = JSON.parse(text((await nc.request("nexo.svc.test.quick", json({}), { timeout: 5000 })).data));
  assert.ok(free.left > 25_000 && free.left <= 30_000, `30 s allowed, got ${free.left} ms`);
  assert.equal(free.aborted, false);
});

test("a NexoError answers its code and message: the service's own codes unchanged, through the gateway too", bounded, async (t) => {
  const w = await worker(t, {
    "test.app": method((p) => { throw new NexoError(p.code, p.message); }),
  });
  await known("test.app");
  const direct = await nc.request("nexo.svc.test.app", json({ code: 1001, message: "no such account" }), { timeout: 5000 });
  assert.deepEqual(refusal(direct), { code: 1001, message: "no such account", data: 0 });

  assert.deepEqual((await rpc("test.app", { code: 1001, message: "no such account" })).error,
    { code: 1001, message: "no such account", data: { name: "CODE_1001" } });
  assert.equal((await rpc("test.app", { code: 65535, message: "the last" })).error.code, 65535);
  assert.deepEqual((await rpc("test.app", { code: OVERFLOW, message: "too big" })).error,
    { code: -32007, message: "too big", data: { name: "OVERFLOW" } });

  // Codes no request may be answered with are a programming error: INTERNAL, and logged.
  for (const code of [0, 1, 12, 14, 999, 65536, 1.5]) {
    const m = await nc.request("nexo.svc.test.app", json({ code, message: "mine" }), { timeout: 5000 });
    assert.deepEqual(refusal(m), { code: INTERNAL, message: "internal error", data: 0 }, `code ${code}`);
  }
  assert.equal(w.logs.length, 7);
  assert.match(w.logs[0], /test\.app failed: it threw a NexoError with code .*: mine/);
});

test("anything else a handler throws, or a result that is not JSON, is INTERNAL; the details are only logged", bounded, async (t) => {
  const w = await worker(t, {
    "test.throws": method(() => { throw new Error("the database password is hunter2"); }),
    "test.rejects": method(async () => { throw "a string"; }),
    "test.bigint": method(() => ({ n: 1n })),
    "test.nothing": method(() => undefined),
  });
  await known("test.nothing");
  for (const name of ["test.throws", "test.rejects", "test.bigint", "test.nothing"]) {
    const { error } = await rpc(name, {});
    assert.deepEqual(error, { code: -32011, message: "internal error", data: { name: "INTERNAL" } }, name);
  }
  assert.equal(w.logs.length, 4);
  assert.match(w.logs[0], /test\.throws failed: Error: the database password is hunter2/);
  assert.match(w.logs[1], /test\.rejects failed: a string/);
  assert.match(w.logs[2], /test\.bigint failed: its result is not JSON: .*BigInt/);
  assert.match(w.logs[3], /test\.nothing failed: its result is not JSON: undefined/);
});

test("stop() answers what is in flight before closing, and runs nothing sent after it began", bounded, async (t) => {
  const own = await connect({ servers: natsURL }); // the worker's, lent: stop() leaves it open
  t.after(() => own.close());
  const started = deferred();
  const release = deferred();
  let ran = 0;
  const logs = [];
  const w = await serve({
    nats: own,
    log: { error: (m) => logs.push(m), warn: (m) => logs.push(m) },
    methods: {
      "test.slow": method(async () => {
        ran++;
        started.resolve();
        await release;
        return "done";
      }),
    },
  });
  await known("test.slow");
  const inFlight = rpc("test.slow", {});
  await started;

  let stopped = false;
  const stopping = w.stop().then(() => { stopped = true; });
  // On the worker's own connection this request leaves after stop()'s
  // unsubscribes, so NATS has no one to give it to: it is not run.
  await assert.rejects(own.request("nexo.svc.test.slow", json({}), { timeout: 5000 }), { code: "503" });
  // Nor is one through the gateway: no worker serves it any more.
  const { error } = await rpc("test.slow", {});
  assert.equal(error.code, -32013, JSON.stringify(error));
  assert.equal(ran, 1, "only the request in flight ran");
  assert.equal(stopped, false, "stop() waits for the request in flight");

  release.resolve();
  assert.deepEqual((await inFlight).result, "done", "the request in flight is answered");
  await stopping;
  assert.equal(own.isClosed(), false, "a lent connection stays open");
  assert.deepEqual(logs, []);
});

test("stop() gives up after its timeout: the handler's signal aborts", bounded, async (t) => {
  let reason;
  const started = deferred();
  const w = await worker(t, {
    "test.stuck": method((p, ctx) => new Promise(() => {
      ctx.signal.addEventListener("abort", () => { reason = ctx.signal.reason; });
      started.resolve();
    })),
  });
  const pending = nc.request("nexo.svc.test.stuck", json({}), { timeout: 1000 }).catch((e) => e);
  await started;
  await w.stop({ timeout: 100 });
  assert.ok(reason instanceof NexoError && reason.number === 9, `aborted with SHUTTING_DOWN, got ${reason}`);
  assert.match(w.logs.join("\n"), /drain incomplete after 100 ms: 1 messages still running/);
  assert.equal((await pending).code, "TIMEOUT", "no answer: the worker closed its connection");
});

test("serve refuses what cannot be served, before connecting", bounded, async () => {
  const ok = method(() => 1);
  for (const [what, opts, message] of [
    ["no methods", { methods: {} }, /at least one method/],
    ["a name with a space", { methods: { "a b": ok } }, /printable ASCII/],
    ["a name that is no subject", { methods: { "a..b": ok } }, /NATS subject/],
    ["a wildcard", { methods: { "a.*": ok } }, /NATS subject/],
    ["no handler", { methods: { x: { params: {}, result: {} } } }, /handler must be a function/],
    ["no params schema", { methods: { x: { result: {}, handler() {} } } }, /params must be a JSON Schema/],
    ["a broken schema", { methods: { x: { params: { type: "strin" }, result: {}, handler() {} } } }, /params: not a usable JSON Schema/],
    ["an unknown error name", { methods: { x: method(() => 1, { errors: ["OOPS"] }) } }, /errors: "OOPS"/],
    ["a bad prefix", { methods: { x: ok }, prefix: "a.>" }, /prefix/],
    ["no NATS", { methods: { x: ok }, nats: 42 }, /NATS URL/],
  ]) {
    await assert.rejects(serve({ nats: "nats://127.0.0.1:1", ...opts }), { name: "TypeError", message: message }, what);
  }
});
