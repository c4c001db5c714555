/**
 * What the allocator asks of a cluster manager (Slurm, PBS): submit a worker job, report the
 * state of its jobs, cancel them. Each manager turns these into its own commands and parses their
 * output; the allocator never sees a command line.
 */
import { execFile } from "node:child_process";

/** What one job of a queue runs: `workers` workers of `cpus` cpus each, for at most `timeLimitSecs`. */
export interface JobRequest {
  /** Job name as the manager shows it (`hyperloom-<queue>`). */
  name: string;
  workers: number;
  cpus: number;
  timeLimitSecs: number;
  /** Seconds before the time limit at which the workers are told to stop (they hand their tasks back). */
  stopBeforeSecs: number;
  /** The worker command line, already complete (program first). */
  workerCommand: string[];
  /** Where the job writes its output file. */
  dir: string;
  /** Extra arguments for the submit command, as the user gave them. */
  extraArgs: string[];
}

/** Where a job is in its life, in terms common to both managers. */
export type JobPhase = "queued" | "running" | "ended";

/** A job's state as the manager reports it. */
export interface JobStatus {
  phase: JobPhase;
  /** The manager's own word (`PENDING`, `RUNNING`, `TIMEOUT`, `Q`, `R`, `F`...). */
  state: string;
  /** The manager's reason or comment, when it gives one (why pending, why it failed). */
  reason?: string;
}

/** A submit command failed: `message` is what the manager said (e.g. sbatch's error line). */
export class SubmitError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SubmitError";
  }
}

/** A cluster manager. */
export interface JobManager {
  /** `slurm` or `pbs`. */
  readonly kind: string;
  /** The job script for `req` (tested against recorded examples). */
  script(req: JobRequest): string;
  /** Submits the script of `req`; resolves with the job id, rejects with {@link SubmitError}. */
  submit(req: JobRequest): Promise<string>;
  /** The states of `ids`; an id the manager no longer knows is reported as ended. */
  status(ids: string[]): Promise<Map<string, JobStatus>>;
  /** Cancels `ids` (jobs already gone are ignored). */
  cancel(ids: string[]): Promise<void>;
}

/** A command's outcome. */
export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a manager's command (replaced in unit tests by recorded answers). */
export type CommandRunner = (program: string, args: string[]) => Promise<CommandResult>;

/** Quotes `s` for a POSIX shell script. */
export function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Runs `program` with `args` (no shell, no stdin); never rejects: a program that cannot start gives code 127. */
export const systemCommand: CommandRunner = (program, args) =>
  new Promise((resolve) => {
    const child = execFile(program, args, { timeout: 60_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err && typeof (err as NodeJS.ErrnoException).code === "string") {
        // ENOENT and the like: the program is not there.
        resolve({ code: 127, stdout: "", stderr: `${program}: ${err.message}` });
        return;
      }
      const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
    // Nothing to say on stdin; closing it must not fail when the program has already exited.
    child.stdin?.on("error", () => undefined);
    child.stdin?.end();
  });

/** The error lines of a command, joined on one line (what a user sees of the manager's message). */
export function errorText(r: CommandResult, program: string): string {
  const lines = (r.stderr.trim() || r.stdout.trim()).split("\n").map((l) => l.trim()).filter((l) => l !== "");
  return lines.length > 0 ? lines.join("; ") : `${program} exited with status ${r.code}`;
}
