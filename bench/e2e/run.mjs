#!/usr/bin/env node
// HyperLoom end-to-end benchmark suite (issue 12). `npm run bench -- [options]`, or
//   node --expose-gc bench/e2e/run.mjs [--workloads W1,W3] [--n 10000,100000] [--workers 1x2,2x1]
//        [--reps 3] [--json] [--quick] [--peers dask,ray|none] [--timeout 180] [--tls off|on|both]
//        [--fetch direct|relay] [--pin]
// Each workload runs on a fresh LocalCluster per (workload, N, cluster shape); the peers run the
// same cells at the same N, their repetitions interleaved with ours; see README.md here.
import { readFileSync, readdirSync, writeFileSync, existsSync } from "node:fs";
import { execFileSync, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { cpus, totalmem, release } from "node:os";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { LocalCluster } from "hyperloom";
import { WORKLOADS } from "./workloads.mjs";
import { render } from "./table.mjs";
import { collectGarbage } from "./heap.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const now = () => Number(process.hrtime.bigint()) / 1e6;

// ---------------------------------------------------------------------------------------------
// Options
function parseArgs(argv) {
  const o = { workloads: null, n: null, workers: ["1x2", "2x1"], reps: 3, json: false, quick: false, peers: null, timeoutS: 180, tls: "off", fetch: "direct", pin: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === "--workloads") o.workloads = val().split(",");
    else if (a === "--n") o.n = val().split(",").map((s) => Number(s.replace(/_/g, "")));
    else if (a === "--workers") o.workers = val().split(",");
    else if (a === "--reps") o.reps = Number(val());
    else if (a === "--json") o.json = true;
    else if (a === "--quick") o.quick = true;
    else if (a === "--pin") o.pin = true;
    else if (a === "--peers") {
      const v = val();
      o.peers = v === "none" ? [] : v.split(",");
    }
    else if (a === "--timeout") o.timeoutS = Number(val());
    else if (a === "--tls") {
      o.tls = val();
      if (!["off", "on", "both"].includes(o.tls)) throw new Error(`--tls: expected off, on or both, got ${o.tls}`);
    }
    else if (a === "--fetch") {
      o.fetch = val();
      if (!["direct", "relay"].includes(o.fetch)) throw new Error(`--fetch: expected direct or relay, got ${o.fetch}`);
    }
    else if (a === "--help" || a === "-h") {
      process.stdout.write(readFileSync(join(here, "README.md"), "utf8"));
      process.exit(0);
    } else throw new Error(`unknown option ${a} (see --help)`);
  }
  for (const w of o.workers) if (!/^\d+x\d+$/.test(w)) throw new Error(`--workers: expected WxC like 2x1, got ${w}`);
  if (o.quick) {
    if (!argv.includes("--reps")) o.reps = 1;
    if (o.peers === null) o.peers = [];
  }
  if (o.peers === null) o.peers = ["dask", "ray"];
  o.workloads ??= Object.keys(WORKLOADS);
  for (const w of o.workloads) if (!WORKLOADS[w]) throw new Error(`unknown workload ${w}; known: ${Object.keys(WORKLOADS).join(", ")}`);
  return o;
}

function sizesOf(name, o) {
  const w = WORKLOADS[name];
  if (o.quick) return w.quick;
  // --n applies to the N-scaled workloads (W1, W1-gather, W1-serial, W1-fused, W2); the others keep their size.
  if (o.n && ["W1", "W1-gather", "W1-serial", "W1-fused", "W2"].includes(name)) return o.n.filter((n) => !w.cap || n <= w.cap);
  return w.sizes;
}

// ---------------------------------------------------------------------------------------------
// /proc
function procField(pid, field) {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}
/** Clock ticks per second of /proc/<pid>/stat's times (USER_HZ, 100 on Linux). */
const TICKS_PER_S = 100;
/**
 * CPU time (ms, user + system, all threads) of a process and its descendants (a worker's Python
 * pool), from /proc; NaN when unreadable. Resolution 10 ms per process.
 */
