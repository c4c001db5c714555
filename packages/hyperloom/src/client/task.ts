/**
 * Tasks: nodes of a plan built by the client. A task is identified by object identity: the same
 * object used twice in one submission is one task (computed once).
 */
import type { Future } from "./future.js";

/** Configuration bytes of a task: a string is sent as UTF-8. */
export type TaskConfig = string | Uint8Array;

/** What a task may take as input: another task of the plan, or a future of an earlier one. */
export type TaskInput = Task | Future;

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
  /** Absolute path where the result is checkpointed. */
  checkpointPath?: string;
}

/** A node of a plan: a task type (a `loom/...` symbol), inputs and configuration. */
export class Task {
  /** The task type symbol, e.g. `loom/data/merge` or `my/count`. */
  taskType: string;
  /** Inputs in order. */
  inputs: TaskInput[];
  /** Configuration bytes. */
  config: TaskConfig;
  /** Resource request, or undefined for a light task. */
  resourceRequest: ResourceRequest | undefined;
  /** Label used in traces, reports and error messages. */
  label: string | undefined;
  /** Checkpoint path (absolute), or undefined. */
  checkpointPath: string | undefined;

  /** @internal Submission epoch in which `planId` was assigned (identity-based numbering). */
  _epoch = 0;
  /** @internal Id in the submission of `_epoch`; -1 while being numbered (cycle detection). */
  _planId = 0;
  /** @internal Submission epoch in which this task is a result. */
  _resultEpoch = 0;

  /**
   * `new Task("my/count", { inputs, config })`, or the guide's form
   * `new Task({ taskType: "my/count", inputs, config })`.
   */
  constructor(taskType: string | (TaskOptions & { taskType: string }), options: TaskOptions = {}) {
    if (typeof taskType !== "string") {
      options = taskType;
      taskType = taskType.taskType;
    }
    this.taskType = taskType;
    this.inputs = options.inputs ?? [];
    this.config = options.config ?? "";
    this.resourceRequest = options.resourceRequest;
    this.label = options.label;
    this.checkpointPath = options.checkpointPath;
  }

  /** Checks what can be checked on the client; throws a `LoomError`-like `Error` otherwise. */
  validate(): void {
    if (this.checkpointPath !== undefined && !this.checkpointPath.startsWith("/")) {
      throw new Error("Checkpoint has to be absolute path");
    }
  }

  toString(): string {
    return `<Task '${this.label ?? this.taskType}'>`;
  }
}
