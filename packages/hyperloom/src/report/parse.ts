/**
 * Reads a trace directory (`server.trace`, `worker-<id>.trace`; the format is documented in
 * `crates/loom-core/src/trace/mod.rs`) into plain arrays. Tolerant by design: a missing file, a
 * truncated last line (a process that died mid-write), an unknown or malformed record become
 * warnings, never exceptions.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

/** A planned task (`T` record). */
export interface PlannedTask {
  id: number;
  type: number;
  inputs: number[];
  label: string;
}

/** One execution of a task on a worker (`S` .. `F`/`X` in a worker file). */
export interface Execution {
  id: number;
  worker: number;
  /** First CPU slot, -1 for light tasks. */
  slot: number;
  /** Absolute µs (unix). */
  start: number;
  end: number;
  /** 0 finished, 1 failed, 2 did not end in the trace. */
  status: 0 | 1 | 2;
  size: number;
}

/** A completed incoming transfer (`R`) or a stream sent to the client (`D` to `!:port`). */
export interface Transfer {
  id: number;
  /** Worker id, -1 unknown, -2 the client (through the server). */
  from: number;
  to: number;
  bytes: number;
  /** Absolute µs of the end (R) or of queueing (D). */
  at: number;
  /** µs, -1 unknown. */
  dur: number;
  /** The data port the sender announced (R records), mapped to `from` once workers are known. */
  fromPort?: number;
  /** How its bytes came: on a data connection, or as a hard link of the sender's file (`peer-link`; R's `via`, `stream` when absent). */
  via: "stream" | "link";
}

/** A worker as seen by the server (`W`) or its own header. */
export interface WorkerInfo {
  id: number;
  addr: string;
  cpus: number;
  dataPort: number;
  /** Absolute µs of the loss (`C`), if lost. */
  lost?: number;
  hasFile: boolean;
}

/** Everything read from a trace directory. */
export interface Trace {
  dir: string;
  warnings: string[];
  types: string[];
  workers: Map<number, WorkerInfo>;
  /** Planned tasks by id (the last `T` for an id counts). */
  tasks: Map<number, PlannedTask>;
  /** Plans: absolute µs, client, first id, count. */
  plans: Array<{ at: number; client: number; base: number; n: number }>;
  /** Server view: scheduled (absolute µs, worker) and finished/failed. */
  scheduled: Map<number, { at: number; worker: number }>;
  serverDone: Map<number, { at: number; worker: number; size: number; failed: boolean; message?: string }>;
  /** Scheduling rounds: absolute µs of the start, duration µs, tasks placed. */
  rounds: Array<{ at: number; dur: number; n: number }>;
  executions: Execution[];
  transfers: Transfer[];
  /** CPU samples per worker: absolute µs, process %, machine %. */
  cpu: Map<number, Array<{ at: number; proc: number; sys: number }>>;
  /** Earliest and latest absolute µs seen. */
  first: number;
  last: number;
  files: string[];
}

interface Lines {
  header: string[] | undefined;
  epoch: number;
  lines: string[];
}

const MAX_WARNED_LINES = 5;

/** Splits a file into lines; drops (and warns about) an unterminated last line. */
function readLines(path: string, name: string, warnings: string[]): Lines | undefined {
  let text: string;
  try {
    text = readFileSync(path, "latin1");
  } catch (e) {
    warnings.push(`${name}: cannot be read (${(e as Error).message})`);
    return undefined;
  }
  const lines = text.split("\n");
  const tail = lines.pop();
  if (tail !== undefined && tail !== "") {
    warnings.push(`${name}: the last line is incomplete (the process probably stopped while writing it); ignored`);
  }
  const header = lines.length > 0 ? lines[0]!.split(" ") : undefined;
  if (header === undefined || header[0] !== "HYPERLOOM-TRACE" || header.length < 4) {
    warnings.push(`${name}: no HYPERLOOM-TRACE header; the file is empty or not a trace`);
    return { header: undefined, epoch: NaN, lines: [] };
  }
  if (header[1] !== "1") warnings.push(`${name}: trace format version ${header[1]} (this reader knows 1); reading it anyway`);
  return { header, epoch: Number(header[3]), lines };
}

function unescape(s: string): string {
  if (s.indexOf("\\") < 0) return s;
  return s.replace(/\\(.)/g, (_m, c: string) => (c === "n" ? "\n" : c === "r" ? "\r" : c));
}

/** Counts malformed lines of one file and reports the first few. */
class Bad {
  n = 0;
  constructor(
    private readonly name: string,
    private readonly warnings: string[],
  ) {}
  line(k: number, line: string): void {
    this.n++;
    if (this.n <= MAX_WARNED_LINES) {
      this.warnings.push(`${this.name}:${k + 1}: malformed record ignored: ${JSON.stringify(line.slice(0, 120))}`);
    }
  }
  done(): void {
    if (this.n > MAX_WARNED_LINES) this.warnings.push(`${this.name}: ${this.n - MAX_WARNED_LINES} more malformed records ignored`);
  }
}

