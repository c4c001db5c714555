#!/usr/bin/env node
// The server journal's cost (issue 19): W1 (N merges of two consts -> one arrayMake, 3N+1 tasks)
// with `--journal` off and on, interleaved in ONE run (off, on, off, on, ...), a fresh cluster
// and a fresh journal file per repetition.
//   node --expose-gc bench/e2e/journal.mjs [--n 1000000] [--reps 3] [--workers 2x1] [--dir DIR] [--json]
// Reports wall times (median, min, max), the ratio of tasks/s on/off (target >= 0.8) and the
// journal's size per task in bytes (the file when the plan has finished, before the result is
// released). `--dir`: where the journal files go (default: the system's temporary folder).
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LocalCluster } from "hyperloom";
import { w1Tasks } from "./plans.mjs";
import { collectGarbage } from "./heap.mjs";

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const n = Number(String(opt("--n", "1000000")).replace(/_/g, ""));
const reps = Number(opt("--reps", "3"));
const [nw, nc] = opt("--workers", "2x1").split("x").map(Number);
const json = args.includes("--json");
const dir = mkdtempSync(join(opt("--dir", tmpdir()), "hyperloom-bench-journal-"));
const now = () => Number(process.hrtime.bigint()) / 1e6;
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const log = (s) => process.stderr.write(s + "\n");

async function rep(journal, r) {
  const path = join(dir, `w1-${r}.journal`);
  const cluster = await LocalCluster.start({ workers: nw, cpus: nc, ...(journal ? { serverArgs: ["--journal", path] } : {}) });
  const client = await cluster.connect();
  try {
    collectGarbage();
    const t0 = now();
    const [root] = client.submit([w1Tasks(n)]);
    await client.wait([root]);
    const wallMs = now() - t0;
    const bytes = journal ? statSync(path).size : 0;
    const [arr] = await client.fetch([root]);
    if (arr.length !== n) throw new Error(`W1: ${arr.length} results, expected ${n}`);
    const out = { journal, wallMs, tasksPerS: (3 * n + 1) / (wallMs / 1e3), journalBytes: bytes, bytesPerTask: bytes / (3 * n + 1) };
    log(`  W1 N=${n} ${nw}x${nc} journal ${journal ? "on " : "off"}: ${wallMs.toFixed(0)} ms${journal ? `, journal ${bytes} bytes (${out.bytesPerTask.toFixed(1)} B/task)` : ""}`);
    return out;
  } finally {
    await client.close().catch(() => undefined);
    await cluster.stop();
    rmSync(path, { force: true });
  }
}

const runs = [];
try {
  for (let r = 0; r < reps; r++) {
    runs.push(await rep(false, r));
    runs.push(await rep(true, r));
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
const stat = (xs) => ({ min: Math.min(...xs), median: median(xs), max: Math.max(...xs) });
const off = runs.filter((x) => !x.journal);
const on = runs.filter((x) => x.journal);
const result = {
  workload: "W1",
  n,
  tasks: 3 * n + 1,
  workers: `${nw}x${nc}`,
  reps,
  offWallMs: stat(off.map((x) => x.wallMs)),
  onWallMs: stat(on.map((x) => x.wallMs)),
  offTasksPerS: stat(off.map((x) => x.tasksPerS)),
  onTasksPerS: stat(on.map((x) => x.tasksPerS)),
  ratio: median(on.map((x) => x.tasksPerS)) / median(off.map((x) => x.tasksPerS)),
  // Ratio of each interleaved pair (on / off of the same repetition).
  pairRatios: stat(on.map((x, i) => x.tasksPerS / off[i].tasksPerS)),
  journalBytesPerTask: stat(on.map((x) => x.bytesPerTask)),
  runs,
};
if (json) process.stdout.write(JSON.stringify(result) + "\n");
else {
  const f = (s, d = 0) => `${s.median.toFixed(d)} (min ${s.min.toFixed(d)}, max ${s.max.toFixed(d)})`;
  process.stdout.write(
    `W1 N=${n} on ${nw}x${nc}, ${reps} reps each, interleaved:\n` +
      `  journal off: ${f(result.offWallMs)} ms\n  journal on: ${f(result.onWallMs)} ms\n` +
      `  ratio of tasks/s on/off (medians): ${result.ratio.toFixed(3)} (target >= 0.8); per pair: ${f(result.pairRatios, 3)}\n` +
      `  journal size: ${f(result.journalBytesPerTask, 1)} bytes/task\n`,
  );
}
