/**
 * Tasks: nodes of a plan built by the client. A task is identified by object identity: the same
 * object used twice in one submission is one task (computed once).
 */
import type { Future } from "./future.js";
import { LoomError } from "./errors.js";

/** Configuration bytes of a task: a string is sent as UTF-8. */
export type TaskConfig = string | Uint8Array;

/** What a task may take as input: another task of the plan, or a future of an earlier one. */
export type TaskInput = Task<any> | Future<any>;

/** A request for resources on the worker that runs a task (today: CPU cores). */
export class ResourceRequest {
  /** @param cpus Number of cores the task occupies while it runs. */
  constructor(readonly cpus: number) {
    if (!Number.isInteger(cpus) || cpus < 0) {
      throw new RangeError(`cpus must be a non-negative integer, got ${cpus}`);
    }
  }

  /** Requests compare by value: `cpus(1)` equals `cpus(1)`. */
  equals(other: ResourceRequest): boolean {
    return this.cpus === other.cpus;
  }
}

/** A request for `n` CPU cores. */
export function cpus(n: number): ResourceRequest {
  return new ResourceRequest(n);
}

/** One core: the default request of `run`, `save` and function tasks. */
export const cpu1 = cpus(1);

/** Options accepted by {@link Task}'s constructor. */
export interface TaskOptions {
  /** Inputs, in order; duplicates allowed. */
  inputs?: TaskInput[];
  /** Configuration bytes, interpreted per task type. */
  config?: TaskConfig;
  /** Resources the task needs while it runs; none by default. */
  resourceRequest?: ResourceRequest;
  /** A label for traces and error messages. */
  label?: string;
  /** Absolute path where the result is checkpointed (see {@link Task.checkpointPath}). */
  checkpointPath?: string;
}

/** Where Node's `util.inspect` (and so `console.log`) looks for a custom view. */
const inspectCustom = Symbol.for("nodejs.util.inspect.custom");

/** @internal The options of a task that are rarely set, kept out of the task object until one is. */
export interface TaskExtras {
  resourceRequest: ResourceRequest | undefined;
  label: string | undefined;
  checkpointPath: string | undefined;
}

/**
 * Inputs of a task built without any, until someone reads `inputs` (never written to). An array
 * of the same kind as the builders' input arrays (V8's PACKED_ELEMENTS, not the SMI kind of an
 * empty literal): the walk and encoder see one array shape, and compiled code made while a plan's
 * input-less tasks went by unseen is not thrown away at the next plan's first (issue #26).
 */
const NO_INPUTS: TaskInput[] = packedEmpty();

function packedEmpty(): TaskInput[] {
  const a: unknown[] = [null];
  a.pop();
  return a as TaskInput[];
}

/**
 * A node of a plan: a task type (a `loom/...` symbol), inputs and configuration. `T` is the type
 * of its result as `fetch`/`gather` return it (`Buffer` for plain data); the builders of `tasks`
 * set it, and a future of the task carries it.
 *
 * A plan of millions of tasks is millions of these objects on the client, so a task holds only
 * what most tasks have (issue #26): its inputs array is made when first read if it has none, and
 * the resource request, label and checkpoint path live in a second object made when one is set.
 */
export class Task<T = Buffer> {
  /**
   * Type-level only, never set: the result type `T` (so that a `Task<number>` is not a
   * `Task<string>`).
   */
  declare readonly resultType?: T;

  /** The task type symbol, e.g. `loom/data/merge` or `my/count`. */
  taskType: string;
  /** Configuration bytes. */
  config: TaskConfig;
  /** @internal The inputs; {@link NO_INPUTS} while there are none and `inputs` was not read. */
  _inputs: TaskInput[];
  /** @internal Resource request, label and checkpoint path, once one of them is set. */
  _extras: TaskExtras | undefined;
  /**
   * @internal Submission epoch (`2 * epoch`, `+ 1` for a result of that submission) in which
   * `_planId` was assigned (identity-based numbering, see `plan.ts`).
   */
  _epoch: number;
  /** @internal Id in the submission of `_epoch`; -1 while being numbered (cycle detection). */
  _planId: number;

  /** Inputs in order. */
  get inputs(): TaskInput[] {
    if (this._inputs === NO_INPUTS) this._inputs = [];
    return this._inputs;
  }

  set inputs(inputs: TaskInput[]) {
    this._inputs = inputs;
  }

  /** Resource request, or undefined for a light task. */
  get resourceRequest(): ResourceRequest | undefined {
    return this._extras?.resourceRequest;
  }

  set resourceRequest(r: ResourceRequest | undefined) {
    if (r !== undefined || this._extras !== undefined) this.extras().resourceRequest = r;
  }

  /** Label used in traces, reports and error messages. */
  get label(): string | undefined {
    return this._extras?.label;
  }

  set label(label: string | undefined) {
    if (label !== undefined || this._extras !== undefined) this.extras().label = label;
  }

