/**
 * Runs batches of function tasks inside a worker thread of the pool (see `functions.ts`), one
 * call after another. The function comes as source text (compiled once per thread); its inputs
 * as wrappers over the data objects; its return value is turned into a task result (or a
 * redirection) here, so only bytes go back to the worker's main thread.
 */
import { deserialize, serialize } from "node:v8";
import { readFileSync } from "node:fs";
import { runInThisContext } from "node:vm";
import { Task } from "../client/task.js";
import { FUNCTION_MARK, type FunctionSpec } from "../client/functions.js";
import { decodeDirectArgs, decodeDirectArgsAt } from "../client/direct-args.js";
import type { TaskResult } from "../native.js";
import { AnswerKind, AnswerWriter, ClaimState, readCall, type BatchAnswer, type CallBatch, type CallInput, type CallRecord, type ThreadOutcome, type ThreadRedirect } from "./function-call.js";

/**
 * A batch that has run this long (ms) gives back the calls it has not reached: the main thread
 * hands them to another thread or a later batch, so small calls travel many to a message while
 * slow calls answer one by one (and a canceled or crashed batch loses at most this much work).
 */
const BATCH_BUDGET_MS = 1;

// Function tasks may use the task builders for redirection without importing them. Loaded on
// first use: the builders load the protocol's generated messages (~23 ms of CPU per thread,
// which every worker paid when it started its threads; issue #26).
let builders: typeof import("../client/tasks.js") | undefined;
Object.defineProperty(globalThis, "tasks", {
  configurable: true,
  enumerable: true,
  get: () => (builders ??= require("../client/tasks.js") as typeof import("../client/tasks.js")),
  set: (v: typeof import("../client/tasks.js")) => void (builders = v),
});

/** Function values seen (their serialized bytes, latin1), with the function compiled. */
const compiled = new Map<string, { spec: FunctionSpec; fn: Function }>();
/** The last function value used, and its function (calls of a batch mostly share one). */
let last: { bytes: Buffer; known: { spec: FunctionSpec; fn: Function } } | undefined;

/** Whether `b[at..at+len)` holds the bytes of `a` (compared here: a native call costs more for a function value's ~100 bytes). */
function sameBytes(a: Uint8Array, b: Uint8Array, at: number, len: number): boolean {
  if (a.length !== len) return false;
  for (let i = 0; i < len; i++) if (a[i] !== b[at + i]) return false;
  return true;
}

/** The function value `fnValue` (serialized): deserialized and compiled once. */
function functionOf(fnValue: Buffer): { spec: FunctionSpec; fn: Function } {
  if (last !== undefined && sameBytes(last.bytes, fnValue, 0, fnValue.length)) return last.known;
  const key = fnValue.toString("latin1");
  let known = compiled.get(key);
  if (known === undefined) {
    const spec = deserialize(fnValue) as FunctionSpec;
    if (spec === null || typeof spec !== "object" || spec[FUNCTION_MARK] !== true) {
      throw new Error("The first argument is not a function value (make it with tasks.jsTask or tasks.jsFunction)");
    }
    const fn = runInThisContext(`(${spec.source})`, { filename: `jsTask:${spec.name || "anonymous"}` }) as Function;
    if (typeof fn !== "function") throw new Error(`the function value of '${spec.name}' is not a function`);
    known = { spec, fn };
    // Bounded: a plan may carry many distinct functions.
    if (compiled.size >= 1024) compiled.clear();
    compiled.set(key, known);
  }
  last = { bytes: Buffer.from(fnValue), known };
  return known;
}

/** `bytes` in a block of their own (a Buffer of the pool would be cloned with its whole 8 KiB block). */
function own(bytes: Uint8Array): Uint8Array {
  if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength) return bytes;
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return copy;
}

function deepFreeze<T>(v: T): T {
  if (v !== null && typeof v === "object" && !Object.isFrozen(v)) {
    if (ArrayBuffer.isView(v)) return v; // typed arrays cannot be frozen; they are copies anyway
    Object.freeze(v);
    for (const key of Reflect.ownKeys(v)) deepFreeze((v as Record<string | symbol, unknown>)[key]);
  }
  return v;
}

/** The argument a function receives for each input. */
class Data {
  constructor(
    private readonly input: CallInput,
    /** Position among the call's inputs. */
    readonly index: number,
  ) {}

  /** The bytes of a D-Object (empty for other objects). */
  read(): Buffer {
    const t = this.input.typeName;
    if (t !== "loom/data" && t !== "loom/file") return Buffer.alloc(0);
    if (this.input.bytes !== undefined) return Buffer.from(this.input.bytes);
    if (this.input.path) return readFileSync(this.input.path);
    return Buffer.alloc(0);
  }

  /** Size in bytes. */
  size(): number {
    return this.input.size;
  }

  /** Length (items of an array, pieces of an index; 0 otherwise). */
  length(): number {
    return this.input.length;
  }

