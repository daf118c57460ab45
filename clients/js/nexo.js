// nexo.js: the JavaScript client of nexo, one ES module with no
// dependencies and no build step. It runs in two places:
//
// In a browser (or any runtime with a global WebSocket) it speaks JSON-RPC
// 2.0 over the web door's WebSocket:
//
//   import { connect } from "/nexo.js";
//   const c = await connect("ws://127.0.0.1:8080/ws", { name: "page" });
//   await c.call("math.div", [7, 2]);   // 3.5
//   c.on("stats", (s) => console.log(s.rps));
//   await c.subscribe(["stats"]);
//
// In Node it also speaks the native binary protocol over TCP (node:net,
// loaded only when a tcp:// address is used):
//
//   import { connect } from "./nexo.js";
//   const c = await connect("tcp://127.0.0.1:7070", { name: "job" });
//   await c.add(2n, 3n);                 // 5n: int64 results are BigInt
//   await c.call("sys.echo", new Uint8Array([1, 2]));  // raw payloads
//   await c.close();                     // GOODBYE, then wait for answers
//
// Errors reject with a NexoError: err.name is the code name on both
// transports ("DIVISION_BY_ZERO"), err.number the native code (6).

/** The native error codes of spec section 1.4, by number. */
export const CODES = Object.freeze({
  1: "BAD_FRAME", 2: "UNSUPPORTED_VERSION", 3: "UNAUTHORIZED", 4: "UNKNOWN_METHOD",
  5: "BAD_PAYLOAD", 6: "DIVISION_BY_ZERO", 7: "OVERFLOW", 8: "BUSY", 9: "SHUTTING_DOWN",
  10: "TIMEOUT", 11: "INTERNAL", 12: "FRAME_TOO_LARGE", 13: "UNAVAILABLE",
});

/** The largest integer a JSON number carries exactly; the server refuses larger ones. */
export const MAX_SAFE = Number.MAX_SAFE_INTEGER;

const NUMBERS = Object.freeze(Object.fromEntries(Object.entries(CODES).map(([n, name]) => [name, Number(n)])));

/** An error answered by the server, or a local one with the same shape. */
export class NexoError extends Error {
  /**
   * @param {string} name native code name, e.g. "DIVISION_BY_ZERO"
   * @param {string} message text for people
   * @param {number} [code] the transport's code: JSON-RPC (-32006) over
   *   WebSocket, the native code (6) over TCP
   */
  constructor(name, message, code) {
    super(message);
    this.name = name;
    this.code = code;
    /** The native code of spec section 1.4 (6 for DIVISION_BY_ZERO), or undefined. */
    this.number = NUMBERS[name];
  }
}

// Event handlers by topic, shared by both transports.
class Emitter {
  constructor() {
    this.handlers = new Map(); // topic -> Set of functions
  }

  /**
   * Calls fn(params) for every event of the topic ("stats", "clients",
   * "goodbye", "welcome"). Returns a function that removes it.
   */
  on(topic, fn) {
    if (!this.handlers.has(topic)) this.handlers.set(topic, new Set());
    this.handlers.get(topic).add(fn);
    return () => this.handlers.get(topic).delete(fn);
  }

  _emit(topic, params) {
    for (const fn of this.handlers.get(topic) || []) {
      try {
        fn(params);
      } catch (e) {
        console.error("nexo event handler", topic, e);
      }
    }
  }
}

// JSON-RPC codes that have no native name in data.
const RPC_NAMES = { "-32700": "BAD_FRAME", "-32600": "BAD_FRAME", "-32601": "UNKNOWN_METHOD", "-32602": "BAD_PAYLOAD" };

function rpcError(e) {
  const name = (e.data && e.data.name) || RPC_NAMES[String(e.code)] || "INTERNAL";
  return new NexoError(name, e.message, e.code);
}

/**
 * A client over the web door's WebSocket. Create it with connect().
 * Calls are pipelined: many may be in flight, answered in any order.
 */
