/**
 * Turns a {@link Trace} into the compact data the report page draws: executions as typed arrays
 * (sorted by lane, then start), label groups and colors, the per-group summary, the plan graph
 * (tasks, or label groups beyond {@link GRAPH_MAX_TASKS}), transfers and totals.
 */
import type { Trace } from "./parse.js";

/** Plans with more tasks than this are drawn as a graph of label groups. */
export const GRAPH_MAX_TASKS = 3000;

/** Typed arrays, base64-encoded for embedding. */
export interface Columns {
  n: number;
  /** Int32: task id. */
  id: string;
  /** Uint32: global lane index. */
  lane: string;
  /** Uint32: label index (into `labels`). */
  label: string;
  /** Float64: start and end, ms since the run's start. */
  start: string;
  end: string;
  /** Uint8: 0 finished, 1 failed, 2 did not end. */
  status: string;
  /** Float64: result size in bytes. */
  size: string;
}

export interface SummaryRow {
  group: number;
  planned: number;
  runs: number;
  failed: number;
  totalMs: number;
  meanMs: number;
  maxMs: number;
  bytes: number;
  labels: number;
}

export interface GraphData {
  kind: "tasks" | "groups" | "none";
  /** Number of tasks the graph stands for. */
  tasks: number;
  /** Per node: layer, position in the layer, color group, and a text (label or group name). */
  layer: number[];
  pos: number[];
  group: number[];
  text: string[];
  /** Node counts (group graph) or task ids (task graph). */
  value: number[];
  /** Edges as node index pairs, with a count each (group graph). */
  edges: number[];
  edgeCount: number[];
  layerSize: number[];
}

export interface ReportData {
  dir: string;
  generated: string;
  warnings: string[];
  files: string[];
  /** Unix ms of the run's start (the earliest record). */
  t0: number;
  duration: number;
  workers: Array<{ id: number; addr: string; cpus: number; lost: number | null; firstLane: number; lanes: number; hasFile: boolean }>;
  lanes: Array<{ worker: number; name: string; start: number; end: number }>;
  labels: string[];
  labelGroup: number[];
  groups: string[];
  colors: string[];
  exec: Columns;
  summary: SummaryRow[];
  graph: GraphData;
  /** Per sender, receiver and way (`link`: hard links of the sender's data files, no byte copied). */
  transfers: Array<{ from: string; to: string; via: "stream" | "link"; count: number; bytes: number; durMs: number; timed: number }>;
  cpu: Array<{ worker: number; cpus: number; t: number[]; proc: number[]; sys: number[] }>;
  totals: Array<[string, string]>;
  /** Tasks that failed on a worker (not their dependants), in time order, with the message. */
  failures: Array<{ id: number; label: string; worker: string; atMs: number; message: string }>;
  /** Machine-readable figures (tests, the page's data attributes). */
  stats: { tasks: number; runs: number; failed: number; groups: number; transfers: number };
}

const PALETTE = [
  "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
  "#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#aec7e8",
];

function color(i: number): string {
  if (i < PALETTE.length) return PALETTE[i]!;
  const h = (i * 137.508) % 360;
  return `hsl(${h.toFixed(0)},55%,55%)`;
}

/** The color group of a label: the text before the first `:` (the guide's rule). */
export function groupOf(label: string): string {
  const k = label.indexOf(":");
  return (k < 0 ? label : label.slice(0, k)).trim() || label;
}

const b64 = (a: ArrayBufferView): string => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("base64");

function fmtMs(ms: number): string {
  if (ms < 1) return `${(ms * 1000).toFixed(0)} µs`;
  if (ms < 1000) return `${ms.toFixed(ms < 10 ? 2 : 1)} ms`;
  return `${(ms / 1000).toFixed(ms < 10_000 ? 3 : 1)} s`;
}

export function fmtBytes(b: number): string {
  if (b < 1024) return `${b} B`;
  if (b < 1024 * 1024) return `${(b / 1024).toFixed(1)} KiB`;
  if (b < 1024 ** 3) return `${(b / 1024 / 1024).toFixed(1)} MiB`;
  return `${(b / 1024 ** 3).toFixed(2)} GiB`;
}

