/**
 * Allocation queues against a real one-node Slurm (scripts/slurm.sh; CI installs it). Each test
 * runs its own server; the worker jobs are real `sbatch` jobs running `hyperloom worker`.
 * Without Slurm the tests are reported skipped here, and fail when CI=true.
 */
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { execFile, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { Client, tasks } from "../index.js";
import type { QueueInfo } from "../allocator/queue.js";

const root = join(__dirname, "..", "..", "..", "..");
const cli = join(__dirname, "..", "cli", "main.js");
const slurmScript = join(root, "scripts", "slurm.sh");

interface Ctx {
  available: boolean;
  startedSlurm: boolean;
  dir: string;
}

const t = suite<Ctx>("slurm");

t.before((ctx) => {
  ctx.dir = mkdtempSync(join(tmpdir(), "hyperloom-slurm-e2e-"));
  ctx.startedSlurm = false;
  ctx.available = false;
  // HYPERLOOM_TEST_SLURM=0 skips the suite on a machine whose one Slurm instance is busy (it is
  // machine-wide: two test runs would share it); it is then reported skipped, and fails on CI.
  if (process.env.HYPERLOOM_TEST_SLURM === "0") return;
  if (spawnSync("sh", ["-c", "command -v slurmctld && command -v sbatch"]).status !== 0) return;
  const env = spawnSync("bash", [slurmScript, "env"], { encoding: "utf8" });
  process.env.SLURM_CONF = /SLURM_CONF=(\S+)/.exec(env.stdout)![1]!;
  if (spawnSync("bash", [slurmScript, "status"]).status !== 0) {
    const r = spawnSync("bash", [slurmScript, "start"], { encoding: "utf8", timeout: 120_000 });
    if (r.status !== 0) throw new Error(`scripts/slurm.sh start failed:\n${r.stderr}`);
    ctx.startedSlurm = true;
  }
  ctx.available = true;
});

t.after((ctx) => {
  if (ctx.startedSlurm) spawnSync("bash", [slurmScript, "stop"]);
  rmSync(ctx.dir, { recursive: true, force: true });
});

/** Whether the test can run; without Slurm it is skipped, and fails on CI. */
function slurm(ctx: Ctx): boolean {
  if (ctx.available) return true;
  const off = process.env.HYPERLOOM_TEST_SLURM === "0";
  if (process.env.CI === "true") assert.unreachable(off ? "HYPERLOOM_TEST_SLURM=0 under CI=true" : "Slurm is not installed (.ci/run installs it: scripts/slurm.sh install)");
  console.log(off ? "  (skipped: HYPERLOOM_TEST_SLURM=0)" : "  (skipped: no Slurm; scripts/slurm.sh install && scripts/slurm.sh start)");
  return false;
}

let servers = 0;

/**
 * A server child process on 127.0.0.1 with its log kept. It requires authentication (the
 * default): its access file is in the test's folder, which the jobs' workers (on this one node)
 * read as they would on a shared file system.
 */
async function startServer(ctx: Ctx): Promise<{ port: number; proc: ChildProcess; log: string[]; accessFile: string; connect(): Promise<Client>; stop(): Promise<void> }> {
  const accessFile = join(ctx.dir, `access-${++servers}.json`);
  // The server logs on stderr.
  const proc = spawn(process.execPath, [cli, "server", "--host", "127.0.0.1", "--port", "0", "--access-file", accessFile], { stdio: ["ignore", "inherit", "pipe"] });
  const log: string[] = [];
  const port = await new Promise<number>((resolve, reject) => {
    let port: number | undefined;
    createInterface({ input: proc.stderr! }).on("line", (line) => {
      log.push(line);
      const m = /listening on [\d.]+:(\d+)/.exec(line);
      if (m) port = Number(m[1]);
      // The access file is written after the listening line.
      if (port !== undefined && line.includes("Access file")) resolve(port);
    });
    proc.once("exit", (code) => reject(new Error(`server exited with ${code}`)));
  });
  const stop = async (): Promise<void> => {
    if (proc.exitCode !== null) return;
    const exited = new Promise((r) => proc.once("exit", r));
    proc.kill("SIGTERM");
    await exited;
  };
  return { port, proc, log, accessFile, connect: () => Client.connect("127.0.0.1", port, { accessFile }), stop };
}

/** Runs `hyperloom alloc ...` against the server (`--access-file`, and `flags`, go before any `--`). */
function alloc(server: { accessFile: string }, args: string[], flags: string[] = []): Promise<{ code: number; stdout: string; stderr: string }> {
  const dashes = args.includes("--") ? args.indexOf("--") : args.length;
  const argv = [...args.slice(0, dashes), "--access-file", server.accessFile, ...flags, ...args.slice(dashes)];
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, "alloc", ...argv], (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr }),
    );
  });
}

