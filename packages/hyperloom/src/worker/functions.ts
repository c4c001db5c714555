/**
 * Function tasks (`loom/js/call`, `loom/js/value`) on a worker: calls run in a tinypool pool of
 * worker threads sized to the worker's cores, never on the worker's event loop. A thread that
 * crashes fails only the call it was running; the pool replaces it.
 *
 * Calls arrive from the core as bytes (`WorkerEffects.calls`, see `function-call.ts`) and go to
 * the threads in batches — one message carrying many calls, one answer carrying their outcomes,
 * handed to the core in one `finishCalls` — so a call costs no object crossing the addon, no
 * promise and no message of its own (issue #26). One-cpu calls are the core's function-call pool
 * (`pooled`): they queue here, at most `jsPoolCpus` batches of them at once, so the worker's cores
 * stay honest. A thread claims each call of its batch before running it; calls it has not reached
 * are taken back when another thread is free (a slow or hung call holds up only itself) or when
 * they are canceled; canceling a running call terminates its thread.
 */
import { join } from "node:path";
import { deserialize } from "node:v8";
import type { TaskResult, TaskToRun } from "../native.js";
import { log, type Level } from "../log.js";
import { ClaimState, type BatchAnswer, type CallBatch, type ThreadOutcome } from "./function-call.js";

/**
 * A cancel signal in the shape tinypool takes besides `AbortSignal` (an emitter's `once`/`off`):
 * a batch is its own, so a batch costs no `AbortController` and no event listener (issue #26).
 */
interface PoolSignal {
  once(name: "abort", listener: () => void): void;
  off(name: "abort", listener: () => void): void;
}

type Pool = { run(task: CallBatch, options?: { signal?: PoolSignal }): Promise<BatchAnswer>; destroy(): Promise<void>; readonly threads: unknown[] };

/** Calls in one batch, at most. */
const MAX_BATCH = 256;

/** A redirection: the task to run in place of a function task. */
export interface Redirect {
  taskType: string;
  config: Buffer;
  /** Inputs of the task being redirected (by index, or the item `at` inside one) or new bytes. */
  inputs: Array<{ index: number; at?: number[] } | { data: Buffer }>;
}

/** What a function call produced. */
export type FunctionOutcome = { result: TaskResult } | { redirect: Redirect };

/** Where the answers of calls go (the worker core). */
export interface CallSink {
  /**
   * Answer records of calls that ran (`WorkerCore.finishCalls`), and the ids of those calls (to
   * fail them should the core refuse the records).
   */
  answers(records: Uint8Array, taskIds: number[]): void;
  /** The outcome of a call that is not a plain answer (a redirection, an array, an input). */
  outcome(taskId: number, outcome: FunctionOutcome): void;
  /** Call `taskId` failed: `message` names the cause. */
  fail(taskId: number, message: string): void;
}

/** A call on its way: queued here, or in a batch. */
interface Call {
  taskId: number;
  pooled: boolean;
  /** The core's buffer holding its record, and where (`start`: its length field). */
  src: Buffer;
  start: number;
  end: number;
  /** Canceled: forgotten, whatever its thread answers. */
  canceled: boolean;
  /** The batch holding it, and its position there (undefined while queued here). */
  batch: Batch | undefined;
  pos: number;
}

/** A batch handed to the pool; its own cancel signal for tinypool. */
class Batch implements PoolSignal {
  /** Tinypool's listener: terminates the thread running the batch. */
  private onAbort: (() => void) | undefined;

  constructor(
    readonly calls: Call[],
    readonly claims: Int32Array,
    /** A batch of pooled calls (counts against `jsPoolCpus`). */
    readonly pooled: boolean,
  ) {}

  once(_name: "abort", listener: () => void): void {
    this.onAbort = listener;
  }

  off(_name: "abort", listener: () => void): void {
    if (this.onAbort === listener) this.onAbort = undefined;
  }

  /** Terminates the thread running it (a running call was canceled). */
  abort(): void {
    const f = this.onAbort;
    this.onAbort = undefined;
    f?.();
  }
}