/** Builds the report data. */
export function buildModel(tr: Trace): ReportData {
  const t0 = tr.first;
  const ms = (abs: number): number => (abs - t0) / 1000;
  const typeName = (t: number): string => tr.types[t] ?? `type ${t}`;

  // Labels: the task's label, or its type name when it has none.
  const labels: string[] = [];
  const labelIdx = new Map<string, number>();
  const labelOf = (s: string): number => {
    let i = labelIdx.get(s);
    if (i === undefined) {
      i = labels.length;
      labels.push(s);
      labelIdx.set(s, i);
    }
    return i;
  };
  const taskLabel = (id: number): number => {
    const t = tr.tasks.get(id);
    if (!t) return labelOf("(not in the plan trace)");
    return labelOf(t.label !== "" ? t.label : typeName(t.type));
  };

  // Lanes: per worker, one per CPU slot, then light (slot -1) tasks packed greedily.
  const workerIds = [...tr.workers.keys()].sort((a, b) => a - b);
  const byWorker = new Map<number, number[]>();
  tr.executions.forEach((e, i) => {
    let l = byWorker.get(e.worker);
    if (!l) byWorker.set(e.worker, (l = []));
    l.push(i);
  });
  // A worker that disconnected after the last task ended was stopped, not lost.
  const lastEnd = tr.executions.reduce((m, e) => Math.max(m, e.end), -Infinity);
  const lostDuringRun = (at: number | undefined): boolean => at !== undefined && at < lastEnd;
  const lanes: ReportData["lanes"] = [];
  const workers: ReportData["workers"] = [];
  const laneOfExec = new Uint32Array(tr.executions.length);
  for (const wid of workerIds) {
    const w = tr.workers.get(wid)!;
    const list = byWorker.get(wid) ?? [];
    list.sort((a, b) => tr.executions[a]!.start - tr.executions[b]!.start);
    let slots = w.cpus;
    for (const i of list) slots = Math.max(slots, tr.executions[i]!.slot + 1);
    const firstLane = lanes.length;
    for (let s = 0; s < slots; s++) lanes.push({ worker: wid, name: `cpu ${s}`, start: 0, end: 0 });
    const lightEnds: number[] = [];
    for (const i of list) {
      const e = tr.executions[i]!;
      if (e.slot >= 0) {
        laneOfExec[i] = firstLane + e.slot;
        continue;
      }
      let k = lightEnds.findIndex((end) => end <= e.start);
      if (k < 0) {
        k = lightEnds.length;
        lightEnds.push(0);
      }
      lightEnds[k] = e.end;
      laneOfExec[i] = firstLane + slots + k;
    }
    for (let k = 0; k < Math.max(1, lightEnds.length); k++) {
      lanes.push({ worker: wid, name: k === 0 ? "main" : `light ${k + 1}`, start: 0, end: 0 });
    }
    workers.push({
      id: wid,
      addr: w.addr,
      cpus: w.cpus,
      lost: lostDuringRun(w.lost) ? ms(w.lost!) : null,
      firstLane,
      lanes: lanes.length - firstLane,
      hasFile: w.hasFile,
    });
  }

  // Executions sorted by lane, then start.
  const n = tr.executions.length;
  const order = Array.from({ length: n }, (_, i) => i);
  order.sort((a, b) => laneOfExec[a]! - laneOfExec[b]! || tr.executions[a]!.start - tr.executions[b]!.start);
  const id = new Int32Array(n);
  const lane = new Uint32Array(n);
  const lab = new Uint32Array(n);
  const start = new Float64Array(n);
  const end = new Float64Array(n);
  const status = new Uint8Array(n);
  const size = new Float64Array(n);
  for (const l of lanes) l.start = l.end = 0;
  let k = 0;
  for (const i of order) {
    const e = tr.executions[i]!;
    id[k] = e.id;
    lane[k] = laneOfExec[i]!;
    lab[k] = taskLabel(e.id);
    start[k] = ms(e.start);
    end[k] = ms(e.end);
    status[k] = e.status;
    size[k] = e.size;
    k++;
  }
  // Lane index ranges in the sorted arrays.
  let j = 0;
  lanes.forEach((l, li) => {
    l.start = j;
    while (j < n && lane[j] === li) j++;
    l.end = j;
  });
  // Planned tasks that never ran still get a label (for the summary and the graph).
  for (const t of tr.tasks.values()) taskLabel(t.id);

  // Groups, ordered by number of tasks (most frequent first gets the first colors).
  const groupCount = new Map<string, number>();
  const countGroup = (label: string, c: number): void => {
    const g = groupOf(label);
    groupCount.set(g, (groupCount.get(g) ?? 0) + c);
  };
  const perLabel = new Uint32Array(labels.length);
  for (const t of tr.tasks.values()) perLabel[taskLabel(t.id)]!++;
  for (let i = 0; i < n; i++) if (!tr.tasks.has(id[i]!)) perLabel[lab[i]!]!++;
  labels.forEach((l, i) => countGroup(l, perLabel[i]!));
  const groups = [...groupCount.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).map((e) => e[0]);
  const groupIdx = new Map(groups.map((g, i) => [g, i]));
  const labelGroup = labels.map((l) => groupIdx.get(groupOf(l))!);

  // Summary per group.
  const rows: SummaryRow[] = groups.map((_, g) => ({ group: g, planned: 0, runs: 0, failed: 0, totalMs: 0, meanMs: 0, maxMs: 0, bytes: 0, labels: 0 }));
  labels.forEach((_, i) => {
    if (perLabel[i]! > 0) rows[labelGroup[i]!]!.labels++;
  });
  for (const t of tr.tasks.values()) rows[labelGroup[taskLabel(t.id)]!]!.planned++;
  let busyMs = 0;
  let produced = 0;
  for (let i = 0; i < n; i++) {
    const r = rows[labelGroup[lab[i]!]!]!;
    if (status[i] === 1) {
      r.failed++;
      continue;
    }
    const d = end[i]! - start[i]!;
    r.runs++;
    r.totalMs += d;
    if (d > r.maxMs) r.maxMs = d;
    r.bytes += size[i]!;
    busyMs += d;
    produced += size[i]!;
  }
  for (const r of rows) r.meanMs = r.runs > 0 ? r.totalMs / r.runs : 0;

  const graph = buildGraph(tr, (tid) => labelGroup[taskLabel(tid)]!, (tid) => labels[taskLabel(tid)]!, groups);

  // Transfers, aggregated per (from, to).
  const wname = (w: number): string => (w === -2 ? "client" : w < 0 ? "?" : `worker ${w}`);
  const agg = new Map<string, ReportData["transfers"][number]>();
  let tBytes = 0;
  let tCount = 0;
  let fBytes = 0;
  let fCount = 0;
  for (const t of tr.transfers) {
    const key = `${t.from}>${t.to}>${t.via}`;
    let a = agg.get(key);
    if (!a) agg.set(key, (a = { from: wname(t.from), to: wname(t.to), via: t.via, count: 0, bytes: 0, durMs: 0, timed: 0 }));
    a.count++;
    a.bytes += t.bytes;
    if (t.dur >= 0) {
      a.durMs += t.dur / 1000;
      a.timed++;
    }
    if (t.to === -2) {
      fBytes += t.bytes;
      fCount++;
    } else {
      tBytes += t.bytes;
      tCount++;
    }
  }
  const transfers = [...agg.values()].sort((a, b) => b.bytes - a.bytes);

  const cpu = workerIds
    .filter((w) => (tr.cpu.get(w) ?? []).length > 0)
    .map((w) => {
      const s = tr.cpu.get(w)!;
      return { worker: w, cpus: tr.workers.get(w)!.cpus, t: s.map((x) => ms(x.at)), proc: s.map((x) => x.proc), sys: s.map((x) => x.sys) };
    });

  const duration = ms(tr.last);
  const totalCpus = workerIds.reduce((s, w) => s + tr.workers.get(w)!.cpus, 0);
  const failedRuns = rows.reduce((s, r) => s + r.failed, 0);
  const finishedRuns = n - failedRuns - status.filter((s) => s === 2).length;
  const unfinished = status.filter((s) => s === 2).length;
  const neverRan = [...tr.tasks.keys()].filter((t) => !tr.serverDone.has(t) && !tr.scheduled.has(t)).length;
  const schedMs = tr.rounds.reduce((s, r) => s + r.dur, 0) / 1000;
  const schedMax = tr.rounds.reduce((s, r) => Math.max(s, r.dur), 0) / 1000;
  let lat = 0;
  let latN = 0;
  for (const e of tr.executions) {
    const s = tr.scheduled.get(e.id);
    if (s && s.worker === e.worker && e.start >= s.at) {
      lat += (e.start - s.at) / 1000;
      latN++;
    }
  }
  const totals: Array<[string, string]> = [
    ["Wall time", fmtMs(duration)],
    ["Workers", `${workerIds.length} (${totalCpus} cpus)${workers.some((w) => w.lost !== null) ? `, ${workers.filter((w) => w.lost !== null).length} lost` : ""}`],
    ["Plans", `${tr.plans.length}`],
    ["Tasks planned", `${tr.tasks.size}`],
    ["Task runs", `${finishedRuns} finished${failedRuns ? `, ${failedRuns} failed` : ""}${unfinished ? `, ${unfinished} unfinished` : ""}`],
    ["Busy time", `${fmtMs(busyMs)}${totalCpus > 0 && duration > 0 ? ` (${((busyMs / (duration * totalCpus)) * 100).toFixed(1)}% of ${totalCpus} cpus)` : ""}`],
    ["Data produced", fmtBytes(produced)],
    ["Transfers", `${tCount} between workers (${fmtBytes(tBytes)}), ${fCount} to clients (${fmtBytes(fBytes)})`],
    ["Scheduler", `${tr.rounds.length} rounds, ${fmtMs(schedMs)} in total, longest ${fmtMs(schedMax)}`],
  ];
  if (latN > 0) totals.push(["Dispatch latency", `${fmtMs(lat / latN)} mean (scheduled → started)`]);
  if (neverRan > 0) totals.push(["Never ran", `${neverRan} planned tasks`]);

  const failures = [...tr.serverDone.entries()]
    .filter(([, d]) => d.failed)
    .sort((a, b) => a[1].at - b[1].at)
    .map(([tid, d]) => ({
      id: tid,
      label: tr.tasks.get(tid)?.label ?? "",
      worker: tr.workers.get(d.worker)?.addr ?? `worker ${d.worker}`,
      atMs: ms(d.at),
      message: d.message ?? "",
    }));

  return {
    failures,
    dir: tr.dir,
    generated: new Date().toISOString(),
    warnings: tr.warnings,
    files: tr.files,
    t0: t0 / 1000,
    duration,
    workers,
    lanes,
    labels,
    labelGroup,
    groups,
    colors: groups.map((_, i) => color(i)),
    exec: { n, id: b64(id), lane: b64(lane), label: b64(lab), start: b64(start), end: b64(end), status: b64(status), size: b64(size) },
    summary: rows,
    graph,
    transfers,
    cpu,
    totals,
    stats: { tasks: tr.tasks.size, runs: n, failed: failedRuns, groups: groups.length, transfers: tCount },
  };
}