function treeCpuMs(pid) {
  let ms = 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    ms += ((Number(f[11]) + Number(f[12])) * 1e3) / TICKS_PER_S; // utime, stime (fields 14, 15)
    for (const t of readdirSync(`/proc/${pid}/task`)) {
      for (const c of readFileSync(`/proc/${pid}/task/${t}/children`, "utf8").split(" ").filter(Boolean)) ms += treeCpuMs(Number(c));
    }
  } catch {
    return NaN;
  }
  return ms;
}
/** CPU so far (ms) of the client (this process), the server and the workers. */
function cpuNow(spid, wpids) {
  const c = process.cpuUsage();
  return { client: (c.user + c.system) / 1e3, server: treeCpuMs(spid), workers: wpids.reduce((a, p) => a + treeCpuMs(p), 0) };
}

/** Resets the peak RSS (VmHWM) of a process to its current RSS (Linux, own children). */
function resetPeak(pid) {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, "5");
  } catch {
    /* not supported: the peak then covers the process's life */
  }
}

// ---------------------------------------------------------------------------------------------
// Measuring
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function withTimeout(p, ms, what) {
  let timer;
  return Promise.race([p, new Promise((_, rej) => (timer = setTimeout(() => rej(new Error(`${what}: timed out after ${ms / 1000} s`)), ms)))]).finally(() =>
    clearTimeout(timer),
  );
}

function summarize(name, n, config, reps) {
  const walls = reps.map((r) => r.wallMs);
  const wall = median(walls);
  const mid = reps.find((r) => r.wallMs === wall) ?? reps[0];
  const tasks = reps[0].tasks;
  const out = {
    workload: name,
    n,
    workers: config,
    tasks,
    reps: reps.length,
    wallMs: { median: wall, min: Math.min(...walls), max: Math.max(...walls), all: walls },
    tasksPerS: tasks / (wall / 1e3),
    planMs: median(reps.map((r) => r.planMs ?? 0)),
    buildMs: median(reps.map((r) => r.buildMs ?? 0)),
    encodeMs: median(reps.map((r) => r.encodeMs ?? 0)),
    sendMs: median(reps.map((r) => r.sendMs ?? 0)),
  };
  if (reps[0].mbps !== undefined) {
    out.transferMs = { median: median(reps.map((r) => r.transferMs)), min: Math.min(...reps.map((r) => r.transferMs)), max: Math.max(...reps.map((r) => r.transferMs)) };
    out.mbps = median(reps.map((r) => r.mbps));
    out.mbpsAll = reps.map((r) => r.mbps);
    out.transferMsAll = reps.map((r) => r.transferMs);
    // W6-fetch: the fetch alone, before the result's pages were read.
    if (reps[0].fetchOnlyMs !== undefined) out.fetchOnlyMs = { median: median(reps.map((r) => r.fetchOnlyMs)), min: Math.min(...reps.map((r) => r.fetchOnlyMs)), max: Math.max(...reps.map((r) => r.fetchOnlyMs)) };
  }
  const spawn = reps.map((r) => r.spawnRate).filter((x) => x !== undefined);
  if (spawn.length) {
    // W4: the machine's spawn rate measured after each repetition (its loops pinned: the
    // ceiling), and our share of it.
    out.spawnRate = { median: median(spawn), min: Math.min(...spawn), max: Math.max(...spawn), pinned: reps.some((r) => r.spawnPinned) };
    out.ofSpawnRate = out.tasksPerS / out.spawnRate.median;
  }
  if (reps[0].serverPeak !== undefined) {
    out.serverPeakRss = Math.max(...reps.map((r) => r.serverPeak));
    out.workerPeakRss = Math.max(...reps.map((r) => r.workerPeak));
    // Growth over the idle server, on the fresh server (repetition 1; later ones reuse freed memory).
    out.serverBytesPerTask = reps[0].serverGrowth / tasks;
    out.serverBytesPerTaskAll = reps.map((r) => Math.round(r.serverGrowth / tasks));
  }
  if (reps[0].computeMs !== undefined) {
    out.computeMs = median(reps.map((r) => r.computeMs));
    out.fetchMs = median(reps.map((r) => r.fetchMs));
    out.peakRss = Math.max(...reps.map((r) => r.peakRss));
    out.rssGrowthPerTask = reps[0].rssGrowth / tasks;
  }
  if (reps[0].cpuMs !== undefined) {
    // CPU of each process during the repetition (ms, median over reps; /proc, 10 ms resolution).
    const part = (k) => spread(reps.map((r) => r.cpuMs[k]));
    out.cpuMs = { client: part("client"), server: part("server"), workers: part("workers"), total: spread(reps.map((r) => r.cpuMs.client + r.cpuMs.server + r.cpuMs.workers)) };
    if (WORKLOADS[name].calls) {
      // Function calls (W5, W5-py): what a call costs beyond the function's own time.
      const calls = WORKLOADS[name].calls(n);
      const fnUs = WORKLOADS[name].functionUs?.() ?? 0;
      const perCall = (ms) => (ms * 1e3) / calls - fnUs;
      out.perCall = {
        calls,
        functionUs: fnUs,
        cpuUs: spread(reps.map((r) => perCall(r.cpuMs.client + r.cpuMs.server + r.cpuMs.workers))),
        clientCpuUs: spread(reps.map((r) => perCall(r.cpuMs.client) + fnUs)),
        serverCpuUs: spread(reps.map((r) => perCall(r.cpuMs.server) + fnUs)),
        workerCpuUs: spread(reps.map((r) => perCall(r.cpuMs.workers))),
        wallPerCpuUs: spread(reps.map((r) => perCall(r.wallMs * r.cpus))),
      };
    }
  }
  void mid;
  return out;
}

