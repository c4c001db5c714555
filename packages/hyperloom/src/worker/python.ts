/**
 * Python function tasks (`loom/py/value`, `loom/py/call`; spec 6.11-6.12) on a worker: calls run
 * in a pool of Python processes (one per core, started on the first Python task or at start-up
 * with `--python`, and kept), never on the worker's event loop. The Python side is
 * `python/hyperloom_py.py` (shipped in the package; needs only `cloudpickle`).
 *
 * Data crosses by the cheapest means: inputs held in memory (up to 64 KiB) go in the message,
 * larger ones as the path of the worker's data file, which the process maps; results above 64 KiB
 * come back as files the core moves into its data directory. A process that dies fails only its
 * task and is replaced; a function that never returns holds only its own process (and its cores).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Readable, Writable } from "node:stream";
import type { DataTypeIds, TaskInput, TaskResult, TaskToRun } from "../native.js";
import { log, type Level } from "../log.js";
import type { FunctionOutcome, Redirect } from "./functions.js";

/** The helper script the processes run. */
const HELPER = join(__dirname, "..", "..", "python", "hyperloom_py.py");

/** Most stderr bytes of a dead process quoted in its task's failure. */
const STDERR_TAIL = 4096;

/** Options of {@link PythonRunner}. */
export interface PythonOptions {
  /** The interpreter (`--python`), default `python3`. */
  python: string;
  /** Processes in the pool (the worker's cores). */
  processes: number;
  /** Directory for results above 64 KiB (on the data directory's file system: they are renamed). */
  spillDir: string;
  /** The dictionary ids of the data types (the stream frames of array and index inputs use them). */
  typeIds: () => DataTypeIds;
}

/** A message of the helper: the JSON header and the byte blobs it refers to by index. */
interface Message {
  header: Record<string, unknown>;
  blobs: Buffer[];
}

/** A result as the helper describes it (blobs by index). */
type PyResult =
  | { k: "plain" | "pyobj"; b: number }
  | { k: "file"; p: string }
  | { k: "input"; i: number; at: number[] }
  | { k: "array"; items: PyResult[] }
  | { k: "value" }
  | { k: "redirect"; type: string; config: number; inputs: Array<{ i: number; at: number[] } | { b: number }> };

function encode(header: Record<string, unknown>, blobs: Buffer[]): Buffer[] {
  const json = Buffer.from(JSON.stringify({ ...header, blobs: blobs.map((b) => b.length) }));
  const len = Buffer.alloc(4);
  len.writeUInt32LE(json.length);
  return [len, json, ...blobs];
}

/** Splits the helper's answer stream into messages (chunks are joined once per message, so a
 * large answer arriving in many pipe reads is not copied again for each). */
class MessageReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Bytes the message at the head needs, once its header is known (0: not yet known). */
  private need = 0;

  constructor(private readonly onMessage: (m: Message) => void) {}

  feed(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    for (;;) {
      if (this.need === 0) {
        if (this.buffered < 4) return;
        const head = this.joined();
        const n = head.readUInt32LE(0);
        if (this.buffered < 4 + n) return;
        const header = JSON.parse(head.subarray(4, 4 + n).toString()) as Record<string, unknown>;
        const sizes = (header.blobs as number[] | undefined) ?? [];
        this.need = 4 + n + sizes.reduce((x, y) => x + y, 0);
      }
      if (this.buffered < this.need) return;
      const buf = this.joined();
      const n = buf.readUInt32LE(0);
      const header = JSON.parse(buf.subarray(4, 4 + n).toString()) as Record<string, unknown>;
      const blobs: Buffer[] = [];
      let pos = 4 + n;
      for (const size of (header.blobs as number[] | undefined) ?? []) {
        blobs.push(buf.subarray(pos, pos + size));
        pos += size;
      }
      const rest = buf.subarray(pos);
      this.chunks = rest.length > 0 ? [Buffer.from(rest)] : [];
      this.buffered = rest.length;
      this.need = 0;
      this.onMessage({ header, blobs });
    }
  }

  private joined(): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0]!;
  }
}

/** The task a process is running. */
interface Pending {
  resolve(m: Message): void;
  reject(e: Error): void;
}

/** One Python process of the pool. */
class PythonProcess {
  readonly child: ChildProcess;
  /** Settles when the helper said it is ready (or could not start). */
  readonly ready: Promise<void>;
  pending: Pending | undefined;
  /** The helper said it is ready. */
  isReady = false;
  private stderrTail = "";
  private dead = false;

