/**
 * Checkpoints end to end (spec 8): written atomically by the worker, reported finished only once
 * written, failures with the original's messages; `submit(..., { load: true })` loads instead of
 * computing, planning stops at loadable tasks, a loaded checkpoint is fetchable and usable as an
 * input on any worker; and the user's story: kill everything half-way, rerun with `load`.
 */
import * as assert from "uvu/assert";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { clusterSuite } from "./cluster-suite.js";
import { LocalCluster } from "../cluster/local-cluster.js";
import { LoomError, Task, TaskFailed, tasks, type Client } from "../index.js";

const dir = mkdtempSync(join(tmpdir(), "hyperloom-checkpoint-"));
const t = clusterSuite("checkpoint", { workers: 2, cpus: 2 });
t.after(() => rmSync(dir, { recursive: true, force: true }));

/** A fresh folder for one test. */
function folder(name: string): string {
  const d = join(dir, name);
  mkdirSync(d, { recursive: true });
  return d;
}

/** A task that appends `name` to `log` each time it is computed and returns `value`. */
function counted(log: string, name: string, value: string, sleepS = 0): Task {
  const sh = `${sleepS ? `sleep ${sleepS}; ` : ""}echo ${name} >> '${log}'; printf '%s' '${value}'`;
  return tasks.run(["/bin/sh", "-c", sh]);
}

/** The names `counted` tasks logged (sorted), or [] when none ran. */
function computed(log: string): string[] {
  return existsSync(log) ? readFileSync(log, "utf8").split("\n").filter(Boolean).sort() : [];
}

function withCheckpoint<T extends Task<unknown>>(task: T, path: string): T {
  task.checkpointPath = path;
  return task;
}

async function failureOf(p: Promise<unknown>): Promise<TaskFailed> {
  try {
    await p;
  } catch (e) {
    if (e instanceof TaskFailed) return e;
    throw e;
  }
  throw new Error("expected the task to fail");
}

t("a relative checkpoint path is refused when the task is built", () => {
  assert.throws(() => new Task("loom/data/const", { checkpointPath: "relative/x" }), (e: unknown) => e instanceof LoomError && /Checkpoint has to be absolute path/.test(String(e)));
  const c = tasks.const("x");
  assert.throws(() => (c.checkpointPath = "x"), /Checkpoint has to be absolute path/);
  assert.is(c.checkpointPath, undefined);
});

t("results are written atomically where the task says; the client sees them finished", async ({ client }) => {
  const d = folder("written");
  const a = withCheckpoint(tasks.const("alpha"), join(d, "a"));
  const big = "x".repeat(200_000); // above 64 KiB: a file on the worker
  const b = withCheckpoint(tasks.merge([a, tasks.const(big)]), join(d, "b"));
  const [fa, fb] = client.submit([a, b]);
  assert.is(String(await fa!.gather()), "alpha");
  assert.is(String(await fb!.gather()), "alpha" + big);
  assert.is(readFileSync(join(d, "a"), "utf8"), "alpha");
  assert.is(readFileSync(join(d, "b"), "utf8"), "alpha" + big);
  assert.equal(readdirSync(d).sort(), ["a", "b"]); // no <path>.loom.tmp left
});

t("a write that fails fails the task with the original's message; independent work continues", async ({ client }) => {
  const d = folder("unwritable");
  const notADir = join(d, "file");
  writeFileSync(notADir, "");
  const path = join(notADir, "cp");
  const a = withCheckpoint(tasks.const("abc"), path);
  const dep = tasks.merge([a, tasks.const("!")]);
  const other = tasks.const("independent");
  const [fa, fdep, fother] = client.submit([a, dep, other]);
  const e = await failureOf(fa!.gather());
  assert.is(e.errorMessage, `Writing checkpoint '${path}' failed. Cannot create ${path}.loom.tmp:Not a directory`);
  const e2 = await failureOf(fdep!.gather());
  assert.ok(e2.errorMessage.includes("Cannot create"), e2.message);
  assert.is(String(await fother!.gather()), "independent");
});

