/**
 * Builders of the built-in tasks (the guide's `loom.client.tasks`). Each returns a {@link Task};
 * configs follow the spec's layouts (section 6).
 */
import { isAbsolute } from "node:path";
import { run as runProto } from "../protocol/messages.js";
import { runFileNameError } from "../protocol/run-names.js";
import { Symbol } from "../protocol/symbols.js";
import { builtTask, copyInputs, cpu1, cpus, ResourceRequest, Task, type TaskConfig, type TaskInput } from "./task.js";
import type { Future } from "./future.js";
import { LoomError } from "./errors.js";

export { cpus, cpu1 };

/** A task whose result is the given bytes (a string is UTF-8 encoded). */
function constTask(data: TaskConfig): Task {
  return builtTask(Symbol.DATA_CONST, data);
}
export { constTask as const };

/** Concatenates D-Objects, with `delimiter` between consecutive inputs. */
export function merge(inputs: readonly TaskInput[], delimiter: TaskConfig = ""): Task {
  return builtTask(Symbol.DATA_MERGE, delimiter, copyInputs(inputs));
}

/** Opens a file on the worker as a File object; only the path crosses the network. */
export function open(filename: string): Task {
  return new Task(Symbol.DATA_OPEN, { config: filename });
}

/** Splits a D-Object into lines (pieces keep their new line); the result is an Index. */
export function split(input: TaskInput): Task<Buffer[]> {
  return new Task<Buffer[]>(Symbol.DATA_SPLIT, { inputs: [input] });
}

/** Writes a D-Object to an absolute path on the worker; the result is empty data. */
export function save(input: TaskInput, filename: string): Task {
  if (!isAbsolute(filename)) throw new LoomError(`Path '${filename}' is not absolute path`);
  return new Task(Symbol.DATA_SAVE, { inputs: [input], config: filename, resourceRequest: cpu1 });
}

/** An Array of the inputs, in order (fetched as an array of their results). */
export function arrayMake<T = Buffer>(inputs: readonly (Task<T> | Future<T>)[]): Task<T[]> {
  return builtTask<T[]>(Symbol.ARRAY_MAKE, "", copyInputs(inputs));
}

/** The sum of the inputs' sizes, as 8 bytes little-endian. */
export function size(input: TaskInput | readonly TaskInput[]): Task {
  return new Task(Symbol.BASE_SIZE, { inputs: Array.isArray(input) ? [...input] : [input as TaskInput] });
}

/** The sum of the inputs' lengths, as 8 bytes little-endian. */
export function length(input: TaskInput | readonly TaskInput[]): Task {
  return new Task(Symbol.BASE_LENGTH, { inputs: Array.isArray(input) ? [...input] : [input as TaskInput] });
}

function u64(...values: number[]): Uint8Array {
  const b = Buffer.alloc(8 * values.length);
  values.forEach((v, i) => {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`expected a non-negative integer, got ${v}`);
    b.writeBigUInt64LE(BigInt(v), i * 8);
  });
  return b;
}

/** Element `index` of an Array, or piece `index` of an Index (typed as plain data: say `gather<U>()` for another element type). */
export function get(input: TaskInput, index: number): Task {
  return new Task(Symbol.BASE_GET, { inputs: [input], config: u64(index) });
}

/** Elements (or pieces) `start` to `end` (exclusive, clamped); typed as pieces of plain data. */
export function slice(input: TaskInput, start: number, end: number): Task<Buffer[]> {
  return new Task<Buffer[]>(Symbol.BASE_SLICE, { inputs: [input], config: u64(start, end) });
}

/** Splits its input, when computed, into slices sized by the cluster, each fed to a copy of the consumer. */
export function dslice(input: TaskInput): Task {
  return new Task(Symbol.SCHEDULER_DSLICE, { inputs: [input] });
}

/** Like {@link dslice}, one element per copy of the consumer. */
export function dget(input: TaskInput): Task {
  return new Task(Symbol.SCHEDULER_DGET, { inputs: [input] });
}

/** How an input of `run` is given to the program: a file name, `$NAME` (a variable), or stdin. */
export type RunInput = [TaskInput, string | null];

/** Options of {@link run}. */
export interface RunOptions {
  /** Fed to the program's standard input. */
  stdin?: TaskInput;
  /**
   * Result sources: a file name in the run directory, or `null` for standard output. One output
   * is the result itself; several make an Array (typed `Buffer[]` when written as a list literal).
   */
  outputs?: Array<string | null>;
  /** Resources; one core by default. */
  request?: ResourceRequest;
  /** A label for traces and errors. */
  label?: string;
}

/** Checks that a file name given to `run` stays inside the run directory. */
function checkRunFileName(name: string): void {
  const error = runFileNameError(name);
  if (error !== undefined) throw new LoomError(error);
}

/**
 * Runs an external program. A string command is split on white space; an array is argv as is.
 * `inputs` maps tasks to file names (or `$NAME` variables substituted in the arguments). The
 * result is the one output (stdout by default) as plain data, or an Array of several outputs.
 */
export function run(
  command: string | readonly string[],
  inputs: readonly RunInput[],
  options: RunOptions & { outputs: [string | null, string | null, ...Array<string | null>] },
): Task<Buffer[]>;
export function run(command: string | readonly string[], inputs?: readonly RunInput[], options?: RunOptions): Task<Buffer>;
export function run(command: string | readonly string[], inputs: readonly RunInput[] = [], options: RunOptions = {}): Task<Buffer> | Task<Buffer[]> {
  const args = typeof command === "string" ? command.split(/\s+/).filter((s) => s.length > 0) : [...command];
  if (args.length === 0) throw new LoomError("run: no arguments provided");
  const all: RunInput[] = options.stdin !== undefined ? [[options.stdin, null], ...inputs] : [...inputs];
  const mapInputs = all.map(([, name]) => {
    if (name) checkRunFileName(name);
    return name || "+in";
  });
  const outputs = options.outputs ?? [null];
  const mapOutputs = outputs.map((name) => {
    if (name) checkRunFileName(name);
    return name || "+out";
  });
  const config = runProto.Run.encode({ args, mapInputs, mapOutputs }).finish();
  return new Task<Buffer>(Symbol.RUN, {
    inputs: all.map(([t]) => t),
    config,
    resourceRequest: options.request ?? cpu1,
    label: options.label ?? args[0],
  });
}

export { jsValue, jsCall, jsTask, jsFunction, type JsCallOptions, type JsTaskOptions } from "./functions.js";
