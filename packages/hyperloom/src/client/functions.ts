/**
 * JavaScript functions as tasks (the guide's "Python functions in plans", done the TypeScript way).
 *
 * A function travels as its source text and runs on a worker thread of the worker. It may use its
 * arguments, JavaScript and Node globals (`Buffer`, `require`, `import()` of modules installed on
 * the worker) and the global `tasks` (this module's builders, for task redirection). It may NOT use
 * variables of the client program: pass such values as direct arguments or as inputs. Using one
 * fails the task with a `ReferenceError` that says so.
 */
import { serialize } from "node:v8";
import { Symbol } from "../protocol/symbols.js";
import { encodeDirectArgs, encodeLeadingArgs } from "./direct-args.js";
import { builtTask, cpu1, sharedExtras, Task, type ResourceRequest, type TaskExtras, type TaskInput } from "./task.js";
import { LoomError } from "./errors.js";
import type { DataValue } from "./data.js";

/** What a function task receives for each input: a view of the input's data object on the worker. */
export interface TaskArg {
  /** Position among the call's inputs. */
  readonly index: number;
  /** The bytes of plain data or a file (empty for other objects). */
  read(): Buffer;
  /** Size in bytes. */
  size(): number;
  /** Length: items of an Array, pieces of an Index; 0 otherwise. */
  length(): number;
  /** The value of a value object (`jsValue`, `ctx.wrap`), deeply frozen; undefined for other objects. */
  unwrap(): unknown;
}

/** A value a function task returns through `ctx.wrap`: its result is a value object holding `value`. */
export interface Wrapped<T> {
  readonly value: T;
}

/** The first argument of a function task made with `context: true`. */
export interface TaskContext {
  /** The task's id (the server's numbering). */
  readonly taskId: number;
  /** Writes a line to the worker's log, at the level of the method's name. */
  logDebug(message: unknown): void;
  logInfo(message: unknown): void;
  logWarn(message: unknown): void;
  logError(message: unknown): void;
  logCritical(message: unknown): void;
  /** Makes `value` the task's result as a value object (an argument is returned as is). */
  wrap<T>(value: T): Wrapped<T>;
}

/**
 * The result type of a function task whose function returns `R`, as `fetch` gives it: plain data
 * (a string or bytes) is a `Buffer`, `ctx.wrap(v)` is `v`'s type, a redirection `Task<T>` is `T`,
 * an array is an Array of those, and a returned argument is whatever that input was.
 */
export type FunctionResult<R> = 0 extends 1 & R
  ? DataValue
  : R extends string | Uint8Array
    ? Buffer
    : R extends Wrapped<infer T>
      ? T
      : R extends Task<infer T>
        ? T
        : R extends readonly (infer E)[]
          ? FunctionResult<E>[]
          : DataValue;

/** The first `N` elements of the tuple `P` (all of `P` when it is shorter). */
type Take<P extends readonly unknown[], N extends number, Acc extends unknown[] = []> = Acc["length"] extends N
  ? Acc
  : P extends readonly [infer H, ...infer Rest]
    ? Take<Rest, N, [...Acc, H]>
    : P extends readonly [(infer H)?, ...infer Rest]
      ? Take<Rest, N, [...Acc, H?]>
      : Acc;

/** `P` without its first element when `C` (the function takes a context). */
type AfterContext<P extends readonly unknown[], C> = C extends true ? (P extends readonly [unknown, ...infer Rest] ? Rest : P) : P;

/** The arguments of a builder made by `jsTask`: the function's direct arguments, then inputs. */
export type JsTaskArgs<P extends readonly unknown[], N extends number, C> = number extends N
  ? unknown[]
  : [...Take<AfterContext<P, C>, N>, ...TaskInput[]];

/** Key marking a serialized function in a value object. */
export const FUNCTION_MARK = "__hyperloom_function__";

/** What a function value holds once deserialized on the worker. */
export interface FunctionSpec {
  [FUNCTION_MARK]: true;
  /** The function's source text. */
  source: string;
  /** Whether it takes a context as first argument. */
  context: boolean;
  /** Its name (for logs). */
  name: string;
}

/** A value object (the PyObj analog): any value `v8.serialize` carries, immutable on the worker. */
export function jsValue<T>(value: T, options: { label?: string; request?: ResourceRequest } = {}): Task<T> {
  let config: Buffer;
  try {
    const bytes = serialize(value);
    // Copied into a Buffer made in JS, as every other config: the one `serialize` makes (in C++)
    // has a shape of its own, which the encoder compiled for a plan's other configs did not know
    // and V8 drops between plans (a deopt and a recompile at a plan's first jsValue; issue #26).
    config = Buffer.allocUnsafe(bytes.length);
    config.set(bytes);
  } catch (e) {
    throw new LoomError(`jsValue: the value cannot be serialized (structured clone): ${(e as Error).message}`);
  }
  // A builder's task (one object shape for every task of a function-task plan, issue #26).
  const t = builtTask<T>(Symbol.JS_VALUE, config);
  t._extras = { resourceRequest: options.request ?? cpu1, label: options.label ? options.label : undefined, checkpointPath: undefined };
  return t;
}

