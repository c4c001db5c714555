#!/usr/bin/env node
// Startup benchmark (issue #26): how soon after `exec` a server accepts connections, and a worker
// is registered with a running server; for `hyperloom server|worker` and for the
// original-compatible `loom-server`/`loom-worker` (the original's test harness starts those).
// Also the floor: a bare `node -e 0` until it exits, in the same environment.
//   node bench/startup/run.mjs [--reps 10] [--json] [--baseline <dir>]
// --baseline: another build's `packages/hyperloom` directory (e.g. a worktree of main, built):
// each repetition runs both builds, in alternating order, and the table adds the ratio
// ours / baseline taken pair by pair (a shared machine's drift hits both alike).
// Targets: server accepting <= 100 ms, worker registered <= 250 ms (the original's test harness
// waits 0.25 s). Figures are min/median/max over the repetitions.
// NODE_EXTRA_CA_CERTS: Node 20 loads those certificates (and its own root store) into OpenSSL
// before running any JavaScript, on every start (Node >= 22 defers it to the first TLS use);
// the bare-node row pays it too, and the first line says whether it is set.
import { spawn } from "node:child_process";
import { connect, createServer } from "node:net";
import { createInterface } from "node:readline";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir, cpus, loadavg } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const now = () => Number(process.hrtime.bigint()) / 1e6;
const args = process.argv.slice(2);
const opt = (name) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const reps = Number(opt("--reps") || 10) || 10;
const json = args.includes("--json");
const baselineDir = opt("--baseline");

/** A build of the package: its three entry points. */
function build(dir) {
  const b = {
    dir,
    hyperloom: join(dir, "dist/cli/main.js"),
    loomServer: join(dir, "dist/cli/loom-server.js"),
    loomWorker: join(dir, "dist/cli/loom-worker.js"),
  };
  for (const f of [b.hyperloom, b.loomServer, b.loomWorker]) if (!existsSync(f)) throw new Error(`${f} does not exist: build it first (npm run build)`);
  return b;
}
const ours = build(resolve(here, "../../packages/hyperloom"));
const baseline = baselineDir !== undefined ? build(resolve(baselineDir)) : undefined;

function freePort() {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Resolves when a TCP connection to `port` is accepted (polling every 1 ms). */
function whenAccepting(port, deadline) {
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const c = connect({ port, host: "127.0.0.1" });
      c.once("connect", () => {
        const t = now();
        c.destroy();
        resolve(t);
      });
      c.once("error", () => {
        c.destroy();
        if (now() > deadline) reject(new Error(`port ${port} not accepting after the deadline`));
        else setTimeout(attempt, 1);
      });
    };
    attempt();
  });
}

/** Resolves with the time of the first line of `child`'s stderr matching `re` (10 s limit). */
function whenLine(child, re, what) {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stderr });
    const timer = setTimeout(() => reject(new Error(`${what} not seen within 10 s`)), 10_000);
    lines.on("line", (l) => {
      if (re.test(l)) {
        clearTimeout(timer);
        resolve(now());
      }
    });
  });
}

/**
 * CPU time (ms) process `pid` has used so far, all its threads (Linux: /proc/<pid>/task/<tid>/schedstat,
 * nanoseconds on a CPU); undefined elsewhere. Unlike wall time, it hardly moves when other work
 * shares the machine, so it shows our own cost on a loaded machine.
 */
function cpuMs(pid) {
  try {
    let ns = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]);
    return ns / 1e6;
  } catch {
    return undefined;
  }
}

function stop(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once("exit", () => resolve());
    child.kill("SIGTERM");
  });
}

async function bareNode() {
  const t0 = now();
  const c = spawn(process.execPath, ["-e", "0"], { stdio: "ignore" });
  await new Promise((r) => c.once("exit", r));
  return now() - t0;
}

/** `hyperloom server` (auth on, as by default: it writes its own access file, which the worker reads). */
function hyperloomServer(b, port) {
  const access = join(wdir, `access-${port}.json`);
  const child = spawn(process.execPath, [b.hyperloom, "server", "--host", "127.0.0.1", "--port", String(port), "--access-file", access], { stdio: ["ignore", "ignore", "pipe"] });
  return { child, access, ready: /Access file /, worker: (p) => [b.hyperloom, "worker", "127.0.0.1", String(p), "--access-file", access, "--cpus", "1", "--wdir", wdir, "--nopin"] };
}

/** `loom-server` (the original's command line: every interface, no authentication). */
function loomServer(b, port) {
  const child = spawn(process.execPath, [b.loomServer, "--port", String(port)], { stdio: ["ignore", "ignore", "pipe"] });
  return { child, ready: /Authentication is off/, worker: (p) => [b.loomWorker, "127.0.0.1", String(p), "--cpus", "1", "--wdir", wdir, "--nopin"] };
}

/** exec -> the port accepts a connection, and exec -> the server's startup is done (its last startup line). */
async function serverStart(b, start) {
  const port = await freePort();
  const t0 = now();
  const s = start(b, port);
  const ready = whenLine(s.child, s.ready, "the server's startup line");
  try {
    const accepting = (await whenAccepting(port, t0 + 10_000)) - t0;
    const cpu = cpuMs(s.child.pid);
    return { accepting, cpu, ready: (await ready) - t0 };
  } finally {
    await stop(s.child);
  }
}