/**
 * Imports tinypool without its count of the machine's physical cores: when it is evaluated,
 * tinypool runs two shell pipelines (`cat /proc/cpuinfo | grep "physical id" | sort | uniq | wc -l`
 * and the same for "core id"): 12 processes and 60-120 ms of this thread blocked in `execSync`,
 * right after the worker registered, when its first tasks arrive (issue #26). That count only
 * sizes pools given no thread counts, and ours gives them. So while tinypool is evaluated, those
 * two commands answer "0", for which tinypool takes its own fallback (`os.cpus().length`); any
 * other command runs as usual.
 */
async function importTinypool(): Promise<typeof import("tinypool")> {
  const cp = require("node:child_process") as typeof import("node:child_process");
  const execSync = cp.execSync;
  cp.execSync = function (this: unknown, command: string, ...rest: unknown[]) {
    if (typeof command === "string" && command.startsWith("cat /proc/cpuinfo | grep ")) return "0";
    return (execSync as (...a: unknown[]) => unknown).call(this, command, ...rest);
  } as typeof execSync;
  try {
    return await import("tinypool");
  } finally {
    cp.execSync = execSync;
  }
}

/** The worker's pool of function threads. */
export class FunctionRunner {
  private pool: Promise<Pool> | undefined;
  /** The pool once started (batches then go to it without a promise of their own). */
  private ready: Pool | undefined;
  /** Calls not answered yet, by task id (the cancel table). */
  private readonly calls = new Map<number, Call>();
  /** Pooled calls not handed to a thread yet, in order. */
  private queued: Call[] = [];
  /** Batches of pooled calls in the pool. */
  private readonly inFlight = new Set<Batch>();
  /** Cpus the core has lent to its function-call pool: batches of pooled calls at once, at most. */
  private poolCpus = 0;
  private dispatchQueued = false;

  constructor(
    private readonly threads: number,
    private readonly sink: CallSink,
  ) {}

  private getPool(): Promise<Pool> {
    this.pool ??= importTinypool().then(
      ({ Tinypool }) =>
        new Tinypool({
          filename: join(__dirname, "function-thread.js"),
          // All threads up front and kept: a thread above minThreads is otherwise ended as soon
          // as it idles and started again for the next call (milliseconds each).
          minThreads: this.threads,
          maxThreads: this.threads,
          idleTimeout: 60_000,
          isolateWorkers: false,
          // A thread waits for its next batch on Atomics (a futex), not in its event loop: a
          // cheaper wake-up per batch. A call's promises still settle within its batch.
          useAtomics: true,
        }) as unknown as Pool,
    );
    // A pool that cannot start fails each batch through its own promise.
    this.pool.then(
      (p) => (this.ready = p),
      () => undefined,
    );
    return this.pool;
  }

  /**
   * Starts the threads now (the worker has registered), not at the first call: a thread takes
   * tens of ms of CPU to start and load its code (and ~12 MB), which the first calls of a run
   * would otherwise wait for (issue #26). A pool that cannot start fails each batch through its own promise.
   */
  start(): void {
    void this.getPool();
  }

  /** Threads of the pool started (0 until {@link start} or the first call). */
  get threadsStarted(): number {
    return this.ready?.threads.length ?? 0;
  }

  /** The core's `jsPoolCpus` after an event: more may let queued calls start. */
  setPoolCpus(n: number): void {
    if (n === this.poolCpus) return;
    const more = n > this.poolCpus;
    this.poolCpus = n;
    if (more) this.scheduleDispatch();
  }

  /** `loom/js/value`: the config is the value; checked, then stored as a value object. */
  async value(task: TaskToRun): Promise<FunctionOutcome> {
    try {
      deserialize(task.config);
    } catch (e) {
      throw new Error(`JavaScript exception:\nthe value cannot be deserialized: ${(e as Error).message}`);
    }
    return { result: { kind: "jsobj", data: task.config } };
  }

  /**
   * Runs the calls of `records` (the core's `WorkerEffects.calls`): pooled calls queue for the
   * pool's cpus, the others (their own cpus, or none) start at once, each a batch of one.
   */
  run(records: Buffer): void {
    let pooled = false;
    for (let at = 0; at < records.length; ) {
      const end = at + 4 + records.readUInt32LE(at);
      const c: Call = { taskId: records.readInt32LE(at + 4), pooled: (records[at + 8]! & 1) !== 0, src: records, start: at, end, canceled: false, batch: undefined, pos: 0 };
      this.calls.set(c.taskId, c);
      if (c.pooled) {
        this.queued.push(c);
        pooled = true;
      } else this.runBatch([c], false);
      at = end;
    }
    if (pooled) this.scheduleDispatch();
  }

