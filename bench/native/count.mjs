#!/usr/bin/env node
// Native-task throughput (issue 17): N small `my/count` tasks (the example library), each over its
// own 16-byte const input, submitted as one plan and gathered, on a LocalCluster of one worker.
//   node bench/native/count.mjs [--n 10000] [--reps 5] [--cpus 2] [--json]
// Prints min/median/max wall time (submit to last result) and tasks/s. Builds the example library
// with cargo (release) first.
import { execFileSync } from "node:child_process";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { LocalCluster, Task, tasks } from "hyperloom";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const n = opt("--n", 10_000);
const reps = opt("--reps", 5);
const cpus = opt("--cpus", 2);
const json = args.includes("--json");
const now = () => Number(process.hrtime.bigint()) / 1e6;

execFileSync("cargo", ["build", "--release", "--quiet", "-p", "hyperloom-example-count"], { cwd: root, stdio: "inherit" });
const lib = join(process.env.CARGO_TARGET_DIR ? resolve(root, process.env.CARGO_TARGET_DIR) : join(root, "target"), "release", "libhyperloom_example_count.so");

const cluster = await LocalCluster.start({ workers: 1, cpus, workerArgs: ["--extension", lib] });
const times = [];
try {
  const client = await cluster.connect();
  for (let r = 0; r < reps + 1; r++) {
    const t0 = now();
    const roots = [];
    for (let i = 0; i < n; i++) {
      roots.push(new Task("my/count", { inputs: [tasks.const(`abcabca-${String(i).padStart(8, "0")}`)], config: "a" }));
    }
    const values = await client.gather(client.submit(roots));
    const ms = now() - t0;
    for (const v of values) if (Number(v.readBigUInt64LE(0)) !== 3) throw new Error("wrong count");
    if (r > 0) times.push(ms); // the first repetition warms up
    if (!json) process.stderr.write(`rep ${r}${r === 0 ? " (warm-up)" : ""}: ${ms.toFixed(1)} ms\n`);
  }
  await client.close();
} finally {
  await cluster.stop();
}
times.sort((a, b) => a - b);
const fig = { tasks: n, reps, cpus, minMs: times[0], medianMs: times[Math.floor(times.length / 2)], maxMs: times[times.length - 1] };
fig.medianTasksPerS = Math.round(n / (fig.medianMs / 1000));
if (json) process.stdout.write(JSON.stringify(fig) + "\n");
else process.stdout.write(`${n} my/count tasks, ${cpus} cpus: min ${fig.minMs.toFixed(1)} ms, median ${fig.medianMs.toFixed(1)} ms, max ${fig.maxMs.toFixed(1)} ms (${fig.medianTasksPerS} tasks/s at the median)\n`);