async function allocJson<T = QueueInfo>(server: { accessFile: string }, args: string[]): Promise<T> {
  const r = await alloc(server, args, ["--json"]);
  assert.is(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as T;
}

/** Slurm's view of job `id`: its state, or undefined once Slurm has forgotten it. */
function squeueState(id: string): string | undefined {
  const r = spawnSync("squeue", ["--noheader", "--states=all", "--format=%T", `--jobs=${id}`], { encoding: "utf8" });
  return r.status === 0 && r.stdout.trim() !== "" ? r.stdout.trim() : undefined;
}

async function until<T>(what: string, timeoutMs: number, f: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const ACTIVE = new Set(["PENDING", "CONFIGURING", "RUNNING", "COMPLETING"]);

t("200 one-cpu tasks, no workers, one queue: jobs appear, the plan completes, idle workers exit and their jobs end", async (ctx) => {
  if (!slurm(ctx)) return;
  const server = await startServer(ctx);
  const client = await server.connect();
  try {
    const dir = join(ctx.dir, "main");
    const added = await allocJson(server, ["add", "slurm", "--name", "main", "--time-limit", "10m", "--cpus", "1", "--max-allocs", "2", "--idle-timeout", "3s", "--dir", dir]);
    assert.equal([added.name, added.state, added.cpus, added.maxAllocs, added.timeLimitSecs, added.idleTimeoutSecs], ["main", "active", 1, 2, 600, 3]);
    assert.equal(added.jobs, []);
    const futures = client.submit(Array.from({ length: 200 }, (_, i) => tasks.run(["/bin/echo", `task ${i}`])));
    // Watch the queue while the plan runs.
    const seen = new Set<string>();
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const info = await allocJson(server, ["info", "main"]);
        for (const j of info.jobs) seen.add(j.id);
        await new Promise((r) => setTimeout(r, 300));
      }
    })();
    const results = await client.gather(futures);
    watching = false;
    await watcher;
    assert.equal(
      results.map((b) => b.toString()),
      Array.from({ length: 200 }, (_, i) => `task ${i}\n`),
    );
    const info = await allocJson(server, ["info", "main"]);
    for (const j of info.jobs) seen.add(j.id);
    assert.ok(seen.size >= 1 && seen.size <= 2, `jobs within --max-allocs: ${[...seen].join(", ")}`);
    assert.ok(server.log.some((l) => /worker \d+ registered/.test(l)), "workers of the jobs connected");
    assert.equal(info.errors, []);
    // The results are gathered (and released): the workers are idle, exit after 3 s, and their jobs end.
    const ended = await until("the jobs to end", 60_000, async () => {
      const i = await allocJson(server, ["info", "main"]);
      return i.jobs.every((j) => j.phase === "ended") ? i : undefined;
    });
    assert.ok(ended.jobs.every((j) => j.state === "COMPLETED" || j.state === "GONE"), JSON.stringify(ended.jobs));
    for (const id of seen) assert.not.ok(ACTIVE.has(squeueState(id) ?? "GONE"), `job ${id} still active in Slurm`);
    assert.is((await client.stats()).nWorkers, 0);
    assert.ok(server.log.some((l) => /Letting idle worker go/.test(l)));
    // The generated script and the jobs' output are in the queue's directory.
    const script = readFileSync(join(dir, "hyperloom-main.sbatch"), "utf8");
    assert.match(script, "#SBATCH --cpus-per-task=1");
    // The jobs' workers authenticate with the server's access file (never its secret on the command line).
    assert.match(script, `--access-file ${server.accessFile}`);
    assert.not.match(script, JSON.parse(readFileSync(server.accessFile, "utf8")).secret as string);
    const first = [...seen][0]!;
    assert.match(readFileSync(join(dir, `job-${first}.out`), "utf8"), new RegExp(`1 cpus, work dir .*, job ${first}`));
  } finally {
    await client.close();
    await server.stop();
  }
});

