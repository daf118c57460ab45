// nexo.js against a real `nexo serve` started by the test: the native
// transport over node:net and the WebSocket transport, as a browser uses it.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { connect, encodeFrame, decodeFrame, parseRequest, operands, formatQuotient, FLAG_DEADLINE, TYPES, NexoError } from "../nexo.js";
import { startServer } from "./server.js";

let srv;
before(async () => { srv = await startServer("--heartbeat", "300ms"); });
after(async () => { assert.equal(await srv.stop(), 0, "nexo serve exits cleanly"); });

const hex = (b) => Buffer.from(b).toString("hex");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function native(t, name = "js-test") {
  const c = await connect(`tcp://${srv.native}`, { name });
  t.after(() => c.close());
  return c;
}

test("math and typed errors over TCP", async (t) => {
  const c = await native(t);
  assert.ok(c.id > 0, "the WELCOME gave a client id");
  assert.equal(await c.add(2, 3), 5n);
  assert.equal(await c.sub(2n, 3n), -1n);
  assert.equal(await c.mul(-4, 5), -20n);
  assert.equal(await c.div(7, 2), 3.5);
  assert.equal(await c.add(-(1n << 63n), (1n << 63n) - 1n), -1n);
  await assert.rejects(c.div(1, 0), (e) => e instanceof NexoError && e.name === "DIVISION_BY_ZERO" && e.number === 6 && e.code === 6);
  await assert.rejects(c.add((1n << 63n) - 1n, 1), { name: "OVERFLOW" });
  await assert.rejects(c.call("no.such"), { name: "UNKNOWN_METHOD" });
  await assert.rejects(c.call("math.add", new Uint8Array(3)), { name: "BAD_PAYLOAD" });
  assert.equal(hex(await c.echo(new Uint8Array(0))), "");
  assert.ok((await c.info()).methods.includes("math.add"));
});

// exactEverywhere checks the int64 edges, which a Number would round.
async function exactEverywhere(c, overflowCode) {
  assert.equal(await c.add(2n ** 53n, 1), 9007199254740993n);
  assert.equal(await c.mul(9007199254740991n, 3), 27021597764222973n);
  assert.equal(await c.sub(-(1n << 63n), -1), -9223372036854775807n);
  assert.equal(formatQuotient(await c.div(-(1n << 63n), -1)), "9.223372036854776e+18");
  await assert.rejects(c.add((1n << 63n) - 1n, 1), (e) => e.name === "OVERFLOW" && e.code === overflowCode);
  await assert.rejects(async () => c.add(1n << 63n, 1), { name: "BAD_PAYLOAD" });
  await assert.rejects(async () => c.add(2 ** 53, 0.5), { name: "BAD_PAYLOAD" });
}

test("int64 edges exactly over TCP", async (t) => {
  await exactEverywhere(await native(t), 7);
});

test("every method vector, pipelined on one connection", async (t) => {
  const vectors = JSON.parse(readFileSync(new URL("../../../testdata/vectors/methods.json", import.meta.url))).vectors;
  const c = await native(t);
  const got = await Promise.allSettled(vectors.map((v) => c.call(v.method, new Uint8Array(Buffer.from(v.payload_hex, "hex")))));
  vectors.forEach((v, i) => {
    const name = `${v.method} ${v.payload_hex}`;
    if (v.error) assert.equal(got[i].reason?.name, v.error, name);
    else assert.equal(hex(got[i].value), v.response_hex, name);
  });
});

test("thousands of calls in flight are matched by id", async (t) => {
  const c = await native(t);
  const n = 5000;
  const got = await Promise.all(Array.from({ length: n }, (_, i) => c.add(i, 1000000)));
  got.forEach((v, i) => assert.equal(v, BigInt(i + 1000000)));
});

test("an idle client answers PINGs and stays connected", async (t) => {
  const c = await native(t, "idle");
  await sleep(1200); // four heartbeat intervals
  assert.equal(c.error, null);
  assert.equal(await c.add(1, 1), 2n);
});

