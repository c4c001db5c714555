import { suite } from "uvu";
import * as assert from "uvu/assert";
import { FrameLimiter, FrameLimitError } from "./frame-limits.js";

const t = suite("frame limits");
const limits = { maxFrame: 100, maxPlan: 1000, frameTimeoutMs: 5000 };

function framed(payload: Buffer): Buffer {
  const p = Buffer.alloc(8);
  p.writeUInt32LE(payload.length, 0);
  return Buffer.concat([p, payload]);
}

/** Feeds `bytes` in chunks of `size`; returns the error thrown, if any. */
function feed(bytes: Buffer, size: number, now = 0, l = new FrameLimiter(limits)): Error | undefined {
  try {
    for (let i = 0; i < bytes.length; i += size) l.check(bytes.subarray(i, i + size), now);
  } catch (e) {
    return e as Error;
  }
  return undefined;
}

t("frames within the limits pass, however the stream is cut", () => {
  const stream = Buffer.concat([framed(Buffer.alloc(0)), framed(Buffer.alloc(100, 1)), framed(Buffer.from([0x08, 0x01, ...Buffer.alloc(900)])), framed(Buffer.alloc(3))]);
  for (const size of [1, 2, 3, 7, 8, 9, 64, 1000, stream.length]) assert.is(feed(stream, size), undefined, `chunks of ${size}`);
});

t("a control frame above --max-frame is refused, naming the flag, even when cut after its prefix", () => {
  const stream = framed(Buffer.alloc(101, 0x08));
  for (const size of [1, 8, 9, 200]) {
    const e = feed(stream, size);
    assert.instance(e, FrameLimitError);
    assert.match(e!.message, "101 bytes exceeds the limit of 100 bytes (raise it with --max-frame");
  }
});

t("a plan may be larger than --max-frame, up to --max-plan; above both, refused on the prefix", () => {
  const plan = Buffer.concat([Buffer.from([0x08, 0x01]), Buffer.alloc(898)]);
  assert.is(feed(framed(plan), 1), undefined);
  const big = Buffer.alloc(16);
  big.writeUInt32LE(1001, 0);
  const e = feed(big, 3);
  assert.instance(e, FrameLimitError);
  assert.match(e!.message, "a frame of 1001 bytes exceeds every limit (100 bytes for control frames, --max-frame; 1000 bytes for plans, --max-plan)");
  // 4 GiB announced: refused on the prefix alone, before any payload.
  assert.instance(feed(Buffer.from([0, 0, 0, 0, 1, 0, 0, 0]), 8), FrameLimitError);
});

t("with --max-plan below --max-frame, a plan above it is refused while a control frame of that size passes", () => {
  const small = { maxFrame: 1000, maxPlan: 100, frameTimeoutMs: 5000 };
  const plan = framed(Buffer.concat([Buffer.from([0x08, 0x01]), Buffer.alloc(200)]));
  for (const size of [1, 9, 10, 500]) {
    const e = feed(plan, size, 0, new FrameLimiter(small));
    assert.match(e!.message, "a plan of 202 bytes exceeds the plan limit of 100 bytes (raise it with --max-plan)");
  }
  assert.is(feed(framed(Buffer.concat([Buffer.from([0x08, 0x02]), Buffer.alloc(200)])), 7, 0, new FrameLimiter(small)), undefined);
});

t("a frame that stalls is overdue after --frame-timeout; complete frames never are", () => {
  const l = new FrameLimiter(limits);
  l.check(framed(Buffer.alloc(50)), 0);
  assert.is(l.overdue(1e9), undefined);
  const partial = framed(Buffer.alloc(50)).subarray(0, 20);
  l.check(partial, 1000);
  assert.is(l.overdue(5999), undefined);
  assert.ok(l.overdue(6001)?.message.includes("--frame-timeout"));
  // Trickling bytes in does not restart the clock (slowloris).
  const l2 = new FrameLimiter(limits);
  const f = framed(Buffer.alloc(50));
  for (let i = 0; i < 40; i++) l2.check(f.subarray(i, i + 1), i * 200);
  assert.ok(l2.overdue(6001) !== undefined);
  // A frame completing and the next one starting restarts it.
  const l3 = new FrameLimiter(limits);
  l3.check(f.subarray(0, 30), 0);
  l3.check(Buffer.concat([f.subarray(30), f.subarray(0, 5)]), 4000);
  assert.is(l3.overdue(6001), undefined);
  assert.ok(l3.overdue(9001) !== undefined);
});

t.run();
