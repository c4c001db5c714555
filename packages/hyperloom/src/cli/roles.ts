/** The server and worker roles as the commands run them (shared by `hyperloom`, `loom-server`, `loom-worker`). */
import { availableParallelism, hostname } from "node:os";
import { resolve } from "node:path";
import type { RunningWorker, WorkerSecurity } from "../worker/worker.js";
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
import { accessFor, defaultAccessFilePath, removeAccessFile, sameAccess, Secret, writeAccessFile, type Access } from "../security/access-file.js";
import { loadTlsIdentity, selfSignedIdentity, type TlsIdentity } from "../security/tls.js";
import type { FrameLimits } from "../security/frame-limits.js";
import { dashboardToken } from "../security/dashboard-access.js";

/** Options of {@link serverMain}. */
export interface ServerMainOptions extends LogOptions {
  port: number;
  host: string;
  /** A task whose worker is lost while running it this many times fails. */
  maxCrashes?: number;
  /** Serve the dashboard, `/metrics` and `/status.json` here. */
  dashboard?: { host: string; port: number };
  /** No authentication (anyone who reaches the ports may use the server). */
  insecure?: boolean;
  /** Where to write the access file (default `~/.hyperloom/access.json`). */
  accessFile?: string;
  /** TLS on every port. */
  tls?: boolean;
  tlsCert?: string;
  tlsKey?: string;
  /** Journal to this file and restore from it on start (`--journal`). */
  journal?: string;
  /** With `journal`: seconds a restored client session waits for its client (`--reattach`). */
  reattach?: number;
  /** With `journal`: seconds restored results wait for the workers holding them (`--reconnect-grace`). */
  reconnectGrace?: number;
  /** Frame limits (bytes, bytes, seconds). */
  maxFrame?: number;
  maxPlan?: number;
  frameTimeout?: number;
}

