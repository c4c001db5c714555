/**
 * The `loom/run/run` task: runs an external program in a run directory under the worker's work
 * dir, with inputs mapped to files, variables or stdin, and its outputs as the result (spec 7).
 * This side decodes the config and maps the inputs; the addon prepares the directory (reused
 * from an earlier program and emptied), feeds stdin (through a pipe when small), spawns, waits
 * and collects the outputs on a runner thread. Standard streams never go through JavaScript, so
 * large outputs cannot deadlock.
 */
import { constants } from "node:os";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { native } from "../native.js";
import { runFileNameError } from "../protocol/run-names.js";
import type { ProgramFile, TaskInput, TaskResult, TaskToRun } from "../native.js";

/**
 * The `Run` config's decoder (the generated messages, protobufjs: 10-20 ms to load), loaded by the
 * first program rather than before the worker registers (issue #26: registered within 250 ms).
 */
const runMessages = (): typeof import("../protocol/messages.js").run => (require("../protocol/messages.js") as typeof import("../protocol/messages.js")).run;

/** Rejects a mapped name that would escape the run directory. */
function checkName(name: string): void {
  const error = runFileNameError(name);
  if (error !== undefined) throw new Error(error);
}

const isDObject = (input: TaskInput): boolean => input.typeName === "loom/data" || input.typeName === "loom/file";

function contentOf(input: TaskInput): Buffer {
  if (input.bytes) return input.bytes;
  if (input.path) return readFileSync(input.path);
  if (input.typeName === "loom/data") return Buffer.alloc(0);
  throw new Error(`input of type ${input.typeName} is not a D-Object`);
}

/** Input `input` as file `name` of the run directory: a link to its file, or its bytes. */
function fileOf(input: TaskInput, name: string): ProgramFile {
  if (!isDObject(input)) throw new Error(`input of type ${input.typeName} is not a D-Object and cannot be mapped to a file`);
  return input.path ? { name, path: input.path } : { name, bytes: input.bytes ?? Buffer.alloc(0) };
}

/** Name of signal number `n` (e.g. `SIGKILL`). */
function signalName(n: number): string {
  const entry = Object.entries(constants.signals).find(([, v]) => v === n);
  return entry ? entry[0] : `signal ${n}`;
}

/** Runs the program of `task`; resolves to its outputs. Rejects with the guide's failure messages. */
export async function runProgram(task: TaskToRun, ctx: { workDir: string; pin: boolean }): Promise<TaskResult> {
  const cfg = runMessages().Run.decode(task.config);
  if (cfg.args.length === 0) throw new Error("No arguments provided");
  const vars = new Map<string, string>();
  const files: ProgramFile[] = [];
  let stdin: TaskInput | undefined;
  cfg.mapInputs.forEach((name, i) => {
    const input = task.inputs[i];
    if (input === undefined) throw new Error(`input ${i} ('${name}') is missing`);
    if (name.startsWith("$")) {
      vars.set(name, contentOf(input).toString("utf8"));
    } else if (name === "+in") {
      if (!isDObject(input)) throw new Error(`input of type ${input.typeName} is not a D-Object and cannot be the standard input`);
      stdin = input;
    } else {
      checkName(name);
      files.push(fileOf(input, name));
    }
  });
  for (const o of cfg.mapOutputs) if (o !== "+out") checkName(o);
  let argv = cfg.args.map((a) => vars.get(a) ?? a);
  if (ctx.pin && task.cpuSlots.length > 0) argv = ["taskset", "-c", task.cpuSlots.join(","), ...argv];
  const stdinFrom: TaskInput | undefined = stdin;
  const ended = await native().runProgram({
    argv,
    runRoot: join(ctx.workDir, "run"),
    files,
    // Absent fields are left out (the addon takes undefined, not null, for an absent value).
    ...(stdinFrom?.path ? { stdinPath: stdinFrom.path } : stdinFrom ? { stdinBytes: stdinFrom.bytes ?? Buffer.alloc(0) } : {}),
    outputs: cfg.mapOutputs,
    token: task.id,
  });
  try {
    if (ended.signal !== null && ended.signal !== undefined) {
      throw new Error(`Program terminated by signal ${signalName(ended.signal)}\nStderr:\n${ended.stderrTail ?? ""}`);
    }
    if (ended.code !== 0) {
      throw new Error(`Program terminated with status ${ended.code}\nStderr:\n${ended.stderrTail ?? ""}`);
    }
    if (ended.outputError) throw new Error(`${ended.outputError}\nStderr:\n${ended.stderrTail ?? ""}`);
    const outputs: TaskResult[] = ended.outputs.map((o) => (o.path ? { kind: "file", path: o.path } : { kind: "plain", data: o.bytes ?? Buffer.alloc(0) }));
    return outputs.length === 1 ? outputs[0]! : { kind: "array", items: outputs };
  } finally {
    // The core moves output files out synchronously when the result is handed over (right
    // after this resolves); the directory is emptied and reused after that.
    setImmediate(() => native().releaseRunDir(ended.dir));
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