const isInt = (s: string | undefined): boolean => s !== undefined && /^-?\d+$/.test(s);

/** Reads `dir`. Throws only if `dir` is not a readable directory. */
export function readTrace(dir: string): Trace {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`${dir} is not a directory`);
  const tr: Trace = {
    dir,
    warnings: [],
    types: [],
    workers: new Map(),
    tasks: new Map(),
    plans: [],
    scheduled: new Map(),
    serverDone: new Map(),
    rounds: [],
    executions: [],
    transfers: [],
    cpu: new Map(),
    first: Infinity,
    last: -Infinity,
    files: [],
  };
  const seen = (at: number): void => {
    if (at < tr.first) tr.first = at;
    if (at > tr.last) tr.last = at;
  };
  const names = readdirSync(dir);
  if (names.includes("server.trace")) {
    tr.files.push("server.trace");
    readServer(join(dir, "server.trace"), tr, seen);
  } else {
    tr.warnings.push("server.trace is missing: no plan, scheduling or worker list (the timeline comes from the worker files)");
  }
  const workerFiles = names
    .map((n) => /^worker-(\d+)\.trace$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .sort((a, b) => Number(a[1]) - Number(b[1]));
  for (const m of workerFiles) {
    tr.files.push(m[0]);
    readWorker(join(dir, m[0]), m[0], Number(m[1]), tr, seen);
  }
  for (const w of tr.workers.values()) {
    if (!w.hasFile) tr.warnings.push(`worker-${w.id}.trace is missing: worker ${w.id} (${w.addr}) has no task timeline`);
  }
  if (tr.files.length === 0) tr.warnings.push(`no trace files (server.trace, worker-<id>.trace) in ${dir}`);
  // Transfers: map source data ports to workers.
  const byPort = new Map<number, number>();
  for (const w of tr.workers.values()) if (w.dataPort > 0) byPort.set(w.dataPort, w.id);
  for (const t of tr.transfers) {
    if (t.fromPort !== undefined) t.from = byPort.get(t.fromPort) ?? -1;
  }
  if (!Number.isFinite(tr.first)) {
    tr.first = 0;
    tr.last = 0;
  }
  return tr;
}

function readServer(path: string, tr: Trace, seen: (at: number) => void): void {
  const f = readLines(path, "server.trace", tr.warnings);
  if (!f || f.header === undefined) return;
  if (f.header[2] !== "server") tr.warnings.push(`server.trace: header says '${f.header[2]}', expected 'server'`);
  const epoch = f.epoch;
  const bad = new Bad("server.trace", tr.warnings);
  const lines = f.lines;
  for (let k = 1; k < lines.length; k++) {
    const line = lines[k]!;
    if (line === "") continue;
    const p = line.split(" ");
    const tag = p[0];
    // T and Y carry no time; every other record has it second.
    if (tag === "T") {
      if (p.length < 4 || !isInt(p[1]) || !isInt(p[2])) {
        bad.line(k, line);
        continue;
      }
      const inputs = p[3] === "-" ? [] : p[3]!.split(",").map(Number);
      if (inputs.some((x) => !Number.isInteger(x))) {
        bad.line(k, line);
        continue;
      }
      const label = p.length > 4 ? unescape(p.slice(4).join(" ")) : "";
      tr.tasks.set(Number(p[1]), { id: Number(p[1]), type: Number(p[2]), inputs, label });
      continue;
    }
    if (tag === "Y") {
      if (p.length < 3 || !isInt(p[1])) bad.line(k, line);
      else tr.types[Number(p[1])] = p[2]!;
      continue;
    }
    if (!isInt(p[1])) {
      bad.line(k, line);
      continue;
    }
    const at = epoch + Number(p[1]);
    const n = (i: number): number => Number(p[i]);
    const ok = (count: number): boolean => p.length >= count && p.slice(2, count).every((x) => tag === "W" || isInt(x));
    switch (tag) {
      case "W":
        if (p.length < 5 || !isInt(p[2]) || !isInt(p[4])) {
          bad.line(k, line);
          break;
        }
        {
          const id = n(2);
          const addr = p[3]!;
          const port = Number(addr.slice(addr.lastIndexOf(":") + 1)) || 0;
          const prev = tr.workers.get(id);
          tr.workers.set(id, { id, addr, cpus: n(4), dataPort: port, hasFile: prev?.hasFile ?? false });
        }
        seen(at);
        break;
      case "C":
        if (!ok(3)) bad.line(k, line);
        else {
          // Not part of the run's span: workers also disconnect when the cluster stops.
          const w = tr.workers.get(n(2));
          if (w) w.lost = at;
        }
        break;
      case "P":
        if (!ok(5)) bad.line(k, line);
        else {
          tr.plans.push({ at, client: n(2), base: n(3), n: n(4) });
          seen(at);
        }
        break;
      case "S":
        if (!ok(4)) bad.line(k, line);
        else {
          tr.scheduled.set(n(2), { at, worker: n(3) });
          seen(at);
        }
        break;
      case "F":
      case "X":
        if (!ok(tag === "F" ? 5 : 4)) bad.line(k, line);
        else {
          tr.serverDone.set(n(2), {
            at,
            worker: n(3),
            size: tag === "F" ? n(4) : 0,
            failed: tag === "X",
            // X carries the worker's error message as its last field (older traces: none).
            ...(tag === "X" && p.length > 4 ? { message: unescape(p.slice(4).join(" ")) } : {}),
          });
          seen(at);
        }
        break;
      case "R":
        if (!ok(4)) bad.line(k, line);
        else tr.rounds.push({ at, dur: n(2), n: n(3) });
        break;
      default:
        // Unknown tags are skipped (newer writers may add records).
        break;
    }
  }
  bad.done();
}