t("a queue with a bad partition reports Slurm's error and backs off instead of submitting in a loop", async (ctx) => {
  if (!slurm(ctx)) return;
  const server = await startServer(ctx);
  const client = await server.connect();
  try {
    const q = await allocJson(server, ["add", "slurm", "--name", "bad", "--time-limit", "5m", "--dir", join(ctx.dir, "bad"), "--", "--partition=no-such-partition"]);
    assert.equal(q.extraArgs, ["--partition=no-such-partition"]);
    const f = client.submitOne(tasks.run(["/bin/echo", "never"]));
    const info = await until("the submission error", 30_000, async () => {
      const i = await allocJson(server, ["info", "bad"]);
      return i.errors.length > 0 ? i : undefined;
    });
    assert.match(info.errors[0]!.message, "sbatch: error: Batch job submission failed: Invalid partition name specified");
    assert.is(info.state, "backing-off");
    assert.equal(info.jobs, []);
    // 12 s later: at most one more attempt (back-off 10 s, then 20 s).
    await new Promise((r) => setTimeout(r, 12_000));
    const later = await allocJson(server, ["info", "bad"]);
    assert.ok(later.errors.length <= 2, `${later.errors.length} attempts in 12 s`);
    assert.is(later.failures, later.errors.length);
    // What a user reads.
    const text = await alloc(server, ["info", "bad"]);
    assert.match(text.stdout, "queue bad (slurm): backing-off until");
    assert.match(text.stdout, "Invalid partition name specified");
    const list = await alloc(server, ["list"]);
    assert.match(list.stdout, /^bad {2}slurm {2}backing-off {2}0 queued, 0 running {2}0 worker\(s\) {2}[12] recent error\(s\)\n$/);
    // Refused requests say why; the server keeps serving.
    const dup = await alloc(server, ["add", "slurm", "--name", "bad", "--time-limit", "5m"]);
    assert.is(dup.code, 1);
    assert.match(dup.stderr, "hyperloom: a queue named 'bad' exists already");
    const missing = await alloc(server, ["info", "nope"]);
    assert.match(missing.stderr, "no allocation queue named 'nope'");
    await allocJson(server, ["remove", "bad"]);
    void f;
  } finally {
    await client.close();
    await server.stop();
  }
});

t("alloc remove cancels the queue's pending jobs", async (ctx) => {
  if (!slurm(ctx)) return;
  const server = await startServer(ctx);
  const client = await server.connect();
  try {
    // --begin keeps the job pending.
    await allocJson(server, ["add", "slurm", "--name", "later", "--time-limit", "5m", "--dir", join(ctx.dir, "later"), "--", "--begin=now+1hour"]);
    client.submitOne(tasks.run(["/bin/echo", "x"]));
    const info = await until("a pending job", 30_000, async () => {
      const i = await allocJson(server, ["info", "later"]);
      return i.jobs.some((j) => j.state === "PENDING") ? i : undefined;
    });
    const id = info.jobs[0]!.id;
    assert.is(info.jobs[0]!.reason, "BeginTime");
    assert.is(squeueState(id), "PENDING");
    const removed = await alloc(server, ["remove", "later"]);
    assert.is(removed.code, 0, removed.stderr);
    assert.match(removed.stdout, "removed queue later (slurm): removing");
    await until("Slurm to cancel the job", 20_000, () => (ACTIVE.has(squeueState(id) ?? "GONE") ? undefined : true));
    assert.is(squeueState(id) ?? "CANCELLED", "CANCELLED");
    await until("the queue to go", 20_000, async () => ((await allocJson<{ queues: QueueInfo[] }>(server, ["list"])).queues.length === 0 ? true : undefined));
    assert.equal((await alloc(server, ["list"])).stdout, "no allocation queues\n");
  } finally {
    await client.close();
    await server.stop();
  }
});

