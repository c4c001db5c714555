import * as assert from "uvu/assert";
import { clusterSuite } from "./cluster-suite.js";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
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

t.run();