  /**
   * Where the result is checkpointed, or undefined. The worker that computes the task writes
   * the result there (as `<path>.loom.tmp`, then renamed), and the server reports the task
   * finished only once it is written; a result that is not plain data (an Array, a value
   * object) fails with `Data '<kind>' cannot be checkpointed`. `submit(tasks, { load: true })`
   * loads a task whose file exists instead of computing it. The path must be absolute (a
   * relative one throws `LoomError` here) and is opened on the workers' and the server's
   * file system.
   */
  get checkpointPath(): string | undefined {
    return this._extras?.checkpointPath;
  }

  set checkpointPath(path: string | undefined) {
    checkCheckpointPath(path);
    if (path !== undefined || this._extras !== undefined) this.extras().checkpointPath = path;
  }

  /**
   * `new Task("my/count", { inputs, config })`, or the guide's form
   * `new Task({ taskType: "my/count", inputs, config })`.
   */
  constructor(taskType: string | (TaskOptions & { taskType: string }), options?: TaskOptions) {
    if (typeof taskType !== "string") {
      options = taskType;
      taskType = taskType.taskType;
    }
    this.taskType = taskType;
    this.config = options?.config ?? "";
    this._inputs = options?.inputs ?? NO_INPUTS;
    this._extras = undefined;
    this._epoch = 0;
    this._planId = 0;
    if (options !== undefined && (options.resourceRequest !== undefined || options.label !== undefined || options.checkpointPath !== undefined)) {
      checkCheckpointPath(options.checkpointPath);
      this._extras = { resourceRequest: options.resourceRequest, label: options.label, checkpointPath: options.checkpointPath };
    }
  }

  /** The task's own extras, to change (a copy of extras shared with other tasks, see {@link sharedExtras}). */
  private extras(): TaskExtras {
    const e = this._extras;
    if (e !== undefined && !shared.has(e)) return e;
    return (this._extras = { resourceRequest: e?.resourceRequest, label: e?.label, checkpointPath: e?.checkpointPath });
  }

  /** Checks what can be checked on the client; throws `LoomError` otherwise. */
  validate(): void {
    if (this._extras !== undefined) checkCheckpointPath(this._extras.checkpointPath);
  }

  toString(): string {
    return `<Task '${this.label ?? this.taskType}'>`;
  }

  /** What `console.log(task)` shows: the task's fields (inputs as `<Task ...>`/`<Future ...>`), not its bookkeeping. */
  [inspectCustom](depth: number, options: object, inspect: (value: unknown, options: object) => string): string {
    const view: Record<string, unknown> = { taskType: this.taskType };
    if (this.label !== undefined) view.label = this.label;
    if (this._inputs.length > 0) view.inputs = this._inputs.map((i) => ({ [inspectCustom]: () => String(i) }));
    if (typeof this.config === "string" ? this.config !== "" : this.config.length > 0) {
      const n = this.config.length;
      view.config = typeof this.config === "string" ? this.config : { [inspectCustom]: () => `<${n} bytes>` };
    }
    if (this.resourceRequest !== undefined) view.resourceRequest = { cpus: this.resourceRequest.cpus };
    if (this.checkpointPath !== undefined) view.checkpointPath = this.checkpointPath;
    return depth < 0 ? this.toString() : `Task ${inspect(view, options)}`;
  }
}

/**
 * @internal A task as the builders of `tasks` make it: the object `new Task(taskType, { config,
 * inputs })` makes, written as an object literal. V8 allocates the objects of a literal whose
 * objects outlive young-generation collections straight in the old generation (allocation-site
 * pretenuring; a class constructor has no such site): a plan of millions of tasks is then not
 * copied by the scavenger object by object (issue #26: ~270 ns per task of W1 at 1M).
 * `inputs` is kept as given (the builders pass a copy).
 */
export function builtTask<T = Buffer>(taskType: string, config: TaskConfig, inputs: TaskInput[] = NO_INPUTS): Task<T> {
  return { __proto__: Task.prototype, taskType, config, _inputs: inputs, _extras: undefined, _epoch: 0, _planId: 0 } as unknown as Task<T>;
}

/** Extras made by {@link sharedExtras}: a task copies them before it changes one. */
const shared = new WeakSet<TaskExtras>();

/**
 * @internal Extras (resource request and label) to share between the tasks a builder makes,
 * set as `_extras` of a {@link builtTask}: no object per task (a function-task builder makes one
 * task per call; issue #26). Setting a task's request, label or checkpoint path copies them first.
 */
export function sharedExtras(resourceRequest: ResourceRequest | undefined, label: string | undefined): TaskExtras {
  const e: TaskExtras = { resourceRequest, label, checkpointPath: undefined };
  shared.add(e);
  return e;
}

/** @internal A copy of `inputs` for a task, from an array literal for the usual one or two (pretenured, see {@link builtTask}). */
export function copyInputs(inputs: readonly TaskInput[]): TaskInput[] {
  switch (inputs.length) {
    case 0:
      return NO_INPUTS;
    case 1:
      return [inputs[0]!];
    case 2:
      return [inputs[0]!, inputs[1]!];
    default:
      return inputs.slice();
  }
}

/** Spec 8: a checkpoint path must be absolute (the original's message). */
function checkCheckpointPath(path: string | undefined): void {
  if (path !== undefined && (typeof path !== "string" || !path.startsWith("/"))) {
    throw new LoomError("Checkpoint has to be absolute path");
  }
}