t("by hand: `srun hyperloom worker` inside an allocation takes its cpus and id from the job", async (ctx) => {
  if (!slurm(ctx)) return;
  const server = await startServer(ctx);
  const client = await server.connect();
  let job = "";
  try {
    const out = join(ctx.dir, "manual-%j.out");
    const wrap = `srun ${process.execPath} ${cli} worker 127.0.0.1 ${server.port} --nopin --access-file ${server.accessFile}`;
    const r = spawnSync("sbatch", ["--parsable", "--cpus-per-task=2", "--time=5", `--output=${out}`, `--wrap=${wrap}`], { encoding: "utf8" });
    assert.is(r.status, 0, r.stderr);
    job = r.stdout.trim();
    await until("the worker", 60_000, async () => ((await client.stats()).nWorkers === 1 ? true : undefined));
    // Two-cpu tasks run: the worker took the job's two cpus.
    const results = await client.gather(client.submit([0, 1, 2].map((i) => tasks.run(["/bin/echo", `two ${i}`], [], { request: tasks.cpus(2) }))));
    assert.equal(results.map(String), ["two 0\n", "two 1\n", "two 2\n"]);
    const log = readFileSync(out.replace("%j", job), "utf8");
    assert.match(log, new RegExp(`2 cpus, work dir \\S+-job${job}\\.0, job ${job} task 0`));
  } finally {
    if (job) spawnSync("scancel", [job]);
    await client.close();
    await server.stop();
  }
  await until("the job to end", 30_000, () => (ACTIVE.has(squeueState(job) ?? "GONE") ? undefined : true));
});

t("a worker whose job reaches its time limit hands its tasks back and the plan completes", async (ctx) => {
  if (!slurm(ctx)) return;
  const server = await startServer(ctx);
  const client = await server.connect();
  try {
    const dir = join(ctx.dir, "short");
    // Two minutes: Slurm signals the worker 12 s before the limit (up to 60 s earlier), so the
    // first job ends with 20 x 6 s of work not done.
    await allocJson(server, ["add", "slurm", "--name", "short", "--time-limit", "2m", "--cpus", "1", "--max-allocs", "1", "--idle-timeout", "2s", "--dir", dir]);
    const futures = client.submit(Array.from({ length: 20 }, (_, i) => tasks.run(["/bin/sh", "-c", `sleep 6; echo slow ${i}`])));
    const results = await client.gather(futures);
    assert.equal(
      results.map(String),
      Array.from({ length: 20 }, (_, i) => `slow ${i}\n`),
    );
    const info = await allocJson(server, ["info", "short"]);
    assert.ok(info.jobs.length >= 2, `a second job took over: ${JSON.stringify(info.jobs)}`);
    assert.equal(info.errors, []);
    const first = info.jobs[0]!;
    assert.is(first.phase, "ended");
    // The worker was warned (not just killed at the limit, which also hands the tasks back).
    const out = readFileSync(join(dir, `job-${first.id}.out`), "utf8");
    assert.match(out, "The job's time limit is near: handing the tasks back to the server and stopping", `job ${first.id}'s output:\n${out}`);
    assert.not.match(out, "CANCELLED AT", `the worker left before the limit; job ${first.id}'s output:\n${out}`);
  } finally {
    await client.close();
    await server.stop();
  }
});

t.run();