export class WebSocketClient extends Emitter {
  constructor(ws) {
    super();
    this.ws = ws;
    this.nextId = 1;
    this.pending = new Map(); // id -> {resolve, reject}
    /** The server's welcome: client_id, server, heartbeat_ms, max_frame, admin. */
    this.welcome = null;
    /** Set once the server said goodbye: its reason. */
    this.goodbye = null;
    /** Why the connection ended, once it has (a NexoError), as over TCP. */
    this.error = null;
    /** The server's largest frame, from its welcome, as over TCP. */
    this.maxFrame = DEFAULT_MAX_FRAME;
    /** Resolves when the connection is closed, with {code, reason}. */
    this.closed = new Promise((resolve) => { this._closed = resolve; });
  }

  /** The client id the server gave this connection, as over TCP. */
  get id() { return this.welcome?.client_id; }

  _message(data) {
    let msg;
    try {
      msg = parseJSON(data);
    } catch {
      return; // the server only sends JSON; ignore anything else
    }
    for (const m of Array.isArray(msg) ? msg : [msg]) {
      if (m.method && m.method.startsWith("event.")) {
        this._emit(m.method.slice(6), m.params);
        continue;
      }
      const p = this.pending.get(m.id);
      if (!p) continue;
      this.pending.delete(m.id);
      if (m.error) p.reject(rpcError(m.error));
      else p.resolve(m.result);
    }
  }

  _emit(topic, params) {
    if (topic === "welcome") {
      this.welcome = params;
      if (params?.max_frame > 0) this.maxFrame = params.max_frame;
    }
    if (topic === "goodbye") this.goodbye = params?.reason ?? "";
    super._emit(topic, params);
  }

