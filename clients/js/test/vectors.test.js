// The codec of nexo.js against the shared conformance vectors in
// testdata/vectors (generated from the spec by Python's struct module).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  CODES, TYPES, decodeFrame, encodeFrame, encodeRequest, operands, parseError, parseEvent,
  parseRequest, readFloat64, readInt64,
} from "../nexo.js";

const VECTORS = new URL("../../../testdata/vectors/", import.meta.url);

// Loads a vector file, keeping the integers JSON numbers cannot hold
// exactly (int64 extremes) as strings for BigInt.
function load(name) {
  const text = readFileSync(new URL(name, VECTORS), "utf8")
    .replace(/("(?:a|b|int|result)":\s*)(-?\d+)(?=[,\s}\]])/g, '$1"$2"')
    .replace(/("math":\s*\[)\s*(-?\d+),\s*(-?\d+)\s*\]/g, '$1"$2","$3"]');
  return JSON.parse(text).vectors;
}

const hex = (b) => Buffer.from(b).toString("hex");
const bytes = (h) => new Uint8Array(Buffer.from(h, "hex"));
const text = (b) => new TextDecoder().decode(b);

for (const v of load("native.json")) {
  test(`native: ${v.name}`, () => {
    const raw = bytes(v.hex);
    const max = v.max_frame ?? v.frame?.max_frame;
    if (!v.valid) {
      if (v.error === "TRUNCATED") {
        assert.equal(decodeFrame(raw, max), null, "a cut frame is not decoded");
        return;
      }
      assert.throws(() => decodeFrame(raw, max), (e) => e.name === v.error && e.number !== undefined);
      return;
    }
    const r = decodeFrame(raw, max);
    assert.ok(r, "decoded");
    const { frame: f, used } = r;
    const want = v.frame;
    assert.equal(used, raw.length);
    assert.equal(f.type, TYPES[want.type]);
    assert.equal(f.id, want.id);
    assert.equal(f.flags, want.flags);
    // Every valid frame re-encodes to the same bytes.
    assert.equal(hex(encodeFrame(f.type, f.body, f.id, f.flags)), v.hex);
    switch (want.type) {
      case "HELLO": case "WELCOME":
        assert.deepEqual(f.body.length ? JSON.parse(text(f.body)) : {}, want.json);
        break;
      case "REQUEST": {
        const req = parseRequest(f);
        assert.equal(req.method, want.method);
        assert.equal(hex(req.payload), want.payload_hex);
        assert.equal(req.deadlineMs, want.deadline_ms);
        assert.equal(hex(encodeRequest(f.id, req.method, req.payload, req.deadlineMs)), v.hex);
        if (want.math) assert.equal(hex(operands(BigInt(want.math[0]), BigInt(want.math[1]))), want.payload_hex);
        break;
      }
      case "RESPONSE":
        assert.equal(hex(f.body), want.payload_hex);
        if (want.int !== undefined) assert.equal(readInt64(f.body), BigInt(want.int));
        if (want.float !== undefined) assert.equal(readFloat64(f.body), want.float);
        break;
      case "ERROR": {
        const e = parseError(f.body);
        assert.deepEqual([e.code, e.name, e.message], [want.code, want.code_name, want.message]);
        assert.equal(CODES[e.code], want.code_name);
        break;
      }
      case "PING": case "PONG":
        assert.equal(hex(f.body), want.body_hex);
        break;
      case "EVENT": {
        const ev = parseEvent(f.body);
        assert.equal(ev.topic, want.topic);
        assert.equal(hex(ev.payload), want.payload_hex);
        break;
      }
      case "GOODBYE":
        assert.equal(text(f.body), want.reason);
        break;
      default:
        assert.fail(`vector of unknown type ${want.type}`);
    }
  });
}

test("native: frames split at every byte and glued together decode in order", () => {
  const valid = load("native.json").filter((v) => v.valid && !v.max_frame);
  const stream = Buffer.concat(valid.map((v) => Buffer.from(v.hex, "hex")));
  for (let cut = 0; cut <= stream.length; cut += 7) {
    // A reader that got only the first `cut` bytes decodes whole frames
    // and leaves the rest.
    const got = [];
    let off = 0;
    for (let r; (r = decodeFrame(stream.subarray(off, cut))); off += r.used) got.push(hex(stream.subarray(off, off + r.used)));
    assert.deepEqual(got, valid.map((v) => v.hex).slice(0, got.length));
    assert.ok(cut - off < stream.length, "progress");
  }
});

for (const v of load("methods.json")) {
  if (!v.method.startsWith("math.") || v.a === undefined) continue; // the rest are payloads of a wrong size
  test(`methods: operands of ${v.method} ${v.a} ${v.b}`, () => {
    assert.equal(hex(operands(BigInt(v.a), BigInt(v.b))), v.payload_hex);
    if (v.response_hex && v.method !== "math.div") assert.equal(readInt64(bytes(v.response_hex)), BigInt(v.result));
    if (v.response_hex && v.method === "math.div") assert.equal(readFloat64(bytes(v.response_hex)), Number(v.result));
  });
}

test("operands refuses what an int64 cannot hold", () => {
  assert.throws(() => operands(2 ** 53, 1), { name: "BAD_PAYLOAD" });
  assert.throws(() => operands(1n << 63n, 1), { name: "BAD_PAYLOAD" });
  assert.throws(() => operands(1.5, 1), { name: "BAD_PAYLOAD" });
  assert.equal(hex(operands(-(1n << 63n), (1n << 63n) - 1n)), "80000000000000007fffffffffffffff");
});

test("encodeRequest refuses a method that is not 1..255 printable ASCII", () => {
  for (const m of ["", "a b", "é", "m".repeat(256)]) assert.throws(() => encodeRequest(1, m), { name: "BAD_PAYLOAD" });
  assert.equal(encodeRequest(1, "m".repeat(255)).length, 12 + 1 + 255);
});