function readWorker(path: string, name: string, fileId: number, tr: Trace, seen: (at: number) => void): void {
  const f = readLines(path, name, tr.warnings);
  let info = tr.workers.get(fileId);
  if (!info) {
    info = { id: fileId, addr: "?", cpus: 0, dataPort: 0, hasFile: true };
    tr.workers.set(fileId, info);
  }
  info.hasFile = true;
  if (!f || f.header === undefined) return;
  const h = f.header;
  if (h[2] !== "worker") tr.warnings.push(`${name}: header says '${h[2]}', expected 'worker'`);
  if (h.length >= 7) {
    if (info.cpus === 0) info.cpus = Number(h[5]) || 0;
    info.dataPort = Number(h[6]) || info.dataPort;
    if (info.addr === "?") info.addr = `?:${info.dataPort}`;
  }
  const epoch = f.epoch;
  const bad = new Bad(name, tr.warnings);
  const open = new Map<number, Execution>();
  const samples: Array<{ at: number; proc: number; sys: number }> = [];
  let lastAt = epoch;
  const lines = f.lines;
  for (let k = 1; k < lines.length; k++) {
    const line = lines[k]!;
    if (line === "") continue;
    const p = line.split(" ");
    const tag = p[0];
    if (!isInt(p[1])) {
      bad.line(k, line);
      continue;
    }
    const at = epoch + Number(p[1]);
    const need = (count: number): boolean => p.length >= count && p.slice(1, count).every((x, i) => (tag === "D" && i === count - 2) || isInt(x));
    switch (tag) {
      case "S": {
        if (!need(4)) {
          bad.line(k, line);
          continue;
        }
        const id = Number(p[2]);
        if (!open.has(id)) {
          const e: Execution = { id, worker: fileId, slot: Number(p[3]), start: at, end: at, status: 2, size: 0 };
          open.set(id, e);
          tr.executions.push(e);
        }
        break;
      }
      case "F":
      case "X": {
        if (!need(tag === "F" ? 4 : 3)) {
          bad.line(k, line);
          continue;
        }
        const id = Number(p[2]);
        const e = open.get(id);
        if (e) {
          open.delete(id);
          e.end = at;
          e.status = tag === "F" ? 0 : 1;
          e.size = tag === "F" ? Number(p[3]) : 0;
        } else if (tag === "X") {
          // Failed before it started (bad input, unknown type): a zero-length failed run.
          tr.executions.push({ id, worker: fileId, slot: -1, start: at, end: at, status: 1, size: 0 });
        }
        break;
      }
      case "D": {
        if (!need(5)) {
          bad.line(k, line);
          continue;
        }
        const addr = p[4]!;
        // Streams to workers are recorded by the receiver (R); streams to the server go to a client.
        if (addr.startsWith("!:")) tr.transfers.push({ id: Number(p[2]), from: fileId, to: -2, bytes: Number(p[3]), at, dur: -1, via: "stream" });
        break;
      }
      case "R": {
        if (!need(6)) {
          bad.line(k, line);
          continue;
        }
        const port = Number(p[4]);
        tr.transfers.push({ id: Number(p[2]), from: -1, fromPort: port, to: fileId, bytes: Number(p[3]), at, dur: Number(p[5]), via: p[6] === "link" ? "link" : "stream" });
        break;
      }
      case "M":
        if (!need(4)) {
          bad.line(k, line);
          continue;
        }
        samples.push({ at, proc: Number(p[2]), sys: Number(p[3]) });
        break;
      default:
        break;
    }
    if (at > lastAt) lastAt = at;
    seen(at);
  }
  bad.done();
  if (open.size > 0) {
    tr.warnings.push(`${name}: ${open.size} task(s) started but did not end in the trace (drawn up to the worker's last record)`);
    for (const e of open.values()) e.end = lastAt;
  }
  tr.cpu.set(fileId, samples);
}