  /**
   * Calls a method and resolves with its result.
   * @param {string} method e.g. "math.add"
   * @param {Array|Object} [params]
   * @param {{timeout?: number}} [opts] timeout in ms (default 30000); 0
   *   waits forever
   */
  call(method, params, opts = {}) {
    if (this.ws.readyState !== 1) {
      return Promise.reject(new NexoError("UNAVAILABLE", "not connected"));
    }
    const id = this.nextId++;
    const timeout = opts.timeout ?? 30000;
    const msg = { jsonrpc: "2.0", method, id };
    if (params !== undefined) msg.params = params;
    const text = stringifyJSON(msg);
    // The server's limit is on the message's bytes, as over TCP on the frame's.
    if (text.length * 3 > this.maxFrame) { // UTF-8 takes at most 3 bytes per UTF-16 unit
      const n = utf8.encode(text).length;
      if (n > this.maxFrame) {
        return Promise.reject(new NexoError("FRAME_TOO_LARGE", `request of ${n} bytes is over the server's max frame`, NUMBERS.FRAME_TOO_LARGE));
      }
    }
    return new Promise((resolve, reject) => {
      // timeout 0 waits forever, as over TCP.
      const timer = timeout > 0 ? setTimeout(() => {
        this.pending.delete(id);
        reject(new NexoError("TIMEOUT", `${method}: no answer in ${timeout} ms`));
      }, timeout) : undefined;
      this.pending.set(id, {
        resolve: (v) => { clearTimeout(timer); resolve(v); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
      this.ws.send(text);
    });
  }

  /** a + b as a BigInt, as over TCP; a and b are numbers or BigInts within int64. */
  async add(a, b, opts) { return BigInt(await this.call("math.add", ints(a, b), opts)); }
  /** a - b as a BigInt */
  async sub(a, b, opts) { return BigInt(await this.call("math.sub", ints(a, b), opts)); }
  /** a * b as a BigInt */
  async mul(a, b, opts) { return BigInt(await this.call("math.mul", ints(a, b), opts)); }
  /** a / b as a number; DIVISION_BY_ZERO when b is 0. */
  async div(a, b, opts) { return Number(await this.call("math.div", ints(a, b), opts)); }
  /**
   * The payload back, as a Uint8Array, as over TCP. JSON-RPC carries text:
   * the payload (a string or UTF-8 bytes) must be valid UTF-8.
   */
  async echo(payload, opts) {
    let text = payload;
    if (typeof payload !== "string") {
      try {
        text = strictUTF8.decode(payload ?? EMPTY);
      } catch {
        throw new NexoError("BAD_PAYLOAD", "echo over WebSocket carries text: the payload is not UTF-8", -32602);
      }
    }
    return utf8.encode(await this.call("sys.echo", [text], opts));
  }
  /** The server's sys.info. */
  info(opts) { return this.call("sys.info", undefined, opts); }

  /** Asks the server for events of these topics. */
  subscribe(topics, opts) { return this.call("sys.subscribe", topics, opts); }

  /**
   * Closes the connection and resolves once it is closed, as over TCP;
   * calls in flight are rejected.
   */
  async close() {
    if (this.ws.readyState < 2) this.ws.close(1000, "client closing");
    return this.closed;
  }
}

function ints(a, b) {
  return [int64Of(a), int64Of(b)];
}

/**
 * Parses JSON text exactly: an integer beyond ±2^53, which a number would
 * round, becomes a BigInt; everything else is what JSON.parse gives. It
 * uses JSON.parse's source text where the runtime has it (Node 21 and
 * later, current browsers), and a small exact reader elsewhere (Node 20).
 * @param {string} text
 */
export function parseJSON(text) {
  if (hasSourceText) {
    return JSON.parse(text, (_k, v, ctx) =>
      typeof v === "number" && !Number.isSafeInteger(v) && ctx && /^-?\d+$/.test(ctx.source) ? BigInt(ctx.source) : v);
  }
  return readJSON(text);
}

const hasSourceText = (() => {
  let seen = false;
  JSON.parse("1", (_k, v, ctx) => { seen = ctx?.source === "1"; return v; });
  return seen;
})();

/** readJSON is parseJSON without JSON.parse's source text. */
export function readJSON(text) {
  let i = 0;
  const fail = () => { throw new SyntaxError(`JSON: unexpected ${i < text.length ? JSON.stringify(text[i]) : "end"} at ${i}`); };
  const space = () => { while (i < text.length && " \t\n\r".includes(text[i])) i++; };
  const token = (re) => {
    re.lastIndex = i;
    const m = re.exec(text);
    if (!m) fail();
    i = re.lastIndex;
    return m[0];
  };
  const value = (depth) => {
    if (depth > 512) fail();
    space();
    const c = text[i];
    if (c === "{") {
      i++;
      const o = {};
      space();
      if (text[i] === "}") { i++; return o; }
      for (;;) {
        space();
        if (text[i] !== '"') fail();
        const k = JSON.parse(token(STRING));
        space();
        if (text[i++] !== ":") fail();
        Object.defineProperty(o, k, { value: value(depth + 1), writable: true, enumerable: true, configurable: true });
        space();
        const d = text[i++];
        if (d === "}") return o;
        if (d !== ",") fail();
      }
    }
    if (c === "[") {
      i++;
      const a = [];
      space();
      if (text[i] === "]") { i++; return a; }
      for (;;) {
        a.push(value(depth + 1));
        space();
        const d = text[i++];
        if (d === "]") return a;
        if (d !== ",") fail();
      }
    }
    if (c === '"') return JSON.parse(token(STRING));
    for (const [word, v] of [["true", true], ["false", false], ["null", null]]) {
      if (text.startsWith(word, i)) { i += word.length; return v; }
    }
    const n = token(NUMBER);
    const v = Number(n);
    return !Number.isSafeInteger(v) && /^-?\d+$/.test(n) ? BigInt(n) : v;
  };
  const out = value(0);
  space();
  if (i !== text.length) fail();
  return out;
}

const STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

/**
 * A quotient as text, as the server writes it: the shortest digits that
 * read back as the same number, plain from 1e-6 up to 2^53, with an
 * exponent outside that, where plain digits would be invented
 * (9.223372036854776e+18, never 9223372036854776000).
 * @param {number} q
 */
export function formatQuotient(q) {
  const a = Math.abs(q);
  if (a >= 2 ** 53 || (a !== 0 && a < 1e-6)) return q.toExponential().replace(/e([+-])(\d)$/, "e$10$2");
  return String(q === 0 ? 0 : q);
}

/**
 * JSON.stringify that writes BigInts as exact JSON integers.
 * @param {*} value
 */
export function stringifyJSON(value) {
  const mark = `nexo-bigint-${Math.random().toString(36).slice(2)}:`;
  const text = JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? mark + v : v));
  return text.includes(mark) ? text.replace(new RegExp(`"${mark}(-?\\d+)"`, "g"), "$1") : text;
}

/**
 * Connects to a nexo server and resolves once the server's welcome has
 * arrived.
 *
 * - "ws://host:port/ws" or "wss://...", or a path such as "/ws" in a page:
 *   JSON-RPC over the web door's WebSocket (a WebSocketClient).
 * - "tcp://host:port": the native binary protocol over TCP, in Node only
 *   (a NativeClient).
 *
 * @param {string} url
 * @param {{name?: string, token?: string, timeout?: number, WebSocket?: Function}} [opts]
 *   name shows in the client list; token is sent with the handshake;
 *   timeout bounds the handshake in ms (default 10000, TCP only);
 *   WebSocket replaces the global one (for runtimes without it).
 * @returns {Promise<WebSocketClient|NativeClient>}
 */
export function connect(url, opts = {}) {
  if (typeof url === "string" && url.startsWith("tcp://")) return connectNative(url, opts);
  return connectWebSocket(url, opts);
}

function connectWebSocket(url, opts) {
  const WS = opts.WebSocket || globalThis.WebSocket;
  if (!WS) return Promise.reject(new NexoError("UNAVAILABLE", "no WebSocket in this runtime"));
  const u = new URL(url, globalThis.location?.href);
  if (opts.name) u.searchParams.set("name", opts.name);
  if (opts.token) u.searchParams.set("token", opts.token);
  const ws = new WS(u.toString());
  const c = new WebSocketClient(ws);
  return new Promise((resolve, reject) => {
    let welcomed = false;
    ws.onmessage = (ev) => {
      c._message(ev.data);
      if (!welcomed && c.welcome) {
        welcomed = true;
        resolve(c);
      }
    };
    ws.onclose = (ev) => {
      c.error = new NexoError("UNAVAILABLE", c.goodbye !== null ? `connection closed: ${c.goodbye}` : `connection closed (code ${ev.code})`);
      for (const p of c.pending.values()) p.reject(c.error);
      c.pending.clear();
      c._closed({ code: ev.code, reason: ev.reason });
      if (!welcomed) {
        reject(new NexoError("UNAVAILABLE", `cannot connect to ${u.origin}${u.pathname} (close code ${ev.code})`));
      }
    };
  });
}

// ---------------------------------------------------------------------------
// The native protocol (spec section 1): pure codec functions, then the client.

/** Frame types of spec section 1.2. */
export const TYPES = Object.freeze({
  HELLO: 1, WELCOME: 2, REQUEST: 3, RESPONSE: 4, ERROR: 5, PING: 6, PONG: 7, EVENT: 8, GOODBYE: 9,
});
/** The only defined flag: a REQUEST carries a uint32 deadline in ms. */
export const FLAG_DEADLINE = 0x0001;
/** The frame limit until the server's WELCOME says otherwise. */
export const DEFAULT_MAX_FRAME = 1 << 20;
const HEADER_LEN = 12;
const MAX_PING_BODY = 64;
const EMPTY = new Uint8Array(0);
const utf8 = new TextEncoder();
const fromUTF8 = new TextDecoder();
const strictUTF8 = new TextDecoder("utf-8", { fatal: true });

function protocolError(name, message) {
  return new NexoError(name, message, NUMBERS[name]);
}

/**
 * Encodes one frame.
 * @param {number} type one of TYPES
 * @param {Uint8Array} [body]
 * @param {number} [id] uint32
 * @param {number} [flags] uint16
 * @returns {Uint8Array}
 */
export function encodeFrame(type, body = EMPTY, id = 0, flags = 0) {
  const out = new Uint8Array(HEADER_LEN + body.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, 8 + body.length);
  v.setUint8(4, 1);
  v.setUint8(5, type);
  v.setUint16(6, flags);
  v.setUint32(8, id);
  out.set(body, HEADER_LEN);
  return out;
}

function methodBytes(method) {
  const raw = utf8.encode(method);
  if (raw.length < 1 || raw.length > 255 || raw.some((c) => c < 0x21 || c > 0x7e) || raw.length !== method.length) {
    throw protocolError("BAD_PAYLOAD", `method must be 1..255 bytes of printable ASCII: ${JSON.stringify(method)}`);
  }
  return raw;
}

/**
 * Encodes a REQUEST frame.
 * @param {number} id uint32, not 0
 * @param {string} method printable ASCII, 1..255 bytes
 * @param {Uint8Array} [payload]
 * @param {number} [deadlineMs] when given, the DEADLINE flag and this uint32
 */
export function encodeRequest(id, method, payload = EMPTY, deadlineMs) {
  const m = methodBytes(method);
  const pre = deadlineMs === undefined ? 0 : 4;
  const body = new Uint8Array(pre + 1 + m.length + payload.length);
  if (pre) new DataView(body.buffer).setUint32(0, deadlineMs);
  body[pre] = m.length;
  body.set(m, pre + 1);
  body.set(payload, pre + 1 + m.length);
  return encodeFrame(TYPES.REQUEST, body, id, pre ? FLAG_DEADLINE : 0);
}

/** Encodes the HELLO frame: JSON {name, token}, each only when given. */
export function encodeHello(name, token) {
  const o = {};
  if (name) o.name = name;
  if (token) o.token = token;
  return encodeFrame(TYPES.HELLO, utf8.encode(JSON.stringify(o)));
}

/**
 * Decodes the first frame of buf.
 * @param {Uint8Array} buf bytes received so far
 * @param {number} [maxFrame] the largest length field accepted
 * @returns {{frame: {type: number, flags: number, id: number, body: Uint8Array}, used: number} | null}
 *   null when buf does not hold a whole frame yet
 * @throws {NexoError} BAD_FRAME, UNSUPPORTED_VERSION or FRAME_TOO_LARGE
 */
export function decodeFrame(buf, maxFrame = DEFAULT_MAX_FRAME) {
  if (buf.length < 4) return null;
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const length = v.getUint32(0);
  if (length < 8) throw protocolError("BAD_FRAME", `length ${length} is below 8`);
  if (length > maxFrame) throw protocolError("FRAME_TOO_LARGE", `length ${length} is over the limit of ${maxFrame}`);
  if (buf.length < HEADER_LEN) return null;
  const version = v.getUint8(4);
  if (version !== 1) throw protocolError("UNSUPPORTED_VERSION", `version ${version}`);
  if (buf.length < 4 + length) return null;
  const frame = {
    type: v.getUint8(5),
    flags: v.getUint16(6),
    id: v.getUint32(8),
    body: buf.subarray(HEADER_LEN, 4 + length),
  };
  validate(frame);
  return { frame, used: 4 + length };
}

function validate(f) {
  if (f.type < TYPES.HELLO || f.type > TYPES.GOODBYE) throw protocolError("BAD_FRAME", `unknown type ${f.type}`);
  if (f.flags & ~FLAG_DEADLINE) throw protocolError("BAD_FRAME", `unknown flag bits 0x${(f.flags & ~FLAG_DEADLINE).toString(16)}`);
  if (f.flags & FLAG_DEADLINE && f.type !== TYPES.REQUEST) throw protocolError("BAD_FRAME", "DEADLINE on a frame that is not a REQUEST");
  switch (f.type) {
    case TYPES.REQUEST: parseRequest(f); break;
    case TYPES.ERROR: parseError(f.body); break;
    case TYPES.PING: case TYPES.PONG:
      if (f.body.length > MAX_PING_BODY) throw protocolError("BAD_FRAME", `PING body of ${f.body.length} bytes is over 64`);
      break;
    case TYPES.EVENT: parseEvent(f.body); break;
  }
}

/**
 * The parts of a REQUEST frame.
 * @returns {{method: string, payload: Uint8Array, deadlineMs: number|undefined}}
 */
export function parseRequest(f) {
  let body = f.body;
  let deadlineMs;
  if (f.flags & FLAG_DEADLINE) {
    if (body.length < 4) throw protocolError("BAD_FRAME", "REQUEST too short for its deadline");
    deadlineMs = new DataView(body.buffer, body.byteOffset, 4).getUint32(0);
    body = body.subarray(4);
  }
  if (body.length === 0 || body[0] === 0 || body.length < 1 + body[0]) throw protocolError("BAD_FRAME", "REQUEST method does not fit the body");
  const m = body.subarray(1, 1 + body[0]);
  if (m.some((c) => c < 0x21 || c > 0x7e)) throw protocolError("BAD_FRAME", "REQUEST method is not printable ASCII");
  return { method: fromUTF8.decode(m), payload: body.subarray(1 + body[0]), deadlineMs };
}

/** The code (number), its name and the message of an ERROR body. */
export function parseError(body) {
  if (body.length < 2) throw protocolError("BAD_FRAME", "ERROR body shorter than its code");
  const code = (body[0] << 8) | body[1];
  return { code, name: CODES[code] || `CODE_${code}`, message: fromUTF8.decode(body.subarray(2)) };
}

/** The topic and payload of an EVENT body. */
export function parseEvent(body) {
  if (body.length === 0 || body[0] === 0 || body.length < 1 + body[0]) throw protocolError("BAD_FRAME", "EVENT topic does not fit the body");
  return { topic: fromUTF8.decode(body.subarray(1, 1 + body[0])), payload: body.subarray(1 + body[0]) };
}

/**
 * The payload of every math.* request: a and b as big-endian int64.
 * @param {number|bigint} a
 * @param {number|bigint} b
 */
export function operands(a, b) {
  const out = new Uint8Array(16);
  const v = new DataView(out.buffer);
  v.setBigInt64(0, int64Of(a));
  v.setBigInt64(8, int64Of(b));
  return out;
}

function int64Of(x) {
  if (typeof x === "number" && !Number.isSafeInteger(x)) {
    throw protocolError("BAD_PAYLOAD", `${x} is not an integer within ±2^53; pass a BigInt`);
  }
  const n = BigInt(x);
  if (BigInt.asIntN(64, n) !== n) throw protocolError("BAD_PAYLOAD", `${x} does not fit in an int64`);
  return n;
}

/** A big-endian int64 payload as a BigInt. */
export function readInt64(payload) {
  if (payload.length !== 8) throw protocolError("BAD_PAYLOAD", `want 8 bytes, got ${payload.length}`);
  return new DataView(payload.buffer, payload.byteOffset, 8).getBigInt64(0);
}

/** A big-endian IEEE-754 float64 payload as a number. */
export function readFloat64(payload) {
  if (payload.length !== 8) throw protocolError("BAD_PAYLOAD", `want 8 bytes, got ${payload.length}`);
  return new DataView(payload.buffer, payload.byteOffset, 8).getFloat64(0);
}

/**
 * A client over the native protocol on a node:net socket. Create it with
 * connect("tcp://host:port"). Calls are pipelined: many may be in flight,
 * answered in any order; the requests made in one tick leave in one write.
 * The client answers the server's PINGs and treats a server silent for 2.5
 * heartbeat intervals as gone.
 */
export class NativeClient extends Emitter {
  constructor(socket) {
    super();
    this.socket = socket;
    this.pending = new Map(); // id -> {resolve, reject, timer}
    this.nextId = 0;
    this.maxFrame = DEFAULT_MAX_FRAME;
    /** The server's WELCOME: client_id, server, heartbeat_ms, max_frame, admin. */
    this.welcome = null;
    /** Set once the server said GOODBYE: its reason. */
    this.goodbye = null;
    this.rest = EMPTY;
    this.corked = false;
    this.closing = false;
    this.error = null; // why the connection ended, once it has
    this.lastHeard = Date.now();
    this.watchdog = null;
    /** Resolves when the connection is closed, with {reason}. */
    this.closed = new Promise((resolve) => { this._closed = resolve; });
  }

