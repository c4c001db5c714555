/**
 * HyperLoom for TypeScript: build plans of tasks, run them on a server and workers, gather results.
 */
export { Client, type ConnectOptions, type Progress, type Stats, type SubmitOptions } from "./client/client.js";
export type { StatusSnapshot, TaskCounts, WorkerStatus, ClientStatus, PlanStatus, FailureStatus } from "./protocol/status.js";
export { Future, type FutureStatus } from "./client/future.js";
export { Task, ResourceRequest, type TaskConfig, type TaskInput, type TaskOptions } from "./client/task.js";
export { LoomError, TaskFailed } from "./client/errors.js";
export type { DataValue } from "./client/data.js";
export * as tasks from "./client/tasks.js";
export type { TaskArg, TaskContext, Wrapped, FunctionResult, JsTaskArgs } from "./client/functions.js";
export type { FuturesOf } from "./client/client.js";
export { LocalCluster, type LocalClusterOptions } from "./cluster/local-cluster.js";