  constructor(
    python: string,
    spillDir: string,
    private readonly onDeath: (p: PythonProcess) => void,
  ) {
    this.child = spawn(python, ["-u", HELPER, spillDir], { stdio: ["ignore", "pipe", "pipe", "pipe", "pipe"] });
    const pid = this.child.pid ?? 0;
    let readyResolve!: () => void;
    let readyReject!: (e: Error) => void;
    this.ready = new Promise((res, rej) => {
      readyResolve = res;
      readyReject = rej;
    });
    this.ready.catch(() => undefined);
    const reader = new MessageReader((m) => {
      const h = m.header;
      if (h.ready === true) {
        this.isReady = true;
        readyResolve();
      } else if (h.fatal === "cloudpickle") {
        readyReject(
          new Error(
            `Python function tasks need the Python module 'cloudpickle', which ${python} (Python ${String(h.python)}) does not have: ` +
              `install it with '${python} -m pip install cloudpickle' (or give another interpreter with --python PATH)`,
          ),
        );
      } else if (typeof h.log === "string") {
        log(h.log as Level, String(h.message));
      } else if (this.pending) {
        const p = this.pending;
        this.pending = undefined;
        p.resolve(m);
      }
    });
    // stdio is absent when the interpreter could not be spawned at all ("error" says why).
    (this.child.stdio?.[4] as Readable | undefined)?.on("data", (c: Buffer) => reader.feed(c));
    const lines = (level: Level, keepTail: boolean) => (c: Buffer) => {
      const text = c.toString();
      if (keepTail) this.stderrTail = (this.stderrTail + text).slice(-STDERR_TAIL);
      for (const line of text.split("\n")) if (line.length > 0) log(level, `python[${pid}]: ${line}`);
    };
    this.child.stdout?.on("data", lines("info", false));
    this.child.stderr?.on("data", lines("warn", true));
    (this.child.stdio?.[3] as Writable | undefined)?.on("error", () => undefined); // a dead process; "exit" reports it
    this.child.on("error", (e: NodeJS.ErrnoException) => {
      const why =
        e.code === "ENOENT"
          ? `Python function tasks need a Python 3 interpreter with the module 'cloudpickle': '${python}' was not found ` +
            `(install Python 3 and run 'python3 -m pip install cloudpickle', or give the interpreter with --python PATH)`
          : `cannot start the Python interpreter '${python}': ${e.message}`;
      readyReject(new Error(why));
      this.died(why);
    });
    this.child.on("exit", (code, signal) => {
      const how = signal !== null ? `killed by signal ${signal}` : `exit status ${code}`;
      if (!this.isReady) {
        readyReject(new Error(`the Python interpreter '${python}' exited before it was ready (${how})${this.tail()}`));
      }
      this.died(`Python process (pid ${pid}, ${python}) running the task died (${how})${this.tail()}`);
    });
  }

  private tail(): string {
    const t = this.stderrTail.trim();
    return t.length > 0 ? `; its last stderr:\n${t}` : "";
  }

  private died(message: string): void {
    if (this.dead) return;
    this.dead = true;
    if (this.pending) {
      const p = this.pending;
      this.pending = undefined;
      p.reject(new Error(message));
    }
    this.onDeath(this);
  }

  /** Sends one request; resolves with its answer (log lines are written as they come). */
  request(header: Record<string, unknown>, blobs: Buffer[]): Promise<Message> {
    return new Promise((resolve, reject) => {
      if (this.dead) return reject(new Error(`Python process (pid ${this.child.pid}) is gone`));
      this.pending = { resolve, reject };
      const fd3 = this.child.stdio[3] as Writable;
      fd3.cork();
      for (const part of encode(header, blobs)) fd3.write(part);
      process.nextTick(() => fd3.uncork());
    });
  }

  kill(): void {
    this.dead = true;
    this.child.kill("SIGKILL");
  }

  /** Ends the call it runs (its task was canceled): it dies, the call rejects, the pool replaces it. */
  abort(): void {
    this.child.kill("SIGKILL");
  }
}

/** The worker's pool of Python processes. */
export class PythonRunner {
  private procs = new Set<PythonProcess>();
  private idle: PythonProcess[] = [];
  private started: Promise<void> | undefined;
  /** Why the pool cannot run Python (missing interpreter or cloudpickle): every task fails with it. */
  private broken: string | undefined;
  private closed = false;

  constructor(private readonly options: PythonOptions) {}

  /** Processes kept (one per core). */
  private get size(): number {
    return Math.max(1, this.options.processes);
  }

  /** Starts the processes (once); rejects with the one clear error if Python cannot run. */
  start(): Promise<void> {
    this.started ??= (async () => {
      mkdirSync(this.options.spillDir, { recursive: true });
      const procs = Array.from({ length: this.size }, () => this.spawn(true));
      try {
        await Promise.all(procs.map((p) => p.ready));
      } catch (e) {
        this.setBroken((e as Error).message);
        for (const p of this.procs) p.kill();
        this.procs.clear();
        this.idle = [];
        throw e;
      }
      log("info", `Python function tasks: ${procs.length} process(es) of ${this.options.python}`);
    })();
    return this.started;
  }

  /** A new process; `pooled`: joins the idle ones once ready (else the caller uses it). */
  private spawn(pooled: boolean): PythonProcess {
    const p = new PythonProcess(this.options.python, this.options.spillDir, (dead) => this.onDeath(dead));
    this.procs.add(p);
    if (pooled) {
      p.ready.then(
        () => {
          if (this.procs.has(p)) this.release(p);
        },
        () => undefined,
      );
    }
    return p;
  }

