/**
 * Runs batches of function tasks inside a worker thread of the pool (see `functions.ts`), one
 * call after another. The function comes as source text (compiled once per thread); its inputs
 * as wrappers over the data objects; its return value is turned into a task result (or a
 * redirection) here, so only bytes go back to the worker's main thread.
 */
import { deserialize, serialize } from "node:v8";
import { readFileSync } from "node:fs";
import { runInThisContext } from "node:vm";
import * as tasks from "../client/tasks.js";
import { Task } from "../client/task.js";
import { FUNCTION_MARK, type FunctionSpec } from "../client/functions.js";
import type { TaskResult } from "../native.js";
import { ClaimState, type BatchOutcomes, type CallBatch, type CallInput, type FunctionCall, type ThreadOutcome, type ThreadRedirect } from "./function-call.js";

/**
 * A batch that has run this long (ms) gives back the calls it has not reached: the main thread
 * hands them to another thread or a later batch, so small calls travel many to a message while
 * slow calls answer one by one (and a canceled or crashed batch loses at most this much work).
 */
const BATCH_BUDGET_MS = 1;

// Function tasks may use the task builders for redirection without importing them.
(globalThis as Record<string, unknown>).tasks = tasks;

/** Function values seen (their serialized bytes, latin1), with the function compiled. */
const compiled = new Map<string, { spec: FunctionSpec; fn: Function }>();

/** The function value `fnValue` (serialized, latin1): deserialized and compiled once. */
function functionOf(fnValue: string): { spec: FunctionSpec; fn: Function } {
  let known = compiled.get(fnValue);
  if (known === undefined) {
    const spec = deserialize(Buffer.from(fnValue, "latin1")) as FunctionSpec;
    if (spec === null || typeof spec !== "object" || spec[FUNCTION_MARK] !== true) {
      throw new Error("The first argument is not a function value (make it with tasks.jsTask or tasks.jsFunction)");
    }
    const fn = runInThisContext(`(${spec.source})`, { filename: `jsTask:${spec.name || "anonymous"}` }) as Function;
    if (typeof fn !== "function") throw new Error(`the function value of '${spec.name}' is not a function`);
    known = { spec, fn };
    // Bounded: a plan may carry many distinct functions.
    if (compiled.size >= 1024) compiled.clear();
    compiled.set(fnValue, known);
  }
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
    if (this.input.bytes !== undefined) return Buffer.from(this.input.bytes, "latin1");
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
    return deepFreeze(deserialize(Buffer.from(this.input.bytes, "latin1")));
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

/** Runs one call. */
async function runFunctionTask(call: FunctionCall): Promise<ThreadOutcome> {
  const logs: Array<[string, string]> = [];
  try {
    const { spec, fn } = functionOf(call.fnValue);
    const direct = deserialize(Buffer.from(call.directArgs, "latin1")) as unknown[];
    const args = call.inputs.map((input, i) => new Data(input, i));
    const log = (level: string) => (msg: unknown) => void logs.push([level, `JsTask id=${call.taskId}: ${String(msg)}`]);
    const ctx = {
      taskId: call.taskId,
      logDebug: log("debug"),
      logInfo: log("info"),
      logWarn: log("warn"),
      logError: log("error"),
      logCritical: log("error"),
      wrap: (v: unknown) => (v instanceof Data || v instanceof Wrapped ? v : new Wrapped(v)),
    };
    const all = spec.context ? [ctx, ...direct, ...args] : [...direct, ...args];
    const value = await fn(...all);
    return { result: convert(value, args, true), logs };
  } catch (e) {
    if (e instanceof NestedRedirect) return { error: e.message, logs };
    let text = e instanceof Error ? (e.stack ?? e.message) : String(e);
    if (e instanceof ReferenceError) {
      text += "\n(function tasks travel as source text: they cannot use variables of the client program; pass values as direct arguments or inputs)";
    }
    return { error: `JavaScript exception:\n${text}`, logs };
  }
}

/**
 * Runs a batch (the pool's entry point): each call claimed before it runs (the main thread may
 * have taken it back), in order, until the batch's time budget runs out.
 */
async function runBatch(batch: CallBatch): Promise<BatchOutcomes> {
  const { calls, claims } = batch;
  const outcomes: BatchOutcomes = new Array(calls.length).fill(null);
  const start = performance.now();
  for (let i = 0; i < calls.length; i++) {
    if (i > 0 && performance.now() - start > BATCH_BUDGET_MS) {
      for (let j = i; j < calls.length; j++) Atomics.compareExchange(claims, j, ClaimState.Free, ClaimState.GivenBack);
      break;
    }
    if (Atomics.compareExchange(claims, i, ClaimState.Free, ClaimState.Running) !== ClaimState.Free) continue;
    outcomes[i] = await runFunctionTask(calls[i]!);
    Atomics.store(claims, i, ClaimState.Done);
  }
  return outcomes;
}

export = runBatch;
