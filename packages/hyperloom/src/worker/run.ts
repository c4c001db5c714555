/**
 * The `loom/run/run` task: runs an external program in a fresh directory under the worker's work
 * dir, with inputs mapped to files, variables or stdin, and its outputs as the result (spec 7).
 * Standard streams go to files, never through JavaScript, so large outputs cannot deadlock.
 */
import { constants } from "node:os";
import { closeSync, constants as fsConstants, mkdirSync, openSync, readSync, fstatSync, rmSync, symlinkSync, writeFileSync, readFileSync } from "node:fs";
import { stat } from "node:fs/promises";
import { native } from "../native.js";
import { dirname, join } from "node:path";
import { run as runProto } from "../protocol/messages.js";
import { runFileNameError } from "../protocol/run-names.js";
import type { TaskInput, TaskResult, TaskToRun } from "../native.js";

/** Most stderr bytes quoted in a failure message. */
const STDERR_TAIL = 64 * 1024;

/** Rejects a mapped name that would escape the run directory. */
function checkName(name: string): void {
  const error = runFileNameError(name);
  if (error !== undefined) throw new Error(error);
}

function contentOf(input: TaskInput): Buffer {
  if (input.bytes) return input.bytes;
  if (input.path) return readFileSync(input.path);
  if (input.typeName === "loom/data") return Buffer.alloc(0);
  throw new Error(`input of type ${input.typeName} is not a D-Object`);
}

/** Places input `i` at `target` (a link to its file, or its bytes written out). */
function placeInput(input: TaskInput, dir: string, name: string): void {
  const target = join(dir, name);
  // `a b/c d.txt`: the folders are made inside the run directory (the name was checked to stay
  // inside it).
  if (name.includes("/")) mkdirSync(dirname(target), { recursive: true });
  if (input.path) symlinkSync(input.path, target);
  else if (input.bytes || input.typeName === "loom/data") writeFileSync(target, input.bytes ?? Buffer.alloc(0));
  else throw new Error(`input of type ${input.typeName} is not a D-Object and cannot be mapped to a file`);
}

function stderrTail(path: string): string {
  let fd: number;
  try {
    // Non-blocking: the program may have replaced its stderr file with a FIFO.
    fd = openSync(path, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK | fsConstants.O_NOCTTY);
  } catch {
    return "";
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return "";
    const size = st.size;
    const n = Math.min(size, STDERR_TAIL);
    const buf = Buffer.alloc(n);
    readSync(fd, buf, 0, n, size - n);
    return (size > n ? "... (stderr truncated to its last 64 KiB)\n" : "") + buf.toString("utf8");
  } finally {
    closeSync(fd);
  }
}

const runRoots = new Set<string>();

/** Creates a fresh run directory (one `mkdir` in the common case). */
function makeRunDir(workDir: string, dir: string): void {
  if (!runRoots.has(workDir)) {
    mkdirSync(join(workDir, "run"), { recursive: true });
    runRoots.add(workDir);
  }
  try {
    mkdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    // Left over from an earlier run of the same task id: start clean.
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir);
  }
}

/** Name of signal number `n` (e.g. `SIGKILL`). */
function signalName(n: number): string {
  const entry = Object.entries(constants.signals).find(([, v]) => v === n);
  return entry ? entry[0] : `signal ${n}`;
}

/** Runs the program of `task`; resolves to its outputs. Rejects with the guide's failure messages. */
export async function runProgram(task: TaskToRun, ctx: { workDir: string; pin: boolean }): Promise<TaskResult> {
  const cfg = runProto.Run.decode(task.config);
  if (cfg.args.length === 0) throw new Error("No arguments provided");
  const dir = join(ctx.workDir, "run", String(task.id));
  makeRunDir(ctx.workDir, dir);
  try {
    const vars = new Map<string, string>();
    let stdin: string | null = null;
    cfg.mapInputs.forEach((name, i) => {
      const input = task.inputs[i];
      if (input === undefined) throw new Error(`input ${i} ('${name}') is missing`);
      if (name.startsWith("$")) {
        vars.set(name, contentOf(input).toString("utf8"));
        return;
      }
      checkName(name);
      placeInput(input, dir, name);
      if (name === "+in") stdin = join(dir, name);
    });
    for (const o of cfg.mapOutputs) if (o !== "+out") checkName(o);
    const stdout = cfg.mapOutputs.includes("+out") ? join(dir, "+out") : null;
    const stderr = join(dir, "+err");
    let argv = cfg.args.map((a) => vars.get(a) ?? a);
    if (ctx.pin && task.cpuSlots.length > 0) argv = ["taskset", "-c", task.cpuSlots.join(","), ...argv];
    // Absent streams are left out (the addon takes undefined, not null, for an absent file).
    const exit = await native().runProgram(
      argv,
      dir,
      { stderr, ...(stdin !== null ? { stdin } : {}), ...(stdout !== null ? { stdout } : {}) },
      task.id,
    );
    if (exit.signal !== null && exit.signal !== undefined) {
      throw new Error(`Program terminated by signal ${signalName(exit.signal)}\nStderr:\n${stderrTail(stderr)}`);
    }
    if (exit.code !== 0) {
      throw new Error(`Program terminated with status ${exit.code}\nStderr:\n${stderrTail(stderr)}`);
    }
    const outputs: TaskResult[] = [];
    for (const name of cfg.mapOutputs) {
      const path = join(dir, name);
      // Only regular files: reading a FIFO the program left would wait for a writer forever
      // (the core checks again, without blocking, when it maps the file).
      const st = await stat(path).catch(() => undefined);
      if (st === undefined) {
        throw new Error(`Output '${name}' error: No such file or directory\nStderr:\n${stderrTail(stderr)}`);
      }
      if (!st.isFile()) {
        const kind = st.isDirectory() ? "a directory" : st.isFIFO() ? "a FIFO" : st.isSocket() ? "a socket" : "a special file";
        throw new Error(`Output '${name}' error: not a regular file (it is ${kind})\nStderr:\n${stderrTail(stderr)}`);
      }
      outputs.push({ kind: "file", path });
    }
    return outputs.length === 1 ? outputs[0]! : { kind: "array", items: outputs };
  } finally {
    // The core moves output files out synchronously when the result is handed over; the
    // directory is removed right after, or here on failure.
    scheduleRemoval(dir);
  }
}

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

/** Kills every program the worker started, and their process groups (the worker stops). */
export function stopAllPrograms(): void {
  native().killAllPrograms(constants.signals.SIGKILL);
}

/**
 * Removes the run directory once the result has been handed to the core (which moves the output
 * files out synchronously), on the addon's remover thread: removing it from JavaScript would cost
 * the worker's event loop more than the spawn.
 */
function scheduleRemoval(dir: string): void {
  setImmediate(() => native().removeTreeInBackground(dir));
}