/** Options of {@link jsCall}. */
export interface JsCallOptions {
  /** Plain values passed before the inputs (after the context). */
  directArgs?: unknown[];
  /** Resources; one core by default. */
  request?: ResourceRequest;
  /** Label for traces and errors. */
  label?: string;
}

/** Calls the function held by `fnValue` (a `jsValue` of a function) on `inputs`. */
export function jsCall<T = DataValue>(fnValue: TaskInput, inputs: readonly TaskInput[] = [], options: JsCallOptions = {}): Task<T> {
  let config: Buffer;
  try {
    config = encodeDirectArgs(options.directArgs ?? []);
  } catch (e) {
    throw new LoomError(`jsCall: direct arguments cannot be serialized: ${(e as Error).message}`);
  }
  return callTask<T>([fnValue, ...inputs], config, { resourceRequest: options.request ?? cpu1, label: options.label, checkpointPath: undefined });
}

/**
 * A `loom/js/call` task: `inputs[0]` is the function value. Made as the other builders make
 * theirs ({@link builtTask}), so that a plan's tasks share one object shape: the client's plan
 * walk and encoder, compiled for one shape, are not deoptimized and compiled again by the next
 * plan's other shape (W5 on a fresh cluster: each of the first repetitions recompiled them;
 * issue #26). `extras` may be shared by the calls of one builder.
 */
function callTask<T>(inputs: TaskInput[], config: Buffer, extras: TaskExtras): Task<T> {
  const t = builtTask<T>(Symbol.JS_CALL, config, inputs);
  t._extras = extras;
  return t;
}

/** Options of {@link jsTask}. */
export interface JsTaskOptions {
  /** Label of the tasks; the function's name by default. */
  label?: string;
  /** Resources of each call; one core by default. */
  request?: ResourceRequest;
  /** Pass a context (`taskId`, logging, `wrap`) as the first argument. */
  context?: boolean;
  /** How many leading arguments are direct values rather than inputs. */
  nDirectArgs?: number;
}

/** The source of `fn` as an expression, checked for what cannot travel. */
function functionSource(fn: Function): string {
  const source = fn.toString();
  if (/\{\s*\[native code\]\s*\}$/.test(source)) {
    throw new LoomError(`jsTask: ${fn.name || "the function"} is native or bound and has no source to send`);
  }
  // A method shorthand (`f(a) {...}`) is not an expression: make it one.
  if (!/^(async\s+)?(function\b|\(|[\w$]+\s*=>|class\b)/.test(source)) {
    return `({ ${source} })[${JSON.stringify(fn.name)}]`;
  }
  return source;
}

/** A function value: `jsValue` holding `fn` itself (its source). */
export function jsFunction(fn: Function, context = false): Task<unknown> {
  const spec: FunctionSpec = { [FUNCTION_MARK]: true, source: functionSource(fn), context, name: fn.name };
  return jsValue(spec, { label: `#L:${fn.name || "anonymous"}` });
}

/**
 * Turns `fn` into a builder of tasks: `jsTask(f)(a, b)` is a task calling `f` on the worker
 * with wrappers ({@link TaskArg}) of the results of `a` and `b`. The builder's direct arguments
 * take the types of `fn`'s leading parameters (`nDirectArgs`, after `ctx` with `context: true`);
 * the task's result type follows from what `fn` returns ({@link FunctionResult}).
 */
export function jsTask<R>(fn: (...inputs: TaskArg[]) => R, options?: JsTaskOptions & { context?: false; nDirectArgs?: 0 }): (...inputs: TaskInput[]) => Task<FunctionResult<Awaited<R>>>;
export function jsTask<R>(fn: (ctx: TaskContext, ...inputs: TaskArg[]) => R, options: JsTaskOptions & { context: true; nDirectArgs?: 0 }): (...inputs: TaskInput[]) => Task<FunctionResult<Awaited<R>>>;
export function jsTask<F extends (...args: any[]) => unknown, const N extends number, C extends boolean = false>(
  fn: F,
  options: JsTaskOptions & { nDirectArgs: N; context?: C },
): (...args: JsTaskArgs<Parameters<F>, N, C>) => Task<FunctionResult<Awaited<ReturnType<F>>>>;
export function jsTask(fn: (...args: never[]) => unknown, options: JsTaskOptions = {}): (...args: unknown[]) => Task<unknown> {
  const value = jsFunction(fn, options.context ?? false);
  const nDirect = options.nDirectArgs ?? 0;
  const label = options.label ?? (fn.name || "jsTask");
  const extras = sharedExtras(options.request ?? cpu1, label);
  // Called once per call of a plan (W5 makes 10,000): no slices, no options objects, one
  // extras object for all calls.
  return (...args: unknown[]): Task<unknown> => {
    if (args.length < nDirect) throw new LoomError(`${label}: expected at least ${nDirect} direct argument(s), got ${args.length}`);
    // A literal (packed, as the other builders' inputs): W5's calls have no other input.
    const inputs: TaskInput[] = [value];
    for (let i = nDirect; i < args.length; i++) inputs.push(args[i] as TaskInput);
    let config: Buffer;
    try {
      config = encodeLeadingArgs(args, nDirect);
    } catch (e) {
      throw new LoomError(`jsCall: direct arguments cannot be serialized: ${(e as Error).message}`);
    }
    return callTask(inputs, config, extras);
  };
}
