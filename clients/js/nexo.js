// nexo.js: the JavaScript client of nexo, one ES module with no
// dependencies and no build step.
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
// Errors reject with a NexoError carrying the native code name
// (err.name === "DIVISION_BY_ZERO") and the JSON-RPC code (err.code).

/** The native error codes of spec section 1.4, by number. */
export const CODES = Object.freeze({
  1: "BAD_FRAME", 2: "UNSUPPORTED_VERSION", 3: "UNAUTHORIZED", 4: "UNKNOWN_METHOD",
  5: "BAD_PAYLOAD", 6: "DIVISION_BY_ZERO", 7: "OVERFLOW", 8: "BUSY", 9: "SHUTTING_DOWN",
  10: "TIMEOUT", 11: "INTERNAL", 12: "FRAME_TOO_LARGE", 13: "UNAVAILABLE",
});

/** The largest integer a JSON number carries exactly; the server refuses larger ones. */
export const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/** An error answered by the server, or a local one with the same shape. */
export class NexoError extends Error {
  /**
   * @param {string} name native code name, e.g. "DIVISION_BY_ZERO"
   * @param {string} message text for people
   * @param {number} [code] JSON-RPC error code, e.g. -32006
   */
  constructor(name, message, code) {
    super(message);
    this.name = name;
    this.code = code;
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
export class WebSocketClient {
  constructor(ws) {
    this.ws = ws;
    this.nextId = 1;
    this.pending = new Map(); // id -> {resolve, reject}
    this.handlers = new Map(); // topic -> Set of functions
    /** The server's welcome: client_id, server, heartbeat_ms, max_frame, admin. */
    this.welcome = null;
    /** Resolves when the connection is closed, with {code, reason}. */
    this.closed = new Promise((resolve) => { this._closed = resolve; });
  }

  _message(data) {
    let msg;
    try {
      msg = JSON.parse(data);
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
    if (topic === "welcome") this.welcome = params;
    for (const fn of this.handlers.get(topic) || []) {
      try {
        fn(params);
      } catch (e) {
        console.error("nexo event handler", topic, e);
      }
    }
  }

  /**
   * Calls a method and resolves with its result.
   * @param {string} method e.g. "math.add"
   * @param {Array|Object} [params]
   * @param {{timeout?: number}} [opts] timeout in ms (default 30000)
   */
  call(method, params, opts = {}) {
    if (this.ws.readyState !== 1) {
      return Promise.reject(new NexoError("UNAVAILABLE", "not connected"));
    }
    const id = this.nextId++;
    const timeout = opts.timeout ?? 30000;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new NexoError("TIMEOUT", `${method}: no answer in ${timeout} ms`));
      }, timeout);
      this.pending.set(id, {
        resolve: (v) => { clearTimeout(timer); resolve(v); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
      const msg = { jsonrpc: "2.0", method, id };
      if (params !== undefined) msg.params = params;
      this.ws.send(JSON.stringify(msg));
    });
  }

  /** a + b; integers beyond ±2^53 are refused before sending. */
  add(a, b) { return this.call("math.add", ints(a, b)); }
  /** a - b */
  sub(a, b) { return this.call("math.sub", ints(a, b)); }
  /** a * b */
  mul(a, b) { return this.call("math.mul", ints(a, b)); }
  /** a / b as a float; DIVISION_BY_ZERO when b is 0. */
  div(a, b) { return this.call("math.div", ints(a, b)); }
  /** The server's sys.info. */
  info() { return this.call("sys.info"); }

  /**
   * Calls fn(params) for every event of the topic ("stats", "clients",
   * "goodbye", "welcome"). Returns a function that removes it.
   */
  on(topic, fn) {
    if (!this.handlers.has(topic)) this.handlers.set(topic, new Set());
    this.handlers.get(topic).add(fn);
    return () => this.handlers.get(topic).delete(fn);
  }

  /** Asks the server for events of these topics. */
  subscribe(topics) { return this.call("sys.subscribe", topics); }

  /** Closes the connection; calls in flight are rejected. */
  close() { this.ws.close(1000, "client closing"); }
}

function ints(a, b) {
  for (const v of [a, b]) {
    if (!Number.isSafeInteger(v)) {
      throw new NexoError("BAD_PAYLOAD", `${v} is not an integer within ±2^53`);
    }
  }
  return [a, b];
}

/**
 * Opens a WebSocket to the web door and resolves once the server's welcome
 * has arrived.
 * @param {string} url e.g. "ws://127.0.0.1:8080/ws"
 * @param {{name?: string, token?: string, WebSocket?: Function}} [opts]
 *   name shows in the client list; token is the admin token;
 *   WebSocket replaces the global one (for runtimes without it).
 * @returns {Promise<WebSocketClient>}
 */
export function connect(url, opts = {}) {
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
      for (const p of c.pending.values()) p.reject(new NexoError("UNAVAILABLE", "connection closed"));
      c.pending.clear();
      c._closed({ code: ev.code, reason: ev.reason });
      if (!welcomed) {
        reject(new NexoError("UNAVAILABLE", `cannot connect to ${u.origin}${u.pathname} (close code ${ev.code})`));
      }
    };
  });
}