  /** Dispatches once the current event's calls are all queued (they share batches). */
  private scheduleDispatch(): void {
    if (this.dispatchQueued) return;
    this.dispatchQueued = true;
    queueMicrotask(() => {
      this.dispatchQueued = false;
      this.dispatch();
    });
  }

  /**
   * Hands queued pooled calls to the free pool cpus, each its even share (up to {@link MAX_BATCH}).
   * Nothing is kept back for a thread's next batch while the server refills the queue: taking
   * half of the share made runs of 12-, 6-, 3-, 2- and 1-call batches, each costing a thread
   * message, a promise and an answer (issue #26: W5's batches averaged 47 calls; worker CPU per
   * call 10 -> 6 µs). With none queued, a free cpu takes back the later half of the calls a busy
   * batch has not reached.
   */
  private dispatch(): void {
    while (this.inFlight.size < this.poolCpus) {
      if (this.queued.length === 0 && !this.takeBack()) return;
      const free = this.poolCpus - this.inFlight.size;
      const n = Math.min(MAX_BATCH, Math.ceil(this.queued.length / free));
      this.runBatch(this.queued.splice(0, n), true);
    }
  }

  /** Moves the unreached later half of the fullest busy batch back to the queue; false: none. */
  private takeBack(): boolean {
    let best: { batch: Batch; free: number[] } | undefined;
    for (const b of this.inFlight) {
      const free: number[] = [];
      for (let i = 0; i < b.calls.length; i++) if (Atomics.load(b.claims, i) === ClaimState.Free) free.push(i);
      if (free.length > (best?.free.length ?? 0)) best = { batch: b, free };
    }
    if (best === undefined) return false;
    const taken: Call[] = [];
    for (const i of best.free.slice(Math.floor(best.free.length / 2))) {
      if (Atomics.compareExchange(best.batch.claims, i, ClaimState.Free, ClaimState.TakenBack) === ClaimState.Free) {
        const c = best.batch.calls[i]!;
        c.batch = undefined;
        taken.push(c);
      }
    }
    this.queued.unshift(...taken);
    return taken.length > 0;
  }

  /**
   * Copies the calls' records into one shared block (claims first) and hands it to a thread.
   * Calls that lie one after another in the core's buffer (those of one event, in order: the
   * usual case) are copied together, one copy per run of them rather than per call (issue #26).
   */
  private runBatch(calls: Call[], pooled: boolean): void {
    const n = calls.length;
    let bytes = 0;
    for (const c of calls) bytes += c.end - c.start;
    const shared = new SharedArrayBuffer(4 * n + bytes);
    const records = new Uint8Array(shared, 4 * n);
    const batch = new Batch(calls, new Int32Array(shared, 0, n), pooled);
    for (let i = 0, at = 0; i < n; ) {
      const first = calls[i]!;
      let end = first.end;
      let j = i + 1;
      while (j < n && calls[j]!.src === first.src && calls[j]!.start === end) end = calls[j++]!.end;
      records.set(first.src.subarray(first.start, end), at);
      at += end - first.start;
      for (; i < j; i++) {
        const c = calls[i]!;
        c.batch = batch;
        c.pos = i;
      }
    }
    if (pooled) this.inFlight.add(batch);
    const pool = this.ready;
    const answer = pool !== undefined ? pool.run({ shared, n }, { signal: batch }) : this.getPool().then((p) => p.run({ shared, n }, { signal: batch }));
    answer.then(
      (a) => this.answered(batch, a, undefined),
      (e: unknown) => this.answered(batch, undefined, e instanceof Error ? e : new Error(String(e))),
    );
  }

  /** Whether `taskId`'s answer from `batch` is still wanted; if so, the call is answered now. */
  private take(taskId: number, batch: Batch): boolean {
    const c = this.calls.get(taskId);
    if (c === undefined || c.batch !== batch) return false;
    c.batch = undefined;
    this.calls.delete(taskId);
    return true;
  }