/** Starts a server, then times a worker from exec to the server's "worker N registered" line. */
async function workerStart(b, start) {
  const port = await freePort();
  const s = start(b, port);
  let worker;
  try {
    await whenLine(s.child, s.ready, "the server's startup line");
    const registered = whenLine(s.child, /worker \d+ registered/, "the worker's registration");
    const t0 = now();
    worker = spawn(process.execPath, s.worker(port), { stdio: "ignore" });
    const t = (await registered) - t0;
    return { registered: t, cpu: cpuMs(worker.pid) };
  } finally {
    if (worker) await stop(worker);
    await stop(s.child);
  }
}

/** One repetition of every measure for build `b`. */
async function measure(b, into) {
  const hs = await serverStart(b, hyperloomServer);
  into.serverAccepting.push(hs.accepting);
  into.serverReady.push(hs.ready);
  into.serverCpu.push(hs.cpu);
  const hw = await workerStart(b, hyperloomServer);
  into.workerRegistered.push(hw.registered);
  into.workerCpu.push(hw.cpu);
  into.loomServerAccepting.push((await serverStart(b, loomServer)).accepting);
  into.loomWorkerRegistered.push((await workerStart(b, loomServer)).registered);
}

const stats = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const median = s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  return { min: s[0], median, max: s[s.length - 1], all: xs.map((x) => Math.round(x * 10) / 10) };
};

const rows = [
  ["serverAccepting", "hyperloom server accepting", 100],
  ["serverReady", "  ... access file written"],
  ["workerRegistered", "hyperloom worker registered", 250],
  ["loomServerAccepting", "loom-server accepting", 100],
  ["loomWorkerRegistered", "loom-worker registered", 250],
  ["serverCpu", "server CPU ms until accepting"],
  ["workerCpu", "worker CPU ms until registered"],
];
const empty = () => Object.fromEntries(rows.map(([k]) => [k, []]));
// The CPU rows need Linux's /proc; elsewhere they are left out.
const withCpu = cpuMs(process.pid) !== undefined;
if (!withCpu) rows.splice(-2);
const wdir = mkdtempSync(join(tmpdir(), "hyperloom-startup-"));
const runs = { node: [], ours: empty(), baseline: empty() };
try {
  // Interleaved, so drift of a shared machine hits all alike; with a baseline, the two builds
  // take turns going first.
  for (let r = 0; r < reps; r++) {
    runs.node.push(await bareNode());
    const order = baseline === undefined ? [["ours", ours]] : r % 2 ? [["baseline", baseline], ["ours", ours]] : [["ours", ours], ["baseline", baseline]];
    for (const [name, b] of order) await measure(b, runs[name]);
    if (!json) {
      const last = (o) => rows.map(([k]) => o[k].at(-1).toFixed(0)).join("/");
      process.stderr.write(`  rep ${r + 1}/${reps}: node ${runs.node.at(-1).toFixed(0)} ms, ours ${last(runs.ours)}${baseline ? `, baseline ${last(runs.baseline)}` : ""} ms\n`);
    }
  }
} finally {
  rmSync(wdir, { recursive: true, force: true });
}
const result = {
  date: new Date().toISOString(),
  machine: `${cpus().length} cores (${cpus()[0]?.model ?? "?"}), load average ${loadavg().map((l) => l.toFixed(1)).join(" ")}`,
  node: process.version,
  nodeExtraCaCerts: process.env.NODE_EXTRA_CA_CERTS !== undefined,
  command: `node bench/startup/run.mjs ${args.join(" ")}`.trim(),
  reps,
  bareNodeMs: stats(runs.node),
  ...Object.fromEntries(rows.map(([k]) => [`${k}Ms`, stats(runs.ours[k])])),
  targets: { serverAcceptingMs: 100, workerRegisteredMs: 250, loomServerAcceptingMs: 100, loomWorkerRegisteredMs: 250 },
};
if (baseline) {
  result.baseline = { dir: baseline.dir, ...Object.fromEntries(rows.map(([k]) => [`${k}Ms`, stats(runs.baseline[k])])) };
  result.ratioOursToBaseline = Object.fromEntries(rows.map(([k]) => [k, stats(runs.ours[k].map((x, i) => x / runs.baseline[k][i]))]));
}
if (json) console.log(JSON.stringify(result, null, 2));
else {
  const f = (s) => `${s.min.toFixed(0).padStart(6)} ${s.median.toFixed(0).padStart(7)} ${s.max.toFixed(0).padStart(6)}`;
  const r2 = (s) => `${s.min.toFixed(2).padStart(6)} ${s.median.toFixed(2).padStart(7)} ${s.max.toFixed(2).padStart(6)}`;
  console.log(`startup, ${reps} interleaved reps; ${result.machine}; Node ${result.node}; NODE_EXTRA_CA_CERTS ${result.nodeExtraCaCerts ? "set" : "unset"}`);
  console.log(`${"ms from exec".padEnd(30)} ${"min".padStart(6)} ${"median".padStart(7)} ${"max".padStart(6)}${baseline ? `   baseline: ${"min".padStart(6)} ${"median".padStart(7)} ${"max".padStart(6)}   ours/baseline: ${"min".padStart(6)} ${"median".padStart(7)} ${"max".padStart(6)}` : ""}`);
  console.log(`${"bare node -e 0 (exit)".padEnd(30)} ${f(result.bareNodeMs)}`);
  for (const [k, name, target] of rows) {
    const s = result[`${k}Ms`];
    const b = baseline ? `             ${f(result.baseline[`${k}Ms`])}                  ${r2(result.ratioOursToBaseline[k])}` : "";
    console.log(`${name.padEnd(30)} ${f(s)}${b}${target ? `  (target <= ${target} ms: median ${s.median <= target ? "met" : "missed"})` : ""}`);
  }
}
