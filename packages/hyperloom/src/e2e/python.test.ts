/**
 * Python function tasks (`loom/py/value`, `loom/py/call`) end to end: plans built the way the
 * original Python client builds them (test-data/python/loomclient.py, cloudpickle'd functions)
 * are submitted over the protocol to a real server and real workers with their Python pools.
 * Needs `python3` with `cloudpickle`; without them the tests are skipped, and fail when CI=true.
 */
import * as assert from "uvu/assert";
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { clusterSuite } from "./cluster-suite.js";
import { tasks } from "../index.js";
import { startWorker } from "../worker/worker.js";

const scenarios = join(__dirname, "..", "..", "test-data", "python", "scenarios.py");
const probe = spawnSync("python3", ["-c", "import cloudpickle"], { encoding: "utf8" });
const missing = probe.error ? "no python3" : probe.status !== 0 ? "python3 has no cloudpickle" : undefined;

/** Skips (prints why) when Python cannot run here; under CI that is a failure. */
function needsPython(): boolean {
  if (missing === undefined) return true;
  if (process.env.CI === "true") assert.unreachable(`${missing}: .ci/run installs cloudpickle (pip install cloudpickle)`);
  console.log(`  (skipped: ${missing}; install it with 'python3 -m pip install cloudpickle')`);
  return false;
}

/** Runs a scenario against `port`; returns its JSON facts (asserts it passed). */
function scenario(port: number, name: string, ...args: string[]): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const child = spawn("python3", [scenarios, "127.0.0.1", String(port), name, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
    child.on("exit", (code) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`scenario ${name} failed (status ${code}):\n${err}${out}`));
      const last = out.trim().split("\n").pop() ?? "{}";
      resolve(JSON.parse(last) as Record<string, unknown>);
    });
  });
}

const logs: string[] = [];
// `insecure`: the scenarios run the original's Python client, which speaks the open protocol.
const t = clusterSuite("python function tasks", { workers: 2, cpus: 2, insecure: true, onWorkerLine: (_, line) => logs.push(line) });

t("a plain call (py_task and py_call/py_value)", async ({ cluster }) => {
  if (!needsPython()) return;
  assert.equal(await scenario(cluster.port, "plain_call"), { ok: true });
});

t("direct arguments come after the context and before the inputs", async ({ cluster }) => {
  if (!needsPython()) return;
  assert.equal(await scenario(cluster.port, "direct_args"), { ok: true });
});

t("the context: task_id, and log_* lines in the worker's log", async ({ cluster }) => {
  if (!needsPython()) return;
  const facts = await scenario(cluster.port, "context");
  const id = facts.task_id as number;
  const line = logs.find((l) => l.includes("Hello was called with marker-7"));
  assert.ok(line, logs.join("\n"));
  assert.match(line!, new RegExp(`\\[info\\] PyTask id=${id}: Hello was called with marker-7$`));
  for (const [level, text] of [["warn", "warn line"], ["error", "error line"], ["error", "critical line"]]) {
    assert.ok(logs.some((l) => l.includes(`[${level}] PyTask id=${id}: ${text}`)), `${level} ${text}`);
  }
  // Debug lines are below the worker's default level.
  assert.not.ok(logs.some((l) => l.includes("debug line")));
});

t("wrap/unwrap round trips; a pyobj result is fetched as its pickle under the pyobj id", async ({ cluster }) => {
  if (!needsPython()) return;
  assert.equal(await scenario(cluster.port, "wrap_unwrap"), { ok: true });
});

t("arrays and index inputs: len, indexing, iteration, items returned; large data by file", async ({ cluster }) => {
  if (!needsPython()) return;
  assert.equal(await scenario(cluster.port, "arrays_and_indexes"), { ok: true });
});

t("task redirection to merge (2 cpus kept, items of inputs, new data)", async ({ cluster }) => {
  if (!needsPython()) return;
  assert.equal(await scenario(cluster.port, "redirect_merge"), { ok: true });
});

t("task redirection to run with stdin, $X variables and file mappings", async ({ cluster }) => {
  if (!needsPython()) return;
  assert.equal(await scenario(cluster.port, "redirect_run"), { ok: true });
});