/** Runs a server until it is terminated. */
export async function serverMain(opts: ServerMainOptions): Promise<void> {
  setUpLogs(opts, "server");
  // Each role loads only its own modules (a server never loads the worker's, and the reverse):
  // startup is module loading first of all (issue #26, bench/startup).
  const { startServer } = require("../server/server.js") as typeof import("../server/server.js");
  const useTls = !!opts.tls || opts.tlsCert !== undefined || opts.tlsKey !== undefined;
  if (useTls && opts.insecure) throw new Error("--tls needs authentication (the access file pins the certificate): drop --insecure");
  if ((opts.tlsCert === undefined) !== (opts.tlsKey === undefined)) throw new Error("--tls-cert and --tls-key go together");
  let identity: TlsIdentity | undefined;
  if (useTls) identity = opts.tlsCert !== undefined ? loadTlsIdentity(opts.tlsCert, opts.tlsKey!) : await selfSignedIdentity();
  const secret = opts.insecure ? undefined : Secret.generate();
  const limits: Partial<FrameLimits> = {
    ...(opts.maxFrame !== undefined ? { maxFrame: opts.maxFrame } : {}),
    ...(opts.maxPlan !== undefined ? { maxPlan: opts.maxPlan } : {}),
    ...(opts.frameTimeout !== undefined ? { frameTimeoutMs: opts.frameTimeout * 1000 } : {}),
  };
  const accessPath = secret !== undefined ? resolve(opts.accessFile ?? defaultAccessFilePath()) : undefined;
  // Fault injection for tests (issue #26): a server slow to get ready, so that connections
  // surely arrive while only its early-bound main port exists.
  const slowStart = Number(process.env.HYPERLOOM_FAULT_SLOW_START_MS ?? 0);
  if (slowStart > 0) await new Promise((r) => setTimeout(r, slowStart));
  // The main port, if the command bound it at process start (`listen-first.ts`).
  const { claimEarlyListener } = require("../server/early-listen.js") as typeof import("../server/early-listen.js");
  const mainListener = await claimEarlyListener(opts.host, opts.port);
  const s = await startServer({
    ...(mainListener !== undefined ? { mainListener } : {}),
    ...(opts.journal !== undefined ? { journal: opts.journal } : {}),
    ...(opts.reattach !== undefined ? { reattachSeconds: opts.reattach } : {}),
    ...(opts.reconnectGrace !== undefined ? { reconnectGraceSeconds: opts.reconnectGrace } : {}),
    port: opts.port,
    host: opts.host,
    ...(accessPath !== undefined ? { accessFile: accessPath } : {}),
    security: { ...(secret !== undefined ? { secret } : {}), ...(identity !== undefined ? { tls: identity } : {}) },
    limits,
    ...(opts.dashboard ? { dashboard: opts.dashboard } : {}),
    ...(opts.maxCrashes !== undefined ? { maxCrashes: opts.maxCrashes } : {}),
    // Nobody is answered before the access file below holds this server's secret and address: a
    // restarted server's file holds the previous one until then.
    holdConnections: true,
  });
  // Handlers first: a peer may act on the lines below at once (a signal before them would kill
  // the process without removing the access file).
  const stop = (): void => {
    void s.close().then(() => process.exit(0));
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  stopWithParent(stop);
  let accessFile: string | undefined;
  if (secret !== undefined) {
    accessFile = resolve(opts.accessFile ?? defaultAccessFilePath());
    // Removed however the server ends (signal, or a client's terminate); a stale file would only
    // send peers to a port nobody holds.
    const file = accessFile;
    process.on("exit", () => removeAccessFile(file, secret));
    const wildcard = opts.host === "0.0.0.0" || opts.host === "::";
    // Fault injection for tests: a server slow to write its access file (its connections wait).
    const slowAccess = Number(process.env.HYPERLOOM_FAULT_SLOW_ACCESS_FILE_MS ?? 0);
    if (slowAccess > 0) await new Promise((r) => setTimeout(r, slowAccess));
    writeAccessFile(accessFile, {
      host: wildcard ? hostname() : opts.host,
      port: s.port,
      secret,
      ...(identity !== undefined ? { tlsFingerprint: identity.fingerprint } : {}),
      ...(s.dashboard !== undefined ? { dashboard: `${s.dashboard.url}?token=${dashboardToken(secret)}` } : {}),
    });
  }
  s.serve();
  // The "listening" line comes after the access file exists: scripts (and tests) wait for this
  // line and then connect with the file.
  log("info", `HyperLoom server listening on ${opts.host}:${s.port} (data port ${s.dataPort})${identity !== undefined ? `, TLS (certificate ${identity.fingerprint})` : ""}`);
  if (s.dashboard) {
    // The token is a credential: it goes to the access file (0600), never to the log.
    const where = secret !== undefined ? "; it asks for its token: see 'dashboard' in the access file" : "";
    log("info", `Dashboard at ${s.dashboard.url} (metrics at ${s.dashboard.url}metrics${where})`);
  }
  if (accessFile !== undefined) {
    log("info", `Access file ${accessFile}: clients and workers need it to connect`);
  } else {
    log("warn", `Authentication is off: anyone who can reach ${opts.host}:${s.port} may submit programs to the workers and read results`);
  }
}

/** Whether the access file now holds another secret or certificate than `used` (with `--connect-retry`). */
function accessChanged(used: Access | undefined, host: string | undefined, port: number | undefined, opts: WorkerMainOptions): boolean {
  if (opts.accessFile === false || (opts.connectRetry ?? 0) === 0) return false;
  try {
    return !sameAccess(used, accessFor(host, port, opts.accessFile));
  } catch {
    return false;
  }
}

/** Options of {@link workerMain}. */
export interface WorkerMainOptions extends LogOptions {
  cpus: number;
  wdir: string;
  nopin?: boolean;
  /** `--cpu-list`: the CPUs of the slots, in order (pinning). */
  cpuList?: number[];
  host?: string;
  extension?: string[];
  python?: string;
  /** Seconds to keep reconnecting after the server connection is lost (`--reconnect`); `false` or unset: exit with it (`--no-reconnect`). */
  reconnect?: number | false;
  /** Seconds to keep retrying a first connection the server refuses (`--connect-retry`). */
  connectRetry?: number;
  /** The server's access file; `false`: connect without one (`loom-worker`). */
  accessFile?: string | false;
  /** Logged (warn) once the worker is connected, e.g. that its connections are open (`loom-worker`). */
  openWarning?: string;
  tlsCert?: string;
  tlsKey?: string;
}

/**
 * Runs a worker until its server goes away. `host`/`port` undefined: from the access file. With
 * `reconnect` (seconds), a worker whose server connection is lost stops its running tasks, keeps
 * its data objects and connects again — authenticating anew with the access file read again on
 * each attempt (a restarted server writes a new secret) — retrying with backoff (0.1 s doubling to
 * 2 s) for up to that long before it exits with status 1; it reports the objects it holds when it
 * re-registers, and the server adopts or removes them. A server that stops or retires the worker
 * tells it STOP first, and it exits. With `connectRetry` (seconds), a first connection that is
 * refused (no server listening yet) is retried the same way for up to that long; anything else
 * (not a HyperLoom server, refused authentication, a bad option) ends the worker at once.
 */
export async function workerMain(hostArg: string | undefined, portArg: number | undefined, opts: WorkerMainOptions): Promise<void> {
  setUpLogs(opts, "worker");
  if ((opts.tlsCert === undefined) !== (opts.tlsKey === undefined)) throw new Error("--tls-cert and --tls-key go together");
  if (opts.cpuList !== undefined && opts.nopin) throw new Error("--cpu-list pins programs: it does not go with --nopin");
  // With --connect-retry and an address given, the access file may not be written yet (the
  // server is not up): it is read again on each attempt.
  const waitForFile = hostArg !== undefined && portArg !== undefined && (opts.connectRetry ?? 0) > 0;
  let access: Access | undefined;
  try {
    access = opts.accessFile === false ? undefined : accessFor(hostArg, portArg, opts.accessFile);
  } catch (e) {
    if (!waitForFile || !/does not exist/.test((e as Error).message)) throw e;
  }
  const host = hostArg ?? access?.host;
  const port = portArg ?? access?.port;
  if (host === undefined || port === undefined) {
    throw new Error(`no server address given and no access file found (--access-file, HYPERLOOM_ACCESS_FILE, or ${defaultAccessFilePath()})`);
  }
  const identity = opts.tlsCert !== undefined ? loadTlsIdentity(opts.tlsCert, opts.tlsKey!) : undefined;
  const securityOf = (a: Access | undefined): WorkerSecurity => {
    const security: WorkerSecurity = {};
    if (a !== undefined) {
      security.secret = a.secret;
      if (a.tlsFingerprint !== undefined) security.tls = { serverFingerprint: a.tlsFingerprint, ...(identity !== undefined ? { identity } : {}) };
    }
    return security;
  };
  // Inside a cluster job: cpus (unless given) and id from the job.
  const { startWorker } = require("../worker/worker.js") as typeof import("../worker/worker.js");
  const job = jobEnvironment();
  const options = {
    serverHost: host,
    serverPort: port,
    // Without --cpus: the --cpu-list's CPUs, the job's, else the CPUs this process may run on.
    cpus: opts.cpus > 0 ? opts.cpus : (opts.cpuList?.length ?? job?.cpus ?? availableParallelism()),
    ...(job ? { job: { id: job.jobId, ...(job.task !== undefined ? { task: job.task } : {}) } } : {}),
    wdir: opts.wdir,
    pin: !opts.nopin,
    ...(opts.cpuList !== undefined ? { cpuList: opts.cpuList } : {}),
    ...(opts.host ? { host: opts.host } : {}),
    extensions: opts.extension ?? [],
    ...(opts.python !== undefined ? { python: opts.python } : {}),
    security: securityOf(access),
    ...(typeof opts.reconnect === "number" ? { reconnectSeconds: opts.reconnect } : {}),
    // A restarted server has a new secret (and certificate): the access file is read again on
    // every reconnect attempt.
    ...(opts.accessFile !== false ? { refreshSecurity: () => securityOf(accessFor(hostArg ?? host, portArg ?? port, opts.accessFile as string | undefined)) } : {}),
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
  let used = access;
  for (let delay = 100, first = true; ; delay = Math.min(delay * 2, 2000), first = false) {
    try {
      if (!first && opts.accessFile !== false) used = accessFor(host, port, opts.accessFile);
      w = await startWorker({ ...options, security: securityOf(used) });
      break;
    } catch (e) {
      // Refused with the previous server's secret (a server answers nobody before it has written
      // its own to the access file): the worker tries again with the file as it is now.
      const refused = /connection refused|access file .* does not exist/.test((e as Error).message) || accessChanged(used, host, port, opts);
      if (!refused || stopping || Date.now() + delay > firstDeadline) throw e;
      if (delay === 100) log("info", `${(e as Error).message}; retrying for up to ${opts.connectRetry} s ...`);
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, delay);
      });
    }
  }
  // Said once connected: a worker that cannot connect says only why (one line).
  if (opts.openWarning !== undefined) log("warn", opts.openWarning);
  if (stopping) w.close();
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  stopWithParent(stop);
  await w.done;
  process.exit(w.reconnectFailed ? 1 : 0);
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
