#!/usr/bin/env node
// Profiles one workload: starts the server and the workers itself with `node --cpu-prof`
// (the same commands LocalCluster spawns), profiles the client in this process through the
// inspector, runs the workload once, stops everything and prints the top self-time functions of
// each process. Optional `--perf`: also `perf record` the server and the workers (Rust frames).
//
//   node bench/e2e/profile.mjs --workload W1 --n 1000000 --workers 1x2 [--warmup 1] [--out DIR] [--top 25] [--perf]
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, mkdirSync, writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { Client } from "hyperloom";
import { WORKLOADS } from "./workloads.mjs";

const args = process.argv.slice(2);
const opt = (k, d) => (args.includes(k) ? args[args.indexOf(k) + 1] : d);
const workload = opt("--workload", "W1");
const n = Number(opt("--n", "100000"));
const [nw, nc] = opt("--workers", "1x2").split("x").map(Number);
const out = opt("--out", mkdtempSync(join(tmpdir(), "hyperloom-prof-")));
const top = Number(opt("--top", "25"));
const usePerf = args.includes("--perf");
// Repetitions run before the profiled one (the client and processes then run warm, as in run.mjs).
const warmup = Number(opt("--warmup", "0"));
mkdirSync(out, { recursive: true });
const cli = new URL("../../packages/hyperloom/dist/cli/main.js", import.meta.url).pathname;
const wdir = mkdtempSync(join(tmpdir(), "hyperloom-prof-w-"));

function start(role, extra) {
  const flags = ["--cpu-prof", "--cpu-prof-dir", join(out, role), "--cpu-prof-interval", "200"];
  if (usePerf) flags.push("--perf-basic-prof-only-functions");
  // Logs go to stderr: the server's are read for its port, the workers' shown.
  return spawn(process.execPath, [...flags, cli, ...extra], { stdio: ["ignore", "inherit", role === "server" ? "pipe" : "inherit"] });
}

// The server's access file, which the workers and the client read.
const accessFile = join(wdir, "access.json");
const server = start("server", ["server", "--host", "127.0.0.1", "--port", "0", "--access-file", accessFile]);
const port = await new Promise((resolve) => {
  createInterface({ input: server.stderr }).on("line", (l) => {
    const m = /listening on [\d.]+:(\d+)/.exec(l);
    if (m) resolve(Number(m[1]));
  });
});
const workers = [];
// --nopin as LocalCluster (which run.mjs uses): pinned programs would each exec taskset first.
for (let i = 0; i < nw; i++) workers.push(start(`worker${i}`, ["worker", "127.0.0.1", String(port), "--access-file", accessFile, "--cpus", String(nc), "--wdir", wdir, "--nopin"]));
const client = await Client.connect("127.0.0.1", port, { accessFile });
while ((await client.stats()).nWorkers < nw) await new Promise((r) => setTimeout(r, 20));

for (let i = 0; i < warmup; i++) await WORKLOADS[workload].run(client, n);
const perfs = usePerf
  ? [server, ...workers].map((p, i) =>
      spawn("perf", ["record", "-F", "999", "-g", "-p", String(p.pid), "-o", join(out, `perf-${i === 0 ? "server" : `worker${i - 1}`}.data`)], { stdio: "ignore" }),
    )
  : [];
if (usePerf) await new Promise((r) => setTimeout(r, 500));
const session = new Session();
session.connect();
await session.post("Profiler.enable");
await session.post("Profiler.setSamplingInterval", { interval: 200 });
await session.post("Profiler.start");
const r = await WORKLOADS[workload].run(client, n);
const { profile } = await session.post("Profiler.stop");
mkdirSync(join(out, "client"), { recursive: true });
writeFileSync(join(out, "client", "client.cpuprofile"), JSON.stringify(profile));
for (const p of perfs) p.kill("SIGINT");
await Promise.all(perfs.map((p) => new Promise((res) => p.once("exit", res))));
process.stderr.write(`${workload} N=${n} ${nw}x${nc}: wall ${r.wallMs.toFixed(0)} ms, ${Math.round(r.tasks / (r.wallMs / 1e3))} tasks/s\n`);
await client.terminate();
await Promise.all([server, ...workers].map((p) => new Promise((res) => (p.exitCode !== null ? res() : p.once("exit", res)))));

/** Self time per function (name, file:line), as a share of the profile's samples. */
function summarize(file) {
  const p = JSON.parse(readFileSync(file, "utf8"));
  const byId = new Map(p.nodes.map((x) => [x.id, x]));
  const self = new Map();
  let total = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const dt = p.timeDeltas[i] ?? 0;
    const node = byId.get(p.samples[i]);
    const cf = node.callFrame;
    const url = cf.url.replace(/^file:\/\//, "").replace(/.*\/(packages|node_modules|bench)\//, "$1/");
    const key = `${cf.functionName || "(anonymous)"}  ${url ? `${url}:${cf.lineNumber + 1}` : ""}`;
    self.set(key, (self.get(key) ?? 0) + dt);
    total += dt;
  }
  const idle = self.get("(idle)  ") ?? 0;
  const rows = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, top);
  return { total, idle, rows };
}

for (const dir of readdirSync(out, { withFileTypes: true }).filter((d) => d.isDirectory())) {
  for (const f of readdirSync(join(out, dir.name)).filter((f) => f.endsWith(".cpuprofile"))) {
    const s = summarize(join(out, dir.name, f));
    const busy = s.total - s.idle;
    console.log(`\n== ${dir.name}: ${(s.total / 1e3).toFixed(0)} ms sampled, busy ${(busy / 1e3).toFixed(0)} ms (% of busy time, self)`);
    for (const [k, v] of s.rows) if (k !== "(idle)  ") console.log(`${((100 * v) / busy).toFixed(1).padStart(6)}%  ${(v / 1e3).toFixed(0).padStart(6)} ms  ${k}`);
  }
}
if (usePerf) {
  for (const f of readdirSync(out).filter((f) => f.startsWith("perf-"))) {
    console.log(`\n== ${f} (perf, self, top ${top})`);
    try {
      const rep = execFileSync("perf", ["report", "-i", join(out, f), "--no-children", "--sort", "symbol", "--stdio", "-g", "none", "--percent-limit", "0.7"], {
        encoding: "utf8",
        maxBuffer: 64 << 20,
        stdio: ["ignore", "pipe", "ignore"],
      });
      console.log(rep.split("\n").filter((l) => /^\s+\d/.test(l)).slice(0, top).join("\n"));
    } catch (e) {
      console.log(`perf report failed: ${e.message}`);
    }
  }
}
console.log(`\nprofiles in ${out}`);
process.exit(0);
