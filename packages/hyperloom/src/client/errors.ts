/** Errors a client raises. */

/** Base class of every HyperLoom error. */
export class LoomError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "LoomError";
  }
}

/** A task failed on a worker, or an input it depends on failed. */
export class TaskFailed extends LoomError {
  /**
   * @param taskId Id of the task (in this client's numbering).
   * @param label Its label, if it had one.
   * @param worker Address of the worker that reported the failure (`ip:port`).
   * @param errorMessage The worker's message.
   */
  constructor(
    readonly taskId: number,
    readonly label: string | undefined,
    readonly worker: string,
    readonly errorMessage: string,
  ) {
    super(`Task id=${taskId}${label ? ` (${label})` : ""} failed: ${errorMessage}`);
    this.name = "TaskFailed";
  }
}
