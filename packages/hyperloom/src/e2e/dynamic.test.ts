import { suite } from "uvu";
import * as assert from "uvu/assert";
import { LocalCluster } from "../cluster/local-cluster.js";
import { Client, tasks } from "../index.js";

const t = suite<{ cluster: LocalCluster; client: Client }>("dynamic slice and get");

t.before(async (ctx) => {
  ctx.cluster = await LocalCluster.start({ workers: 2, cpus: 1 });
  ctx.client = await ctx.cluster.connect();
});
t.after(async (ctx) => {
  await ctx.client.close();
  await ctx.cluster.stop();
});

const items = (): ReturnType<typeof tasks.arrayMake> =>
  tasks.arrayMake(Array.from({ length: 10 }, (_, i) => tasks.const(String(i))));

t("dslice: the consumer runs once per slice and its result is the array of those runs", async ({ client }) => {
  const perSlice = tasks.length(tasks.dslice(items()));
  const result = (await client.submitOne(perSlice).gather()) as Buffer[];
  assert.ok(Array.isArray(result) && result.length > 1, `expected several slices, got ${result.length}`);
  const total = result.reduce((s, b) => s + Number(b.readBigUInt64LE(0)), 0);
  assert.is(total, 10);
});

t("dget: the consumer runs once per element", async ({ client }) => {
  const perItem = tasks.merge([tasks.dget(items()), tasks.const("!")]);
  const result = (await client.submitOne(perItem).gather()) as Buffer[];
  assert.equal(result.map(String), Array.from({ length: 10 }, (_, i) => `${i}!`));
});

t.run();