  /**
   * A batch's answer (or its thread's death, `error`): the answers of calls still wanted go to
   * the core; a call the thread died running fails with `error`; calls given back, not reached,
   * or run but not answered (the thread died later) queue again at the front, unless canceled.
   */
  private answered(batch: Batch, answer: BatchAnswer | undefined, error: Error | undefined): void {
    this.inFlight.delete(batch);
    if (answer !== undefined) {
      const a = Buffer.from(answer.answers.buffer, answer.answers.byteOffset, answer.answers.byteLength);
      // A canceled call's answer is dropped (rare: the buffer is cut around it).
      let kept: Buffer[] | undefined;
      let from = 0;
      const ids: number[] = [];
      for (let at = 0; at < a.length; ) {
        const end = at + 9 + a.readUInt32LE(at + 5);
        const id = a.readInt32LE(at);
        if (this.take(id, batch)) ids.push(id);
        else {
          (kept ??= []).push(a.subarray(from, at));
          from = end;
        }
        at = end;
      }
      const records = kept === undefined ? a : Buffer.concat([...kept, a.subarray(from)]);
      if (records.length > 0) this.sink.answers(records, ids);
      for (const { taskId, outcome } of answer.others) if (this.take(taskId, batch)) this.settle(taskId, outcome);
    }
    const again: Call[] = [];
    for (let i = 0; i < batch.calls.length; i++) {
      const c = batch.calls[i]!;
      if (c.batch !== batch) continue; // answered, or taken back
      c.batch = undefined;
      if (c.canceled) continue;
      if (error !== undefined && Atomics.load(batch.claims, i) === ClaimState.Running) {
        this.calls.delete(c.taskId);
        this.sink.fail(c.taskId, `JavaScript thread failed: ${error.message}`);
      } else again.push(c);
    }
    if (again.length > 0) {
      if (batch.pooled) this.queued.unshift(...again);
      else for (const c of again) this.runBatch([c], false);
    }
    this.scheduleDispatch();
  }

  /** An outcome that is not a plain answer: its log lines logged, then given to the core. */
  private settle(taskId: number, outcome: ThreadOutcome): void {
    for (const [level, message] of outcome.logs) log(level as Level, message);
    if (outcome.error !== undefined) return this.sink.fail(taskId, outcome.error);
    const r = outcome.result!;
    if (r.kind === "redirect") {
      this.sink.outcome(taskId, {
        redirect: {
          taskType: r.taskType,
          config: Buffer.from(r.config),
          // Input indices of the call are shifted by one in the task (input 0 is the function).
          inputs: r.inputs.map((i) => ("index" in i ? { index: i.index + 1 } : { data: Buffer.from(i.data) })),
        },
      });
    } else this.sink.outcome(taskId, { result: toTaskResult(r, 1) });
  }

  /**
   * Cancels call `taskId` (false: no such call): dropped if not reached yet; its thread
   * terminated if it runs. Nothing is reported for it.
   */
  cancel(taskId: number): boolean {
    const c = this.calls.get(taskId);
    if (c === undefined) return false;
    this.calls.delete(taskId);
    c.canceled = true;
    const batch = c.batch;
    if (batch === undefined) {
      const at = this.queued.indexOf(c);
      if (at >= 0) this.queued.splice(at, 1);
      return true;
    }
    if (Atomics.compareExchange(batch.claims, c.pos, ClaimState.Free, ClaimState.TakenBack) === ClaimState.Free) {
      c.batch = undefined;
    } else if (Atomics.load(batch.claims, c.pos) === ClaimState.Running) batch.abort();
    return true;
  }

  /** Cancels every call (the server connection is lost). */
  cancelAll(): void {
    for (const id of [...this.calls.keys()]) this.cancel(id);
  }

  /** Stops the threads. */
  async close(): Promise<void> {
    if (this.pool) await (await this.pool).destroy();
  }
}

/** A call's result as the task's: input indices of the call are shifted by `shift` in the task. */
function toTaskResult(r: TaskResult, shift: number): TaskResult {
  switch (r.kind) {
    case "input":
      return { kind: "input", index: r.index + shift };
    case "array":
      return { kind: "array", items: r.items.map((x) => toTaskResult(x, shift)) };
    default:
      return r;
  }
}
