/**
 * A local cluster: a server and workers as child processes on 127.0.0.1, for tests and scripts.
 * The server requires authentication: its access file lives in the cluster's temporary folder and
 * the workers, {@link LocalCluster.connect} and the scripts `hyperloom local` runs use it (with
 * `tls`, every connection is encrypted). Stopping it stops every process and removes the workers'
 * directories and the access file.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { Client, type ConnectOptions } from "../client/client.js";
import { parseLogLine } from "../log.js";
import { readAccessFile } from "../security/access-file.js";
import { dashboardToken } from "../security/dashboard-access.js";

/** Options of {@link LocalCluster.start}. */
export interface LocalClusterOptions {
  /** Number of workers (default 1). */
  workers?: number;
  /** CPUs of each worker (default 1). */
  cpus?: number;
  /** Main port of the server (default: a free one). */
  port?: number;
  /** Encrypt every connection (TLS, a self-signed certificate pinned via the access file). */
  tls?: boolean;
  /**
   * No authentication and no access file (`--insecure`): for clients that speak the original's
   * open protocol, such as the original's Python client. Not with `tls`.
   */
  insecure?: boolean;
  /** Forward the processes' output to this process's stderr. */
  verbose?: boolean;
  /** Extra arguments for every worker. */
  workerArgs?: string[];
  /**
   * Pin each worker's programs to CPUs, as standalone workers do: each worker takes CPUs of its
   * own while the machine has enough (claimed machine-wide, see `WorkerOptions.pin`), then they
   * share evenly. Default false: a local cluster is usually more workers x cpus than the
   * machine's CPUs, and a slot without a CPU fails its programs.
   */
  pin?: boolean;
  /** Start the server with its dashboard on this address (see `hyperloom server --dashboard`). */
  dashboard?: { host: string; port: number };
  /** Logging flags for the server and every worker (`--debug`, `--log-format json`). */
  logArgs?: string[];
  /** Receives each line the server logs. */
  onServerLine?: (line: string) => void;
  /** Receives each line a worker logs (worker number from 0, the line). */
  onWorkerLine?: (worker: number, line: string) => void;
  /** Extra arguments for the server (e.g. `--max-crashes 1`). */
  serverArgs?: string[];
}

const cliPath = join(__dirname, "..", "cli", "main.js");

/**
 * A child's stderr line on ours, prefixed with the process that wrote it: every line when
 * verbose. Otherwise only what is not a log line (a crash) and the server's warnings and errors
 * about the cluster (e.g. tasks no worker can run); a task failure is left to the client that
 * gets it as an error.
 */
function showChildLine(who: string, line: string, verbose: boolean | undefined): void {
  const { level, message } = parseLogLine(line);
  const shown =
    verbose ||
    level === undefined ||
    (who === "server" && (level === "warn" || level === "error") && !/^task id=-?\d+.* failed on /.test(message));
  if (shown) process.stderr.write(`[${who}] ${line}\n`);
}

/** A server and its workers running as child processes. */
export class LocalCluster {
  private constructor(
    /** Host of the server. */
    readonly host: string,
    /** Main port of the server. */
    readonly port: number,
    private readonly server: ChildProcess,
    private readonly workers: ChildProcess[],
    private readonly wdir: string,
    private readonly options: LocalClusterOptions,
    /** The server's access file (mode 0600, inside the cluster's temporary folder); undefined when `insecure`. */
    readonly accessFile: string | undefined,
    /** The dashboard's URL, when it was started with one. */
    readonly dashboardUrl?: string,
  ) {}

