import { suite } from "uvu";
import * as assert from "uvu/assert";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { native } from "./native.js";
import { comm } from "./protocol/messages.js";

const t = suite<{ dir: string }>("addon: error codes and peer connections");

t.before((ctx) => {
  ctx.dir = mkdtempSync(join(tmpdir(), "hyperloom-native-"));
});
t.after((ctx) => rmSync(ctx.dir, { recursive: true, force: true }));

/** The `code` of what `f` throws. */
function codeOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  assert.unreachable("should throw");
  return undefined;
}

t("a task library that cannot be loaded: ERR_LOOM_EXTENSION, naming the path", ({ dir }) => {
  const work = join(dir, "ext");
  mkdirSync(work);
  try {
    new (native().WorkerCore)(work, 1, 0, [join(dir, "missing.so")]);
    assert.unreachable("should throw");
  } catch (e) {
    assert.is((e as { code?: string }).code, "ERR_LOOM_EXTENSION");
    assert.match((e as Error).message, "missing.so");
  }
});

t("a work directory already in use: ERR_LOOM_WORK_DIR", ({ dir }) => {
  const work = join(dir, "used");
  mkdirSync(join(work, "data"), { recursive: true });
  assert.is(codeOf(() => new (native().WorkerCore)(work, 1, 0, [])), "ERR_LOOM_WORK_DIR");
});

t("a broken server stream: ERR_LOOM_SERVER_STREAM; the core keeps serving", ({ dir }) => {
  const work = join(dir, "stream");
  mkdirSync(work);
  const core = new (native().WorkerCore)(work, 1, 0, []);
  const huge = Buffer.alloc(8);
  huge.writeBigUInt64LE(1n << 40n);
  assert.is(codeOf(() => core.onServerData(huge)), "ERR_LOOM_SERVER_STREAM");
  assert.ok(core.registerFrame().length > 8);
});

t("a program that cannot start rejects with ERR_LOOM_SPAWN", async ({ dir }) => {
  const err = await native()
    .runProgram(["/nonexistent/program"], dir, { stderr: join(dir, "stderr") }, 1)
    .then(() => undefined, (e: unknown) => e as Error & { code?: string });
  assert.ok(err, "should reject");
  assert.is(err!.code, "ERR_LOOM_SPAWN");
  assert.match(err!.message, "spawning '/nonexistent/program'");
});

t("openPeer frames this worker's Announce (written first on a connection the worker opens)", ({ dir }) => {
  const work = join(dir, "peer");
  mkdirSync(work);
  const core = new (native().WorkerCore)(work, 1, 4321, []);
  const frame = core.openPeer(7, 9999);
  assert.is(Number(frame.readBigUInt64LE(0)), frame.length - 8);
  assert.is(comm.Announce.decode(frame.subarray(8)).port, 4321);
});

t.run();