  /** The client id the server gave this connection. */
  get id() { return this.welcome?.client_id; }

  _data(chunk) {
    this.lastHeard = Date.now();
    let buf = chunk;
    if (this.rest.length) {
      buf = new Uint8Array(this.rest.length + chunk.length);
      buf.set(this.rest);
      buf.set(chunk, this.rest.length);
    }
    let off = 0;
    try {
      for (let r; (r = decodeFrame(buf.subarray(off), this.maxFrame)); off += r.used) this._frame(r.frame);
    } catch (e) {
      this._end(e instanceof NexoError ? e : protocolError("INTERNAL", String(e)));
      return;
    }
    this.rest = off === buf.length ? EMPTY : buf.slice(off);
  }

  _frame(f) {
    switch (f.type) {
      case TYPES.RESPONSE: this._settle(f.id, null, f.body); break;
      case TYPES.ERROR: {
        const e = parseError(f.body);
        const err = new NexoError(e.name, e.message, e.code);
        if (f.id === 0) this._end(err); // about the connection; the server closes next
        else this._settle(f.id, err);
        break;
      }
      case TYPES.PING: this._write(encodeFrame(TYPES.PONG, f.body, f.id)); break;
      case TYPES.EVENT: {
        const ev = parseEvent(f.body);
        let params = ev.payload;
        try {
          params = parseJSON(fromUTF8.decode(ev.payload));
        } catch { /* not JSON: hand over the bytes */ }
        this._emit(ev.topic, params);
        break;
      }
      case TYPES.GOODBYE:
        this.goodbye = fromUTF8.decode(f.body);
        this._emit("goodbye", { reason: this.goodbye });
        break;
      case TYPES.WELCOME:
        if (this.welcome === null) {
          this.welcome = parseJSON(fromUTF8.decode(f.body));
          if (this.welcome.max_frame > 0) this.maxFrame = this.welcome.max_frame;
          this._emit("welcome", this.welcome);
          this._startWatchdog();
        }
        break;
      default: // HELLO, REQUEST and PONG are not sent to clients; ignore them
    }
  }