/**
 * Our side of one cell: a fresh cluster (`tls`: every connection encrypted); `rep()` runs one
 * repetition, `close()` stops it.
 */
async function openCell(name, n, config, o, log, tls = false) {
  const [nw, nc] = config.split("x").map(Number);
  const cluster = await LocalCluster.start({ workers: nw, cpus: nc, ...(tls ? { tls: true } : {}), ...(o.pin ? { pin: true } : {}) });
  const spid = cluster.serverProcess.pid;
  const wpids = cluster.workerProcesses.map((p) => p.pid);
  // --fetch relay: large results come through the server as before `fetch-direct` (an A/B in one build).
  const client = await cluster.connect(o.fetch === "relay" ? { directFetch: false } : {}).catch(async (e) => {
    await cluster.stop();
    throw e;
  });
  const reps = [];
  return {
    reps,
    async rep(r) {
      collectGarbage();
      await new Promise((res) => setTimeout(res, 50));
      resetPeak(spid);
      wpids.forEach(resetPeak);
      const idle = procField(spid, "VmRSS");
      const cpu0 = cpuNow(spid, wpids);
      const rep = await withTimeout(WORKLOADS[name].run(client, n, { cpus: nw * nc, pin: o.pin }), o.timeoutS * 1e3, `${name} N=${n} ${config}`);
      const cpu1 = cpuNow(spid, wpids);
      rep.cpuMs = { client: cpu1.client - cpu0.client, server: cpu1.server - cpu0.server, workers: cpu1.workers - cpu0.workers };
      rep.cpus = nw * nc;
      delete rep.values;
      rep.serverPeak = procField(spid, "VmHWM");
      rep.serverGrowth = rep.serverPeak - idle;
      rep.workerPeak = Math.max(...wpids.map((p) => procField(p, "VmHWM")));
      reps.push(rep);
      log(`  ${name} N=${n} ${config}${tls ? " tls" : ""} rep ${r + 1}: ours ${rep.wallMs.toFixed(1)} ms`);
    },
    async close() {
      await client.close().catch(() => undefined);
      await cluster.stop();
    },
  };
}

function runLimitProcess(n, fused) {
  const out = execFileSync(process.execPath, [join(here, "limit.mjs"), "--n", String(n), ...(fused ? ["--fused"] : [])], { encoding: "utf8", maxBuffer: 1 << 20 });
  return JSON.parse(out.trim().split("\n").pop());
}

// ---------------------------------------------------------------------------------------------
// Peers (Dask, Ray): Python child processes printing JSON
const PEER_WORKLOADS = new Set(["W1", "W1-gather", "W2", "W3", "W4-true", "W4-cat", "W5", "W6", "W6-fetch"]);
const PEER_MODULES = { dask: "dask.distributed", ray: "ray" };

function peerAvailable(peer) {
  try {
    execFileSync("python3", ["-c", `import ${PEER_MODULES[peer]}`], { stdio: "ignore", timeout: 60_000 });
    return true;
  } catch {
    return false;
  }
}

/**
 * A peer's cluster of one shape, serving repetitions (peers/common.py `serve`): started on first
 * use, kept for the cells of that shape, restarted after a repetition that overran its timeout
 * (its process group is interrupted, then killed).
 */
class PeerProcess {
  constructor(peer, config, log) {
    this.peer = peer;
    this.config = config;
    this.log = log;
    this.child = undefined;
    this.lines = [];
    this.waiter = undefined;
    this.info = undefined;
    this.stderr = "";
  }

