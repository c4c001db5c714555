/**
 * Function tasks (`loom/js/call`, `loom/js/value`) on a worker: calls run in a tinypool pool of
 * worker threads sized to the worker's cores, never on the worker's event loop. A thread that
 * crashes fails only its task; the pool replaces it.
 *
 * One-cpu calls are the core's function-call pool (`TaskToRun.pooled`): they queue here and go
 * to the threads in batches — one message carrying many calls, one answer carrying their
 * outcomes — at most `jsPoolCpus` batches at once, so the worker's cores stay honest. A thread
 * claims each call of its batch before running it; calls it has not reached are taken back when
 * another thread is free (a slow or hung call holds up only itself) or when they are canceled.
 */
import { join } from "node:path";
import { deserialize } from "node:v8";
import type { TaskResult, TaskToRun } from "../native.js";
import { log, type Level } from "../log.js";
import { ClaimState, type BatchOutcomes, type CallBatch, type FunctionCall, type ThreadOutcome } from "./function-call.js";

type Pool = { run(task: CallBatch, options?: { signal?: AbortSignal }): Promise<BatchOutcomes>; destroy(): Promise<void> };

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

/** A call waiting for its outcome. */
interface PendingCall {
  call: FunctionCall;
  /** Settles the call (once): its outcome, or the error of its thread. */
  settle: (outcome: ThreadOutcome | Error) => void;
  /** Canceled: its outcome, if any, is dropped. */
  canceled: boolean;
  /** The batch holding it, and its position there (undefined while queued here). */
  batch: Batch | undefined;
  pos: number;
}

/** A batch handed to the pool. */
interface Batch {
  calls: PendingCall[];
  claims: Int32Array;
  /** Aborted to terminate the thread running it (a running call was canceled). */
  ctl: AbortController;
  /** A batch of pooled calls (counts against `jsPoolCpus`). */
  pooled: boolean;
}

/** The worker's pool of function threads. */
export class FunctionRunner {
  private pool: Promise<Pool> | undefined;
  /** Pooled calls not handed to a thread yet, in order. */
  private queued: PendingCall[] = [];
  /** Batches of pooled calls in the pool. */
  private readonly inFlight = new Set<Batch>();
  /** Cpus the core has lent to its function-call pool: batches of pooled calls at once, at most. */
  private poolCpus = 0;
  private dispatchQueued = false;

  constructor(private readonly threads: number) {}

