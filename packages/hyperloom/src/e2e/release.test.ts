import * as assert from "uvu/assert";
import { clusterSuite } from "./cluster-suite.js";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import type { Socket } from "node:net";
import { tasks, type Client } from "../index.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

const t = clusterSuite("release", { workers: 1, cpus: 1 });

async function waitForObjects(client: Client, n: number): Promise<number> {
  let seen = -1;
  for (let i = 0; i < 100; i++) {
    seen = (await client.stats()).nDataObjects;
    if (seen === n) return seen;
    gc();
    await new Promise((r) => setTimeout(r, 20));
  }
  return seen;
}

t("a future the program drops is released for it", async ({ client }) => {
  await (async () => {
    const f = client.submitOne(tasks.const("dropped"));
    await f.wait();
  })();
  assert.is(await waitForObjects(client, 0), 0);
});

t("a future fetched while it ran, then dropped, is released for it", async ({ client }) => {
  await (async () => {
    // The fetch is waiting when the task finishes: the future is watched once the fetch ends.
    const f = client.submitOne(tasks.merge([tasks.const("fetched "), tasks.const("then dropped")]));
    assert.is(String(await f.fetch()), "fetched then dropped");
  })();
  assert.is(await waitForObjects(client, 0), 0);
});

t("release is collective and explicit; a released future is not released again when collected", async ({ client }) => {
  const fs = client.submit([tasks.const("a"), tasks.const("b"), tasks.const("c")]);
  await client.wait(fs);
  assert.is((await client.stats()).nDataObjects, 3);
  client.release(fs);
  assert.is(await waitForObjects(client, 0), 0);
  fs.length = 0;
  gc();
  await new Promise((r) => setTimeout(r, 50));
  // A second RELEASE would make the server answer an error, which fails pending fetches.
  assert.is(String(await client.submitOne(tasks.const("still fine")).gather()), "still fine");
});

t("futures the program drops are released in batches (release-many), not a RELEASE each", async ({ client }) => {
  const n = 5_000;
  const socket = (client as unknown as { socket: Socket }).socket;
  await (async () => {
    const fs = client.submit(Array.from({ length: n }, (_, i) => tasks.const(`dropped ${i}`)));
    await client.wait(fs);
  })();
  const before = socket.bytesWritten;
  // Dropped: released once the drop watch has seen them held a round, then collected.
  let left = -1;
  for (let i = 0; i < 200 && left !== 0; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 25));
    if (i % 8 === 7) left = (await client.stats()).nDataObjects;
  }
  assert.is(left, 0, "every dropped future was released");
  // A RELEASE per future is 12-15 bytes; packed ids cost ~3-4 (the stats requests ~10 each).
  const sent = socket.bytesWritten - before;
  assert.ok(sent < n * 4 + 4096, `released ${n} dropped futures with ${sent} bytes`);
});

t("a future a gather released is held by nothing of the client's: it and its result are collected at once", async ({ client }) => {
  const refs = await (async () => {
    const fs = client.submit([tasks.const("kept only by the program"), tasks.merge([tasks.const("a"), tasks.const("b")])]);
    // Finished before the gather: they are in the drop watch's round when it releases them.
    await client.wait(fs);
    const values = await client.gather(fs);
    assert.equal(values.map(String), ["kept only by the program", "ab"]);
    return [...fs.map((f) => new WeakRef(f)), ...values.map((v) => new WeakRef(v))];
  })();
  // A few turns of the event loop, ~100 ms in all: well inside the drop watch's first round
  // (500 ms), which held them before (a WeakRef keeps its target until the job ends, and a busy
  // machine may leave a socket callback holding the last result a turn longer: CI, Node 22).
  for (let i = 0; i < 10 && refs.some((r) => r.deref() !== undefined); i++) {
    await new Promise((r) => setTimeout(r, 10));
    gc();
  }
  assert.equal(
    refs.map((r) => r.deref() === undefined),
    [true, true, true, true],
    "collected before the drop watch's rounds (500 ms each) passed",
  );
});

t.run();