t("a result that is not plain data fails naming its kind", async ({ client }) => {
  const d = folder("kinds");
  const arr = withCheckpoint(tasks.arrayMake([tasks.const("a"), tasks.const("b")]), join(d, "arr"));
  const value = withCheckpoint(tasks.jsValue({ n: 1 }), join(d, "value"));
  const [fa, fv] = client.submit([arr, value]);
  assert.is((await failureOf(fa!.gather())).errorMessage, "Data 'Array' cannot be checkpointed");
  assert.is((await failureOf(fv!.gather())).errorMessage, "Data 'JsObj' cannot be checkpointed");
  assert.not.ok(existsSync(join(d, "arr")));
  assert.is(String(await client.submitOne(tasks.const("still serving")).gather()), "still serving");
});

t("load: existing checkpoints are loaded, what only they needed is not computed (spec 8 example)", async ({ client }) => {
  const d = folder("load");
  const log = join(d, "log");
  for (let i = 1; i <= 4; i++) writeFileSync(join(d, `f${i}`), `[${i}]`);
  const build = (): Task => {
    const [t1, t2, t3, t4] = [1, 2, 3, 4].map((i) => counted(log, `t${i}`, `$t${i}$`));
    withCheckpoint(t1!, join(d, "f1"));
    withCheckpoint(t2!, join(d, "f2"));
    const x1 = tasks.merge([t1!, t2!, t3!]);
    const x2 = withCheckpoint(tasks.merge([t1!, x1]), join(d, "f3"));
    const x3 = withCheckpoint(tasks.merge([t4!, t4!]), join(d, "f4"));
    return withCheckpoint(tasks.merge([x3, x1, x2, t1!, t2!, t3!]), join(d, "f5"));
  };
  const result = await client.submitOne(build(), { load: true }).gather();
  assert.is(String(result), "[4][1][2]$t3$[3][1][2]$t3$");
  assert.equal(computed(log), ["t3"]); // t1, t2 loaded; t4 needed only by the loaded x3
  // The missing checkpoint of the computed result was written.
  assert.is(readFileSync(join(d, "f5"), "utf8"), "[4][1][2]$t3$[3][1][2]$t3$");
  // Without `load`, everything runs again (and the checkpoints are rewritten).
  rmSync(log);
  assert.is(String(await client.submitOne(build()).gather()), "$t4$$t4$$t1$$t2$$t3$$t1$$t1$$t2$$t3$$t1$$t2$$t3$");
  assert.equal(computed(log), ["t1", "t2", "t3", "t4"]);
  assert.is(readFileSync(join(d, "f1"), "utf8"), "$t1$");
});

t("load: a missing checkpoint is computed; one that cannot be loaded fails only that task", async ({ client }) => {
  const d = folder("fallback");
  const log = join(d, "log");
  const broken = join(d, "broken");
  mkdirSync(broken); // exists on the server's file system, but is no file a worker can load
  const missing = withCheckpoint(counted(log, "missing", "M"), join(d, "missing"));
  const bad = withCheckpoint(counted(log, "bad", "B"), broken);
  const dep = tasks.merge([bad, tasks.const("!")]);
  const [fm, fb, fdep] = client.submit([missing, bad, dep], { load: true });
  assert.is(String(await fm!.gather()), "M");
  const e = await failureOf(fb!.gather());
  assert.is(e.errorMessage, `File '${broken}' does not exists`);
  assert.ok((await failureOf(fdep!.gather())).message.includes("does not exists"));
  assert.equal(computed(log), ["missing"]);
  assert.is(readFileSync(join(d, "missing"), "utf8"), "M");
});

