// nexo.js's exact JSON: integers beyond 2^53 as BigInt, on both paths
// (JSON.parse's source text where the runtime has it, the small reader
// elsewhere), and BigInts written as exact integers.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseJSON, readJSON, stringifyJSON, formatQuotient } from "../nexo.js";

const texts = [
  "0", "-0", "1", "-1", "9007199254740991", "-9007199254740991", "2.5", "1e3", "-1.5E-7", "1e400",
  '""', '"a\\"b\\\\c\\u00e9\\ud83d\\ude00\\n"', "true", "false", "null", "[]", "{}",
  ' [ 1 , [ 2 , { "a" : null } ] ] ', '{"a":{"b":[1,2,{"c":"d"}]},"e":false}', '{"__proto__":1,"x":2}',
];

test("readJSON and parseJSON agree with JSON.parse on safe values", () => {
  for (const t of texts) {
    assert.deepEqual(readJSON(t), JSON.parse(t), t);
    assert.deepEqual(parseJSON(t), JSON.parse(t), t);
  }
  assert.ok(Object.hasOwn(readJSON('{"__proto__":1}'), "__proto__"), "an own property, not the prototype");
});

test("integers beyond 2^53 are BigInts, exactly", () => {
  for (const parse of [readJSON, parseJSON]) {
    assert.deepEqual(parse("[9007199254740992,9007199254740993,-9223372036854775808,9223372036854775807]"),
      [9007199254740992n, 9007199254740993n, -9223372036854775808n, 9223372036854775807n]);
    assert.deepEqual(parse('{"result":27021597764222973,"id":1}'), { result: 27021597764222973n, id: 1 });
    assert.equal(parse("9007199254740993.0"), 9007199254740992, "a fraction is a number, as JSON.parse gives");
    assert.equal(parse("123456789012345678901234567890"), 123456789012345678901234567890n);
  }
});

test("readJSON refuses what JSON.parse refuses", () => {
  for (const t of ["", "[1,]", "{,}", "01", "1.", ".5", "+1", "[1", '{"a"}', '{"a":1,}', "tru", '"\u0001"', "1 2", "[]]", "-", "NaN"]) {
    assert.throws(() => JSON.parse(t), SyntaxError, `JSON.parse ${JSON.stringify(t)}`);
    assert.throws(() => readJSON(t), SyntaxError, `readJSON ${JSON.stringify(t)}`);
  }
  assert.throws(() => readJSON("[".repeat(100000)), SyntaxError, "deep nesting fails cleanly");
});

test("stringifyJSON writes BigInts as integers", () => {
  assert.equal(stringifyJSON({ a: 1n << 63n, b: [-2n, "nexo-bigint-x:1"], c: 1.5 }),
    '{"a":9223372036854775808,"b":[-2,"nexo-bigint-x:1"],"c":1.5}');
  assert.equal(stringifyJSON({ a: 1 }), JSON.stringify({ a: 1 }));
});

test("formatQuotient writes what the server writes", () => {
  const cases = [[3.5, "3.5"], [0, "0"], [-0, "0"], [1e6, "1000000"], [1 / 3, "0.3333333333333333"], [1e-6, "0.000001"],
    [1e-7, "1e-07"], [9223372036854775808, "9.223372036854776e+18"], [-(2 ** 53), "-9.007199254740992e+15"], [2 ** 53 - 1, "9007199254740991"]];
  for (const [q, want] of cases) assert.equal(formatQuotient(q), want, String(q));
});