  private onDeath(p: PythonProcess): void {
    if (!this.procs.delete(p)) return;
    this.idle = this.idle.filter((x) => x !== p);
    // One that never got ready makes the pool unusable (start() or the replacement's ready says why).
    if (this.closed || this.broken !== undefined || !p.isReady || this.procs.size >= this.size) return;
    // A replacement, so the pool keeps its size (a crash fails only the task it ran).
    const r = this.spawn(true);
    r.ready.catch((e: Error) => log("error", `a replacement Python process could not start: ${e.message}`));
  }

  /** Python cannot run at all (found at start): every later task fails with `message`. */
  private setBroken(message: string): void {
    if (this.broken !== undefined) return;
    this.broken = message;
    log("error", message);
  }

  /** A process is free again: kept idle, or ended if the pool grew beyond its size. */
  private release(p: PythonProcess): void {
    if (this.procs.size > this.size) {
      this.procs.delete(p);
      p.kill();
    } else {
      this.idle.push(p);
    }
  }

  /**
   * A free process. When all are busy one more is started (and ended when it is released): the
   * core bounds the calls needing cores by the cores, but not those requesting none, so a call
   * never waits for another one, even one that never returns.
   */
  private async acquire(): Promise<PythonProcess> {
    await this.start();
    if (this.broken !== undefined) throw new Error(this.broken);
    const p = this.idle.pop();
    if (p) return p;
    const extra = this.spawn(false);
    await extra.ready; // if it cannot start, only this call fails
    return extra;
  }

  private async run(header: Record<string, unknown>, blobs: Buffer[], signal?: AbortSignal): Promise<Message> {
    const p = await this.acquire();
    const abort = (): void => p.abort();
    signal?.addEventListener("abort", abort, { once: true });
    try {
      if (signal?.aborted) throw new Error("canceled");
      return await p.request(header, blobs);
    } finally {
      signal?.removeEventListener("abort", abort);
      if (this.procs.has(p)) this.release(p);
    }
  }

  /** `loom/py/value`: the config is the pickled object; checked by unpickling, stored as a pyobj. */
  async value(task: TaskToRun): Promise<FunctionOutcome> {
    const m = await this.run({ op: "value", id: task.id, config: 0 }, [task.config]);
    if (typeof m.header.error === "string") throw new Error(m.header.error);
    return { result: { kind: "pyobj", data: task.config } };
  }

  /**
   * `loom/py/call`: input 0 is the function (pyobj), the config its pickled direct args.
   * Aborting `signal` kills the process running it (the pool starts a fresh one).
   */
  async call(task: TaskToRun, signal?: AbortSignal): Promise<FunctionOutcome> {
    const [fnInput, ...inputs] = task.inputs;
    if (fnInput === undefined || fnInput.typeName !== "loom/pyobj" || !fnInput.bytes) {
      throw new Error("The first argument is not PyObj");
    }
    const blobs: Buffer[] = [fnInput.bytes, task.config];
    const descs = inputs.map((x: TaskInput) => {
      const d: Record<string, unknown> = { t: x.typeName, size: x.size, length: x.length };
      if (x.bytes) {
        d.b = blobs.length;
        blobs.push(x.bytes);
      } else if (x.path) {
        d.p = x.path;
      } else {
        d.b = blobs.length;
        blobs.push(Buffer.alloc(0));
      }
      return d;
    });
    const m = await this.run({ op: "call", id: task.id, fn: 0, config: 1, inputs: descs, ids: this.options.typeIds() }, blobs, signal);
    if (typeof m.header.error === "string") throw new Error(m.header.error);
    const r = m.header.ok as PyResult;
    if (r.k === "redirect") {
      const redirect: Redirect = {
        taskType: r.type,
        config: m.blobs[r.config]!,
        // Input indices of the call are shifted by one in the task (input 0 is the function).
        inputs: r.inputs.map((i) => ("b" in i ? { data: m.blobs[i.b]! } : { index: i.i + 1, at: i.at })),
      };
      return { redirect };
    }
    return { result: toTaskResult(r, m.blobs) };
  }

  /** Stops the processes (a function still running is killed). */
  close(): void {
    this.closed = true;
    for (const p of this.procs) p.kill();
    this.procs.clear();
    this.idle = [];
  }
}

function toTaskResult(r: PyResult, blobs: Buffer[]): TaskResult {
  switch (r.k) {
    case "plain":
    case "pyobj":
      return { kind: r.k, data: blobs[r.b]! };
    case "file":
      return { kind: "file", path: r.p };
    case "input":
      return { kind: "input", index: r.i + 1, at: r.at };
    case "array":
      return { kind: "array", items: r.items.map((x) => toTaskResult(x, blobs)) };
    default:
      throw new Error("Invalid result from python code");
  }
}
