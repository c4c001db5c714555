/** Messages between the worker's main thread and its function threads. */
import type { TaskInput } from "../native.js";

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

/** A result of a call, as plain data that crosses threads. */
export type ThreadResult =
  | { kind: "plain" | "jsobj"; data: Uint8Array }
  | { kind: "input"; index: number }
  | { kind: "array"; items: ThreadResult[] }
  | { kind: "redirect"; taskType: string; config: Uint8Array; inputs: Array<{ index: number } | { data: Uint8Array }> };

/** A finished call: the result or the error, and the log lines written through the context. */
export interface ThreadOutcome {
  result?: ThreadResult;
  error?: string;
  logs: Array<[string, string]>;
}

