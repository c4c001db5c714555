import { test } from "uvu";
import * as assert from "uvu/assert";
import { WAIT_REPEAT_MS, WAIT_WARN_AFTER_MS, WaitingWarnings } from "./waiting.js";

const hint = "hyperloom worker 127.0.0.1 9010";

test("no worker: one warning after the grace period, repeated while it lasts, reset when it ends", () => {
  const w = new WaitingWarnings(hint);
  const none = { workers: 0, withoutWorker: 3, unrunnable: 0 };
  assert.equal(w.observe(0, none), []);
  assert.equal(w.observe(WAIT_WARN_AFTER_MS - 1, none), []);
  assert.equal(w.observe(WAIT_WARN_AFTER_MS, none), [
    "3 ready tasks are waiting: no worker is connected — start one with 'hyperloom worker 127.0.0.1 9010'",
  ]);
  assert.equal(w.observe(WAIT_WARN_AFTER_MS + 1000, none), []);
  assert.is(w.observe(WAIT_WARN_AFTER_MS + WAIT_REPEAT_MS, none).length, 1);
  assert.equal(w.observe(WAIT_WARN_AFTER_MS + WAIT_REPEAT_MS + 1, { workers: 1, withoutWorker: 0, unrunnable: 0 }), []);
  // A new episode waits the grace period again.
  const t = 100_000;
  assert.equal(w.observe(t, none), []);
  assert.is(w.observe(t + WAIT_WARN_AFTER_MS, none).length, 1);
});

test("tasks no worker can run are reported with the number of workers", () => {
  const w = new WaitingWarnings(hint);
  const c = { workers: 2, withoutWorker: 0, unrunnable: 1 };
  w.observe(0, c);
  const [line] = w.observe(WAIT_WARN_AFTER_MS, c);
  assert.match(line!, /^1 ready task is waiting: none of the 2 connected worker\(s\) can run them/);
});

test.run();