/** Layers by longest path from the sources (Kahn's order, so forward references are fine). */
function taskLayers(tr: Trace): Map<number, number> {
  const indeg = new Map<number, number>();
  const cons = new Map<number, number[]>();
  for (const t of tr.tasks.values()) {
    let d = 0;
    for (const x of t.inputs) {
      if (!tr.tasks.has(x)) continue;
      d++;
      let c = cons.get(x);
      if (!c) cons.set(x, (c = []));
      c.push(t.id);
    }
    indeg.set(t.id, d);
  }
  const layer = new Map<number, number>();
  const queue: number[] = [];
  for (const [t, d] of indeg) if (d === 0) queue.push(t), layer.set(t, 0);
  for (let q = 0; q < queue.length; q++) {
    const t = queue[q]!;
    const l = layer.get(t)!;
    for (const c of cons.get(t) ?? []) {
      if ((layer.get(c) ?? -1) < l + 1) layer.set(c, l + 1);
      const d = indeg.get(c)! - 1;
      indeg.set(c, d);
      if (d === 0) queue.push(c);
    }
  }
  // Tasks on a cycle (a corrupt trace) keep whatever layer they reached.
  for (const t of tr.tasks.keys()) if (!layer.has(t)) layer.set(t, 0);
  return layer;
}

