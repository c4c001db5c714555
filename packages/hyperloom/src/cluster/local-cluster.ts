/**
 * A local cluster: a server and workers as child processes on 127.0.0.1, for tests and scripts.
 * Stopping it stops every process and removes the workers' directories.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { Client } from "../client/client.js";
import { parseLogLine } from "../log.js";

/** Options of {@link LocalCluster.start}. */
export interface LocalClusterOptions {
  /** Number of workers (default 1). */
  workers?: number;
  /** CPUs of each worker (default 1). */
  cpus?: number;
  /** Main port of the server (default: a free one). */
  port?: number;
  /** Forward the processes' output to this process's stderr. */
  verbose?: boolean;
  /** Extra arguments for every worker. */
  workerArgs?: string[];
  /** Start the server with its dashboard on this address (see `hyperloom server --dashboard`). */
  dashboard?: { host: string; port: number };
  /** Logging flags for the server and every worker (`--debug`, `--log-format json`). */
  logArgs?: string[];
  /** Receives each line a worker logs (worker number from 0, the line). */
  onWorkerLine?: (worker: number, line: string) => void;
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
    /** The dashboard's URL, when it was started with one. */
    readonly dashboardUrl?: string,
  ) {}

  /** Starts the server and the workers, and waits until every worker has registered. */
  static async start(options: LocalClusterOptions = {}): Promise<LocalCluster> {
    const nWorkers = options.workers ?? 1;
    const wdir = mkdtempSync(join(tmpdir(), "hyperloom-"));
    const dash = options.dashboard ? ["--dashboard", `${options.dashboard.host}:${options.dashboard.port}`] : [];
    const logArgs = options.logArgs ?? [];
    const server = spawn(process.execPath, [cliPath, "server", "--host", "127.0.0.1", "--port", String(options.port ?? 0), ...dash, ...logArgs], {
      // The IPC channel only tells the child when this process is gone (see `roles.ts`).
      stdio: ["ignore", "pipe", "pipe", "ipc"],
    });
    const children: ChildProcess[] = [server];
    try {
      let dashboardUrl: string | undefined;
      const port = await new Promise<number>((resolve, reject) => {
        // The server logs on stderr; its stdout stays unused.
        const lines = createInterface({ input: server.stderr! });
        let port: number | undefined;
        lines.on("line", (line) => {
          const { message } = parseLogLine(line);
          showChildLine("server", line, options.verbose);
          const m = /listening on [\d.]+:(\d+)/.exec(message);
          if (m) port = Number(m[1]);
          const d = /Dashboard at (\S+)/.exec(message);
          if (d) dashboardUrl = d[1];
          // The dashboard line follows the listening line.
          if (port !== undefined && (!options.dashboard || dashboardUrl !== undefined)) resolve(port);
        });
        server.once("exit", (code) => reject(new Error(`server exited with status ${code} before listening`)));
      });
      const workers: ChildProcess[] = [];
      for (let i = 0; i < nWorkers; i++) {
        const w = spawn(
          process.execPath,
          // --nopin: the workers of a local cluster share one machine, and each numbers its CPU
          // slots from 0, so pinning would put every worker's programs on the same cores.
          [cliPath, "worker", "127.0.0.1", String(port), "--cpus", String(options.cpus ?? 1), "--wdir", wdir, "--nopin", ...logArgs, ...(options.workerArgs ?? [])],
          { stdio: ["ignore", "ignore", "pipe", "ipc"] },
        );
        const onLine = options.onWorkerLine;
        const n = i;
        createInterface({ input: w.stderr! }).on("line", (line) => {
          showChildLine(`worker ${n}`, line, options.verbose);
          onLine?.(n, line);
        });
        workers.push(w);
        children.push(w);
      }
      const cluster = new LocalCluster("127.0.0.1", port, server, workers, wdir, dashboardUrl);
      await cluster.waitForWorkers(nWorkers, 30_000);
      return cluster;
    } catch (e) {
      for (const c of children) c.kill("SIGKILL");
      rmSync(wdir, { recursive: true, force: true });
      throw e;
    }
  }

  /** `host:port` of the server. */
  get address(): string {
    return `${this.host}:${this.port}`;
  }

  /** The worker processes (e.g. to kill one in a test). */
  get workerProcesses(): readonly ChildProcess[] {
    return this.workers;
  }

  /** The server process (e.g. to read its memory use). */
  get serverProcess(): ChildProcess {
    return this.server;
  }

  /** Connects a new client to the server. */
  connect(): Promise<Client> {
    return Client.connect(this.host, this.port);
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
          if (w.exitCode !== null) throw new Error(`a worker exited with status ${w.exitCode} while starting`);
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