  /** The value of a value object (frozen), or undefined for other objects. */
  unwrap(): unknown {
    if (this.input.typeName !== "loom/js/obj" || this.input.bytes === undefined) return undefined;
    return deepFreeze(deserialize(this.input.bytes));
  }
}

/** A value wrapped by `ctx.wrap`: becomes a value object. */
class Wrapped {
  constructor(readonly value: unknown) {}
}

/** A redirection placed inside an array (refused as is, without the "JavaScript exception" prefix). */
class NestedRedirect extends Error {}

/** The function's return value as a task result (`top`: the whole value, which may redirect). */
function convert(v: unknown, args: Data[], top: boolean): TaskResult | ThreadRedirect {
  if (typeof v === "string") {
    const data = Buffer.allocUnsafeSlow(Buffer.byteLength(v));
    data.write(v);
    return { kind: "plain", data };
  }
  if (v instanceof Uint8Array) return { kind: "plain", data: own(v) };
  if (v instanceof Data) return { kind: "input", index: v.index };
  if (v instanceof Wrapped) return { kind: "jsobj", data: own(serialize(v.value)) };
  if (v instanceof Task) {
    if (!top) throw new NestedRedirect("a redirection can only be the whole result of a function, not an item of an array");
    const inputs = v.inputs.map((i) => {
      if (i instanceof Data) return { index: i.index };
      if (i instanceof Task && i.taskType === "loom/data/const") {
        return { data: typeof i.config === "string" ? Buffer.from(i.config) : i.config };
      }
      throw new Error("a redirected task takes arguments of this call or tasks.const(...) as inputs");
    });
    return { kind: "redirect", taskType: v.taskType, config: typeof v.config === "string" ? Buffer.from(v.config) : v.config, inputs };
  }
  if (Array.isArray(v)) return { kind: "array", items: v.map((x) => convert(x, args, false) as TaskResult) };
  throw new Error(`Invalid result from the function: ${v === null ? "null" : typeof v} (return a string, bytes, a Task, ctx.wrap(value), an argument, or an array of those)`);
}

/** A call's failure as its task's error message. */
function failure(e: unknown): string {
  if (e instanceof NestedRedirect) return e.message;
  let text = e instanceof Error ? (e.stack ?? e.message) : String(e);
  if (e instanceof ReferenceError) {
    text += "\n(function tasks travel as source text: they cannot use variables of the client program; pass values as direct arguments or inputs)";
  }
  return `JavaScript exception:\n${text}`;
}

/** What a call ends with: nothing (its plain outcome is written), another outcome, or later. */
type CallEnd = ThreadOutcome | undefined | Promise<ThreadOutcome | undefined>;

/** The log lines a call wrote through its context (none: undefined). */
interface CallLogs {
  lines: Array<[string, string]> | undefined;
}

/** A call without inputs beyond its function (W5's): its arguments are its direct arguments only. */
const NO_ARGS: Data[] = [];

/** The bytes of the type name `loom/js/obj`. */
const JS_OBJ = Buffer.from("loom/js/obj", "latin1");

/**
 * Runs the call whose record is at `at` of `b` (`function-call.ts`), as {@link runCall} does. The
 * usual call — the function value held in memory as its only input, the function of the call
 * before, no context — is read in place: no record, input or view objects (issue #26: they and
 * comparing the function's bytes natively were ~40% of a thread's time per W5 call).
 */
function runRecord(b: Buffer, at: number, out: AnswerWriter): CallEnd {
  const configAt = at + 13;
  const configEnd = configAt + b.readUInt32LE(at + 9);
  let o = configEnd;
  const known = last;
  // One input, named loom/js/obj (11 bytes), held in memory (where = 1), the last function's bytes.
  if (known !== undefined && b.readUInt32LE(o) === 1 && b[o + 4] === 11 && sameBytes(JS_OBJ, b, o + 5, 11) && b[o + 32] === 1) {
    o += 33;
    const len = b.readUInt32LE(o);
    if (len > 0 && sameBytes(known.bytes, b, o + 4, len) && !known.known.spec.context) {
      const id = b.readInt32LE(at + 4);
      try {
        const direct = decodeDirectArgsAt(b, configAt, configEnd) as unknown[];
        const fn = known.known.fn;
        const value = direct.length === 1 ? fn(direct[0]) : fn(...direct);
        if (value !== null && typeof value === "object" && typeof (value as { then?: unknown }).then === "function") {
          return settleLater(id, value as PromiseLike<unknown>, NO_ARGS, undefined, out);
        }
        return ended(id, value, NO_ARGS, undefined, out);
      } catch (e) {
        return failed(id, e, undefined, out);
      }
    }
  }
  return runCall(readCall(b, at), out);
}

/**
 * Runs one call; a plain outcome (text, bytes, a wrapped value, an error, without log lines)
 * is written to `out`, any other is returned. Synchronous unless the function returns a promise.
 * No closure is made per call unless the function takes a context or returns a promise (issue #26).
 */
