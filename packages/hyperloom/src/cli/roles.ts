/** The server and worker roles as the commands run them (shared by `hyperloom`, `loom-server`, `loom-worker`). */
import { cpus as machineCpus } from "node:os";
import type { RunningWorker } from "../worker/worker.js";
import { setLogFormat, setLogLevel, setLogProcess, log, type LogFormat } from "../log.js";

/** Logging options every role takes. */
export interface LogOptions {
  /** Log at debug level (scheduling summaries, transfers, connections). */
  debug?: boolean;
  /** `text` (default) or `json` (one object per line). */
  logFormat?: LogFormat;
}

function setUpLogs(o: LogOptions, role: "server" | "worker"): void {
  setLogProcess(role);
  if (o.debug) setLogLevel("debug");
  if (o.logFormat) setLogFormat(o.logFormat);
}
import { jobEnvironment } from "../worker/job-env.js";

/** Runs a server until it is terminated. */
export async function serverMain(
  opts: { port: number; host: string; maxCrashes?: number; dashboard?: { host: string; port: number }; journal?: string; reattach?: number } & LogOptions,
): Promise<void> {
  setUpLogs(opts, "server");
  // Each role loads only its own modules (a server never loads the worker's, and the reverse):
  // startup is module loading first of all (issue #26, bench/startup).
  const { startServer } = require("../server/server.js") as typeof import("../server/server.js");
  const s = await startServer({
    ...(opts.journal !== undefined ? { journal: opts.journal } : {}),
    ...(opts.reattach !== undefined ? { reattachSeconds: opts.reattach } : {}),
    port: opts.port,
    host: opts.host,
    ...(opts.dashboard ? { dashboard: opts.dashboard } : {}),
    ...(opts.maxCrashes !== undefined ? { maxCrashes: opts.maxCrashes } : {}),
  });
  log("info", `HyperLoom server listening on ${opts.host}:${s.port} (data port ${s.dataPort})`);
  if (s.dashboard) log("info", `Dashboard at ${s.dashboard.url} (metrics at ${s.dashboard.url}metrics)`);
  const stop = (): void => {
    void s.close().then(() => process.exit(0));
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  stopWithParent(stop);
}

/**
 * Runs a worker until its server goes away. With `reconnect` (seconds), a worker whose server
 * connection closes starts afresh (its data and running tasks are dropped: the server that answers
 * next knows nothing of them) and connects again, retrying with backoff (0.1 s doubling to 2 s)
 * for up to that long before it exits with status 1. With `connectRetry` (seconds), a first
 * connection that is refused (no server listening yet) is retried the same way for up to that
 * long; anything else (not a HyperLoom server, a bad option) ends the worker at once.
 */
export async function workerMain(
  host: string,
  port: number,
  opts: { cpus: number; wdir: string; nopin?: boolean; host?: string; extension?: string[]; python?: string; reconnect?: number; connectRetry?: number } & LogOptions,
): Promise<void> {
  setUpLogs(opts, "worker");
  // Inside a cluster job: cpus (unless given) and id from the job.
  const { startWorker } = require("../worker/worker.js") as typeof import("../worker/worker.js");
  const job = jobEnvironment();
  const options = {
    serverHost: host,
    serverPort: port,
    cpus: opts.cpus > 0 ? opts.cpus : (job?.cpus ?? machineCpus().length),
    ...(job ? { job: { id: job.jobId, ...(job.task !== undefined ? { task: job.task } : {}) } } : {}),
    wdir: opts.wdir,
    pin: !opts.nopin,
    ...(opts.host ? { host: opts.host } : {}),
    extensions: opts.extension ?? [],
    ...(opts.python !== undefined ? { python: opts.python } : {}),
  };
  let w: RunningWorker | undefined;
  let stopping = false;
  let wake: (() => void) | undefined;
  const stop = (signal?: NodeJS.Signals): void => {
    if (signal) log("info", `Stopping (${signal})`);
    stopping = true;
    w?.close();
    wake?.();
  };
  // Slurm's warning that the job's time limit is near (`--signal=USR1@secs`, set by the allocator's
  // jobs). Leaving now hands the tasks back: the server gives this worker's running tasks to
  // others and recomputes the objects only it held. (No reconnecting after it.) Handled before
  // the worker starts: a process without a SIGUSR1 handler is, to Node, asking for its inspector,
  // so a warning that came while the worker was still connecting would be lost (the worker then
  // runs into the limit and is killed). Warned while starting, the worker stops once it is up.
  process.on("SIGUSR1", () => {
    log("warn", "The job's time limit is near: handing the tasks back to the server and stopping");
    stop();
  });
  const firstDeadline = Date.now() + (opts.connectRetry ?? 0) * 1000;
  for (let delay = 100; ; delay = Math.min(delay * 2, 2000)) {
    try {
      w = await startWorker(options);
      break;
    } catch (e) {
      const refused = /connection refused/.test((e as Error).message);
      if (!refused || stopping || Date.now() + delay > firstDeadline) throw e;
      if (delay === 100) log("info", `${(e as Error).message}; retrying for up to ${opts.connectRetry} s ...`);
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, delay);
      });
    }
  }
  if (stopping) w.close();
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  stopWithParent(stop);
  for (;;) {
    await w.done;
    if (stopping || opts.reconnect === undefined) break;
    const deadline = Date.now() + opts.reconnect * 1000;
    log("info", `Reconnecting to ${host}:${port} (for up to ${opts.reconnect} s) ...`);
    let next: RunningWorker | undefined;
    for (let delay = 100; !stopping; delay = Math.min(delay * 2, 2000)) {
      try {
        next = await startWorker(options);
        break;
      } catch (e) {
        if (Date.now() + delay > deadline) {
          log("error", `Cannot reconnect to ${host}:${port}: ${(e as Error).message}`);
          process.exit(1);
        }
        log("debug", `reconnecting: ${(e as Error).message}`);
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, delay);
        });
      }
    }
    if (next === undefined) break;
    w = next;
    if (stopping) w.close();
  }
  process.exit(0);
}

/**
 * A process started with an IPC channel (by `LocalCluster`) stops when its parent is gone, even
 * killed with SIGKILL: the channel closes. The channel does not keep the process alive.
 */
function stopWithParent(stop: () => void): void {
  if (process.channel === undefined) return;
  process.channel.unref();
  process.once("disconnect", stop);
}
