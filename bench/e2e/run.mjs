#!/usr/bin/env node
// HyperLoom end-to-end benchmark suite (issue 12). `npm run bench -- [options]`, or
//   node --expose-gc bench/e2e/run.mjs [--workloads W1,W3] [--n 10000,100000] [--workers 1x2,2x1]
//        [--reps 3] [--json] [--quick] [--peers dask,ray|none] [--peer-max-n 10000] [--peer-reps 1]
// Each workload runs on a fresh LocalCluster per (workload, N, cluster shape); see README.md here.
import { readFileSync, writeFileSync, existsSync } from "node:fs";
import { execFileSync, spawn } from "node:child_process";
import { cpus, totalmem, release } from "node:os";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { LocalCluster } from "hyperloom";
import { WORKLOADS } from "./workloads.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const now = () => Number(process.hrtime.bigint()) / 1e6;

// ---------------------------------------------------------------------------------------------
// Options
function parseArgs(argv) {
  const o = { workloads: null, n: null, workers: ["1x2", "2x1"], reps: 3, json: false, quick: false, peers: null, peerMaxN: 2_000, peerReps: 1, timeoutS: 180 };
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
    else if (a === "--peers") {
      const v = val();
      o.peers = v === "none" ? [] : v.split(",");
    }
    else if (a === "--peer-max-n") o.peerMaxN = Number(val());
    else if (a === "--peer-reps") o.peerReps = Number(val());
    else if (a === "--timeout") o.timeoutS = Number(val());
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
  // --n applies to the N-scaled workloads (W1, W1-gather, W1-limit, W2); the others keep their size.
  if (o.n && ["W1", "W1-gather", "W1-limit", "W2"].includes(name)) return o.n.filter((n) => !w.cap || n <= w.cap);
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
    wallMs: { median: wall, min: Math.min(...walls), max: Math.max(...walls) },
    tasksPerS: tasks / (wall / 1e3),
    planMs: median(reps.map((r) => r.planMs ?? 0)),
    buildMs: median(reps.map((r) => r.buildMs ?? 0)),
    encodeMs: median(reps.map((r) => r.encodeMs ?? 0)),
    sendMs: median(reps.map((r) => r.sendMs ?? 0)),
  };
  if (reps[0].mbps !== undefined) {
    out.transferMs = median(reps.map((r) => r.transferMs));
    out.mbps = median(reps.map((r) => r.mbps));
  }
  const spawn = reps.map((r) => r.spawnRate).filter((x) => x !== undefined);
  if (spawn.length) {
    // W4: the machine's spawn rate measured after each repetition, and our share of it.
    out.spawnRate = { median: median(spawn), min: Math.min(...spawn), max: Math.max(...spawn) };
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
  void mid;
  return out;
}

async function runCell(name, n, config, o, log) {
  const [nw, nc] = config.split("x").map(Number);
  const cluster = await LocalCluster.start({ workers: nw, cpus: nc });
  const spid = cluster.serverProcess.pid;
  const wpids = cluster.workerProcesses.map((p) => p.pid);
  const client = await cluster.connect();
  const reps = [];
  try {
    for (let r = 0; r < o.reps; r++) {
      globalThis.gc?.();
      await new Promise((res) => setTimeout(res, 50));
      resetPeak(spid);
      wpids.forEach(resetPeak);
      const idle = procField(spid, "VmRSS");
      const rep = await withTimeout(WORKLOADS[name].run(client, n, { cpus: nw * nc }), o.timeoutS * 1e3, `${name} N=${n} ${config}`);
      delete rep.values;
      rep.serverPeak = procField(spid, "VmHWM");
      rep.serverGrowth = rep.serverPeak - idle;
      rep.workerPeak = Math.max(...wpids.map((p) => procField(p, "VmHWM")));
      reps.push(rep);
      log(`  ${name} N=${n} ${config} rep ${r + 1}: ${rep.wallMs.toFixed(1)} ms`);
    }
  } finally {
    await client.close().catch(() => undefined);
    await cluster.stop();
  }
  return summarize(name, n, config, reps);
}

