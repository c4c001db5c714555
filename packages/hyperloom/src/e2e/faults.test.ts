/**
 * Faults (issue #18): each measured failure as a user meets it, over real sockets and
 * processes. Every future settles — with the right bytes or an error naming the task and the
 * cause — and nothing is left behind.
 */
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { LocalCluster } from "../cluster/local-cluster.js";
import { Client, Task, TaskFailed, tasks, type Future } from "../index.js";
import { dataFiles } from "../chaos/harness.js";
import { frame } from "../protocol/frame.js";
import { comm } from "../protocol/messages.js";
import { rawClient } from "./raw-client.js";
import { settles } from "./settles.js";

/** The outcome of a promise: its value or its error. */
async function outcome<T>(p: Promise<T>): Promise<{ value?: T; error?: Error }> {
  try {
    return { value: await p };
  } catch (e) {
    return { error: e as Error };
  }
}

async function until(cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Pids of processes whose command line contains `marker`. */
function processesWith(marker: string): number[] {
  const pids: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, "utf8").replace(/\0/g, " ");
      if (cmd.includes(marker)) pids.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** Mappings of files under the cluster's work directory in process `pid`. */
function mappedDataFiles(cluster: LocalCluster, pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/maps`, "utf8")
      .split("\n")
      .filter((l) => l.includes(cluster.workDir));
  } catch {
    return [];
  }
}

// ------------------------------------------------------------------------------------------
// 1. Another client's future

const foreign = suite<{ cluster: LocalCluster }>("faults: another client's future");
foreign.before(async (ctx) => {
  ctx.cluster = await LocalCluster.start({ workers: 1, cpus: 1 });
});
foreign.after(async (ctx) => ctx.cluster.stop());

foreign("a future of client A used by client B is refused before anything is sent, also after A closed", async ({ cluster }) => {
  const a = await cluster.connect();
  const b = await cluster.connect();
  try {
    const ofB = b.submitOne(tasks.const("data of B"));
    const ofA = a.submitOne(tasks.const("secret of A"));
    await ofA.wait();
    assert.is(ofA.taskId, ofB.taskId, "both clients number from 0: the ids clash");
    assert.throws(() => b.submit([tasks.merge([ofA, tasks.const(" (via B)")])]), /belongs to another client/);
    assert.match(String((await outcome(b.gather([ofA]))).error), /belongs to another client/);
    await a.close();
    assert.throws(() => b.submit([tasks.merge([ofA, tasks.const(" (via B)")])]), /belongs to another client/);
    // B's own future still works.
    assert.is(String(await b.submitOne(tasks.merge([ofB, tasks.const(" (via B)")])).gather()), "data of B (via B)");
    assert.is(String(await ofB.gather()), "data of B");
  } finally {
    await b.close();
  }
});

foreign("the server refuses a plan referencing an id its client does not hold, naming the task (a client without our check)", async ({ cluster }) => {
  const a = await cluster.connect();
  const { s, next } = await rawClient(cluster);
  try {
    // A's result 0 exists on the server; B (raw) numbers from 0 too.
    assert.is(String(await a.submitOne(tasks.const("secret of A")).fetch()), "secret of A");
    assert.is((await next()).type, comm.ClientResponse.Type.DICTIONARY);
    const T = comm.ClientRequest.Type;
    const constType = 7; // loom/base/const in the standard dictionary
    const mergeType = 8; // loom/base/merge
    const plan = (idBase: number, tasks: Array<{ taskType: number; config: Buffer; inputIds: number[]; result: boolean; label?: string }>): void =>
      void s.write(frame(comm.ClientRequest.encode({ type: T.PLAN, plan: { idBase, tasks } }).finish()));
    // B's plan: its own 0 is an intermediate, 1 its result.
    plan(0, [
      { taskType: constType, config: Buffer.from("data of B"), inputIds: [], result: false },
      { taskType: mergeType, config: Buffer.alloc(0), inputIds: [0], result: true },
    ]);
    assert.is((await next()).type, comm.ClientResponse.Type.TASK_FINISHED);
    // Id 0 is no result B holds (A's 0 is not B's; B's own 0 was consumed and freed): refused,
    // naming B's task and label.
    plan(2, [{ taskType: mergeType, config: Buffer.alloc(0), inputIds: [0], result: true, label: "via B" }]);
    let r = await next();
    assert.is(r.type, comm.ClientResponse.Type.ERROR);
    assert.match(Buffer.from(r.error!.errorMsg!).toString(), /^Plan rejected: task id=2 \(label 'via B'\): input id 0 (is not a result this client holds|was released)/);
    assert.is(r.error!.id, 2);
    // An id B never had: refused too.
    plan(3, [{ taskType: mergeType, config: Buffer.alloc(0), inputIds: [15], result: true }]);
    r = await next();
    assert.is(r.type, comm.ClientResponse.Type.ERROR);
    assert.match(Buffer.from(r.error!.errorMsg!).toString(), /^Plan rejected: task id=3 .*input id 15/);
    // A's result is untouched.
    assert.is((await a.stats()).nDataObjects, 2, "A's 0 and B's 1");
  } finally {
    s.destroy();
    await a.close();
  }
});

foreign.run();

// ------------------------------------------------------------------------------------------
// 2. Gather after a worker dies

const loss = suite("faults: gather after a worker dies");

/**
 * 2 workers; 12 results computed and not fetched: consts and programs (recomputable: no
 * inputs) and merges of consts (their inputs are freed once they finish, so a lost one cannot
 * be recomputed).
 */
async function lossScenario(waitForLoss: boolean): Promise<void> {
  const cluster = await LocalCluster.start({ workers: 2, cpus: 1 });
  try {
    const client = await cluster.connect();
    const expect = new Map<Future, string>();
    const fs: Future[] = [];
    for (let i = 0; i < 12; i++) {
      const v = `v${i}-` + "x".repeat(i * 10_000);
      // Recomputable (no inputs): consts, and programs that take a while, so fetches arrive
      // while they are being recomputed. Not recomputable: merges (their inputs are freed).
      const t =
        i % 3 === 0
          ? tasks.const(v)
          : i % 3 === 1
            ? tasks.merge([tasks.const(v.slice(0, 3)), tasks.const(v.slice(3))])
            : tasks.run(["/bin/sh", "-c", `sleep 0.4; printf ${v.slice(0, 4)}`]);
      const f = client.submitOne(t);
      expect.set(f, i % 3 === 2 ? v.slice(0, 4) : v);
      fs.push(f);
    }
    await client.wait(fs);
    cluster.workerProcesses[0]!.kill("SIGKILL");
    if (waitForLoss) await until(async () => (await client.stats()).nWorkers === 1, 10_000, "loss noticed");
    // Every fetch settles: right bytes, or TaskFailed naming that task and "Worker lost".
    const results = await Promise.all(fs.map((f) => outcome(settles(f.gather(), 20_000, `gather of ${f}`))));
    let ok = 0;
    results.forEach((r, i) => {
      const f = fs[i]!;
      if (r.error === undefined) {
        assert.is(String(r.value), expect.get(f), `bytes of ${f}`);
        ok++;
      } else {
        assert.ok(r.error instanceof TaskFailed, `${f}: ${r.error.message}`);
        const e = r.error as TaskFailed;
        assert.is(e.taskId, f.taskId, `the error names the task: ${e.message}`);
        assert.match(e.errorMessage, /Worker lost/);
        assert.ok(i % 3 === 1, `a task without inputs is recomputed, not failed: ${e.message}`);
      }
    });
    assert.ok(ok >= 8, "the tasks without inputs are recomputed");
    // A retry settles too (no hang), and the cluster keeps serving.
    for (const f of fs) await outcome(settles(f.fetch(), 5_000, `retry of ${f}`));
    assert.is(String(await client.submitOne(tasks.const("after")).gather()), "after");
    await until(async () => (await client.stats()).nDataObjects === 0, 5_000, "everything released");
    await client.close();
  } finally {
    await cluster.stop();
  }
}

loss("gather issued after the server has dealt with the loss", () => lossScenario(true));
loss("gather issued while lost results are being recomputed", () => lossScenario(false));

loss.run();

// ------------------------------------------------------------------------------------------
// 3, 4, 7, 10: one cluster

const files = suite<{ cluster: LocalCluster; client: Client; dir: string }>("faults: files and messages");
files.before(async (ctx) => {
  ctx.dir = mkdtempSync(join(tmpdir(), "hyperloom-faults-"));
  ctx.cluster = await LocalCluster.start({ workers: 1, cpus: 2 });
  ctx.client = await ctx.cluster.connect();
});
files.after(async (ctx) => {
  await ctx.client.close();
  await ctx.cluster.stop();
  rmSync(ctx.dir, { recursive: true, force: true });
});

files("a FIFO as open() path, run output or save target fails naming it; the worker keeps serving", async ({ client, dir }) => {
  const fifo = join(dir, "fifo");
  execFileSync("mkfifo", [fifo]);
  const opened = await outcome(settles(client.submitOne(tasks.open(fifo)).gather(), 10_000, "open of a FIFO"));
  assert.ok(opened.error instanceof TaskFailed, String(opened.error));
  assert.match(opened.error!.message, new RegExp(`'${fifo}'.*not a regular file \\(it is a FIFO\\)`));
  const out = await outcome(
    settles(client.submitOne(tasks.run(["/bin/sh", "-c", "mkfifo out"], [], { outputs: ["out"] })).gather(), 10_000, "run output FIFO"),
  );
  assert.ok(out.error instanceof TaskFailed, String(out.error));
  assert.match(out.error!.message, /Output 'out' error: not a regular file \(it is a FIFO\)/);
  const saved = await outcome(settles(client.submitOne(tasks.save(tasks.const("x"), fifo)).gather(), 10_000, "save to a FIFO"));
  assert.ok(saved.error instanceof TaskFailed, String(saved.error));
  assert.match(saved.error!.message, /not a regular file/);
  assert.is(String(await settles(client.submitOne(tasks.merge([tasks.const("still "), tasks.const("serving")])).gather(), 10_000, "later plan")), "still serving");
});

files("a file truncated after open(): later plans see the old bytes and the worker survives", async ({ cluster, client, dir }) => {
  const path = join(dir, "big.txt");
  const line = "0123456789abcdef".repeat(4) + "\n"; // 65 bytes
  const n = Math.ceil((64 << 20) / line.length);
  writeFileSync(path, line.repeat(n));
  const size = line.length * n;
  const f = client.submitOne(tasks.open(path));
  await f.wait();
  truncateSync(path, 0);
  const u64 = (b: unknown): number => Number((b as Buffer).readBigUInt64LE(0));
  const merged = client.submitOne(tasks.size([tasks.merge([f, tasks.const("!")])]));
  const lines = client.submitOne(tasks.length([tasks.split(f)]));
  assert.is(u64(await settles(merged.gather(), 30_000, "merge of the truncated file")), size + 1);
  assert.is(u64(await settles(lines.gather(), 30_000, "split of the truncated file")), n);
  const head = client.submitOne(tasks.run("/usr/bin/head -c 17", [[f, "+in"]]));
  assert.is(String(await head.gather()), line.slice(0, 17));
  f.release();
  assert.is((await client.stats()).nWorkers, 1);
  await until(() => dataFiles(cluster).length === 0, 2_000, "the snapshot is deleted with the object");
});

files("input names with folders create them inside the run directory", async ({ client }) => {
  const x = tasks.const("in a folder\n");
  const spaced = tasks.run(["/bin/cat", "a b/c d.txt"], [[x, "a b/c d.txt"]]);
  const plain = tasks.run(["/bin/cat", "a/b.txt", "a/c/d.txt"], [[x, "a/b.txt"], [tasks.const("deeper\n"), "a/c/d.txt"]]);
  const [r1, r2] = await client.gather([spaced, plain].map((t) => client.submitOne(t)));
  assert.is(String(r1), "in a folder\n");
  assert.is(String(r2), "in a folder\ndeeper\n");
  assert.throws(() => tasks.run(["/bin/cat", "x"], [[x, "a/../../x"]]), /inside the run directory/);
});

files("a failure is reported under the failing task's own id with its raw message", async ({ cluster }) => {
  const client = await cluster.connect(); // numbers from 0
  const failing = tasks.run("ls /nonexistent");
  const f = client.submitOne(tasks.merge([failing, tasks.const("x")]));
  const r = await outcome(settles(f.gather(), 10_000, "failed merge"));
  assert.ok(r.error instanceof TaskFailed, String(r.error));
  const e = r.error as TaskFailed;
  assert.is(e.taskId, 0, "the run task (id 0) failed");
  assert.is(e.label, "ls");
  assert.match(e.errorMessage, /^Program terminated with status 2\nStderr:\n.*nonexistent/s);
  assert.not.match(e.errorMessage, /Task id=/, "no nesting");
  assert.is(e.message, `Task id=0 (ls) failed: ${e.errorMessage}`);
  await client.close();
});

files.run();

// ------------------------------------------------------------------------------------------
// 5. Abandoned work

const abandoned = suite("faults: abandoned work");

abandoned("a gone client's programs are stopped and their cores freed at once", async () => {
  const cluster = await LocalCluster.start({ workers: 1, cpus: 1 });
  try {
    const a = await cluster.connect();
    const marker = `${20 + Math.random()}`.slice(0, 8);
    a.submit([tasks.run(["/bin/sleep", marker])]);
    await until(() => processesWith(`sleep ${marker}`).length > 0, 10_000, "program started");
    await a.close();
    const b = await cluster.connect();
    const started = Date.now();
    assert.is(String(await settles(b.submitOne(tasks.run("/bin/echo hi")).gather(), 5_000, "B's echo")), "hi\n");
    assert.ok(Date.now() - started < 4_000, `B waited ${Date.now() - started} ms`);
    await until(() => processesWith(`sleep ${marker}`).length === 0, 3_000, "the abandoned program is gone");
    // A gone client's function task is stopped too (its thread is terminated).
    const c = await cluster.connect();
    c.submit([tasks.jsTask(() => {
      for (;;);
    })()]);
    await new Promise((r) => setTimeout(r, 300));
    await c.close();
    assert.is(String(await settles(b.submitOne(tasks.jsTask(() => "fn ok")()).gather(), 10_000, "B's function")), "fn ok");
    await b.close();
  } finally {
    await cluster.stop();
  }
});

abandoned("a stopping worker kills every program it started", async () => {
  const cluster = await LocalCluster.start({ workers: 1, cpus: 2 });
  const marker = `${30 + Math.random()}`.slice(0, 8);
  try {
    const a = await cluster.connect();
    // One program directly, one started by a shell (the group is killed, not only the shell).
    a.submit([tasks.run(["/bin/sleep", marker]), tasks.run(["/bin/sh", "-c", `/bin/sleep ${marker}; echo`])]);
    await until(() => processesWith(`sleep ${marker}`).length >= 2, 10_000, "programs started");
  } finally {
    await cluster.stop();
  }
  await until(() => processesWith(`sleep ${marker}`).length === 0, 3_000, "no orphan program");
});

abandoned("what a program leaves running in its group is killed when it exits", async () => {
  const cluster = await LocalCluster.start({ workers: 1, cpus: 1 });
  const marker = `${50 + Math.random()}`.slice(0, 8);
  const dir = mkdtempSync(join(tmpdir(), "loom-leftover-"));
  try {
    const a = await cluster.connect();
    // A background sleep, and a background writer that would write a file 0.5 s later.
    const script = `/bin/sleep ${marker} & (/bin/sleep 0.5; echo late > ${dir}/late) & echo done`;
    const out = await settles(a.submitOne(tasks.run(["/bin/sh", "-c", script])).gather(), 10_000, "the program");
    assert.is(String(out), "done\n");
    await until(() => processesWith(`sleep ${marker}`).length === 0, 3_000, "its leftovers are gone");
    await new Promise((r) => setTimeout(r, 800));
    assert.equal(readdirSync(dir), [], "the leftover writer never wrote");
    // The worker keeps serving programs (their directories reused).
    assert.is(String(await a.submitOne(tasks.run("/bin/echo next")).gather()), "next\n");
    await a.close();
  } finally {
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

abandoned("a worker killed with SIGKILL leaves no program behind (its reaper kills them)", async () => {
  const cluster = await LocalCluster.start({ workers: 1, cpus: 1 });
  const marker = `${40 + Math.random()}`.slice(0, 8);
  try {
    const a = await cluster.connect();
    a.submit([tasks.run(["/bin/sh", "-c", `/bin/sleep ${marker}; echo`])]);
    await until(() => processesWith(`sleep ${marker}`).length > 0, 10_000, "program started");
    cluster.workerProcesses[0]!.kill("SIGKILL");
    await until(() => processesWith(`sleep ${marker}`).length === 0, 3_000, "no orphan program");
    await a.close();
  } finally {
    await cluster.stop();
  }
});

abandoned.run();

// ------------------------------------------------------------------------------------------
// 6. Poison tasks

const poison = suite("faults: poison tasks");

poison("a task that kills its workers fails after crashing 2 of them and is not retried", async () => {
  const cluster = await LocalCluster.start({ workers: 3, cpus: 1 });
  try {
    const client = await cluster.connect();
    const killer = tasks.jsTask(function killer() {
      process.kill(process.pid, "SIGKILL");
      return "never";
    })();
    const f = client.submitOne(killer);
    const r = await outcome(settles(f.gather(), 30_000, "poison task"));
    assert.ok(r.error instanceof TaskFailed, String(r.error));
    assert.match((r.error as TaskFailed).errorMessage, /crashed 2 workers/);
    assert.is((r.error as TaskFailed).taskId, f.taskId);
    await until(async () => (await client.stats()).nWorkers === 1, 5_000, "one worker left");
    assert.is(String(await client.submitOne(tasks.const("alive")).gather()), "alive");
    await client.close();
  } finally {
    await cluster.stop();
  }
});

poison("the limit is a server flag (--max-crashes 1)", async () => {
  const cluster = await LocalCluster.start({ workers: 2, cpus: 1, serverArgs: ["--max-crashes", "1"] });
  try {
    const client = await cluster.connect();
    const f = client.submitOne(tasks.jsTask(() => process.kill(process.pid, "SIGKILL"))());
    const r = await outcome(settles(f.gather(), 30_000, "poison task"));
    assert.match(String(r.error), /crashed 1 worker/);
    assert.is((await client.stats()).nWorkers, 1);
    await client.close();
  } finally {
    await cluster.stop();
  }
});

poison.run();

// ------------------------------------------------------------------------------------------
// 8. Task types of workers that join later

const late = suite<{ lib: string }>("faults: task types of workers that join later");
const root = resolve(__dirname, "..", "..", "..", "..");
late.before((ctx) => {
  execFileSync("cargo", ["build", "-p", "hyperloom-example-count", "--message-format=short"], { cwd: root, stdio: "ignore" });
  ctx.lib = join(process.env.CARGO_TARGET_DIR ?? join(root, "target"), "debug", "libhyperloom_example_count.so");
});

late("a client connected before a worker with --extension can submit its types", async ({ lib }) => {
  const cluster = await LocalCluster.start({ workers: 1, cpus: 1 });
  try {
    const client = await cluster.connect();
    const count = (): Task => new Task("my/count", { inputs: [tasks.const("abcabca")], config: "a" });
    assert.throws(() => client.submitOne(count()), /Unknown symbol 'my\/count'/);
    await cluster.addWorker(["--extension", lib]);
    await until(
      () => {
        try {
          client.symbolId("my/count");
          return true;
        } catch {
          return false;
        }
      },
      5_000,
      "the updated dictionary",
    );
    const r = (await settles(client.submitOne(count()).gather(), 10_000, "my/count")) as Buffer;
    assert.is(Number(r.readBigUInt64LE(0)), 3);
    // Standard ids did not move.
    assert.is(client.symbolId("loom/data/const"), (await cluster.connect().then(async (c) => {
      const id = c.symbolId("loom/data/const");
      await c.close();
      return id;
    })));
    await client.close();
  } finally {
    await cluster.stop();
  }
});

late.run();

// ------------------------------------------------------------------------------------------
// 9. Leaks

const leaks = suite("faults: leaks");

leaks("a released 200 MB object: data file and mapping freed within a second; nDataObjects is server-wide", async () => {
  const cluster = await LocalCluster.start({ workers: 1, cpus: 1 });
  try {
    const worker = cluster.workerProcesses[0]!.pid!;
    const a = await cluster.connect();
    const b = await cluster.connect();
    const big = (): Task => tasks.run(["/usr/bin/head", "-c", "200000000", "/dev/zero"]);
    // Fetched, then released normally.
    const f = a.submitOne(big());
    assert.is(((await f.fetch()) as Buffer).length, 200_000_000);
    assert.is((await b.stats()).nDataObjects, 1, "B sees A's object: the count is server-wide");
    f.release();
    const released = Date.now();
    await until(() => dataFiles(cluster).length === 0 && mappedDataFiles(cluster, worker).length === 0, 1_000, "freed after release");
    assert.ok(Date.now() - released <= 1_000);
    // A client that vanishes mid-fetch.
    const c = await cluster.connect();
    const g = c.submitOne(big());
    await g.wait();
    void g.fetch().catch(() => undefined);
    await new Promise((r) => setTimeout(r, 30));
    await c.close();
    const gone = Date.now();
    await until(() => dataFiles(cluster).length === 0 && mappedDataFiles(cluster, worker).length === 0, 1_500, "freed after the client vanished");
    assert.ok(Date.now() - gone <= 1_500);
    assert.is((await b.stats()).nDataObjects, 0);
    await a.close();
    await b.close();
  } finally {
    await cluster.stop();
  }
});

leaks.run();


