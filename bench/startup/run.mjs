#!/usr/bin/env node
// Startup benchmark (issue #26): how soon after `exec` a server accepts connections, and a worker
// is registered with a running server. Also the floor: a bare `node -e 0` until it exits.
//   node bench/startup/run.mjs [--reps 10] [--json]
// Targets: server accepting <= 100 ms, worker registered <= 250 ms (the original's test harness
// waits 0.25 s). Figures are min/median/max over the repetitions.
import { spawn } from "node:child_process";
import { connect, createServer } from "node:net";
import { createInterface } from "node:readline";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir, cpus, loadavg } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const cli = join(here, "../../packages/hyperloom/dist/cli/main.js");
const now = () => Number(process.hrtime.bigint()) / 1e6;
const args = process.argv.slice(2);
const reps = Number(args[args.indexOf("--reps") + 1] || 10) || 10;
const json = args.includes("--json");

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

async function serverStart() {
  const port = await freePort();
  const t0 = now();
  // Its own access file (auth is on, as by default), which the worker reads.
  const access = join(wdir, `access-${port}.json`);
  const server = spawn(process.execPath, [cli, "server", "--host", "127.0.0.1", "--port", String(port), "--access-file", access], { stdio: ["ignore", "ignore", "pipe"] });
  try {
    return (await whenAccepting(port, t0 + 10_000)) - t0;
  } finally {
    await stop(server);
  }
}

/** Starts a server, then times a worker from exec to the server's "worker N registered" line. */
async function workerStart(wdir) {
  const port = await freePort();
  // Its own access file (auth is on, as by default), which the worker reads.
  const access = join(wdir, `access-${port}.json`);
  const server = spawn(process.execPath, [cli, "server", "--host", "127.0.0.1", "--port", String(port), "--access-file", access], { stdio: ["ignore", "ignore", "pipe"] });
  const lines = createInterface({ input: server.stderr });
  let onLine = () => undefined;
  lines.on("line", (l) => onLine(l));
  let worker;
  try {
    await whenAccepting(port, now() + 10_000);
    const registered = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("worker not registered within 10 s")), 10_000);
      onLine = (l) => {
        if (/worker \d+ registered/.test(l)) {
          clearTimeout(timer);
          resolve(now());
        }
      };
    });
    const t0 = now();
    worker = spawn(process.execPath, [cli, "worker", "127.0.0.1", String(port), "--access-file", access, "--cpus", "1", "--wdir", wdir, "--nopin"], { stdio: "ignore" });
    return (await registered) - t0;
  } finally {
    if (worker) await stop(worker);
    await stop(server);
  }
}

const stats = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const median = s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  return { min: s[0], median, max: s[s.length - 1], all: xs.map((x) => Math.round(x * 10) / 10) };
};

const wdir = mkdtempSync(join(tmpdir(), "hyperloom-startup-"));
const runs = { node: [], server: [], worker: [] };
try {
  // Interleaved, so drift of a shared machine hits all three alike.
  for (let r = 0; r < reps; r++) {
    runs.node.push(await bareNode());
    runs.server.push(await serverStart());
    runs.worker.push(await workerStart(wdir));
    if (!json) process.stderr.write(`  rep ${r + 1}/${reps}: node ${runs.node.at(-1).toFixed(0)} ms, server ${runs.server.at(-1).toFixed(0)} ms, worker ${runs.worker.at(-1).toFixed(0)} ms\n`);
  }
} finally {
  rmSync(wdir, { recursive: true, force: true });
}
const result = {
  date: new Date().toISOString(),
  machine: `${cpus().length} cores (${cpus()[0]?.model ?? "?"}), load average ${loadavg().map((l) => l.toFixed(1)).join(" ")}`,
  node: process.version,
  reps,
  bareNodeMs: stats(runs.node),
  serverAcceptingMs: stats(runs.server),
  workerRegisteredMs: stats(runs.worker),
  targets: { serverAcceptingMs: 100, workerRegisteredMs: 250 },
};
if (json) console.log(JSON.stringify(result, null, 2));
else {
  const row = (name, s, target) => `${name.padEnd(26)} ${s.min.toFixed(0).padStart(6)} ${s.median.toFixed(0).padStart(7)} ${s.max.toFixed(0).padStart(6)}  ${target ? `(target <= ${target} ms: median ${s.median <= target ? "met" : "missed"})` : ""}`;
  console.log(`startup, ${reps} interleaved reps; ${result.machine}; Node ${result.node}`);
  console.log(`${"ms from exec".padEnd(26)} ${"min".padStart(6)} ${"median".padStart(7)} ${"max".padStart(6)}`);
  console.log(row("bare node -e 0 (exit)", result.bareNodeMs));
  console.log(row("server accepting", result.serverAcceptingMs, 100));
  console.log(row("worker registered", result.workerRegisteredMs, 250));
}
