/**
 * Stopping programs of `loom/run/run` tasks (spec 7). The programs themselves run in the addon
 * (`WorkerCore.runPrograms`, crates/loom-node/src/program_task.rs): it decodes the config, maps
 * the inputs into a reused run directory, feeds stdin (through a pipe when small), spawns, waits
 * and collects the outputs on its runner threads, and hands the results to the core. Standard
 * streams never go through JavaScript, so large outputs cannot deadlock.
 */
import { constants } from "node:os";
import { native } from "../native.js";

/** How long a canceled program has between SIGTERM and SIGKILL. */
export const CANCEL_GRACE_MS = 2000;

/**
 * Stops the program of task `id` (its task was canceled): SIGTERM to it and its process group,
 * SIGKILL after {@link CANCEL_GRACE_MS} if it is still there.
 */
export function stopProgram(id: number): void {
  if (native().killProgram(id, constants.signals.SIGTERM)) {
    setTimeout(() => native().killProgram(id, constants.signals.SIGKILL), CANCEL_GRACE_MS).unref();
  }
}

/**
 * Kills every program the worker started, and their process groups (the worker stops, or its
 * server connection was lost); returns how many were still there (0: all gone).
 */
export function stopAllPrograms(): number {
  return native().killAllPrograms(constants.signals.SIGKILL);
}
