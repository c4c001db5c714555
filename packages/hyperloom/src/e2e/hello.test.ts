import { suite } from "uvu";
import * as assert from "uvu/assert";
import { LocalCluster } from "../cluster/local-cluster.js";
import { tasks } from "../index.js";

const hello = suite<{ cluster: LocalCluster }>("hello");

hello.before(async (ctx) => {
  ctx.cluster = await LocalCluster.start({ workers: 2, cpus: 1 });
});
hello.after(async (ctx) => {
  await ctx.cluster.stop();
});

hello("const + merge through a real server and two workers gives 'Hello world!'", async ({ cluster }) => {
  const client = await cluster.connect();
  try {
    const merged = tasks.merge([tasks.const("Hello "), tasks.const("world!")]);
    const result = await client.submitOne(merged).gather();
    assert.ok(Buffer.isBuffer(result));
    assert.is((result as Buffer).toString(), "Hello world!");
    const stats = await client.stats();
    assert.is(stats.nWorkers, 2);
    assert.is(stats.nDataObjects, 0);
  } finally {
    await client.close();
  }
});

hello.run();