  /** Starts the server and the workers, and waits until every worker has registered. */
  static async start(options: LocalClusterOptions = {}): Promise<LocalCluster> {
    const nWorkers = options.workers ?? 1;
    const wdir = mkdtempSync(join(tmpdir(), "hyperloom-"));
    const dash = options.dashboard ? ["--dashboard", `${options.dashboard.host}:${options.dashboard.port}`] : [];
    const logArgs = options.logArgs ?? [];
    const accessFile = options.insecure ? undefined : join(wdir, "access.json");
    const access = accessFile !== undefined ? ["--access-file", accessFile] : ["--insecure"];
    const server = spawn(
      process.execPath,
      [cliPath, "server", "--host", "127.0.0.1", "--port", String(options.port ?? 0), ...access, ...(options.tls ? ["--tls"] : []), ...dash, ...logArgs, ...(options.serverArgs ?? [])],
      {
      // The IPC channel only tells the child when this process is gone (see `roles.ts`).
        stdio: ["ignore", "pipe", "pipe", "ipc"],
      },
    );
    const children: ChildProcess[] = [server];
    try {
      let dashboardUrl: string | undefined;
      const port = await new Promise<number>((resolve, reject) => {
        // The server logs on stderr; its stdout stays unused.
        const lines = createInterface({ input: server.stderr! });
        let port: number | undefined;
        let accessWritten = false;
        lines.on("line", (line) => {
          const { message } = parseLogLine(line);
          showChildLine("server", line, options.verbose);
          options.onServerLine?.(line);
          const m = /listening on [\d.]+:(\d+)/.exec(message);
          if (m) port = Number(m[1]);
          const d = /Dashboard at (\S+)/.exec(message);
          if (d) dashboardUrl = d[1];
          if (/^Access file /.test(message)) accessWritten = true;
          // The dashboard line and the access file's line follow the listening line.
          if (port !== undefined && (!options.dashboard || dashboardUrl !== undefined) && (accessFile === undefined || accessWritten)) resolve(port);
        });
        server.once("exit", (code) => reject(new Error(`server exited with status ${code} before listening`)));
      });
      const workers: ChildProcess[] = [];
      for (let i = 0; i < nWorkers; i++) {
        const w = spawnWorker(port, wdir, i, options, accessFile, []);
        workers.push(w);
        children.push(w);
      }
      const cluster = new LocalCluster("127.0.0.1", port, server, workers, wdir, options, accessFile, dashboardUrl);
      await cluster.waitForWorkers(nWorkers, 30_000);
      return cluster;
    } catch (e) {
      for (const c of children) c.kill("SIGKILL");
      rmSync(wdir, { recursive: true, force: true });
      throw e;
    }
  }

  /**
   * The token the dashboard asks for (send `Authorization: Bearer <token>`, or open
   * {@link dashboardLink} once in a browser); undefined without a dashboard or when `insecure`.
   */
  get dashboardToken(): string | undefined {
    return this.dashboardUrl !== undefined && this.accessFile !== undefined ? dashboardToken(readAccessFile(this.accessFile).secret) : undefined;
  }

  /** The dashboard's URL a browser opens: {@link dashboardUrl} with `?token=` when it asks for one. */
  get dashboardLink(): string | undefined {
    const token = this.dashboardToken;
    return token !== undefined ? `${this.dashboardUrl}?token=${token}` : this.dashboardUrl;
  }

  /** `host:port` of the server. */
  get address(): string {
    return `${this.host}:${this.port}`;
  }

  /** The worker processes (e.g. to kill one in a test), including ones added later. */
  get workerProcesses(): readonly ChildProcess[] {
    return this.workers;
  }

  /** The directory under which every worker has its work directory (`worker-<host>-<port>/`). */
  get workDir(): string {
    return this.wdir;
  }

  /** The work directories of the worker processes still running (as they logged them). */
  liveWorkerDirs(): string[] {
    return this.workers.flatMap((w) => {
      const dir = workerDirs.get(w);
      return w.exitCode === null && w.signalCode === null && dir !== undefined ? [dir] : [];
    });
  }

