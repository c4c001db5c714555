import { test } from "uvu";
import * as assert from "uvu/assert";
import { deserialize, serialize } from "node:v8";
import { decodeDirectArgs, decodeDirectArgsAt, encodeDirectArgs, encodeLeadingArgs, fastOk } from "./direct-args.js";

const simple: unknown[][] = [
  [],
  [0],
  [12345],
  [-1, 2 ** 30 - 1, -(2 ** 30) + 1],
  [1.5, -0, NaN, Infinity, 2 ** 40, -(2 ** 31)],
  ["", "ab", "é ÿ"],
  [true, false, null, undefined],
  [7, "x", 0.25, null],
];
const other: unknown[][] = [[{ a: 1 }], ["€"], [[1, 2]], [new Uint8Array([1])], [1n], ["x".repeat(100)], new Array(100).fill(1)];

test("direct arguments are written as V8 writes them, and read back as V8 reads them", () => {
  for (const args of [...simple, ...other]) {
    const mine = encodeDirectArgs(args);
    assert.equal(deserialize(mine), args, JSON.stringify(String(args)));
    assert.equal(decodeDirectArgs(mine), args);
    assert.equal(decodeDirectArgs(serialize(args)), args);
  }
  // On this Node the simple case takes the fast path with V8's own bytes.
  assert.ok(fastOk, "the fast path agrees with this Node's V8");
  for (const args of simple) assert.ok(encodeDirectArgs(args).equals(serialize(args)), String(args));
});

test("encodings share blocks without overwriting each other; the leading arguments are encoded alone", () => {
  // Enough calls to fill several 64 KiB blocks, with the longest simple encodings among them.
  const long = Array.from({ length: 64 }, (_, i) => "y".repeat(64 - (i % 3)));
  const kept: Array<[Buffer, unknown[]]> = [];
  for (let i = 0; i < 20_000; i++) {
    const args = i % 500 === 0 ? long : [i, `s${i}`, i / 7];
    kept.push([encodeDirectArgs(args), args]);
  }
  for (const [bytes, args] of kept) assert.ok(bytes.equals(serialize(args)), String(args).slice(0, 40));
  for (const args of [...simple, ...other]) {
    for (let n = 0; n <= args.length; n++) {
      const mine = encodeLeadingArgs([...args, { an: "input" }], n);
      assert.equal(deserialize(mine), args.slice(0, n));
      if (simple.includes(args)) assert.ok(mine.equals(serialize(args.slice(0, n))), `${n} of ${String(args)}`);
    }
  }
});

test("arguments read in place between other bytes read as V8 reads them; a cut or overlong range does not", () => {
  for (const args of [...simple, ...other]) {
    const bytes = encodeDirectArgs(args);
    // Bytes that continue a fast encoding (a varint's continuation, a tag) before and after it.
    const b = Buffer.concat([Buffer.from([0x80, 0x49]), bytes, Buffer.from([0x81, 0x49, 0x02])]);
    assert.equal(decodeDirectArgsAt(b, 2, 2 + bytes.length), deserialize(bytes), `in place: ${String(args)}`);
    if (bytes.length > 1) {
      assert.throws(() => decodeDirectArgsAt(b, 2, 1 + bytes.length), undefined, `cut: ${String(args)}`);
    }
  }
});

test("bytes that are not V8's serialization throw as v8.deserialize does", () => {
  assert.throws(() => decodeDirectArgs(Buffer.from([0xff, 0x0f, 0x41, 0x01])));
  assert.throws(() => decodeDirectArgs(Buffer.from([1, 2, 3])));
});

test.run();