test("close says GOODBYE and the server lists it as client goodbye", async (t) => {
  const c = await connect(`tcp://${srv.native}`, { name: "leaver" });
  assert.equal(await c.add(1, 1), 2n);
  const [pending] = [c.add(2, 2)];
  await c.close();
  assert.equal(await pending, 4n, "the call in flight was answered before the close");
  await assert.rejects(c.add(1, 1), { name: "UNAVAILABLE" });
  const lister = await native(t, "lister");
  let row;
  for (let i = 0; i < 100 && !row; i++) {
    const snap = JSON.parse(new TextDecoder().decode(await lister.call("sys.clients")));
    row = snap.closed.find((r) => r.id === c.id);
    if (!row) await sleep(20);
  }
  assert.equal(row?.reason, "client goodbye");
});

test("events arrive as parsed JSON after subscribe", async (t) => {
  const c = await native(t);
  const stats = new Promise((resolve) => c.on("stats", resolve));
  await c.subscribe(["stats"]);
  const s = await stats;
  assert.equal(typeof s.rps, "number");
  assert.ok(s.clients >= 1 && s.doors.native >= 1, JSON.stringify(s)); // this client is counted
});

test("a server shutdown says GOODBYE and ends the connection", async () => {
  const other = await startServer();
  const c = await connect(`tcp://${other.native}`, { name: "stays" });
  const bye = new Promise((resolve) => c.on("goodbye", resolve));
  assert.equal(await other.stop(), 0);
  assert.match((await bye).reason, /shutting down/);
  await c.closed;
  await assert.rejects(c.add(1, 1), { name: "UNAVAILABLE" });
});

test("connecting to a closed port fails with UNAVAILABLE", async () => {
  const probe = createServer();
  await new Promise((r) => probe.listen(0, "127.0.0.1", r));
  const { port } = probe.address();
  await new Promise((r) => probe.close(r));
  await assert.rejects(connect(`tcp://127.0.0.1:${port}`), { name: "UNAVAILABLE" });
});