  async start() {
    const child = spawn("python3", [join(here, "peers", `${this.peer}_bench.py`), "--workers", this.config], { stdio: ["pipe", "pipe", "pipe"], detached: true });
    this.child = child;
    this.lines = [];
    this.stderr = "";
    createInterface({ input: child.stdout }).on("line", (l) => {
      this.lines.push(l);
      this.waiter?.();
    });
    child.stderr.on("data", (d) => (this.stderr = (this.stderr + d).slice(-4000)));
    child.on("exit", () => this.waiter?.());
    const ready = await this.nextLine(300_000);
    if (!ready) throw new Error(`${this.peer} ${this.config} did not start: ${this.stderr.trim().split("\n").slice(-3).join(" | ")}`);
    this.info = JSON.parse(ready);
  }

  /** The next stdout line, or undefined on exit or after `ms`. */
  async nextLine(ms) {
    const deadline = now() + ms;
    while (this.lines.length === 0) {
      if (!this.child || this.child.exitCode !== null || this.child.signalCode !== null) return undefined;
      const left = deadline - now();
      if (left <= 0) return undefined;
      await new Promise((res) => {
        const timer = setTimeout(res, left);
        this.waiter = () => {
          clearTimeout(timer);
          res();
        };
      });
      this.waiter = undefined;
    }
    return this.lines.shift();
  }

  /** One repetition: its figures, `{ timedOut: true }` or `{ error }`. */
  async run(w, n, timeoutS) {
    if (!this.child) await this.start();
    this.child.stdin.write(JSON.stringify({ w, n }) + "\n");
    const line = await this.nextLine(timeoutS * 1e3);
    if (line === undefined) {
      const exited = this.child.exitCode !== null || this.child.signalCode !== null;
      await this.stop(true);
      return exited ? { error: `exited: ${this.stderr.trim().split("\n").slice(-2).join(" | ")}` } : { timedOut: true };
    }
    return JSON.parse(line);
  }

  /** Stops the cluster: stdin closed (it shuts down in order); `interrupt`: SIGINT first. SIGKILL after 30 s. */
  async stop(interrupt = false) {
    const child = this.child;
    if (!child) return;
    this.child = undefined;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise((res) => child.once("exit", res));
    if (interrupt) {
      try {
        process.kill(-child.pid, "SIGINT");
      } catch {
        /* already gone */
      }
    }
    child.stdin.end();
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        /* already gone */
      }
    }, 30_000);
    await gone;
    clearTimeout(timer);
  }
}

/** Median, min and max of figures. */
const spread = (xs) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs) });

/** A peer's side of a row from its repetitions (ratio = peer / ours: > 1 means we are faster). */
function peerSummary(reps, ours, timeoutS) {
  const ok = reps.filter((r) => !r.error && !r.timedOut);
  const timedOut = reps.some((r) => r.timedOut);
  const error = reps.find((r) => r.error)?.error;
  const out = { reps: ok.length };
  if (timedOut) out.didNotFinishS = timeoutS;
  if (error && !ok.length) out.error = error;
  if (!ok.length) return out;
  out.tasks = ok[0].tasks;
  out.wallMs = spread(ok.map((r) => r.wallMs));
  out.tasksPerS = out.tasks / (out.wallMs.median / 1e3);
  if (ok[0].transferMs !== undefined) {
    out.transferMs = spread(ok.map((r) => r.transferMs));
    out.mbps = median(ok.map((r) => r.mbps));
  }
  // W6: the transfer phase alone on both sides; otherwise the whole wall time.
  if (ours && !ours.error) out.ratio = out.transferMs && ours.transferMs ? out.transferMs.median / ours.transferMs.median : out.wallMs.median / ours.wallMs.median;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Output (the table is rendered by table.mjs, also from a saved --json result)
const fmtInt = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString("en-US") : "-");
const fmtRatio = (x) => (Number.isFinite(x) ? (x >= 10 ? `${Math.round(x)}x` : `${x.toFixed(2)}x`) : "-");

function machineNote() {
  const cpu = (cpus()[0]?.model ?? "?").replace(/\s+/g, " ").trim();
  return `${cpus().length} cores (${cpu}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM, Linux ${release()}, Node ${process.version}`;
}

