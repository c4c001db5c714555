/**
 * Function calls (`loom/js/call`) as bytes, between the worker core, the worker's main thread
 * and its function threads (issue #26). The core hands the calls of an event over as one buffer
 * of call records (`WorkerEffects.calls`); the main thread copies the records of a batch into one
 * SharedArrayBuffer for a thread; the thread answers the batch with one buffer of answer records,
 * which the main thread hands to the core (`WorkerCore.finishCalls`) as it is. No object per call
 * crosses the addon or a thread boundary on this path. The layouts (little-endian) are the
 * binding's, `crates/loom-node/src/function_calls.rs`:
 *
 * - call: u32 length of the rest, i32 task id, u8 flags (bit 0: pooled), u32 + config bytes,
 *   u32 input count, then per input: u8 + type name, f64 size, f64 length, u8 where (0 nowhere,
 *   1 bytes, 2 a file path), u32 + the bytes or the path;
 * - answer: i32 task id, u8 kind ({@link AnswerKind}), u32 + bytes.
 */
import type { TaskResult } from "../native.js";

/** An input of a call, as its thread reads it. */
export interface CallInput {
  /** Data type name (`loom/data`, `loom/file`, `loom/array`, `loom/js/obj`, ...). */
  typeName: string;
  /** Size in bytes. */
  size: number;
  /** Length (items or pieces). */
  length: number;
  /** The content, when held in memory (a view of the batch's bytes)... */
  bytes?: Buffer;
  /** ... or the file holding it. */
  path?: string;
}

/** A call record, read. */
export interface CallRecord {
  taskId: number;
  /** A call of the function-call pool. */
  pooled: boolean;
  /** The serialized direct arguments (a view of the batch's bytes). */
  config: Buffer;
  /** The inputs; input 0 is the function value. */
  inputs: CallInput[];
}

/** Type names read so far (a handful: `loom/js/obj`, `loom/data`, ...), so a call makes no string per input. */
const typeNames: string[] = [];

/** The type name of `len` latin1 bytes at `at` of `b`, the same string each time (issue #26). */
function typeNameAt(b: Buffer, at: number, len: number): string {
  for (let k = 0; k < typeNames.length; k++) {
    const name = typeNames[k]!;
    if (name.length !== len) continue;
    let i = 0;
    while (i < len && b[at + i] === name.charCodeAt(i)) i++;
    if (i === len) return name;
  }
  const name = b.toString("latin1", at, at + len);
  if (typeNames.length < 16) typeNames.push(name);
  return name;
}

/** Reads the call record at `at` (its length field) of `b`. */
export function readCall(b: Buffer, at: number): CallRecord {
  const taskId = b.readInt32LE(at + 4);
  const pooled = (b[at + 8]! & 1) !== 0;
  let o = at + 9;
  const configLen = b.readUInt32LE(o);
  const config = b.subarray(o + 4, o + 4 + configLen);
  o += 4 + configLen;
  const n = b.readUInt32LE(o);
  o += 4;
  const inputs: CallInput[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const nameLen = b[o]!;
    const typeName = typeNameAt(b, o + 1, nameLen);
    o += 1 + nameLen;
    const size = b.readDoubleLE(o);
    const length = b.readDoubleLE(o + 8);
    const where = b[o + 16]!;
    const len = b.readUInt32LE(o + 17);
    o += 21;
    const input: CallInput = { typeName, size, length };
    if (where === 1) input.bytes = b.subarray(o, o + len);
    else if (where === 2) input.path = b.toString("utf8", o, o + len);
    inputs[i] = input;
    o += len;
  }
  return { taskId, pooled, config, inputs };
}

/** The kind of an answer record. */
export const AnswerKind = {
  /** Plain bytes (`loom/data`). */
  Plain: 1,
  /** A serialized JS value (`loom/js/obj`). */
  JsObj: 2,
  /** The call failed: the bytes are its message (UTF-8). */
  Error: 3,
} as const;

/** Texts up to this long are written by {@link asciiInto} when ASCII (a native call costs more). */
const SHORT_TEXT = 32;

/** Writes `s` at `at` of `b` if it is ASCII (its UTF-8 is its char codes); its length, or -1 (nothing usable written). */
function asciiInto(b: Buffer, at: number, s: string): number {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0x7f) return -1;
    b[at + i] = c;
  }
  return s.length;
}

/** Writes answer records into one growing buffer. */
export class AnswerWriter {
  private buf = Buffer.allocUnsafe(4096);
  private at = 0;

  private reserve(n: number): void {
    if (this.at + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.at + n));
    this.buf.copy(next, 0, 0, this.at);
    this.buf = next;
  }

  private head(id: number, kind: number, len: number): void {
    this.buf.writeInt32LE(id, this.at);
    this.buf[this.at + 4] = kind;
    this.buf.writeUInt32LE(len, this.at + 5);
    this.at += 9;
  }

  /** A result or message given as text (written as UTF-8). */
  text(id: number, kind: number, s: string): void {
    this.reserve(9 + 3 * s.length);
    const len = s.length <= SHORT_TEXT ? asciiInto(this.buf, this.at + 9, s) : -1;
    const written = len >= 0 ? len : this.buf.write(s, this.at + 9, "utf8");
    this.head(id, kind, written);
    this.at += written;
  }

  /** A result given as bytes. */
  bytes(id: number, kind: number, b: Uint8Array): void {
    this.reserve(9 + b.length);
    this.head(id, kind, b.length);
    this.buf.set(b, this.at);
    this.at += b.length;
  }

  /** The records written, in a block of their own (a view would be cloned with its whole block). */
  done(): Uint8Array {
    return new Uint8Array(this.buf.subarray(0, this.at));
  }
}

/**
 * A batch of calls for one thread, run one after another. `shared` holds one
 * {@link ClaimState} (Int32) per call, then the calls' records: the thread claims a call before
 * running it, the main thread may take back a call not claimed yet (another thread is free, or
 * it was canceled), and the thread gives back the calls it will not reach (the batch ran out of
 * its time budget).
 */
export interface CallBatch {
  shared: SharedArrayBuffer;
  /** Calls in the batch. */
  n: number;
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

/**
 * The answer to a {@link CallBatch}: the answer records of the calls that ran with a plain
 * outcome (bytes, a value, an error, no log lines), and the other outcomes (redirections, arrays,
 * inputs passed through, or any with log lines) one by one.
 */
export interface BatchAnswer {
  answers: Uint8Array;
  others: Array<{ taskId: number; outcome: ThreadOutcome }>;
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