function emptyGraph(kind: GraphData["kind"], tasks: number): GraphData {
  return { kind, tasks, layer: [], pos: [], group: [], text: [], value: [], edges: [], edgeCount: [], layerSize: [] };
}

function buildGraph(tr: Trace, groupOfTask: (id: number) => number, labelText: (id: number) => string, groups: string[]): GraphData {
  const nTasks = tr.tasks.size;
  if (nTasks === 0) return emptyGraph("none", 0);
  const layers = taskLayers(tr);
  if (nTasks <= GRAPH_MAX_TASKS) {
    const g = emptyGraph("tasks", nTasks);
    const ids = [...tr.tasks.keys()].sort((a, b) => layers.get(a)! - layers.get(b)! || a - b);
    const node = new Map<number, number>();
    const byLayer: number[][] = [];
    for (const t of ids) {
      const l = layers.get(t)!;
      (byLayer[l] ??= []).push(t);
    }
    // Order each layer by the mean position of its inputs (one barycenter pass).
    const posOf = new Map<number, number>();
    for (let l = 0; l < byLayer.length; l++) {
      const row = byLayer[l] ?? [];
      if (l > 0) {
        const key = new Map<number, number>();
        for (const t of row) {
          const ins = tr.tasks.get(t)!.inputs.filter((x) => posOf.has(x));
          key.set(t, ins.length ? ins.reduce((s, x) => s + posOf.get(x)!, 0) / ins.length : Infinity);
        }
        row.sort((a, b) => key.get(a)! - key.get(b)! || a - b);
      }
      row.forEach((t, i) => {
        posOf.set(t, (i + 0.5) / row.length);
        node.set(t, g.layer.length);
        g.layer.push(l);
        g.pos.push(i);
        g.group.push(groupOfTask(t));
        g.text.push(labelText(t));
        g.value.push(t);
      });
      g.layerSize.push(row.length);
    }
    for (const t of tr.tasks.values()) {
      for (const x of t.inputs) {
        const a = node.get(x);
        if (a !== undefined) {
          g.edges.push(a, node.get(t.id)!);
          g.edgeCount.push(1);
        }
      }
    }
    return g;
  }
  // Aggregated by label group: a node per group placed at the lowest layer of its tasks.
  const g = emptyGraph("groups", nTasks);
  const minLayer = new Map<number, number>();
  const count = new Map<number, number>();
  const edges = new Map<string, number>();
  for (const t of tr.tasks.values()) {
    const gt = groupOfTask(t.id);
    const l = layers.get(t.id)!;
    minLayer.set(gt, Math.min(minLayer.get(gt) ?? Infinity, l));
    count.set(gt, (count.get(gt) ?? 0) + 1);
    for (const x of t.inputs) {
      if (!tr.tasks.has(x)) continue;
      const gx = groupOfTask(x);
      if (gx === gt) continue;
      const key = `${gx},${gt}`;
      edges.set(key, (edges.get(key) ?? 0) + 1);
    }
  }
  const gs = [...count.keys()].sort((a, b) => minLayer.get(a)! - minLayer.get(b)! || a - b);
  const ranks = [...new Set(gs.map((x) => minLayer.get(x)!))].sort((a, b) => a - b);
  const rankOf = new Map(ranks.map((r, i) => [r, i]));
  const node = new Map<number, number>();
  const rowLen = new Array<number>(ranks.length).fill(0);
  for (const x of gs) {
    const r = rankOf.get(minLayer.get(x)!)!;
    node.set(x, g.layer.length);
    g.layer.push(r);
    g.pos.push(rowLen[r]!++);
    g.group.push(x);
    g.text.push(groups[x]!);
    g.value.push(count.get(x)!);
  }
  g.layerSize = rowLen;
  for (const [key, c] of edges) {
    const [a, b] = key.split(",").map(Number) as [number, number];
    g.edges.push(node.get(a)!, node.get(b)!);
    g.edgeCount.push(c);
  }
  return g;
}
