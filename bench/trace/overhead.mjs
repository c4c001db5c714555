// Tracing overhead: W1 (N merges of two consts -> one arrayMake, 3N+1 tasks) on a LocalCluster,
// alternating runs without and with `client.setTrace(dir)`; prints the medians and the overhead.
//   node bench/trace/overhead.mjs [--n 100000] [--reps 5] [--workers 2] [--cpus 1]
import { createRequire } from "node:module";
import { mkdtempSync, rmSync, readdirSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const require = createRequire(import.meta.url);
const pkg = new URL("../../packages/hyperloom/dist/", import.meta.url).pathname;
const { LocalCluster } = require(join(pkg, "cluster/local-cluster.js"));
const { tasks } = require(join(pkg, "index.js"));

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const N = arg("n", 100_000);
const REPS = arg("reps", 5);
const WORKERS = arg("workers", 2);
const CPUS = arg("cpus", 1);

async function once(traceDir) {
  const cluster = await LocalCluster.start({ workers: WORKERS, cpus: CPUS });
  const client = await cluster.connect();
  try {
    if (traceDir) client.setTrace(traceDir);
    const t0 = performance.now();
    const merges = [];
    for (let i = 0; i < N; i++) merges.push(tasks.merge([tasks.const(`a${i}`), tasks.const(`b${i}`)]));
    const [f] = client.submit([tasks.arrayMake(merges)]);
    await f.wait();
    const ms = performance.now() - t0;
    f.release();
    return ms;
  } finally {
    await client.close();
    await cluster.stop();
  }
}

const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
const plain = [];
const traced = [];
let bytes = 0;
await once(undefined); // warm-up
for (let r = 0; r < REPS; r++) {
  plain.push(await once(undefined));
  const dir = mkdtempSync(join(tmpdir(), "hyperloom-trace-bench-"));
  traced.push(await once(dir));
  bytes = readdirSync(dir).reduce((s, f) => s + statSync(join(dir, f)).size, 0);
  rmSync(dir, { recursive: true, force: true });
}
const p = median(plain);
const t = median(traced);
console.log(`W1 N=${N} (${3 * N + 1} tasks), ${WORKERS} workers x ${CPUS} cpus, ${REPS} reps`);
console.log(`  untraced: median ${p.toFixed(0)} ms  [${plain.map((x) => x.toFixed(0)).join(", ")}]`);
console.log(`  traced:   median ${t.toFixed(0)} ms  [${traced.map((x) => x.toFixed(0)).join(", ")}]`);
console.log(`  overhead: ${(((t - p) / p) * 100).toFixed(1)}%   trace size ${(bytes / 1e6).toFixed(1)} MB (${(bytes / (3 * N + 1)).toFixed(0)} B/task)`);
