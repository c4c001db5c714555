import { suite } from "uvu";
import * as assert from "uvu/assert";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { native } from "./native.js";
import { alloc, comm, PROTOCOL_VERSION } from "./protocol/messages.js";

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
    .runProgram({ argv: ["/nonexistent/program"], runRoot: join(dir, "run"), files: [], outputs: ["+out"], token: 1 })
    .then(() => undefined, (e: unknown) => e as Error & { code?: string });
  assert.ok(err, "should reject");
  assert.is(err!.code, "ERR_LOOM_SPAWN");
  assert.match(err!.message, "spawning '/nonexistent/program'");
});

t("runProgram: stdin through a pipe, files, outputs as bytes or paths; the run directory is emptied and reused", async ({ dir }) => {
  const runRoot = join(dir, "reuse");
  const big = 100_000;
  const first = await native().runProgram({
    argv: ["/bin/sh", "-c", `cat; cat in.txt >&2; head -c ${big} /dev/zero > big; echo left > junk; exit 0`],
    runRoot,
    files: [{ name: "in.txt", bytes: Buffer.from("file input") }],
    stdinBytes: Buffer.from("from stdin"),
    outputs: ["+out", "big"],
    token: 2,
  });
  assert.is(first.code, 0);
  assert.is(first.outputs[0]!.bytes!.toString(), "from stdin");
  assert.ok(first.outputs[1]!.path!.startsWith(first.dir), "a large output comes back as its file");
  assert.is(statSync(first.outputs[1]!.path!).size, big);
  native().releaseRunDir(first.dir);
  let second: Awaited<ReturnType<ReturnType<typeof native>["runProgram"]>> | undefined;
  // Until the cleaner has emptied the first directory, each run gets a fresh one; those are held
  // (not released) so that the first directory is the only one that can come back.
  const held: string[] = [];
  for (let i = 0; i < 100; i++) {
    second = await native().runProgram({ argv: ["/bin/sh", "-c", "ls -A; echo oops >&2; exit 3"], runRoot, files: [], outputs: ["+out"], token: 3 });
    if (second.dir === first.dir) break;
    held.push(second.dir);
    await new Promise((r) => setTimeout(r, 10));
  }
  for (const d of held) native().releaseRunDir(d);
  assert.is(second!.dir, first.dir, "the emptied directory is reused");
  assert.is(second!.code, 3);
  assert.is(second!.stderrTail, "oops\n");
  assert.equal(second!.outputs, []);
  assert.equal(readFileSync(join(second!.dir, "+out"), "utf8").split("\n").filter(Boolean).sort(), ["+err", "+out"]);
  native().releaseRunDir(second!.dir);
});

t("runProgram: an output that is a FIFO is refused without blocking", async ({ dir }) => {
  const ended = await native().runProgram({ argv: ["/bin/sh", "-c", "mkfifo out"], runRoot: join(dir, "fifo"), files: [], outputs: ["out"], token: 4 });
  assert.is(ended.outputError, "Output 'out' error: not a regular file (it is a FIFO)");
  native().releaseRunDir(ended.dir);
});

t("openPeer frames this worker's Announce (written first on a connection the worker opens)", ({ dir }) => {
  const work = join(dir, "peer");
  mkdirSync(work);
  const core = new (native().WorkerCore)(work, 1, 4321, []);
  const frame = core.openPeer(7, 9999);
  assert.is(Number(frame.readBigUInt64LE(0)), frame.length - 8);
  assert.is(comm.Announce.decode(frame.subarray(8)).port, 4321);
});

t("scanRegister reads a first frame as the server needs it: a control connection, a worker's job id, or not a Register", () => {
  const { scanRegister } = native();
  const worker = Buffer.from(comm.Register.encode({ protocolVersion: PROTOCOL_VERSION, type: comm.Register.Type.REGISTER_WORKER, port: 9020, cpus: 2, taskTypes: ["loom/run/run"] }).finish());
  assert.equal(scanRegister(worker), { allocControl: false, jobId: "" });
  // What a worker inside a cluster job sends: its Register with our field 100 appended.
  const withJob = Buffer.from(alloc.AllocRegister.encode({ protocolVersion: PROTOCOL_VERSION, type: alloc.AllocRegister.Type.REGISTER_WORKER, jobId: "1042.pbs-head" }).finish());
  assert.equal(scanRegister(Buffer.concat([worker, withJob.subarray(withJob.indexOf(0xa2))])), { allocControl: false, jobId: "1042.pbs-head" });
  const control = Buffer.from(alloc.AllocRegister.encode({ protocolVersion: PROTOCOL_VERSION, type: alloc.AllocRegister.Type.REGISTER_ALLOC_CONTROL }).finish());
  assert.equal(scanRegister(control), { allocControl: true, jobId: "" });
  assert.is(scanRegister(Buffer.from("GET / HTTP/1.1\r\n")), null);
  assert.is(scanRegister(Buffer.from([0x10, 0x01])), null); // no protocol_version
});

t.run();
