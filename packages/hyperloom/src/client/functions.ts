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
import { cpu1, Task, type ResourceRequest, type TaskInput } from "./task.js";
import { LoomError } from "./errors.js";

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
export function jsValue(value: unknown, options: { label?: string; request?: ResourceRequest } = {}): Task {
  let config: Buffer;
  try {
    config = serialize(value);
  } catch (e) {
    throw new LoomError(`jsValue: the value cannot be serialized (structured clone): ${(e as Error).message}`);
  }
  return new Task(Symbol.JS_VALUE, { config, resourceRequest: options.request ?? cpu1, ...(options.label ? { label: options.label } : {}) });
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
export function jsCall(fnValue: TaskInput, inputs: readonly TaskInput[] = [], options: JsCallOptions = {}): Task {
  let config: Buffer;
  try {
    config = serialize(options.directArgs ?? []);
  } catch (e) {
    throw new LoomError(`jsCall: direct arguments cannot be serialized: ${(e as Error).message}`);
  }
  return new Task(Symbol.JS_CALL, {
    inputs: [fnValue, ...inputs],
    config,
    resourceRequest: options.request ?? cpu1,
    ...(options.label ? { label: options.label } : {}),
  });
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
export function jsFunction(fn: Function, context = false): Task {
  const spec: FunctionSpec = { [FUNCTION_MARK]: true, source: functionSource(fn), context, name: fn.name };
  return jsValue(spec, { label: `#L:${fn.name || "anonymous"}` });
}

/**
 * Turns `fn` into a builder of tasks: `jsTask(f)(a, b)` is a task calling `f` on the worker
 * with wrappers of the results of `a` and `b`.
 */
export function jsTask<A extends unknown[]>(fn: (...args: never[]) => unknown, options: JsTaskOptions = {}): (...args: A) => Task {
  const value = jsFunction(fn, options.context ?? false);
  const nDirect = options.nDirectArgs ?? 0;
  const label = options.label ?? (fn.name || "jsTask");
  return (...args: A): Task => {
    if (args.length < nDirect) throw new LoomError(`${label}: expected at least ${nDirect} direct argument(s), got ${args.length}`);
    const inputs = args.slice(nDirect) as TaskInput[];
    return jsCall(value, inputs, { directArgs: args.slice(0, nDirect), label, ...(options.request ? { request: options.request } : {}) });
  };
}