function runCall(call: CallRecord, out: AnswerWriter): CallEnd {
  const id = call.taskId;
  let logs: CallLogs | undefined;
  let args = NO_ARGS;
  try {
    const fnInput = call.inputs[0];
    if (fnInput === undefined || fnInput.typeName !== "loom/js/obj" || fnInput.bytes === undefined || fnInput.bytes.length === 0) {
      throw new Error("The first argument is not a function value (make it with tasks.jsTask or tasks.jsFunction)");
    }
    const { spec, fn } = functionOf(fnInput.bytes);
    const direct = decodeDirectArgs(call.config) as unknown[];
    const n = call.inputs.length - 1;
    if (n > 0) {
      args = new Array(n);
      for (let i = 0; i < n; i++) args[i] = new Data(call.inputs[i + 1]!, i);
    }
    let value: unknown;
    if (spec.context) {
      logs = { lines: undefined };
      value = fn(contextOf(id, logs), ...direct, ...args);
    } else value = n === 0 ? fn(...direct) : fn(...direct, ...args);
    if (value !== null && typeof value === "object" && typeof (value as { then?: unknown }).then === "function") {
      return settleLater(id, value as PromiseLike<unknown>, args, logs, out);
    }
    return ended(id, value, args, logs, out);
  } catch (e) {
    return failed(id, e, logs, out);
  }
}

/** The context a function with `context: true` receives first; its log lines go to `logs`. */
function contextOf(id: number, logs: CallLogs): object {
  const log = (level: string) => (msg: unknown) => void (logs.lines ??= []).push([level, `JsTask id=${id}: ${String(msg)}`]);
  return {
    taskId: id,
    logDebug: log("debug"),
    logInfo: log("info"),
    logWarn: log("warn"),
    logError: log("error"),
    logCritical: log("error"),
    wrap: (v: unknown) => (v instanceof Data || v instanceof Wrapped ? v : new Wrapped(v)),
  };
}

/** A call whose function returned a promise: its outcome once the promise settles. */
function settleLater(id: number, value: PromiseLike<unknown>, args: Data[], logs: CallLogs | undefined, out: AnswerWriter): Promise<ThreadOutcome | undefined> {
  return Promise.resolve(value).then(
    (v) => ended(id, v, args, logs, out),
    (e: unknown) => failed(id, e, logs, out),
  );
}

/** A call's value: a plain outcome is written to `out`, any other returned. */
function ended(id: number, value: unknown, args: Data[], logs: CallLogs | undefined, out: AnswerWriter): ThreadOutcome | undefined {
  const lines = logs?.lines;
  if (lines === undefined) {
    if (typeof value === "string") return void out.text(id, AnswerKind.Plain, value);
    if (value instanceof Uint8Array) return void out.bytes(id, AnswerKind.Plain, value);
    if (value instanceof Wrapped) return void out.bytes(id, AnswerKind.JsObj, serialize(value.value));
  }
  try {
    return { result: convert(value, args, true), logs: lines ?? [] };
  } catch (e) {
    return failed(id, e, logs, out);
  }
}

/** A call's failure: written to `out` without log lines, returned with them. */
function failed(id: number, e: unknown, logs: CallLogs | undefined, out: AnswerWriter): ThreadOutcome | undefined {
  const lines = logs?.lines;
  if (lines === undefined) return void out.text(id, AnswerKind.Error, failure(e));
  return { error: failure(e), logs: lines };
}

/**
 * Runs a batch (the pool's entry point): each call claimed before it runs (the main thread may
 * have taken it back), in order, until the batch's time budget runs out.
 */
async function runBatch(batch: CallBatch): Promise<BatchAnswer> {
  const { shared, n } = batch;
  const claims = new Int32Array(shared, 0, n);
  // A copy of the records: what a function reads is never shared memory.
  const bytes = Buffer.from(new Uint8Array(shared, 4 * n));
  const out = new AnswerWriter();
  const others: BatchAnswer["others"] = [];
  const start = performance.now();
  for (let i = 0, at = 0; i < n; i++) {
    const record = at;
    at += 4 + bytes.readUInt32LE(at);
    if (i > 0 && performance.now() - start > BATCH_BUDGET_MS) {
      for (let j = i; j < n; j++) Atomics.compareExchange(claims, j, ClaimState.Free, ClaimState.GivenBack);
      break;
    }
    if (Atomics.compareExchange(claims, i, ClaimState.Free, ClaimState.Running) !== ClaimState.Free) continue;
    let outcome = runRecord(bytes, record, out);
    if (outcome instanceof Promise) outcome = await outcome;
    if (outcome !== undefined) others.push({ taskId: bytes.readInt32LE(record + 4), outcome });
    Atomics.store(claims, i, ClaimState.Done);
  }
  return { answers: out.done(), others };
}

export = runBatch;