  private getPool(): Promise<Pool> {
    this.pool ??= import("tinypool").then(
      ({ Tinypool }) =>
        new Tinypool({
          filename: join(__dirname, "function-thread.js"),
          // All threads up front and kept: a thread above minThreads is otherwise ended as soon
          // as it idles and started again for the next call (milliseconds each).
          minThreads: this.threads,
          maxThreads: this.threads,
          idleTimeout: 60_000,
          isolateWorkers: false,
          useAtomics: false,
        }) as unknown as Pool,
    );
    return this.pool;
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
   * `loom/js/call`: input 0 is the function value, the rest its inputs. Aborting `signal`
   * drops the call, terminating the thread running it (the pool starts a fresh one).
   */
  async call(task: TaskToRun, signal?: AbortSignal): Promise<FunctionOutcome> {
    const [fnInput, ...inputs] = task.inputs;
    if (fnInput === undefined || fnInput.typeName !== "loom/js/obj" || !fnInput.bytes) {
      throw new Error("The first argument is not a function value (make it with tasks.jsTask or tasks.jsFunction)");
    }
    const call: FunctionCall = {
      taskId: task.id,
      fnValue: fnInput.bytes.toString("latin1"),
      directArgs: task.config.toString("latin1"),
      inputs: inputs.map((i) => ({
        typeName: i.typeName,
        size: i.size,
        length: i.length,
        ...(i.bytes ? { bytes: i.bytes.toString("latin1") } : {}),
        ...(i.path ? { path: i.path } : {}),
      })),
    };
    const outcome = await new Promise<ThreadOutcome>((resolve, reject) => {
      let settled = false;
      const p: PendingCall = {
        call,
        settle: (o) => {
          if (settled) return;
          settled = true;
          if (o instanceof Error) reject(new Error(`JavaScript thread failed: ${o.message}`));
          else resolve(o);
        },
        canceled: false,
        batch: undefined,
        pos: 0,
      };
      signal?.addEventListener("abort", () => this.cancel(p), { once: true });
      if (task.pooled) {
        this.queued.push(p);
        this.scheduleDispatch();
      } else {
        // Its own cpus (or none): a batch of one, at once.
        this.runBatch([p], false);
      }
    });
    for (const [level, message] of outcome.logs) log(level as Level, message);
    if (outcome.error !== undefined) throw new Error(outcome.error);
    const r = outcome.result!;
    if (r.kind === "redirect") {
      return {
        redirect: {
          taskType: r.taskType,
          config: Buffer.from(r.config),
          // Input indices of the call are shifted by one in the task (input 0 is the function).
          inputs: r.inputs.map((i) => ("index" in i ? { index: i.index + 1 } : { data: Buffer.from(i.data) })),
        },
      };
    }
    return { result: toTaskResult(r, 1) };
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
   * Hands queued pooled calls to the free pool cpus, split evenly; with none queued, a free
   * cpu takes back the later half of the calls a busy batch has not reached.
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
    const taken: PendingCall[] = [];
    for (const i of best.free.slice(Math.floor(best.free.length / 2))) {
      if (Atomics.compareExchange(best.batch.claims, i, ClaimState.Free, ClaimState.TakenBack) === ClaimState.Free) {
        const p = best.batch.calls[i]!;
        p.batch = undefined;
        taken.push(p);
      }
    }
    this.queued.unshift(...taken);
    return taken.length > 0;
  }

  private runBatch(calls: PendingCall[], pooled: boolean): void {
    const batch: Batch = { calls, claims: new Int32Array(new SharedArrayBuffer(4 * calls.length)), ctl: new AbortController(), pooled };
    calls.forEach((p, i) => {
      p.batch = batch;
      p.pos = i;
    });
    if (pooled) this.inFlight.add(batch);
    this.getPool()
      .then((pool) => pool.run({ calls: calls.map((p) => p.call), claims: batch.claims }, { signal: batch.ctl.signal }))
      .then(
        (outcomes) => this.answered(batch, outcomes, undefined),
        (e: unknown) => this.answered(batch, undefined, e instanceof Error ? e : new Error(String(e))),
      );
  }

  /**
   * A batch's answer (or its thread's death, `error`): each call that ran is settled; a call
   * the thread died running fails with `error`; calls given back, not reached, or run but not
   * answered (the thread died later) queue again at the front, unless canceled.
   */
  private answered(batch: Batch, outcomes: BatchOutcomes | undefined, error: Error | undefined): void {
    this.inFlight.delete(batch);
    const again: PendingCall[] = [];
    batch.calls.forEach((p, i) => {
      if (p.batch !== batch) return; // taken back
      p.batch = undefined;
      const outcome = outcomes?.[i];
      if (outcome) return p.settle(outcome);
      if (p.canceled) return;
      const state = Atomics.load(batch.claims, i);
      if (error !== undefined && state === ClaimState.Running) return p.settle(error);
      again.push(p);
    });
    if (again.length > 0) {
      if (batch.pooled) this.queued.unshift(...again);
      else for (const p of again) this.runBatch([p], false);
    }
    this.scheduleDispatch();
  }

  /** Cancels a call: dropped if not reached yet; its thread terminated if it runs. */
  private cancel(p: PendingCall): void {
    p.canceled = true;
    p.settle(new Error("canceled"));
    const batch = p.batch;
    if (batch === undefined) {
      const at = this.queued.indexOf(p);
      if (at >= 0) this.queued.splice(at, 1);
      return;
    }
    if (Atomics.compareExchange(batch.claims, p.pos, ClaimState.Free, ClaimState.TakenBack) === ClaimState.Free) {
      p.batch = undefined;
      return;
    }
    if (Atomics.load(batch.claims, p.pos) === ClaimState.Running) batch.ctl.abort();
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