function runLimitProcess(n) {
  const out = execFileSync(process.execPath, [join(here, "limit.mjs"), "--n", String(n)], { encoding: "utf8", maxBuffer: 1 << 20 });
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

function runPeer(peer, config, cells, o, log) {
  return new Promise((resolve) => {
    const args = [join(here, "peers", `${peer}_bench.py`), "--workers", config, "--reps", String(o.peerReps), "--cells", JSON.stringify(cells)];
    log(`  ${peer} ${config}: ${cells.map((c) => `${c.w}/${c.n}`).join(" ")}`);
    const child = spawn("python3", args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const limitMs = Math.max(60, o.timeoutS) * 1e3 * 2;
    const timer = setTimeout(() => child.kill("SIGKILL"), limitMs);
    child.on("exit", (code) => {
      clearTimeout(timer);
      const last = stdout.trim().split("\n").pop() ?? "";
      try {
        resolve(JSON.parse(last));
      } catch {
        resolve({ peer, error: `exit ${code}: ${stderr.trim().split("\n").slice(-3).join(" | ")}` });
      }
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Output
const fmtInt = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString("en-US") : "-");
const fmtMs = (x) => (Number.isFinite(x) ? (x >= 100 ? Math.round(x).toLocaleString("en-US") : x.toFixed(1)) : "-");
const fmtMB = (x) => (Number.isFinite(x) ? (x / 2 ** 20).toFixed(0) : "-");
const fmtRatio = (x) => (Number.isFinite(x) ? (x >= 10 ? `${Math.round(x)}x` : `${x.toFixed(2)}x`) : "-");

function table(rows, headers, aligns) {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => cells.map((c, i) => (aligns[i] === "l" ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join("  ");
  return [line(headers), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

function machineNote() {
  let cpu = cpus()[0]?.model ?? "?";
  cpu = cpu.replace(/\s+/g, " ").trim();
  let peers = "";
  return `${cpus().length} cores (${cpu}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM, Linux ${release()}, Node ${process.version}${peers}`;
}

function render(result) {
  const peersOn = result.peers.filter((p) => p.available).map((p) => p.peer);
  const headers = ["workload", "N", "cluster", "tasks", "wall ms median", "[min-max]", "tasks/s", "plan ms", "srv peak MB", "wrk peak MB", "srv B/task", "MB/s"];
  for (const p of peersOn) headers.push(`${p} ms`, `${p}/ours`);
  const rows = [];
  for (const r of result.rows) {
    const lim = r.workload === "W1-limit";
    const row = [
      r.workload,
      fmtInt(r.n),
      r.workers,
      fmtInt(r.tasks),
      r.error ? "ERROR" : fmtMs(r.wallMs?.median),
      r.error ? r.error.slice(0, 40) : `[${fmtMs(r.wallMs?.min)}-${fmtMs(r.wallMs?.max)}]`,
      fmtInt(r.tasksPerS),
      fmtMs(r.planMs),
      lim ? fmtMB(r.peakRss) : fmtMB(r.serverPeakRss),
      lim ? "" : fmtMB(r.workerPeakRss),
      lim ? `(${fmtInt(r.rssGrowthPerTask)})` : r.workload.startsWith("W6") ? "" : fmtInt(r.serverBytesPerTask),
      r.mbps !== undefined ? fmtInt(r.mbps) : "",
    ];
    for (const p of peersOn) {
      const pr = r.peers?.[p];
      row.push(pr ? `${fmtMs(pr.wallMs.median)}${pr.scaled ? ` @${fmtInt(pr.n)}` : ""}` : "", pr ? `${fmtRatio(pr.ratio)}${pr.scaled ? "*" : ""}` : "");
    }
    rows.push(row);
  }
  const aligns = headers.map((_, i) => (i === 0 || i === 2 ? "l" : "r"));
  let s = `HyperLoom e2e benchmark — ${result.machine}\n`;
  s += `${result.reps} rep(s) per cell; wall = first task built -> last result gathered; plan = build+encode+send; peak RSS = VmHWM; srv B/task = server RSS growth over idle (first rep).\n`;
  s += "W1-limit: one process, no sockets (peak MB = that process; B/task in parentheses = its RSS growth).\n";
  s += `${peersOn.length ? "peer/ours = peer wall / our wall (> 1: we are faster); * = the peer ran N=--peer-max-n (shown @N), ratio per unit of N." : ""}\n\n`;
  s += table(rows, headers, aligns) + "\n";
  for (const r of result.rows.filter((x) => x.spawnRate)) {
    s += `\n${r.workload} ${r.workers}: ${fmtInt(r.tasksPerS)} programs/s = ${Math.round(100 * r.ofSpawnRate)}% of the machine's spawn rate, ${fmtInt(r.spawnRate.median)}/s [${fmtInt(r.spawnRate.min)}-${fmtInt(r.spawnRate.max)}] (spawn-rate: posix_spawn loops, one per cluster cpu, after each rep)`;
  }
  for (const p of result.peers) s += `\n${p.peer}: ${p.note}`;
  s += "\n\nTargets (issue 12):\n";
  for (const t of result.targets) s += `  [${t.met === null ? "n/a " : t.met ? "MET " : "MISS"}] ${t.target}: ${t.measured}\n`;
  return s;
}

function evaluateTargets(rows) {
  const find = (w, n, c) => rows.find((r) => r.workload === w && r.n === n && (c === undefined || r.workers === c) && !r.error);
  const cfgs = [...new Set(rows.filter((r) => r.workers !== "-").map((r) => r.workers))];
  const t = [];
  const best = (w, n) => rows.filter((r) => r.workload === w && r.n === n && !r.error && r.workers !== "-").sort((a, b) => b.tasksPerS - a.tasksPerS)[0];
  const b1m = best("W1", 1_000_000);
  t.push({ target: "W1 N=1M >= 500,000 tasks/s", met: b1m ? b1m.tasksPerS >= 500_000 : null, measured: cfgs.map((c) => `${c}: ${fmtInt(find("W1", 1_000_000, c)?.tasksPerS)}`).join(", ") });
  t.push({
    target: "W1 tasks/s at 1M >= 0.8x at 10k",
    met: cfgs.some((c) => find("W1", 1_000_000, c) && find("W1", 10_000, c)) ? cfgs.every((c) => !find("W1", 1_000_000, c) || find("W1", 1_000_000, c).tasksPerS >= 0.8 * find("W1", 10_000, c).tasksPerS) : null,
    measured: cfgs.map((c) => `${c}: ${fmtRatio(find("W1", 1_000_000, c)?.tasksPerS / find("W1", 10_000, c)?.tasksPerS)}`).join(", "),
  });
  const lim = rows.filter((r) => r.workload === "W1-limit" && !r.error);
  const ratios = lim.map((l) => ({ n: l.n, r: best("W1", l.n) ? best("W1", l.n).tasksPerS / l.tasksPerS : NaN })).filter((x) => Number.isFinite(x.r));
  t.push({ target: "W1 >= 0.2x W1-limit", met: ratios.length ? ratios.every((x) => x.r >= 0.2) : null, measured: ratios.map((x) => `N=${fmtInt(x.n)}: ${fmtRatio(x.r)}`).join(", ") });
  const w3 = rows.filter((r) => r.workload === "W3" && r.n === 10_000 && !r.error);
  t.push({ target: "W3 >= 50,000 tasks/s", met: w3.length ? w3.some((r) => r.tasksPerS >= 50_000) : null, measured: w3.map((r) => `${r.workers}: ${fmtInt(r.tasksPerS)}`).join(", ") });
  const w4 = rows.filter((r) => r.workload.startsWith("W4") && r.n === 1_000 && !r.error);
  t.push({ target: "W4 >= 1,000 programs/s", met: w4.length ? w4.every((r) => r.tasksPerS >= 1_000) : null, measured: w4.map((r) => `${r.workload} ${r.workers}: ${fmtInt(r.tasksPerS)}`).join(", ") });
  const m1 = rows.filter((r) => r.workload === "W1" && r.n === 1_000_000 && !r.error);
  t.push({ target: "server <= 150 B/task at 1M", met: m1.length ? m1.every((r) => r.serverBytesPerTask <= 150) : null, measured: m1.map((r) => `${r.workers}: ${fmtInt(r.serverBytesPerTask)}`).join(", ") });
  const w6 = rows.filter((r) => r.workload === "W6" && r.n === 256 * 2 ** 20 && !r.error);
  t.push({ target: "W6 >= 1 GB/s", met: w6.length ? w6.every((r) => r.mbps >= 1000) : null, measured: w6.map((r) => `${r.workers}: ${fmtInt(r.mbps)} MB/s`).join(", ") });
  // vs peers: W1, W2, W3, W5 >= 50x the faster peer; W4, W6 >= 1x.
  for (const [ws, factor] of [[["W1", "W1-gather", "W2", "W3", "W5"], 50], [["W4-true", "W4-cat", "W6", "W6-fetch"], 1]]) {
    const cmp = [];
    for (const r of rows) {
      if (!ws.includes(r.workload) || !r.peers || r.error) continue;
      const pw = Object.values(r.peers).filter((p) => !p.error).map((p) => p.wallMs.median);
      if (pw.length) cmp.push({ r, ratio: Math.min(...Object.values(r.peers).map((p) => p.ratio)) });
    }
    t.push({
      target: `${ws.join(", ")} >= ${factor}x faster than the faster peer`,
      met: cmp.length ? cmp.every((c) => c.ratio >= factor) : null,
      measured: cmp.length ? cmp.map((c) => `${c.r.workload}/${fmtInt(c.r.n)}/${c.r.workers}: ${fmtRatio(c.ratio)}`).join(", ") : "no peer figures",
    });
  }
  return t;
}

// ---------------------------------------------------------------------------------------------
async function main() {
  const o = parseArgs(process.argv.slice(2));
  const log = (s) => process.stderr.write(s + "\n");
  const t0 = now();
  const rows = [];
  for (const name of o.workloads) {
    const w = WORKLOADS[name];
    for (const n of sizesOf(name, o)) {
      if (w.inProcess) {
        const reps = [];
        for (let r = 0; r < o.reps; r++) {
          const x = runLimitProcess(n);
          log(`  ${name} N=${n} rep ${r + 1}: ${x.wallMs.toFixed(1)} ms`);
          reps.push({ ...x, planMs: x.buildMs + x.encodeMs });
        }
        rows.push(summarize(name, n, "-", reps));
        continue;
      }
      for (const config of o.workers) {
        if (w.onlyConfigs && !w.onlyConfigs.includes(config)) continue;
        try {
          rows.push(await runCell(name, n, config, o, log));
        } catch (e) {
          log(`  ${name} N=${n} ${config}: ${e.message}`);
          rows.push({ workload: name, n, workers: config, error: e.message });
        }
      }
    }
  }
  // Peers, after our runs (they must not share the cores with them).
  const peers = [];
  for (const peer of o.peers) {
    if (!PEER_MODULES[peer]) throw new Error(`unknown peer ${peer}`);
    if (!peerAvailable(peer)) {
      peers.push({ peer, available: false, note: `not installed: column skipped (install with \`pip install dask distributed ray\`)` });
      continue;
    }
    const entry = { peer, available: true, note: "" };
    peers.push(entry);
    const notes = new Set();
    for (const config of o.workers) {
      // N above --peer-max-n runs on the peer at the cap; the ratio is then per unit of N (marked *).
      const seen = new Set();
      const cells = rows
        .filter((r) => r.workers === config && PEER_WORKLOADS.has(r.workload) && !r.error)
        .map((r) => ({ w: r.workload, n: r.workload.startsWith("W6") ? r.n : Math.min(r.n, o.peerMaxN) }))
        .filter((c) => !seen.has(`${c.w}/${c.n}`) && seen.add(`${c.w}/${c.n}`));
      if (!cells.length) continue;
      const res = await runPeer(peer, config, cells, o, log);
      if (res.error) {
        notes.add(`failed on ${config}: ${res.error}`);
        continue;
      }
      entry.version = res.version;
      for (const n of res.notes ?? []) notes.add(n);
      for (const row of rows) {
        if (row.workers !== config || row.error) continue;
        const exact = res.results.find((pr) => pr.w === row.workload && pr.n === row.n);
        const capped = res.results.find((pr) => pr.w === row.workload && pr.n === Math.min(row.n, o.peerMaxN));
        const pr = exact ?? capped;
        if (!pr) continue;
        // Per unit of N when the peer ran a smaller N.
        (row.peers ??= {})[peer] = { ...pr, scaled: !exact, ratio: pr.wallMs.median / pr.n / (row.wallMs.median / row.n) };
      }
    }
    entry.note = `${peer} ${entry.version ?? ""}; ${o.peerReps} rep(s); N <= ${fmtInt(o.peerMaxN)} (--peer-max-n)${notes.size ? "; " + [...notes].join("; ") : ""}`;
  }
  if (!o.peers.length) peers.push({ peer: "peers", available: false, note: "skipped (--peers dask,ray to compare; install with `pip install dask distributed ray`)" });
  const result = { machine: machineNote(), reps: o.reps, quick: o.quick, totalS: (now() - t0) / 1e3, rows, peers, targets: evaluateTargets(rows) };
  if (o.json) process.stdout.write(JSON.stringify(result) + "\n");
  else process.stdout.write(render(result) + `\n(total ${result.totalS.toFixed(0)} s)\n`);
  const failed = rows.filter((r) => r.error);
  process.exit(failed.length ? 1 : 0);
}

main().catch((e) => {
  process.stderr.write(`bench: ${e.stack ?? e}\n`);
  process.exit(2);
});