t("a loaded checkpoint is fetched as plain data and is an input on any worker", async ({ client }) => {
  const d = folder("fetch");
  const parts = [0, 1, 2, 3].map((i) => String(i).repeat(100_000 + i));
  parts.forEach((p, i) => writeFileSync(join(d, `p${i}`), p));
  const loaded = parts.map((_, i) => withCheckpoint(tasks.const("never computed"), join(d, `p${i}`)));
  // Four light loads spread over the two workers; the merge needs some of them transferred.
  const merged = tasks.merge(loaded);
  const futures = client.submit([...loaded, merged], { load: true });
  const all = await client.gather(futures);
  parts.forEach((p, i) => assert.ok(Buffer.from(p).equals(all[i] as Buffer), `part ${i}`));
  assert.ok(Buffer.from(parts.join("")).equals(all[4] as Buffer));
  // A small one too (kept in memory by a computed task, a file when loaded).
  writeFileSync(join(d, "small"), "tiny");
  const small = withCheckpoint(tasks.const("never computed"), join(d, "small"));
  assert.is(String(await client.submitOne(small, { load: true }).gather()), "tiny");
});

t.run();

// ---------------------------------------------------------------------------------------------
// The user's story: a pipeline with checkpoints, everything killed half-way, rerun with `load`.

const story = clusterSuite("checkpoint rerun", { workers: 1, cpus: 1 });
story.after(() => rmSync(dir, { recursive: true, force: true }));

/** The pipeline: 6 items, each `a_i` (quick) then `b_i` (slow, on a_i), then their merge. */
function pipeline(log: string, cp: string | undefined): Task {
  const bs: Task[] = [];
  for (let i = 0; i < 6; i++) {
    const a = counted(log, `a${i}`, `item ${i};`);
    const b = tasks.run(["/bin/sh", "-c", `sleep 0.4; echo b${i} >> '${log}'; cat in; printf ' done'`], [[a, "in"]]);
    if (cp !== undefined) {
      a.checkpointPath = join(cp, `a${i}`);
      b.checkpointPath = join(cp, `b${i}`);
    }
    bs.push(b);
  }
  const all = tasks.merge(bs, "\n");
  if (cp !== undefined) all.checkpointPath = join(cp, "all");
  return all;
}

story("kill everything half-way, rerun with load: finished work is not recomputed, same bytes", async ({ client }) => {
  const d = folder("story");
  const expected = await client.submitOne(pipeline(join(d, "log-reference"), undefined)).gather();

  const cp = folder("story/cp");
  const log = join(d, "log");
  const first = await LocalCluster.start({ workers: 1, cpus: 1 });
  const c1: Client = await first.connect();
  const lost = c1.submitOne(pipeline(log, cp)).gather().catch((e: unknown) => e);
  // Half-way: some slow tasks finished and checkpointed.
  for (let i = 0; i < 1200 && readdirSync(cp).filter((f) => f.startsWith("b") && !f.endsWith(".tmp")).length < 3; i++) {
    await new Promise((r) => setTimeout(r, 50));
  }
  for (const p of [first.serverProcess, ...first.workerProcesses]) p.kill("SIGKILL");
  assert.instance(await lost, Error); // the first run never finished
  await c1.close();
  await first.stop();
  const saved = readdirSync(cp).filter((f) => !f.endsWith(".loom.tmp"));
  assert.ok(saved.some((f) => f.startsWith("b")) && !saved.includes("all"), `saved: ${saved.join(",")}`);

  // A program the killed worker started still runs to its end (it is not in the worker's
  // process group): let it finish before the log is reset.
  await new Promise((r) => setTimeout(r, 1000));
  rmSync(log);
  const rerun = await client.submitOne(pipeline(log, cp), { load: true }).gather();
  assert.ok(Buffer.from(expected).equals(rerun), `${rerun}`);
  // Exactly the tasks without a checkpoint ran again.
  const notSaved = [0, 1, 2, 3, 4, 5].flatMap((i) => [`a${i}`, `b${i}`]).filter((n) => !saved.includes(n)).sort();
  assert.equal(computed(log), notSaved);
  assert.ok(notSaved.length < 12 && notSaved.length > 0);
  assert.ok(Buffer.from(expected).equals(readFileSync(join(cp, "all"))));
});

story.run();
