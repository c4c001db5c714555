import { test } from "uvu";
import * as assert from "uvu/assert";
import { inspect } from "node:util";
import { decodeData, plainArrayView, StreamedFrames, VIEW_MIN_ITEMS } from "./data.js";
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

test("plain array view: an Array to every reader, items made on first read and kept", () => {
  const n = 3000;
  let made = 0;
  const a = plainArrayView(n, (i) => (made++, item(i)));
  assert.ok(Array.isArray(a));
  assert.ok(a instanceof Array);
  assert.is(a.length, n);
  assert.is(made, 0);
  assert.is(a[7]!.toString(), "item 7");
  assert.is(a[7], a[7]);
  assert.is(made, 1);
  assert.is(a[n], undefined);
  assert.is(a["-1" as unknown as number], undefined);
  assert.ok(5 in a);
  assert.not.ok(n in a);
  assert.is(a.at(-1)!.toString(), `item ${n - 1}`);
  assert.equal(a.slice(1, 3).map(String), ["item 1", "item 2"]);
  assert.is(made, 4);
  assert.is([...a].length, n);
  let k = 0;
  for (const b of a) assert.is(b.toString(), `item ${k++}`);
  assert.is(k, n);
  assert.is(made, n);
  assert.equal(a.slice(1, 3).map(String), ["item 1", "item 2"]);
  assert.is(a.map(String).join(",").split(",")[2999], "item 2999");
  assert.is(Buffer.concat(a.slice(0, 2)).toString(), "item 0item 1");
  assert.is(Object.keys(a).length, n);
  assert.is(JSON.parse(JSON.stringify(a)).length, n);
  assert.ok(inspect(a).startsWith("[\n  <Buffer 69 74 65 6d 20 30>"), inspect(a).slice(0, 40));
  // A plain copy clones; the view itself is a proxy, which structuredClone refuses.
  assert.is(structuredClone(Array.from(a)).length, n);
  assert.throws(() => structuredClone(a));
});

test("plain array view: writes make every item first, then act on the array", () => {
  const a = plainArrayView(2000, item);
  a[3] = Buffer.from("x");
  assert.is(a[3]!.toString(), "x");
  assert.is(a[4]!.toString(), "item 4");
  a.push(Buffer.from("y"));
  assert.is(a.length, 2001);
  assert.is(a[2000]!.toString(), "y");
  a.length = 2;
  assert.is(a.length, 2);
  assert.is(a[1]!.toString(), "item 1");
  assert.is(a[3], undefined);
  assert.is(a.sort((x, y) => (String(x) < String(y) ? 1 : -1)), a);
  assert.is(a[0]!.toString(), "item 1");
  delete a[0];
  assert.not.ok(0 in a);
  const b = plainArrayView(1500, item);
  b.reverse();
  assert.is(b[0]!.toString(), "item 1499");
});

test("streamed frames: collected from chunks split anywhere, the rest handed back; the right object", () => {
  const n = VIEW_MIN_ITEMS + 5;
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

test("decodeData: many plain items (relayed) are the same view; other arrays stay arrays", () => {
  const n = VIEW_MIN_ITEMS;
  const types = Buffer.alloc(4 * n);
  for (let i = 0; i < n; i++) types.writeInt32LE(1, 4 * i);
  const frames = [types, ...Array.from({ length: n }, (_, i) => item(i))];
  const [v, next] = decodeData(2, frames, 0, typeName);
  const a = v as Buffer[];
  assert.is(next, n + 1);
  assert.is(a.length, n);
  assert.is(a[n - 1]!.toString(), `item ${n - 1}`);
  assert.throws(() => structuredClone(a));
  const few = decodeData(2, frames.slice(0, 3).map((f, i) => (i === 0 ? types.subarray(0, 8) : f)), 0, typeName)[0] as Buffer[];
  assert.equal(few.map(String), ["item 0", "item 1"]);
  assert.ok(structuredClone(few));
});

test.run();
