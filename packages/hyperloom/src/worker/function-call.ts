/**
 * Messages between the worker's main thread and its function threads. Bytes travel as latin1
 * strings (one byte per character): a message is cloned, and cloning a small Buffer copies the
 * whole 8 KiB pool block it lives in (or an addon's external block), several times the cost of
 * the call itself.
 */
import type { TaskResult } from "../native.js";

/** An input of a call, as its thread gets it. */
export interface CallInput {
  /** Data type name (`loom/data`, `loom/file`, `loom/array`, ...). */
  typeName: string;
  /** Size in bytes. */
  size: number;
  /** Length (items or pieces). */
  length: number;
  /** The content as a latin1 string, when held in memory... */
  bytes?: string;
  /** ... or the file holding it. */
  path?: string;
}

/** What the main thread sends for one call. */
export interface FunctionCall {
  taskId: number;
  /** The serialized function value (input 0 of `loom/js/call`), latin1. */
  fnValue: string;
  /** Serialized direct arguments, latin1. */
  directArgs: string;
  /** The remaining inputs. */
  inputs: CallInput[];
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

/**
 * What the main thread sends for a batch of calls, run one after another by one thread.
 * `claims` (over a SharedArrayBuffer) holds one {@link ClaimState} per call: the thread claims a
 * call before running it, the main thread may take back a call not claimed yet (another thread
 * is free, or it was canceled), and the thread gives back the calls it will not reach (the batch
 * ran out of its time budget).
 */
export interface CallBatch {
  calls: FunctionCall[];
  claims: Int32Array;
}

/** The state of one call of a {@link CallBatch}. */
export const ClaimState = {
  /** Not claimed yet. */
  Free: 0,
  /** Claimed by the thread: running (or it died running it). */
  Running: 1,
  /** Taken back by the main thread before the thread reached it. */
  TakenBack: 2,
  /** Given back by the thread (the batch's time budget ran out before it). */
  GivenBack: 3,
  /** Ran; its outcome is in the batch's answer. */
  Done: 4,
} as const;

/** The answer to a {@link CallBatch}: by position, the outcome of each call that ran (null: not run). */
export type BatchOutcomes = Array<ThreadOutcome | null>;

/** A finished call: the result or the error, and the log lines written through the context. */
export interface ThreadOutcome {
  /** The worker's one task-result shape (input indices count the call's inputs), or a redirection. */
  result?: TaskResult | ThreadRedirect;
  error?: string;
  logs: Array<[string, string]>;
}

