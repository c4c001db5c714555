#!/usr/bin/env node
// CPU per process of end-to-end workloads (issue #26): one local cluster (2 workers x 1 cpu by
// default), each workload `--reps` times after a warm-up; prints one JSON line per repetition:
// wall ms, tasks/s, and the CPU ms (user + system) the client (this process), the server and
// each worker used during it (/proc/<pid>/stat), and `programs`: the CPU of the programs each
// worker ran and waited for (W4's; its children's user + system time), and `transfers`: the
// worker-to-worker transfers the server started during it. `--root DIR` runs another
// checkout's build (its packages/hyperloom/dist and bench/e2e/workloads.mjs), for A/B runs
// interleaved by hand or by a benchmark runner. `--pin`: workers pin programs to their slots'
// CPUs, as `run.mjs --pin` and standalone `hyperloom worker`s do.
//
//   node --expose-gc bench/e2e/cpu.mjs [--workloads W1-gather,W1] [--n 100000] [--reps 3] [--workers 2x1] [--pin] [--root DIR]
import { readFileSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";
import { collectGarbage } from "./heap.mjs";

const args = process.argv.slice(2);
const opt = (k, d) => (args.includes(k) ? args[args.indexOf(k) + 1] : d);
const root = opt("--root", fileURLToPath(new URL("../../", import.meta.url)));
const n = Number(opt("--n", "100000"));
const reps = Number(opt("--reps", "3"));
const [nw, nc] = opt("--workers", "2x1").split("x").map(Number);
const pin = args.includes("--pin");
const { LocalCluster } = await import(pathToFileURL(`${root}/packages/hyperloom/dist/index.js`).href);
const { WORKLOADS } = await import(pathToFileURL(`${root}/bench/e2e/workloads.mjs`).href);

/** CPU ms (user + system) of process `pid` so far (clock ticks of 10 ms, as Linux reports them). */
function cpuMs(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** CPU ms of the children `pid` has waited for (cutime + cstime). */
function childrenMs(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(fields[13]) + Number(fields[14])) * 10;
}

const cluster = await LocalCluster.start({ workers: nw, cpus: nc, ...(pin ? { pin: true } : {}) });
const spid = cluster.serverProcess.pid;
const wpids = cluster.workerProcesses.map((p) => p.pid);
const client = await cluster.connect();
try {
  await WORKLOADS["W1-gather"].run(client, 1000); // warm-up
  for (const w of opt("--workloads", "W1-gather,W1").split(",")) {
    for (let r = 0; r < reps; r++) {
      collectGarbage();
      await new Promise((res) => setTimeout(res, 50));
      const c0 = process.cpuUsage();
      const s0 = cpuMs(spid);
      const w0 = wpids.map(cpuMs);
      const p0 = wpids.map(childrenMs);
      const t0 = (await client.status()).transfers.total;
      const x = await WORKLOADS[w].run(client, n, { cpus: nw * nc, pin });
      const c = process.cpuUsage(c0);
      const line = {
        workload: w,
        n,
        workers: `${nw}x${nc}`,
        pinned: pin,
        wallMs: Math.round(x.wallMs),
        tasksPerS: Math.round(x.tasks / (x.wallMs / 1e3)),
        cpuMs: { client: Math.round((c.user + c.system) / 1e3), server: cpuMs(spid) - s0, workers: wpids.map((p, i) => cpuMs(p) - w0[i]), programs: wpids.map((p, i) => childrenMs(p) - p0[i]) },
        transfers: (await client.status()).transfers.total - t0,
      };
      console.log(JSON.stringify(line));
    }
  }
} finally {
  await client.close();
  await cluster.stop();
}
