import { test } from "uvu";
import * as assert from "uvu/assert";
import { decodeData, StreamedFrames } from "./data.js";
import { Symbol } from "../protocol/symbols.js";

const names: Record<number, string> = { 1: Symbol.TYPE_DATA, 2: Symbol.TYPE_ARRAY, 3: Symbol.TYPE_JS_OBJ };
const typeName = (t: number): string | undefined => names[t];

/** A stream of frames (u64 length prefix each) carrying an array of `items` (type ids first). */
function arrayStream(items: Array<[number, Buffer]>): Buffer {
  const types = Buffer.alloc(4 * items.length);
  items.forEach(([t], i) => types.writeInt32LE(t, 4 * i));
  const frames = [types, ...items.map(([, b]) => b)];
  return Buffer.concat(
    frames.flatMap((f) => {
      const h = Buffer.alloc(8);
      h.writeUInt32LE(f.length, 0);
      return [h, f];
    }),
  );
}

const item = (i: number): Buffer => Buffer.from(`item ${i}`);

test("streamed frames: collected from chunks split anywhere, the rest handed back; the right object", () => {
  const n = 1029;
  const items: Array<[number, Buffer]> = Array.from({ length: n }, (_, i) => [1, item(i)]);
  const stream = arrayStream(items);
  const tail = Buffer.from("next reply");
  for (const step of [1, 7, 4096, stream.length + tail.length]) {
    const s = new StreamedFrames(n + 1, 0);
    const all = Buffer.concat([stream, tail]);
    let rest: Buffer = Buffer.alloc(0);
    let fed = 0;
    for (let p = 0; p < all.length && !s.done; p += step) {
      const part = all.subarray(p, Math.min(all.length, p + step));
      fed += part.length;
      rest = s.push(part);
      if (!s.done) assert.is(rest.length, 0);
    }
    assert.ok(s.done);
    // Exactly the bytes after the object are handed back.
    assert.is(fed - rest.length, stream.length);
    assert.is(Buffer.concat([rest, all.subarray(fed)]).toString(), "next reply");
    const value = s.decode(2, typeName) as Buffer[];
    assert.is(value.length, n);
    assert.is(value[0]!.toString(), "item 0");
    assert.is(value[n - 1]!.toString(), `item ${n - 1}`);
  }
});

test("streamed frames: empty and large items, split at every offset, are views of the chunks or copies of split frames", () => {
  const big = Buffer.alloc(70_000, 7);
  const items: Array<[number, Buffer]> = [
    [1, Buffer.alloc(0)],
    [1, item(1)],
    [1, big],
    [1, Buffer.alloc(0)],
    [1, item(4)],
  ];
  const stream = arrayStream(items);
  for (const step of [1, 3, 8, 9, 13, 65_536]) {
    const s = new StreamedFrames(items.length + 1, 0);
    const chunks: Buffer[] = [];
    for (let p = 0; p < stream.length; p += step) {
      // Fresh chunks, as a socket delivers them.
      const c = Buffer.from(stream.subarray(p, Math.min(stream.length, p + step)));
      chunks.push(c);
      assert.is(s.push(c).length, 0);
    }
    assert.ok(s.done);
    const v = s.decode(2, typeName) as Buffer[];
    assert.ok(Array.isArray(v));
    assert.equal(
      v.map((b) => b.length),
      items.map(([, b]) => b.length),
    );
    for (let i = 0; i < items.length; i++) assert.ok(v[i]!.equals(items[i]![1]), `item ${i} at step ${step}`);
    if (step === 65_536) assert.is(v[1]!.buffer, chunks[0]!.buffer);
  }
  // A length over the limit is refused however its prefix is split.
  for (const step of [1, 5]) {
    const s = new StreamedFrames(2, 0, 16);
    const bad = arrayStream([[1, Buffer.alloc(17)]]);
    assert.throws(() => {
      for (let p = 0; p < bad.length; p += step) s.push(bad.subarray(p, p + step));
    }, /exceeds the limit/);
  }
});

test("streamed frames: a decoded array of plain items is a real Array of the right bytes, views of the chunk", () => {
  const n = 5000;
  const items: Array<[number, Buffer]> = Array.from({ length: n }, (_, i) => [1, item(i)]);
  const s = new StreamedFrames(n + 1, 0);
  assert.is(s.push(arrayStream(items)).length, 0);
  const a = s.decode(2, typeName) as Buffer[];
  assert.ok(Array.isArray(a));
  assert.is(Object.getPrototypeOf(a), Array.prototype);
  assert.is(a.length, n);
  for (let i = 0; i < n; i++) if (!a[i]!.equals(item(i))) assert.unreachable(`item ${i} is ${a[i]!.toString()}`);
  // Items are views of the received chunk (no copy each).
  assert.ok(Buffer.isBuffer(a[0]));
  assert.is(a[0]!.buffer, a[n - 1]!.buffer);
  // A plain array: structured cloning (postMessage) works and keeps the bytes.
  const c = structuredClone(a);
  assert.ok(Array.isArray(c));
  assert.is(c.length, n);
  assert.equal(Buffer.from(c[n - 1]!).toString(), `item ${n - 1}`);
  assert.equal(Object.keys(a).length, n);
});

test("streamed frames: a small or mixed array is a plain array; a frame over the limit is refused", () => {
  const mixed: Array<[number, Buffer]> = [
    [1, Buffer.from("a")],
    [1, Buffer.from("b")],
  ];
  const s = new StreamedFrames(3, 0);
  assert.is(s.push(arrayStream(mixed)).length, 0);
  const v = s.decode(2, typeName) as Buffer[];
  assert.equal(v.map(String), ["a", "b"]);
  assert.ok(structuredClone(v));
  const big = new StreamedFrames(2, 0, 16);
  assert.throws(() => big.push(arrayStream([[1, Buffer.alloc(17)]])), /exceeds the limit/);
});

test("decodeData: an array of plain items (relayed) is a plain array of its frames", () => {
  const n = 2000;
  const types = Buffer.alloc(4 * n);
  for (let i = 0; i < n; i++) types.writeInt32LE(1, 4 * i);
  const frames = [types, ...Array.from({ length: n }, (_, i) => item(i))];
  const [v, next] = decodeData(2, frames, 0, typeName);
  const a = v as Buffer[];
  assert.is(next, n + 1);
  assert.ok(Array.isArray(a));
  assert.is(a.length, n);
  assert.is(a[n - 1]!.toString(), `item ${n - 1}`);
  assert.is(structuredClone(a).length, n);
});

test.run();