  _settle(id, err, payload) {
    const p = this.pending.get(id);
    if (!p) return; // timed out already
    this.pending.delete(id);
    clearTimeout(p.timer);
    if (err) p.reject(err);
    else p.resolve(payload);
  }

  _startWatchdog() {
    const hb = this.welcome.heartbeat_ms;
    if (!(hb > 0)) return;
    this.watchdog = setInterval(() => {
      if (Date.now() - this.lastHeard > 2.5 * hb) {
        this._end(new NexoError("UNAVAILABLE", `server silent for ${Date.now() - this.lastHeard} ms`));
      }
    }, hb / 2);
    this.watchdog.unref?.();
  }

  // Writes a frame; every frame written in the same tick leaves in one
  // writev when the tick ends.
  _write(frame) {
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      queueMicrotask(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    this.socket.write(frame);
  }

  // Ends the connection: every call without an answer fails with err.
  _end(err) {
    if (this.error) return;
    this.error = err;
    clearInterval(this.watchdog);
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(id);
      p.reject(err);
    }
    this.socket.destroy();
  }

  /**
   * Calls a method with a raw payload and resolves with the raw response.
   * @param {string} method e.g. "sys.echo"
   * @param {Uint8Array} [payload]
   * @param {{timeout?: number}} [opts] timeout in ms (default 30000), sent
   *   as the request's DEADLINE; 0 waits forever and sends none
   * @returns {Promise<Uint8Array>}
   */
  call(method, payload = EMPTY, opts = {}) {
    if (this.error) return Promise.reject(new NexoError("UNAVAILABLE", `connection closed: ${this.error.message}`));
    if (this.closing) return Promise.reject(new NexoError("UNAVAILABLE", "client closing"));
    if (this.goodbye !== null) return Promise.reject(new NexoError("SHUTTING_DOWN", `the server said goodbye: ${this.goodbye}`));
    const timeout = opts.timeout ?? 30000;
    let id = this.nextId;
    do id = (id % 0xffffffff) + 1; while (this.pending.has(id));
    this.nextId = id;
    let frame;
    try {
      frame = encodeRequest(id, method, payload, timeout > 0 ? Math.max(1, Math.ceil(timeout)) : undefined);
    } catch (e) {
      return Promise.reject(e);
    }
    if (frame.length > this.maxFrame + 4) {
      return Promise.reject(protocolError("FRAME_TOO_LARGE", `request of ${frame.length} bytes is over the server's max frame`));
    }
    return new Promise((resolve, reject) => {
      const p = { resolve, reject, timer: undefined };
      if (timeout > 0) {
        p.timer = setTimeout(() => {
          this.pending.delete(id);
          reject(new NexoError("TIMEOUT", `${method}: no answer in ${timeout} ms`));
        }, timeout);
      }
      this.pending.set(id, p);
      this._write(frame);
    });
  }

