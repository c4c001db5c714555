// Tracing overhead of the cores alone (no sockets, one process, so little noise from other load):
// W1 (N merges of two consts -> arrayMake) through ServerCore + WorkerCore, alternating untraced
// and traced runs; CPU time (user+sys) from plan in to the root's FINISHED, medians.
//   node bench/trace/core-overhead.mjs [--n 100000] [--reps 11]
import { createRequire } from "node:module";
import { mkdtempSync, rmSync, readdirSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const require = createRequire(import.meta.url);
const dist = new URL("../../packages/hyperloom/dist/", import.meta.url).pathname;
const { encodePlan } = require(join(dist, "client/plan.js"));
const { frame } = require(join(dist, "protocol/frame.js"));
const { comm, PROTOCOL_VERSION } = require(join(dist, "protocol/messages.js"));
const { native } = require(join(dist, "native.js"));
const { tasks } = require(join(dist, "index.js"));

const arg = (k, d) => (process.argv.indexOf(`--${k}`) > 0 ? Number(process.argv[process.argv.indexOf(`--${k}`) + 1]) : d);
const N = arg("n", 100_000);
const REPS = arg("reps", 11);
const CLIENT = 1;
const WORKER = 2;

function once(traceDir) {
  const wdir = mkdtempSync(join(tmpdir(), "hyperloom-core-"));
  try {
    const { ServerCore, WorkerCore } = native();
    const server = new ServerCore(1);
    const worker = new WorkerCore(wdir, 2, 2, []);
    const toWorker = [];
    let clientBytes = 0;
    const apply = (out) => {
      for (const w of out.writes) (w.conn === WORKER ? toWorker.push(w.data) : (clientBytes += w.data.length));
    };
    const pump = () => {
      while (toWorker.length > 0) {
        const eff = worker.onServerData(Buffer.concat(toWorker.splice(0)));
        if (eff.toServer.length > 0) apply(server.onData(WORKER, eff.toServer));
      }
    };
    apply(server.onConnect(WORKER, "127.0.0.1"));
    apply(server.onData(WORKER, worker.registerFrame()));
    pump();
    server.onConnect(CLIENT, "127.0.0.1");
    const reg = comm.Register.encode({ protocolVersion: PROTOCOL_VERSION, type: comm.Register.Type.REGISTER_CLIENT }).finish();
    const dictOut = server.onData(CLIENT, frame(reg));
    const dict = comm.ClientResponse.decode(dictOut.writes[0].data.subarray(8));
    const symbols = new Map(dict.symbols.map((s, i) => [s, i]));
    if (traceDir) {
      const req = comm.ClientRequest.encode({ type: comm.ClientRequest.Type.TRACE, tracePath: traceDir }).finish();
      apply(server.onData(CLIENT, frame(req)));
      pump();
    }
    const merges = [];
    for (let i = 0; i < N; i++) merges.push(tasks.merge([tasks.const(`a${i}`), tasks.const(`b${i}`)]));
    const { buf } = encodePlan([tasks.arrayMake(merges)], 0, { symbol: (s) => symbols.get(s), cpusSymbol: symbols.get("loom/resource/cpus"), labels: true, loadCheckpoints: false });
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    apply(server.onData(CLIENT, buf));
    pump();
    server.traceFlush();
    worker.traceFlush();
    const c = process.cpuUsage(c0);
    const wall = performance.now() - t0;
    if (clientBytes === 0) throw new Error("no TASK_FINISHED");
    return { cpu: (c.user + c.system) / 1000, wall };
  } finally {
    rmSync(wdir, { recursive: true, force: true });
  }
}

const med = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
const plain = [];
const traced = [];
let size = 0;
once(undefined);
for (let r = 0; r < REPS; r++) {
  plain.push(once(undefined));
  const dir = mkdtempSync(join(tmpdir(), "hyperloom-core-trace-"));
  traced.push(once(dir));
  size = readdirSync(dir).reduce((s, f) => s + statSync(join(dir, f)).size, 0);
  rmSync(dir, { recursive: true, force: true });
}
for (const k of ["cpu", "wall"]) {
  const p = med(plain.map((x) => x[k]));
  const t = med(traced.map((x) => x[k]));
  console.log(`${k.padEnd(4)}: untraced ${p.toFixed(1)} ms, traced ${t.toFixed(1)} ms, overhead ${(((t - p) / p) * 100).toFixed(1)}%`);
}
console.log(`W1 N=${N} (${3 * N + 1} tasks), ${REPS} reps; trace ${(size / 1e6).toFixed(1)} MB (${(size / (3 * N + 1)).toFixed(0)} B/task)`);
