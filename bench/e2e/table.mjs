#!/usr/bin/env node
// Renders the table of one `bench/e2e/run.mjs --json` result (issue #26: README's figures come
// from one run, with its date, machine and command line).
//   node bench/e2e/table.mjs result.json [--markdown]     (or the JSON on stdin)
import { readFileSync } from "node:fs";

const fmtInt = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString("en-US") : "-");
const fmtMs = (x) => (Number.isFinite(x) ? (x >= 100 ? Math.round(x).toLocaleString("en-US") : x.toFixed(1)) : "-");
const fmtMB = (x) => (Number.isFinite(x) ? (x / 2 ** 20).toFixed(0) : "-");
const fmtRatio = (x) => (Number.isFinite(x) ? (x >= 10 ? `${Math.round(x)}x` : `${x.toFixed(2)}x`) : "-");
const spread = (s) => (s ? `${fmtMs(s.median)} [${fmtMs(s.min)}–${fmtMs(s.max)}]` : "-");

const INPROCESS = new Set(["W1-serial", "W1-fused"]);

/** The cells of a row: ours, then per peer its time (median [min–max]) and peer/ours. */
function cells(r, peersOn, timeoutS) {
  const inProc = INPROCESS.has(r.workload);
  const w6 = r.transferMs !== undefined;
  const row = [
    r.workload,
    fmtInt(r.n),
    r.tls ? `${r.workers} tls` : r.workers,
    fmtInt(r.tasks),
    r.error ? `ERROR: ${r.error.slice(0, 60)}` : spread(w6 ? r.transferMs : r.wallMs),
    r.error ? "" : w6 ? `${fmtInt(r.mbps)} MB/s` : fmtInt(r.tasksPerS),
    inProc ? fmtMB(r.peakRss) : fmtMB(r.serverPeakRss),
    inProc ? "" : r.workload.startsWith("W6") ? "" : fmtInt(r.serverBytesPerTask),
  ];
  for (const p of peersOn) {
    const pr = r.peers?.[p];
    if (!pr) row.push("", "");
    else if (!pr.wallMs) row.push(pr.didNotFinishS ? `did not finish in ${pr.didNotFinishS} s` : `error: ${(pr.error ?? "").slice(0, 50)}`, "");
    else {
      const dnf = pr.didNotFinishS ? ` (${pr.reps} rep(s); then did not finish in ${pr.didNotFinishS} s)` : "";
      row.push(`${spread(pr.transferMs ?? pr.wallMs)}${dnf}`, fmtRatio(pr.ratio));
    }
  }
  return row;
}

/** The table as text (aligned columns) or GitHub markdown, with what it was measured on. */
export function render(result, { markdown = false } = {}) {
  const peersOn = result.peers.filter((p) => p.available).map((p) => p.peer);
  const headers = ["workload", "N", "cluster", "tasks", "ours ms median [min–max]", "tasks/s", "srv peak MB", "srv B/task"];
  for (const p of peersOn) headers.push(`${p} ms median [min–max]`, `${p}/ours`);
  const rows = result.rows.map((r) => cells(r, peersOn, result.timeoutS));
  let s = "";
  const when = result.date ? `${result.date.slice(0, 16).replace("T", " ")} UTC` : "";
  const intro = [
    `HyperLoom e2e benchmark${when ? `, ${when}` : ""} — ${result.machine}`,
    result.command ? `command: \`${result.command}\`` : "",
    `${result.reps} rep(s) per cell${peersOn.length ? ", peers at the same N, repetitions interleaved (ours, " + peersOn.join(", ") + ", ours, ...)" : ""}; ms = first task built -> last result gathered (W6, W6-fetch: the transfer phase alone, on every side; ours in W6-fetch until a byte of every 4 KiB page of the result was read); peer/ours = peer median / our median (> 1: we are faster).`,
    "W1-serial: one process and one thread, stage after stage (not a limit); W1-fused: the plan built with the client API and evaluated in place, one thread's ceiling (a cluster's processes use several cores and can pass it). srv B/task = server RSS growth over idle (first rep).",
  ].filter(Boolean);
  if (markdown) {
    s += intro.map((l) => l + "  ").join("\n") + "\n\n";
    s += `| ${headers.join(" | ")} |\n|${headers.map((_, i) => (i === 0 || i === 2 ? "---" : "---:")).join("|")}|\n`;
    for (const r of rows) s += `| ${r.join(" | ")} |\n`;
  } else {
    s += intro.join("\n") + "\n\n";
    const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
    const line = (c) => c.map((x, i) => (i === 0 || i === 2 ? String(x).padEnd(widths[i]) : String(x).padStart(widths[i]))).join("  ");
    s += [line(headers), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n") + "\n";
  }
  s += "\n";
  for (const r of result.rows.filter((x) => x.spawnRate)) {
    s += `${markdown ? "- " : ""}${r.workload} ${r.workers}: ${fmtInt(r.tasksPerS)} programs/s = ${Math.round(100 * r.ofSpawnRate)}% of the machine's spawn rate, ${fmtInt(r.spawnRate.median)}/s [${fmtInt(r.spawnRate.min)}–${fmtInt(r.spawnRate.max)}] (bare posix_spawn + waitpid loops of the resolved path, one per cluster cpu${r.spawnRate.pinned ? ", each pinned to a CPU of its own" : ""}, after each rep)\n`;
  }
  for (const r of result.rows.filter((x) => x.perCall)) {
    const c = r.perCall;
    const us = (x) => `${x.median.toFixed(1)} [${x.min.toFixed(1)}–${x.max.toFixed(1)}]`;
    s += `${markdown ? "- " : ""}${r.workload} ${r.workers}: per call, beyond the function's own ${c.functionUs.toFixed(2)} µs: CPU of all processes ${us(c.cpuUs)} µs (client ${c.clientCpuUs.median.toFixed(1)}, server ${c.serverCpuUs.median.toFixed(1)}, workers ${us(c.workerCpuUs)}); wall x worker cpus / calls ${us(c.wallPerCpuUs)} µs\n`;
  }
  for (const p of result.peers) s += `${markdown ? "- " : ""}${p.note}\n`;
  if (result.tls?.length) {
    s += "\nTLS vs plain TCP (throughput with TLS / without, repetition by repetition; 1.00 = no cost):\n";
    for (const x of result.tls) {
      s += `${markdown ? "- " : "  "}${x.workload} N=${fmtInt(x.n)} ${x.workers} ${x.metric}: plain ${fmtInt(x.plain)}, tls ${fmtInt(x.tls)}; ratio min ${x.min.toFixed(2)} / median ${x.median.toFixed(2)} / max ${x.max.toFixed(2)}\n`;
    }
  }
  if (result.targets?.length) {
    s += `\n${markdown ? "Targets (issue #26):\n\n" : "Targets (issue #26):\n"}`;
    for (const t of result.targets) s += `${markdown ? "- " : "  "}[${t.met === null ? "n/a" : t.met ? "MET" : "MISS"}] ${t.target}: ${t.measured}\n`;
  }
  return s;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const file = process.argv.slice(2).find((a) => !a.startsWith("--"));
  const text = readFileSync(file ?? 0, "utf8");
  // The result is the last JSON line (the run prints nothing else on stdout with --json).
  const result = JSON.parse(text.trim().split("\n").pop());
  process.stdout.write(render(result, { markdown: process.argv.includes("--markdown") }));
}