  async _int(method, a, b, opts) { return readInt64(await this.call(method, operands(a, b), opts)); }

  /** a + b as a BigInt; a and b are numbers or BigInts within int64. */
  add(a, b, opts) { return this._int("math.add", a, b, opts); }
  /** a - b as a BigInt */
  sub(a, b, opts) { return this._int("math.sub", a, b, opts); }
  /** a * b as a BigInt */
  mul(a, b, opts) { return this._int("math.mul", a, b, opts); }
  /** a / b as a number; DIVISION_BY_ZERO when b is 0. */
  async div(a, b, opts) { return readFloat64(await this.call("math.div", operands(a, b), opts)); }
  /** The payload back, unchanged. */
  echo(payload, opts) { return this.call("sys.echo", payload, opts); }

  async _json(method, value, opts) {
    const body = value === undefined ? EMPTY : utf8.encode(stringifyJSON(value));
    const out = await this.call(method, body, opts);
    return parseJSON(fromUTF8.decode(out));
  }

  /** The server's sys.info. */
  info(opts) { return this._json("sys.info", undefined, opts); }
  /** Asks the server for events of these topics (see on()). */
  subscribe(topics, opts) { return this._json("sys.subscribe", topics, opts); }

  /**
   * Says GOODBYE and resolves once the server, having answered the calls in
   * flight, has closed the connection (or after timeout ms).
   */
  async close(timeout = 5000) {
    if (!this.error && !this.closing) {
      this.closing = true;
      this._write(encodeFrame(TYPES.GOODBYE, utf8.encode("client closing")));
      const timer = setTimeout(() => this._end(new NexoError("UNAVAILABLE", "client closed")), timeout);
      await this.closed;
      clearTimeout(timer);
    }
    return this.closed;
  }
}

async function connectNative(url, opts) {
  const u = new URL(url);
  const host = u.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = Number(u.port || 7070);
  const { createConnection } = await import("node:net");
  const socket = createConnection({ host, port, noDelay: true });
  const c = new NativeClient(socket);
  socket.on("data", (chunk) => c._data(chunk));
  socket.on("error", (e) => c._end(new NexoError("UNAVAILABLE", `${host}:${port}: ${e.message}`)));
  socket.on("close", () => {
    c._end(new NexoError("UNAVAILABLE", c.goodbye !== null ? `connection closed: ${c.goodbye}` : "connection closed"));
    c._closed({ reason: c.goodbye ?? c.error.message });
  });
  socket.once("connect", () => socket.write(encodeHello(opts.name, opts.token)));
  const timeout = opts.timeout ?? 10000;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => c._end(new NexoError("TIMEOUT", `no WELCOME from ${host}:${port} in ${timeout} ms`)), timeout);
    const off = c.on("welcome", () => {
      clearTimeout(timer);
      off();
      resolve(c);
    });
    c.closed.then(() => {
      clearTimeout(timer);
      reject(c.error);
    });
  });
}