// A scripted server on a real socket, to see exactly what the client sends.
// onFrame sees every frame after the HELLO, which is answered with welcome;
// onWelcome(sock) runs once the WELCOME is written.
async function scripted(t, onFrame, onWelcome = () => {}, welcome = { client_id: 7, heartbeat_ms: 200, max_frame: 1 << 20 }) {
  const server = createServer((sock) => {
    let buf = Buffer.alloc(0);
    sock.on("data", (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      for (let r; (r = decodeFrame(buf)); buf = buf.subarray(r.used)) {
        if (r.frame.type === TYPES.HELLO) {
          sock.write(encodeFrame(TYPES.WELCOME, Buffer.from(JSON.stringify(welcome))));
          onWelcome(sock);
        } else onFrame(r.frame, sock);
      }
    });
    sock.on("error", () => {});
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  t.after(() => new Promise((r) => server.close(r)));
  return `tcp://127.0.0.1:${server.address().port}`;
}

test("a call's timeout travels as its DEADLINE, rounded up", async (t) => {
  const seen = [];
  const url = await scripted(t, (f, sock) => {
    seen.push({ flags: f.flags, ...parseRequest(f) });
    sock.write(encodeFrame(TYPES.RESPONSE, operands(0, 0).subarray(0, 8), f.id));
  });
  const c = await connect(url);
  await c.call("math.add", operands(1, 2), { timeout: 1499.2 });
  await c.call("math.add", operands(1, 2), { timeout: 0 });
  assert.deepEqual(seen.map((s) => [s.flags & FLAG_DEADLINE, s.deadlineMs]), [[1, 1500], [0, undefined]]);
  c._end(new NexoError("UNAVAILABLE", "test over"));
});

test("PINGs are answered with the same id and body", async (t) => {
  let pong;
  const got = new Promise((resolve) => { pong = resolve; });
  const url = await scripted(t, (f) => { if (f.type === TYPES.PONG) pong(f); },
    (sock) => sock.write(encodeFrame(TYPES.PING, new Uint8Array([1, 2, 3]), 99)));
  const c = await connect(url);
  const f = await got;
  assert.deepEqual([f.id, hex(f.body)], [99, "010203"]);
  c._end(new NexoError("UNAVAILABLE", "test over"));
});

test("a silent server is detected by the heartbeat watchdog", async (t) => {
  const url = await scripted(t, () => { /* never answers, never pings */ });
  const c = await connect(url);
  const start = Date.now();
  await assert.rejects(c.add(1, 2, { timeout: 10000 }), (e) => e.name === "UNAVAILABLE" && /silent/.test(e.message));
  const took = Date.now() - start;
  assert.ok(took >= 400 && took < 2000, `failed after ${took} ms; heartbeat 200 ms`);
});

test("the WebSocket transport in Node", async (t) => {
  if (typeof WebSocket === "undefined") {
    if (process.env.CI) assert.fail("no global WebSocket: run node with --experimental-websocket");
    t.skip("no global WebSocket in this Node");
    return;
  }
  const c = await connect(`ws://${srv.web}/ws`, { name: "js-ws" });
  assert.ok(c.welcome.client_id > 0);
  assert.equal(c.id, c.welcome.client_id, "id as over TCP");
  assert.equal(c.goodbye, null);
  assert.equal(await c.add(2, 3), 5n, "BigInt, as over TCP");
  assert.equal(await c.div(7, 2), 3.5);
  await assert.rejects(c.div(1, 0), (e) => e.name === "DIVISION_BY_ZERO" && e.number === 6 && e.code === -32006);
  await exactEverywhere(c, -32007);
  c.close();
  assert.equal((await c.closed).code, 1000);
});

test("the WebSocket and TCP clients have the same fields, methods and types", async (t) => {
  if (typeof WebSocket === "undefined") {
    if (process.env.CI) assert.fail("no global WebSocket: run node with --experimental-websocket");
    t.skip("no global WebSocket in this Node");
    return;
  }
  const tcp = await connect(`tcp://${srv.native}`, { name: "js-parity-tcp" });
  const ws = await connect(`ws://${srv.web}/ws`, { name: "js-parity-ws" });
  const kind = (v) => (v === null ? "null" : v instanceof Uint8Array ? "Uint8Array" : v instanceof Promise ? "Promise" : Array.isArray(v) ? "array" : typeof v);
  for (const field of ["id", "welcome", "goodbye", "error", "maxFrame", "closed"]) {
    assert.equal(kind(ws[field]), kind(tcp[field]), `${field}: ${kind(ws[field])} over WebSocket, ${kind(tcp[field])} over TCP`);
  }
  // The welcome has the same fields (the web door adds admin, for the GUI).
  for (const [k, v] of Object.entries(tcp.welcome)) {
    assert.equal(kind(ws.welcome[k]), kind(v), `welcome.${k}`);
  }
  assert.equal(ws.maxFrame, tcp.maxFrame);
  for (const method of ["call", "add", "sub", "mul", "div", "echo", "info", "subscribe", "on", "close"]) {
    assert.equal(typeof ws[method], "function", `${method} over WebSocket`);
    assert.equal(typeof tcp[method], "function", `${method} over TCP`);
  }
  const results = async (c) => ({
    add: await c.add(2, 3), sub: await c.sub(2, 3), mul: await c.mul(-2, 3, { timeout: 1000 }), div: await c.div(7, 2),
    echo: await c.echo(new TextEncoder().encode("héllo")), info: await c.info(), subscribe: await c.subscribe(["stats"]),
  });
  const [a, b] = [await results(ws), await results(tcp)];
  for (const k of Object.keys(a)) {
    assert.equal(kind(a[k]), kind(b[k]), `${k}: ${kind(a[k])} over WebSocket, ${kind(b[k])} over TCP`);
  }
  assert.deepEqual([a.add, a.sub, a.mul, a.div], [b.add, b.sub, b.mul, b.div]);
  assert.deepEqual(new Uint8Array(a.echo), new Uint8Array(b.echo)); // a Buffer over TCP, in Node
  assert.deepEqual(a.subscribe, b.subscribe);
  // timeout 0 waits forever on both; a request over the server's max
  // frame is refused before it is sent, on both.
  assert.equal(await ws.add(1, 1, { timeout: 0 }), await tcp.add(1, 1, { timeout: 0 }));
  const big = "x".repeat(tcp.maxFrame + 1);
  await assert.rejects(ws.echo(big), (e) => e.name === "FRAME_TOO_LARGE");
  await assert.rejects(tcp.echo(new TextEncoder().encode(big)), (e) => e.name === "FRAME_TOO_LARGE");
  await Promise.all([ws.close(), tcp.close()]);
  for (const c of [ws, tcp]) {
    assert.equal(typeof (await c.closed).reason, "string");
    assert.ok(c.error instanceof NexoError, "error says why the connection ended");
    await assert.rejects(c.add(1, 1), (e) => e.name === "UNAVAILABLE" || e.name === "SHUTTING_DOWN");
  }
});
