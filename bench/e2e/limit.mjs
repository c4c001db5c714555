// W1-serial: the whole W1 pipeline in ONE process and ONE thread, stage after stage, no sockets
// (not a limit: the real cluster overlaps the stages on several cores and beats it). The client's own plan code
// (encodePlan: numbering and encoding) -> native ServerCore -> WorkerCore (built-ins run in Rust) -> FINISHED
// frames back -> TASK_FINISHED -> FETCH -> SEND -> the worker's data stream -> onDataHeader ->
// decodeData in JS. Every byte that would cross a socket is handed over in memory instead.
//
// W1-fused (`--fused`): the ceiling of one thread behind this client API: the same plan built
// with `tasks.*`, then evaluated where it stands (each merge's bytes concatenated, the array
// made), no encoding, no scheduler, no sockets, no serialization between stages. A cluster runs
// its client, server and workers on several cores at once and can pass it.
//
//   node bench/e2e/limit.mjs --n 1000000 [--fused]          prints one JSON line
import { createRequire } from "node:module";
import { mkdtempSync, rmSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { w1Tasks } from "./plans.mjs";

const require = createRequire(import.meta.url);
const dist = new URL("../../packages/hyperloom/dist/", import.meta.url).pathname;
const { encodePlan } = require(join(dist, "client/plan.js"));
const { decodeData } = require(join(dist, "client/data.js"));
const { FrameReader, frame } = require(join(dist, "protocol/frame.js"));
const { comm, PROTOCOL_VERSION } = require(join(dist, "protocol/messages.js"));
const { native } = require(join(dist, "native.js"));

const CLIENT = 1;
const WORKER = 2;

function vm(field) {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync("/proc/self/status", "utf8"));
  return m ? Number(m[1]) * 1024 : 0;
}

