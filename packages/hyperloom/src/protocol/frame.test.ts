import { test } from "uvu";
import * as assert from "uvu/assert";
import { FrameError, FrameReader, frame } from "./frame.js";

test("frames split at every position come out whole and in order", () => {
  const bytes = Buffer.concat([frame(Buffer.from("abc")), frame(Buffer.alloc(0)), frame(Buffer.from("hello"))]);
  for (let cut = 0; cut <= bytes.length; cut++) {
    const r = new FrameReader();
    const got = [...r.push(bytes.subarray(0, cut)), ...r.push(bytes.subarray(cut))].map((b) => b.toString());
    assert.equal(got, ["abc", "", "hello"], `cut at ${cut}`);
    assert.is(r.pendingBytes, 0);
  }
});

test("a frame longer than the limit is an error", () => {
  const r = new FrameReader(4);
  assert.throws(() => r.push(frame(Buffer.from("too long"))), (e: unknown) => e instanceof FrameError);
});

test("a large frame arriving in many chunks is assembled once", () => {
  const payload = Buffer.alloc(1 << 20, 7);
  const bytes = frame(payload);
  const r = new FrameReader();
  const got: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += 1000) got.push(...r.push(bytes.subarray(i, i + 1000)));
  assert.is(got.length, 1);
  assert.ok(got[0]!.equals(payload));
});

test("frames around a large one in the same chunks come out whole", () => {
  const big = Buffer.alloc(3 << 20, 1);
  const bytes = Buffer.concat([frame(Buffer.from("before")), frame(big), frame(Buffer.from("after")), frame(Buffer.alloc(0))]);
  for (const step of [7, 65536, 1 << 20]) {
    const r = new FrameReader();
    const got: Buffer[] = [];
    for (let i = 0; i < bytes.length; i += step) got.push(...r.push(bytes.subarray(i, i + step)));
    assert.equal(got.map((b) => b.length), [6, big.length, 5, 0], `step ${step}`);
    assert.ok(got[1]!.equals(big));
    assert.is(String(got[2]), "after");
    assert.is(r.pendingBytes, 0);
  }
});

test.run();
