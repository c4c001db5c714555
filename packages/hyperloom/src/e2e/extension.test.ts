import { suite } from "uvu";
import * as assert from "uvu/assert";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { LocalCluster } from "../cluster/local-cluster.js";
import { Client, Task, tasks } from "../index.js";

const root = resolve(__dirname, "..", "..", "..", "..");
const t = suite<{ cluster: LocalCluster; client: Client; dir: string }>("native task libraries");

/** Builds the Rust example (cargo) and the C example (cc) of the guide's my/count. */
function buildLibraries(dir: string): { rust: string; c: string } {
  const targetDir = process.env.CARGO_TARGET_DIR ?? join(root, "target");
  execFileSync("cargo", ["build", "-p", "hyperloom-example-count", "--message-format=short"], { cwd: root, stdio: "ignore" });
  const c = join(dir, "libcount_c.so");
  execFileSync("cc", ["-shared", "-fPIC", "-O2", "-I", join(root, "crates/loom-task/include"), join(root, "crates/loom-task/examples/count.c"), "-o", c]);
  return { rust: join(targetDir, "debug", "libhyperloom_example_count.so"), c };
}

t.before(async (ctx) => {
  ctx.dir = mkdtempSync(join(tmpdir(), "hyperloom-ext-"));
  const libs = buildLibraries(ctx.dir);
  // One worker with the Rust library, one with the C one: both register my/count... the C
  // example registers its own symbol, so each worker offers the tasks of its library.
  ctx.cluster = await LocalCluster.start({ workers: 1, cpus: 1, workerArgs: ["--extension", libs.rust] });
  ctx.client = await ctx.cluster.connect();
  (ctx as unknown as { cLib: string }).cLib = libs.c;
});
t.after(async (ctx) => {
  await ctx.client.close();
  await ctx.cluster.stop();
  rmSync(ctx.dir, { recursive: true, force: true });
});

t("my/count counts the config byte in its input (Rust library)", async ({ client }) => {
  const count = new Task("my/count", { inputs: [tasks.const("abcabca")], config: "a" });
  const r = (await client.submitOne(count).gather()) as Buffer;
  assert.is(Number(r.readBigUInt64LE(0)), 3);
});

t("my/count over an opened (memory-mapped) File, in the guide's Task form", async ({ client, dir }) => {
  const { writeFileSync } = await import("node:fs");
  const path = join(dir, "letters.txt");
  writeFileSync(path, "a".repeat(100_000) + "b".repeat(50));
  const count = new Task({ taskType: "my/count", inputs: [tasks.open(path)], config: "b" });
  const r = (await client.submitOne(count).gather()) as Buffer;
  assert.is(Number(r.readBigUInt64LE(0)), 50);
});

t("my/count reads the worker's own mapping of an opened file: no re-open (the file is deleted before the count runs)", async ({ client, dir }) => {
  const { writeFileSync, existsSync } = await import("node:fs");
  const path = join(dir, "deleted-after-open.txt");
  const size = 8 << 20;
  const content = Buffer.alloc(size, "a");
  for (let i = 0; i < size; i += 4096) content[i] = 0x62; // "b"
  writeFileSync(path, content);
  // Deletes the file, then returns its input unchanged: the stored object (the worker's mapping
  // made by `open`) is passed through, so my/count can only get the bytes from that mapping.
  const unlinkThenPass = tasks.jsTask(
    (p: string, file: unknown) => {
      (process as unknown as { getBuiltinModule(m: string): typeof import("node:fs") }).getBuiltinModule("node:fs").unlinkSync(p);
      return file;
    },
    { nDirectArgs: 1 },
  );
  const count = new Task("my/count", { inputs: [unlinkThenPass(path, tasks.open(path))], config: "b" });
  const r = (await client.submitOne(count).gather()) as Buffer;
  assert.is(existsSync(path), false, "the file was deleted before the count ran");
  assert.is(Number(r.readBigUInt64LE(0)), size / 4096);
});

t("a plan using a task type no worker has is refused, naming the type", async ({ client }) => {
  assert.throws(() => client.submitOne(new Task({ taskType: "my/unknown", inputs: [] })), /my\/unknown/);
});

t("a wrong config fails the task with the library's message; a panic fails only its task", async ({ client }) => {
  const bad = client.submitOne(new Task("my/count", { inputs: [tasks.const("abc")], config: "ab" }));
  await bad.gather().then(
    () => assert.unreachable("should fail"),
    (e: Error) => assert.match(e.message, /config/i),
  );
  const panic = client.submitOne(new Task("my/panic", { inputs: [] }));
  await panic.gather().then(
    () => assert.unreachable("should fail"),
    (e: Error) => assert.match(e.message, "panicked"),
  );
  const ok = new Task("my/count", { inputs: [tasks.const("xx")], config: "x" });
  assert.is(Number(((await client.submitOne(ok).gather()) as Buffer).readBigUInt64LE(0)), 2);
});

t("the C library works the same way", async (ctx) => {
  const cLib = (ctx as unknown as { cLib: string }).cLib;
  const cluster = await LocalCluster.start({ workers: 1, cpus: 1, workerArgs: ["--extension", cLib] });
  try {
    const client = await cluster.connect();
    const count = new Task("my/count", { inputs: [tasks.const("banana")], config: "a" });
    const r = (await client.submitOne(count).gather()) as Buffer;
    assert.is(Number(r.readBigUInt64LE(0)), 3);
    await client.close();
  } finally {
    await cluster.stop();
  }
});

t("a worker refuses a library that is not one, with a clear error", async (ctx) => {
  await LocalCluster.start({ workers: 1, cpus: 1, workerArgs: ["--extension", join(ctx.dir, "missing.so")] }).then(
    (c) => {
      void c.stop();
      assert.unreachable("the worker must not start");
    },
    (e: Error) => assert.match(e.message, /worker exited/),
  );
});

t.run();
