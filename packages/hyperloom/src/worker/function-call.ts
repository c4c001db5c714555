/** Messages between the worker's main thread and its function threads. */
import type { TaskInput, TaskResult } from "../native.js";

/** What the main thread sends for one call. */
export interface FunctionCall {
  taskId: number;
  /** The serialized function value (input 0 of `loom/js/call`). */
  fnValue: Uint8Array;
  /** Serialized direct arguments. */
  directArgs: Uint8Array;
  /** The remaining inputs. */
  inputs: TaskInput[];
}

/**
 * A redirection: run `taskType` in place of the function task, on inputs of the call (by index)
 * or new bytes. Only the whole result of a call can be one.
 */
export interface ThreadRedirect {
  kind: "redirect";
  taskType: string;
  config: Uint8Array;
  inputs: Array<{ index: number } | { data: Uint8Array }>;
}

/** A finished call: the result or the error, and the log lines written through the context. */
export interface ThreadOutcome {
  /** The worker's one task-result shape (input indices count the call's inputs), or a redirection. */
  result?: TaskResult | ThreadRedirect;
  error?: string;
  logs: Array<[string, string]>;
}

