import { suite } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LocalCluster } from "../cluster/local-cluster.js";
import { Client, LoomError, tasks } from "../index.js";

const t = suite<{ cluster: LocalCluster; client: Client; dir: string }>("built-in tasks");

t.before(async (ctx) => {
  ctx.cluster = await LocalCluster.start({ workers: 2, cpus: 1 });
  ctx.client = await ctx.cluster.connect();
  ctx.dir = mkdtempSync(join(tmpdir(), "hyperloom-test-"));
});
t.after(async (ctx) => {
  await ctx.client.close();
  await ctx.cluster.stop();
  rmSync(ctx.dir, { recursive: true, force: true });
});

const u64 = (b: unknown): number => Number((b as Buffer).readBigUInt64LE(0));
const str = (b: unknown): string => (b as Buffer).toString();

t("collective gather of several constants", async ({ client }) => {
  const fs = client.submit([tasks.const("A1"), tasks.const("B22"), tasks.const("C333")]);
  assert.equal((await client.gather(fs)).map(str), ["A1", "B22", "C333"]);
});

t("merge with a delimiter, of zero inputs, and of empty data", async ({ client }) => {
  const [a, b, c] = client.submit([
    tasks.merge([tasks.const("a"), tasks.const("bb"), tasks.const("ccc")], "--"),
    tasks.merge([], "--"),
    tasks.merge([tasks.const(""), tasks.const("")], ""),
  ]);
  assert.is(str(await a!.gather()), "a--bb--ccc");
  assert.is(str(await b!.gather()), "");
  assert.is(str(await c!.gather()), "");
});

t("split, size, length, get and slice as the spec shows", async ({ client }) => {
  const lines = tasks.split(tasks.const("l1\nl2\nl3\n"));
  const fs = client.submit([tasks.size(lines), tasks.length(lines), tasks.get(lines, 1), tasks.slice(lines, 1, 3), tasks.slice(lines, 2, 60)]);
  const [size, len, g, s, s2] = await client.gather(fs);
  assert.is(u64(size), 9 + 8 * 4);
  assert.is(u64(len), 3);
  assert.is(str(g), "l2\n");
  assert.is(str(s), "l2\nl3\n");
  assert.is(str(s2), "l3\n");
});

t("arrays: make, get, slice, size and length, fetched as arrays", async ({ client }) => {
  const c = tasks.const("x".repeat(25));
  const arr = tasks.arrayMake([c, c]);
  const items = tasks.arrayMake(["0", "1", "2", "3", "4"].map((v) => tasks.const(v)));
  const fs = client.submit([arr, tasks.size(arr), tasks.length(arr), tasks.get(items, 3), tasks.slice(items, 2, 4), tasks.slice(items, 4, 100), tasks.arrayMake([])]);
  const [a, size, len, g, s, s2, empty] = await client.gather<unknown>(fs);
  assert.equal((a as Buffer[]).map(str), ["x".repeat(25), "x".repeat(25)]);
  assert.is(u64(size), 50);
  assert.is(u64(len), 2);
  assert.is(str(g), "3");
  assert.equal((s as Buffer[]).map(str), ["2", "3"]);
  assert.equal((s2 as Buffer[]).map(str), ["4"]);
  assert.equal(empty, []);
});

t("get out of range and get on plain data fail with the spec's messages", async ({ client }) => {
  const arr = tasks.arrayMake([tasks.const("only")]);
  const f = client.submitOne(tasks.get(arr, 3));
  try {
    await f.gather();
    assert.unreachable("should fail");
  } catch (e) {
    assert.match((e as Error).message, "index 3 is out of range (length=1)");
  }
  const g = client.submitOne(tasks.get(tasks.const(""), 0));
  try {
    await g.gather();
    assert.unreachable("should fail");
  } catch (e) {
    assert.match((e as Error).message, "loom/data/get on RawData");
  }
});

t("open gives the file's content; save writes a file; a missing file fails naming the path", async ({ client, dir }) => {
  const path = join(dir, "input.txt");
  writeFileSync(path, "file-content\n");
  const out = join(dir, "saved.txt");
  const [opened, merged, saved] = client.submit([tasks.open(path), tasks.merge([tasks.open(path)]), tasks.save(tasks.const("to-be-saved"), out)]);
  assert.is(str(await opened!.gather()), "file-content\n");
  assert.is(str(await merged!.gather()), "file-content\n");
  assert.is(str(await saved!.gather()), "");
  assert.is(readFileSync(out, "utf8"), "to-be-saved");
  const missing = client.submitOne(tasks.open(join(dir, "nope.txt")));
  try {
    await missing.gather();
    assert.unreachable("should fail");
  } catch (e) {
    assert.match((e as Error).message, "nope.txt");
  }
});

t("futures as inputs: gradual submission computes a shared task once", async ({ client }) => {
  const first = client.submitOne(tasks.const("first"));
  await first.wait();
  const second = client.submitOne(tasks.merge([first, tasks.const("+second")]));
  assert.is(str(await second.gather()), "first+second");
  assert.is(str(await first.gather()), "first");
  assert.throws(() => client.submitOne(tasks.merge([first])), (e: unknown) => e instanceof LoomError && /Inactive future/.test((e as Error).message));
});

t("after everything is gathered the server holds no data objects", async ({ client }) => {
  const f = client.submitOne(tasks.const("to-release"));
  await f.fetch();
  f.release();
  const s = await client.stats();
  assert.is(s.nDataObjects, 0);
  assert.is(s.nWorkers, 2);
});

t.run();
