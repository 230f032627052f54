// The shared test vectors of protocol/vectors/vectors.json, through decode,
// encode and the bounded line reader.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { LineReader } from "../dist/worker/channel.js";
import { ProtocolError, decode, encode, toJsonText } from "../dist/worker/protocol.js";

const vectors = JSON.parse(readFileSync(new URL("../../protocol/vectors/vectors.json", import.meta.url), "utf8"));
const bytesOf = (c) => (c.line_hex !== undefined ? Buffer.from(c.line_hex, "hex") : Buffer.from(c.line, "utf8"));

test("the vector file has cases of both kinds", () => {
  assert.equal(vectors.protocol, 1);
  assert.ok(vectors.valid.length > 10);
  assert.ok(vectors.invalid.length > 10);
});

for (const c of vectors.valid) {
  test(`valid: ${c.name}: decodes to its message, member order too`, () => {
    const message = decode(bytesOf(c), c.from);
    assert.deepStrictEqual(message, c.message);
    assert.equal(JSON.stringify(message), JSON.stringify(c.message)); // same order at every level
    assert.deepStrictEqual(decode(c.line, c.from), c.message); // from a string as well
  });
  test(`valid: ${c.name}: encodes to the canonical line`, () => {
    assert.equal(encode(c.message), c.canonical ?? c.line);
    assert.equal(encode(decode(bytesOf(c), c.from)), c.canonical ?? c.line);
  });
}

for (const c of vectors.invalid) {
  test(`invalid: ${c.name}: fails with ${c.error}`, () => {
    assert.throws(
      () => decode(bytesOf(c), c.from, c.max_line_bytes ?? vectors.default_max_line_bytes),
      (err) => err instanceof ProtocolError && err.code === c.error,
    );
  });
  test(`invalid: ${c.name}: through the line reader`, () => {
    const limit = c.max_line_bytes ?? vectors.default_max_line_bytes;
    const reader = new LineReader(limit);
    const items = reader.push(Buffer.concat([bytesOf(c), Buffer.from("\n")]));
    assert.equal(items.length, 1);
    const [item] = items;
    if (c.error === "line_too_long") {
      assert.ok(item instanceof ProtocolError && item.code === "line_too_long");
      assert.match(item.message, new RegExp(`${limit} bytes`));
    } else {
      assert.throws(() => decode(item, c.from, limit), (err) => err.code === c.error);
    }
    assert.equal(reader.end(), false);
  });
}

test("all valid lines through the line reader, in pieces of every size", () => {
  const stream = Buffer.concat(vectors.valid.map((c) => Buffer.concat([bytesOf(c), Buffer.from("\n")])));
  for (const size of [1, 2, 3, 7, 64, 1000, stream.length]) {
    const reader = new LineReader(vectors.default_max_line_bytes);
    const items = [];
    for (let i = 0; i < stream.length; i += size) items.push(...reader.push(stream.subarray(i, i + size)));
    assert.equal(items.length, vectors.valid.length);
    assert.deepStrictEqual(
      items.map((item, i) => decode(item, vectors.valid[i].from)),
      vectors.valid.map((c) => c.message),
    );
    assert.equal(reader.end(), false);
  }
});

test("the reader skips an over-long line without keeping it, then goes on", () => {
  const reader = new LineReader(10);
  const items = [];
  items.push(...reader.push(Buffer.from("short\n0123456789")));
  items.push(...reader.push(Buffer.from("abcdef".repeat(1000))));
  items.push(...reader.push(Buffer.from("ghi\nok\n0123456789\npartial")));
  assert.deepStrictEqual(
    items.map((item) => (item instanceof ProtocolError ? item.code : item.toString())),
    ["short", "line_too_long", "ok", "0123456789"],
  );
  assert.equal(reader.end(), true); // "partial" had no end
});

test("integer members written as floats or exponents are invalid_field", () => {
  for (const line of ['{"type":"cancel","id":1e0}', '{"type":"heartbeat","seq":2.0}', '{"type":"welcome","protocol":1.0}']) {
    assert.throws(() => decode(line, "supervisor"), (err) => err.code === "invalid_field", line);
  }
  assert.deepStrictEqual(decode('{"type":"call","id":1,"tool":"t","args":{"x":1.0}}', "supervisor").args, { x: 1 });
});

test("non-JSON numbers and texts are invalid_json", () => {
  for (const line of ['{"type":"heartbeat","seq":NaN}', '{"type":"heartbeat","seq":1e400}', "\ufeff{}", '{"a":01}', '{"a":"\u0001"}', "{} {}"]) {
    assert.throws(() => decode(line, "supervisor"), (err) => err.code === "invalid_json", line);
  }
});

test("encoding refuses what JSON cannot hold, like the Python SDK", () => {
  assert.equal(toJsonText({ s: "\u2028 é \u007f \u0001" }), '{"s":"\u2028 é \u007f \\u0001"}');
  assert.throws(() => encode({ type: "result", id: 1, value: NaN }), (err) => err.code === "invalid_field");
  assert.throws(() => encode({ type: "result", id: 1, value: "\ud800" }), (err) => err.code === "invalid_field");
  assert.equal(encode({ type: "result", id: 1, value: "\\ud800 \ud83d\ude00" }), '{"type":"result","id":1,"value":"\\\\ud800 😀"}');
  assert.equal(encode({ type: "progress", id: 1, progress: 1, total: undefined }), '{"type":"progress","id":1,"progress":1}');
});

test("__proto__ in decoded JSON is a plain member", () => {
  const message = decode('{"type":"call","id":1,"tool":"t","args":{"__proto__":{"polluted":1}}}', "supervisor");
  assert.equal({}.polluted, undefined);
  assert.deepStrictEqual(Object.keys(message.args), ["__proto__"]);
});
