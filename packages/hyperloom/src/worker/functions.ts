/**
 * Function tasks (`loom/js/call`, `loom/js/value`) on a worker: calls run in a tinypool pool of
 * worker threads sized to the worker's cores, never on the worker's event loop. A thread that
 * crashes fails only its task; the pool replaces it.
 */
import { join } from "node:path";
import { deserialize } from "node:v8";
import type { TaskResult, TaskToRun } from "../native.js";
import { log, type Level } from "../log.js";
import type { FunctionCall, ThreadOutcome } from "./function-call.js";

type Pool = { run(task: FunctionCall, options?: { signal?: AbortSignal }): Promise<ThreadOutcome>; destroy(): Promise<void> };

/** A redirection: the task to run in place of a function task. */
export interface Redirect {
  taskType: string;
  config: Buffer;
  /** Inputs of the task being redirected (by index, or the item `at` inside one) or new bytes. */
  inputs: Array<{ index: number; at?: number[] } | { data: Buffer }>;
}

/** What a function call produced. */
export type FunctionOutcome = { result: TaskResult } | { redirect: Redirect };

/** The worker's pool of function threads. */
export class FunctionRunner {
  private pool: Promise<Pool> | undefined;

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
   * terminates the thread running it (the pool starts a fresh one).
   */
  async call(task: TaskToRun, signal?: AbortSignal): Promise<FunctionOutcome> {
    const [fnInput, ...inputs] = task.inputs;
    if (fnInput === undefined || fnInput.typeName !== "loom/js/obj" || !fnInput.bytes) {
      throw new Error("The first argument is not a function value (make it with tasks.jsTask or tasks.jsFunction)");
    }
    const pool = await this.getPool();
    let outcome: ThreadOutcome;
    try {
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
      outcome = await pool.run(call, signal ? { signal } : {});
    } catch (e) {
      throw new Error(`JavaScript thread failed: ${(e as Error).message}`);
    }
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