  /**
   * Starts one more worker (with the cluster's worker options plus `extraArgs`) and waits until
   * the server counts `expectedWorkers` workers (default: one more than now).
   */
  async addWorker(extraArgs: string[] = [], expectedWorkers?: number): Promise<ChildProcess> {
    const client = await this.connect();
    let n: number;
    try {
      n = expectedWorkers ?? (await client.stats()).nWorkers + 1;
    } finally {
      await client.close();
    }
    const w = spawnWorker(this.port, this.wdir, this.workers.length, this.options, this.accessFile, extraArgs);
    this.workers.push(w);
    await this.waitForWorkers(n, 30_000);
    return w;
  }

  /** The server process (e.g. to read its memory use). */
  get serverProcess(): ChildProcess {
    return this.server;
  }

  /** Connects a new client to the server (`options` as `Client.connect`'s; the access file is this cluster's). */
  connect(options: ConnectOptions = {}): Promise<Client> {
    return Client.connect(this.host, this.port, { ...(this.accessFile !== undefined ? { accessFile: this.accessFile } : {}), ...options });
  }

  /** Waits until `n` workers are registered. */
  async waitForWorkers(n: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const client = await this.connect();
    try {
      for (;;) {
        const s = await client.stats();
        if (s.nWorkers >= n) return;
        for (const w of this.workers) {
          if (w.exitCode !== null && w.exitCode !== 0) throw new Error(`a worker exited with status ${w.exitCode} while starting`);
        }
        if (Date.now() > deadline) throw new Error(`only ${s.nWorkers} of ${n} workers registered in ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 20));
      }
    } finally {
      await client.close();
    }
  }

  /** Stops every process and removes the work directories. */
  async stop(): Promise<void> {
    const all = [...this.workers, this.server];
    await Promise.all(
      all.map(
        (p) =>
          new Promise<void>((resolve) => {
            if (p.exitCode !== null || p.signalCode !== null) return resolve();
            const timer = setTimeout(() => p.kill("SIGKILL"), 3000);
            p.once("exit", () => {
              clearTimeout(timer);
              resolve();
            });
            p.kill("SIGTERM");
          }),
      ),
    );
    rmSync(this.wdir, { recursive: true, force: true });
  }
}

/** The work directory each worker process logged (`work dir <path>` on registration). */
const workerDirs = new WeakMap<ChildProcess, string>();

/**
 * Starts worker number `i` with `--wdir <wdir>/<i>` (its own, even when a restarted worker gets
 * the data port of a killed one; the worker creates it and removes it when it stops). Its log is
 * read for its work directory (see {@link workerDirs}). If it is killed, `<wdir>/<i>` is removed
 * here (it cannot remove it itself). It reads the server's access file (`--insecure` without one).
 */
function spawnWorker(port: number, root: string, i: number, options: LocalClusterOptions, accessFile: string | undefined, extraArgs: string[]): ChildProcess {
  const access = accessFile !== undefined ? ["--access-file", accessFile] : ["--insecure"];
  const wdir = join(root, String(i));
  const w = spawn(
    process.execPath,
    // --nopin unless asked: a local cluster usually has more slots than the machine has CPUs.
    [cliPath, "worker", "127.0.0.1", String(port), ...access, "--cpus", String(options.cpus ?? 1), "--wdir", wdir, ...(options.pin ? [] : ["--nopin"]), ...(options.logArgs ?? []), ...(options.workerArgs ?? []), ...extraArgs],
    // The IPC channel only tells the child when this process is gone (see `roles.ts`).
    // Workers log on stderr; their stdout stays unused.
    { stdio: ["ignore", "ignore", "pipe", "ipc"] },
  );
  const onLine = options.onWorkerLine;
  createInterface({ input: w.stderr! }).on("line", (line) => {
    const m = /\bwork dir (.+)$/.exec(parseLogLine(line).message);
    if (m && !workerDirs.has(w)) workerDirs.set(w, m[1]!);
    showChildLine(`worker ${i}`, line, options.verbose);
    onLine?.(i, line);
  });
  w.once("exit", (_code, signal) => {
    // A worker removes its directory when it stops; one that was killed leaves it behind.
    if (signal !== null) rmSync(wdir, { recursive: true, force: true });
  });
  return w;
}