/** The targets of issue #26, from the rows of this run (null: not measured in it). */
/**
 * TLS vs plain TCP, per (workload, N, shape) run both ways: repetition i of one against
 * repetition i of the other; throughput ratio TLS / plain (1 = no cost), min/median/max.
 */
function tlsRatios(rows) {
  const out = [];
  for (const t of rows.filter((r) => r.tls && !r.error)) {
    const p = rows.find((r) => !r.tls && !r.error && r.workload === t.workload && r.n === t.n && r.workers === t.workers);
    if (!p) continue;
    const mb = t.mbpsAll !== undefined;
    const a = mb ? t.mbpsAll : t.wallMs.all;
    const b = mb ? p.mbpsAll : p.wallMs.all;
    const k = Math.min(a.length, b.length);
    const ratios = Array.from({ length: k }, (_, i) => (mb ? a[i] / b[i] : b[i] / a[i]));
    out.push({ workload: t.workload, n: t.n, workers: t.workers, metric: mb ? "MB/s" : "tasks/s", min: Math.min(...ratios), median: median(ratios), max: Math.max(...ratios), plain: mb ? p.mbps : p.tasksPerS, tls: mb ? t.mbps : t.tasksPerS });
  }
  return out;
}

function evaluateTargets(rows) {
  const ok = (r) => r && !r.error;
  const find = (w, n, c) => rows.find((r) => r.workload === w && r.n === n && (c === undefined || r.workers === c) && ok(r));
  const t = [];
  const w1 = find("W1", 1_000_000, "2x1");
  t.push({ target: "W1 N=1M on 2x1 >= 1,000,000 tasks/s", met: w1 ? w1.tasksPerS >= 1e6 : null, measured: w1 ? fmtInt(w1.tasksPerS) : "-" });
  t.push({ target: "server <= 100 B/task (W1 N=1M, 2x1)", met: w1 ? w1.serverBytesPerTask <= 100 : null, measured: w1 ? fmtInt(w1.serverBytesPerTask) : "-" });
  const g = find("W1-gather", 100_000, "2x1");
  t.push({ target: "W1-gather N=100k on 2x1 >= 500,000 tasks/s", met: g ? g.tasksPerS >= 5e5 : null, measured: g ? fmtInt(g.tasksPerS) : "-" });
  const w6 = find("W6", 256 * 2 ** 20, "2x1");
  t.push({ target: "W6 >= 1 GB/s", met: w6 ? w6.mbps >= 1000 : null, measured: w6 ? `${fmtInt(w6.mbps)} MB/s` : "-" });
  const vsPeers = (ws, factor, what) => {
    const cmp = rows.filter((r) => ws.includes(r.workload) && ok(r) && r.peers).flatMap((r) => {
      const rs = Object.entries(r.peers).filter(([, p]) => Number.isFinite(p.ratio));
      if (!rs.length) return [];
      const [peer, p] = rs.reduce((a, b) => (b[1].ratio < a[1].ratio ? b : a));
      return [{ r, peer, ratio: p.ratio }];
    });
    t.push({
      target: `${ws.join(", ")} >= ${factor}x ${what}`,
      met: cmp.length ? cmp.every((c) => c.ratio >= factor) : null,
      measured: cmp.length ? cmp.map((c) => `${c.r.workload}/${fmtInt(c.r.n)}/${c.r.workers}: ${fmtRatio(c.ratio)} (vs ${c.peer})`).join(", ") : "no peer figures",
    });
  };
  vsPeers(["W4-true", "W4-cat"], 1, "the best peer (wall)");
  vsPeers(["W5"], 10, "the faster peer (wall)");
  vsPeers(["W6"], 1.5, "the faster peer's transfer phase");
  return t;
}