t("the original's error texts; the worker keeps serving", async ({ cluster }) => {
  if (!needsPython()) return;
  const f = await scenario(cluster.port, "errors");
  assert.is(f.not_pyobj, "The first argument is not PyObj");
  assert.is(f.invalid, "Invalid result from python code");
  assert.match(f.exception as string, /^Python exception:\nTraceback \(most recent call last\):\n[\s\S]*ValueError: kaboom now\n$/);
});

t("a dying interpreter fails its task clearly and is replaced", async ({ cluster }) => {
  if (!needsPython()) return;
  const f = await scenario(cluster.port, "dying");
  assert.match(f.exit as string, /^Python process \(pid \d+, python3\) running the task died \(exit status 7\)/);
  assert.match(f.segv as string, /died \(killed by signal SIGSEGV\)/);
});

t("a never-ending function does not block the other calls", async ({ cluster }) => {
  if (!needsPython()) return;
  const f = await scenario(cluster.port, "forever");
  assert.is(f.ok, true);
});

t("10,000 calls, every result checked", async ({ cluster }) => {
  if (!needsPython()) return;
  const f = await scenario(cluster.port, "many", "10000");
  assert.is(f.n, 10000);
  console.log(`  (10,000 Python calls from the Python client: ${Math.round(f.per_second as number)} calls/s)`);
});

t.run();

// JS and Python calls on one worker share its cores through the same accounting.
const shared = clusterSuite("python and JS function tasks share a worker's cores", { workers: 1, cpus: 1, insecure: true });

shared("a Python call and a JS call on a 1-cpu worker never overlap", async ({ cluster, client }) => {
  if (!needsPython()) return;
  const hold = tasks.jsTask(() => {
    const start = Date.now() / 1000;
    const end = start + 0.6;
    while (Date.now() / 1000 < end) {
      // holds its core
    }
    return `${start} ${Date.now() / 1000}`;
  });
  const js = client.submitOne(hold()).gather();
  const py = scenario(cluster.port, "shared");
  const [jsInterval, facts] = await Promise.all([js, py]);
  const [a0, a1] = (jsInterval as Buffer).toString().split(" ").map(Number) as [number, number];
  const [b0, b1] = (facts.interval as string).split(" ").map(Number) as [number, number];
  assert.ok(a1 <= b0 + 0.01 || b1 <= a0 + 0.01, `JS ${a0}-${a1} and Python ${b0}-${b1} overlap on one core`);
});

shared.run();

// Missing interpreter / cloudpickle: one clear error naming what to install.
const missingSuite = clusterSuite("python function tasks without Python", { workers: 1, cpus: 1, insecure: true });

missingSuite("--python naming no interpreter: the worker refuses to start, saying what to install", async ({ cluster }) => {
  const wdir = mkdtempSync(join(tmpdir(), "hyperloom-nopython-"));
  try {
    await startWorker({ serverHost: "127.0.0.1", serverPort: cluster.port, cpus: 1, wdir, pin: false, python: "/no/such/python3" }).then(
      () => assert.unreachable("the worker must not start"),
      (e: Error) => {
        assert.match(e.message, "'/no/such/python3' was not found");
        assert.match(e.message, "pip install cloudpickle");
      },
    );
  } finally {
    rmSync(wdir, { recursive: true, force: true });
  }
});

missingSuite("an interpreter without cloudpickle: the worker refuses to start, saying what to install", async ({ cluster }) => {
  // A Python whose cloudpickle import fails: python3 with an empty, isolated module path.
  if (!needsPython()) return;
  const dir = mkdtempSync(join(tmpdir(), "hyperloom-nocloudpickle-"));
  const fake = join(dir, "python-without-cloudpickle");
  writeFileSync(fake, `#!/bin/sh\nexec python3 -I -S "$@"\n`);
  chmodSync(fake, 0o755);
  const wdir = join(dir, "w");
  try {
    const w = await startWorker({ serverHost: "127.0.0.1", serverPort: cluster.port, cpus: 1, wdir, pin: false, python: fake }).then(
      () => undefined,
      (e: Error) => e,
    );
    assert.instance(w, Error);
    assert.match((w as Error).message, "does not have: install it with");
    assert.match((w as Error).message, "-m pip install cloudpickle");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

missingSuite.run();
