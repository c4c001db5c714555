import * as assert from "uvu/assert";
import { clusterSuite } from "./cluster-suite.js";
import { tasks } from "../index.js";

const t = clusterSuite("dynamic slice and get", { workers: 2, cpus: 1 });

const items = (): ReturnType<typeof tasks.arrayMake> =>
  tasks.arrayMake(Array.from({ length: 10 }, (_, i) => tasks.const(String(i))));

t("dslice: the consumer runs once per slice and its result is the array of those runs", async ({ client }) => {
  const perSlice = tasks.length(tasks.dslice(items()));
  const result = await client.submitOne(perSlice).gather<Buffer[]>();
  assert.ok(Array.isArray(result) && result.length > 1, `expected several slices, got ${result.length}`);
  const total = result.reduce((s, b) => s + Number(b.readBigUInt64LE(0)), 0);
  assert.is(total, 10);
});

t("dget: the consumer runs once per element", async ({ client }) => {
  const perItem = tasks.merge([tasks.dget(items()), tasks.const("!")]);
  const result = await client.submitOne(perItem).gather<Buffer[]>();
  assert.equal(result.map(String), Array.from({ length: 10 }, (_, i) => `${i}!`));
});

t.run();