// ---------------------------------------------------------------------------------------------
async function main() {
  const o = parseArgs(process.argv.slice(2));
  const log = (s) => process.stderr.write(s + "\n");
  const t0 = now();
  const rows = [];
  // The peers that can run here, one serving process per (peer, shape), started on first use.
  const peers = [];
  for (const peer of o.peers) {
    if (!PEER_MODULES[peer]) throw new Error(`unknown peer ${peer}`);
    if (!peerAvailable(peer)) peers.push({ peer, available: false, note: "not installed: column skipped (install with `pip install dask distributed ray`)" });
    else peers.push({ peer, available: true, version: undefined, notes: new Set(), procs: new Map() });
  }
  const peersOn = peers.filter((p) => p.available);
  for (const name of o.workloads) {
    const w = WORKLOADS[name];
    for (const n of sizesOf(name, o)) {
      if (w.inProcess) {
        const reps = [];
        for (let r = 0; r < o.reps; r++) {
          const x = runLimitProcess(n, w.fused);
          log(`  ${name} N=${n} rep ${r + 1}: ${x.wallMs.toFixed(1)} ms`);
          reps.push({ ...x, planMs: x.buildMs + x.encodeMs });
        }
        rows.push(summarize(name, n, "-", reps));
        continue;
      }
      // --tls both: every cell plain (with the peers), then with TLS (ours only).
      const modes = o.tls === "both" ? [false, true] : [o.tls === "on"];
      for (const config of o.workers) for (const tls of modes) {
        if (w.onlyConfigs && !w.onlyConfigs.includes(config)) continue;
        const withPeers = PEER_WORKLOADS.has(name) && !tls ? peersOn : [];
        const peerReps = new Map(withPeers.map((p) => [p.peer, []]));
        let cell;
        let error;
        try {
          cell = await openCell(name, n, config, o, log, tls);
          // Interleaved: ours, then each peer, then ours again... so that the machine's drift
          // hits every system alike. A peer that overran the timeout is not run again on the cell.
          for (let r = 0; r < o.reps; r++) {
            try {
              await cell.rep(r);
            } catch (e) {
              error = e.message;
              log(`  ${name} N=${n} ${config}: ${e.message}`);
              break;
            }
            for (const p of withPeers) {
              const done = peerReps.get(p.peer);
              if (done.some((x) => x.timedOut || x.error)) continue;
              let proc = p.procs.get(config);
              if (!proc) p.procs.set(config, (proc = new PeerProcess(p.peer, config, log)));
              let res;
              try {
                res = await proc.run(name, n, o.timeoutS);
              } catch (e) {
                res = { error: e.message };
              }
              if (proc.info) {
                p.version = proc.info.version;
                for (const x of proc.info.notes ?? []) p.notes.add(x);
              }
              done.push(res);
              log(`  ${name} N=${n} ${config} rep ${r + 1}: ${p.peer} ${res.timedOut ? `did not finish in ${o.timeoutS} s` : res.error ? `error: ${res.error}` : `${res.wallMs.toFixed(1)} ms`}`);
            }
          }
        } catch (e) {
          error = e.message;
          log(`  ${name} N=${n} ${config}: ${e.message}`);
        } finally {
          await cell?.close();
        }
        const row = error || !cell?.reps.length ? { workload: name, n, workers: config, error: error ?? "no repetition" } : summarize(name, n, config, cell.reps);
        for (const p of withPeers) (row.peers ??= {})[p.peer] = peerSummary(peerReps.get(p.peer), row, o.timeoutS);
        if (tls) row.tls = true;
        rows.push(row);
      }
    }
  }
  for (const p of peersOn) for (const proc of p.procs.values()) await proc.stop();
  const peerNotes = peers.map((p) =>
    p.available ? { peer: p.peer, available: true, version: p.version, note: `${p.peer} ${p.version ?? ""}: same N and reps as ours, interleaved; ${[...p.notes].join("; ")}` } : { peer: p.peer, available: false, note: p.note },
  );
  if (!o.peers.length) peerNotes.push({ peer: "peers", available: false, note: "skipped (--peers dask,ray to compare; install with `pip install dask distributed ray`)" });
  const result = {
    date: new Date().toISOString(),
    command: ["node", "bench/e2e/run.mjs", ...process.argv.slice(2)].join(" "),
    machine: machineNote(),
    reps: o.reps,
    timeoutS: o.timeoutS,
    quick: o.quick,
    totalS: (now() - t0) / 1e3,
    rows,
    peers: peerNotes,
    // The targets are about the plain protocol (TLS rows are compared in `tls`).
    targets: evaluateTargets(rows.filter((r) => !r.tls)),
    tls: tlsRatios(rows),
  };
  if (o.json) process.stdout.write(JSON.stringify(result) + "\n");
  else process.stdout.write(render(result) + `\n(total ${result.totalS.toFixed(0)} s)\n`);
  const failed = rows.filter((r) => r.error);
  process.exit(failed.length ? 1 : 0);
}

main().catch((e) => {
  process.stderr.write(`bench: ${e.stack ?? e}\n`);
  process.exit(2);
});