export function runLimit(n) {
  const wdir = mkdtempSync(join(tmpdir(), "hyperloom-limit-"));
  try {
    const { ServerCore, WorkerCore } = native();
    const server = new ServerCore(1);
    const worker = new WorkerCore(wdir, 2, 2, []);
    const clientReader = new FrameReader();
    const clientFrames = [];
    const toWorker = [];

    // Routes the server's output: the worker's share is queued, the client's is decoded.
    const apply = (out) => {
      for (const w of out.writes) {
        if (w.conn === WORKER) toWorker.push(w.data);
        else if (w.conn === CLIENT) for (const f of clientReader.push(w.data)) clientFrames.push(f);
      }
    };
    let sends = [];
    // Runs the server <-> worker exchange until nothing is left to deliver.
    const pump = () => {
      while (toWorker.length > 0) {
        const chunk = toWorker.length === 1 ? toWorker.pop() : Buffer.concat(toWorker.splice(0));
        toWorker.length = 0;
        const eff = worker.onServerData(chunk);
        if (eff.sends.length) sends.push(...eff.sends);
        if (eff.toServer.length > 0) apply(server.onData(WORKER, eff.toServer));
      }
    };

    apply(server.onConnect(WORKER, "127.0.0.1"));
    apply(server.onData(WORKER, worker.registerFrame()));
    pump();
    apply(server.onConnect(CLIENT, "127.0.0.1"));
    apply(
      server.onData(
        CLIENT,
        frame(comm.Register.encode({ protocolVersion: PROTOCOL_VERSION, type: comm.Register.Type.REGISTER_CLIENT }).finish()),
      ),
    );
    const dict = comm.ClientResponse.decode(clientFrames.shift());
    const symbols = new Map(dict.symbols.map((s, i) => [s, i]));
    const names = dict.symbols;
    const symbol = (s) => symbols.get(s);

    const rss0 = vm("VmRSS");
    const t0 = process.hrtime.bigint();
    const root = w1Tasks(n);
    const tBuilt = process.hrtime.bigint();
    const { buf, count: nTasks } = encodePlan([root], 0, { symbol, cpusSymbol: symbol("loom/resource/cpus"), labels: true, loadCheckpoints: false });
    const tEncoded = process.hrtime.bigint();
    const rootId = root._planId;

    apply(server.onData(CLIENT, buf));
    pump();
    // The client waits for TASK_FINISHED of the root.
    let finished = false;
    while (!finished) {
      const f = clientFrames.shift();
      if (f === undefined) throw new Error("pipeline stalled before the result finished");
      const msg = comm.ClientResponse.decode(f);
      if (msg.type === comm.ClientResponse.Type.TASK_FINISHED && msg.id === rootId) finished = true;
      else if (msg.type !== comm.ClientResponse.Type.TASK_FINISHED) throw new Error(`unexpected response ${JSON.stringify(msg)}`);
    }
    const tFinished = process.hrtime.bigint();
    // Fetch: FETCH -> SEND to the worker -> the worker's stream -> onDataHeader -> client decode.
    apply(server.onData(CLIENT, frame(comm.ClientRequest.encode({ type: comm.ClientRequest.Type.FETCH, id: rootId }).finish())));
    pump();
    if (sends.length !== 1) throw new Error(`expected one data stream, got ${sends.length}`);
    const streamReader = new FrameReader();
    const streamFrames = [];
    for (const p of sends[0].parts) for (const f of streamReader.push(p)) streamFrames.push(f);
    sends = [];
    const relay = server.onDataHeader(streamFrames[0]);
    for (const f of clientReader.push(relay.response)) clientFrames.push(f);
    const head = comm.ClientResponse.decode(clientFrames.shift());
    if (head.type !== comm.ClientResponse.Type.DATA) throw new Error("expected DATA");
    const [value] = decodeData(head.data.typeId, streamFrames, 1, (t) => names[t]);
    const tEnd = process.hrtime.bigint();
    if (!Array.isArray(value) || value.length !== n) throw new Error(`bad result: ${value?.length}`);
    const ms = (a, b) => Number(b - a) / 1e6;
    return {
      n,
      tasks: nTasks,
      planBytes: buf.length,
      wallMs: ms(t0, tEnd),
      buildMs: ms(t0, tBuilt),
      encodeMs: ms(tBuilt, tEncoded),
      computeMs: ms(tEncoded, tFinished),
      fetchMs: ms(tFinished, tEnd),
      peakRss: vm("VmHWM"),
      rssGrowth: vm("VmHWM") - rss0,
    };
  } finally {
    rmSync(wdir, { recursive: true, force: true });
  }
}

/** W1-fused: builds W1 with the client API and evaluates it in place (see the header). */
export function runFused(n) {
  const rss0 = vm("VmRSS");
  const t0 = process.hrtime.bigint();
  const root = w1Tasks(n);
  const tBuilt = process.hrtime.bigint();
  const values = new Map();
  const value = (t) => {
    let v = values.get(t);
    if (v !== undefined) return v;
    if (t.taskType === "loom/data/const") v = Buffer.from(t.config);
    else if (t.taskType === "loom/data/merge") v = Buffer.concat(t.inputs.map(value));
    else if (t.taskType === "loom/array/make") v = t.inputs.map(value);
    else throw new Error(`W1-fused: unexpected task type ${t.taskType}`);
    values.set(t, v);
    return v;
  };
  const arr = value(root);
  const tEnd = process.hrtime.bigint();
  if (arr.length !== n || arr[n - 1].toString() !== "abcd") throw new Error("W1-fused: bad result");
  const ms = (a, b) => Number(b - a) / 1e6;
  return { n, tasks: 3 * n + 1, wallMs: ms(t0, tEnd), buildMs: ms(t0, tBuilt), encodeMs: 0, computeMs: ms(tBuilt, tEnd), fetchMs: 0, peakRss: vm("VmHWM"), rssGrowth: vm("VmHWM") - rss0 };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const i = process.argv.indexOf("--n");
  const n = i > 0 ? Number(process.argv[i + 1]) : 100000;
  const run = process.argv.includes("--fused") ? runFused : runLimit;
  process.stdout.write(JSON.stringify(run(n)) + "\n");
}
