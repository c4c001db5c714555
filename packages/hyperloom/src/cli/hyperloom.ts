/**
 * The `hyperloom` command: `server`, `worker`, `local` (a local cluster, optionally running a
 * client script against it) and `report` (a trace directory as an HTML report). Loaded by its
 * entry, `main.ts`, once a server's main port is bound.
 */
import { Command, InvalidArgumentError } from "commander";
import type { ServerMainOptions, WorkerMainOptions } from "./roles.js";
import type { ChildProcess } from "node:child_process";
import type { LocalCluster } from "../cluster/local-cluster.js";
import type { CheckedScript } from "./script.js";
import type { ProgressBar } from "./progress-bar.js";
import type { LogFormat } from "../log.js";
import { allocCommands } from "./alloc.js";
import { cpuListArg } from "./cpu-list.js";

// Each command loads what it uses when it runs (`require` at the call): a server or worker must
// start fast (issue #26: accepting within 100 ms of exec, registered within 250 ms), so neither
// loads the client, the local cluster, the report or the other role.
const roles = (): typeof import("./roles.js") => require("./roles.js") as typeof import("./roles.js");
const parseListenAddress = (v: string): { host: string; port: number } =>
  (require("../server/dashboard.js") as typeof import("../server/dashboard.js")).parseListenAddress(v);

function logFormatArg(v: string): LogFormat {
  if (v !== "text" && v !== "json") throw new InvalidArgumentError("expected text or json");
  return v;
}

function addressArg(v: string): { host: string; port: number } {
  try {
    return parseListenAddress(v);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}
import { ACCESS_FILE_ENV, defaultAccessFilePath } from "../security/access-file.js";
import { DEFAULT_FRAME_TIMEOUT_MS, DEFAULT_MAX_FRAME, DEFAULT_MAX_PLAN } from "../security/frame-limits.js";

function intArg(name: string, min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`Invalid ${name}`);
    return n;
  };
}

const program = new Command("hyperloom").description("HyperLoom: plans of millions of tasks on a server and workers");

program
  .command("server")
  .description("run a server (only peers holding its access file may connect)")
  .option("-p, --port <number>", "main port (0: any free port)", intArg("port number", 0, 65535), 9010)
  .option("--host <address>", "listen address (0.0.0.0: every interface)", "127.0.0.1")
  .option("--access-file <path>", `where to write the access file (host, port, secret; mode 0600; default $${ACCESS_FILE_ENV}, else ${defaultAccessFilePath()})`)
  .option("--insecure", "no authentication: anyone who reaches the ports may use the server")
  .option("--tls", "encrypt every connection (a self-signed certificate unless --tls-cert/--tls-key; pinned via the access file)")
  .option("--tls-cert <file>", "PEM certificate for --tls")
  .option("--tls-key <file>", "PEM private key for --tls")
  .option("--max-frame <bytes>", "largest control frame a peer may send", intArg("number of bytes", 1024, 2 ** 32), DEFAULT_MAX_FRAME)
  .option("--max-plan <bytes>", "largest plan a client may submit", intArg("number of bytes", 1024, 2 ** 42), DEFAULT_MAX_PLAN)
  .option("--frame-timeout <seconds>", "how long a frame may take to arrive once started", intArg("number of seconds", 1, 86_400), DEFAULT_FRAME_TIMEOUT_MS / 1000)
  .option("--dashboard <[host:]port>", "serve the live dashboard and /metrics there (host default 127.0.0.1; port 0: any free one)", addressArg)
  .option("--max-crashes <n>", "fail a task once this many workers were lost while running it", intArg("number of crashes", 1, 1 << 20), 2)
  .option("--journal <path>", "journal plans, releases, completions and client sessions to this file; restore from it on start")
  .option("--reattach <seconds>", "with --journal: how long a restored client session waits for its client to re-attach", intArg("seconds", 1, 1 << 30), 300)
  .option("--reconnect-grace <seconds>", "with --journal: how long results reported before the restart wait for the workers holding them to reconnect before they are computed again (0: no waiting)", intArg("seconds", 0, 1 << 30), 5)
  .option("--debug", "debug logging: scheduling summaries, transfers, connections")
  .option("--log-format <format>", "log lines as text or json", logFormatArg, "text")
  .action((opts: ServerMainOptions) => roles().serverMain({ ...opts, accessFile: opts.accessFile ?? (process.env[ACCESS_FILE_ENV] || defaultAccessFilePath()) }));

program
  .command("worker")
  .description("run a worker connected to a server")
  .argument("[server-address]", "server host name or IPv4 address (default: from the access file)")
  .argument("[port]", "server main port (default: from the access file)", intArg("port number", 1, 65535))
  .option("--access-file <path>", `the server's access file (default: ${ACCESS_FILE_ENV}, else ${defaultAccessFilePath()} if present)`)
  .option("--insecure", "use no access file (a server started with --insecure); the data port accepts anyone")
  .option("--tls-cert <file>", "PEM certificate of this worker's data port (with TLS; default: self-signed)")
  .option("--tls-key <file>", "PEM private key for --tls-cert")
  .option("--cpus <number>", "CPU slots (0: the job's cpus inside a Slurm or PBS job, else the CPUs this worker may run on)", intArg("number of cpus", 0, 1 << 20), 0)
  .option("--wdir <directory>", "root of the work directory", "/tmp")
  .option("--nopin", "do not pin programs to the CPUs of their CPU slots")
  .option("--cpu-list <cpus>", "pin programs to these CPUs, slot 0 to the first (e.g. 0-3,6; --cpus defaults to their number); default: CPUs this worker may run on that no other pinning worker of this machine holds", cpuListArg)
  .option("--host <address>", "listen address of the data port", "0.0.0.0")
  .option("--extension <path>", "load a native task library (repeatable)", (v: string, prev: string[]) => [...prev, v], [] as string[])
  .option("--python <path>", "Python interpreter for Python function tasks (needs cloudpickle; default python3, started on the first Python task)")
  .option("--reconnect <seconds>", "when the server connection is lost, keep the data objects and reconnect, retrying for up to this long (a server that stops or retires the worker lets it exit)", intArg("seconds", 1, 1 << 30), 300)
  .option("--no-reconnect", "exit when the server connection closes (the original worker's behaviour)")
  .option("--connect-retry <seconds>", "while the server refuses the first connection (not started yet), retry for up to this long (0: exit at once)", intArg("seconds", 0, 1 << 30), 60)
  .option("--debug", "debug logging: scheduling summaries, transfers, connections")
  .option("--log-format <format>", "log lines as text or json", logFormatArg, "text")
  .action((host: string | undefined, port: number | undefined, opts: WorkerMainOptions & { insecure?: boolean }) => {
    const { insecure, ...rest } = opts;
    return roles().workerMain(host, port, insecure ? { ...rest, accessFile: false } : rest);
  });

program
  .command("local")
  .description("start a server and workers on 127.0.0.1; run a client script against them, or wait for Ctrl-C")
  .argument("[script]", "a .js, .mjs or .ts client script (it finds the server in HYPERLOOM_SERVER)")
  .option("--workers <number>", "number of workers", intArg("number of workers", 1, 1024), 2)
  .option("--cpus <number>", "CPUs per worker", intArg("number of cpus", 1, 1 << 20), 1)
  .option("--pin", "pin programs to CPUs, each worker to CPUs of its own while there are enough (see worker --cpu-list)")
  .option("--port <number>", "server main port (0: any free port)", intArg("port number", 0, 65535), 0)
  .option("--tls", "encrypt every connection")
  .option("-v, --verbose", "show the server's and workers' logs")
  .option("--dashboard <[host:]port>", "where the live dashboard listens", "127.0.0.1:0")
  .option("--no-dashboard", "no dashboard")
  .option("--debug", "the server's and workers' debug logs (with -v)")
  .option("--log-format <format>", "the server's and workers' log lines as text or json (with -v)", logFormatArg, "text")
  .action((script: string | undefined, opts: LocalOptions) => local(script, opts));

/** Options of `hyperloom local`. */
interface LocalOptions {
  workers: number;
  cpus: number;
  pin?: boolean;
  port: number;
  tls?: boolean;
  verbose?: boolean;
  /** `[host:]port`, or false with `--no-dashboard`. */
  dashboard: string | false;
  debug?: boolean;
  logFormat: LogFormat;
}

/**
 * `hyperloom local`: the script is checked before anything starts; then the cluster, then the
 * script. Every way out — the script's end, an error, SIGINT, SIGTERM — stops the script, the
 * server and the workers and removes the cluster's directory before exiting.
 */
async function local(script: string | undefined, opts: LocalOptions): Promise<void> {
  const { checkScript, ScriptError, startScript } = require("./script.js") as typeof import("./script.js");
  const { LocalCluster } = require("../cluster/local-cluster.js") as typeof import("../cluster/local-cluster.js");
  const { startProgressBar } = require("./progress-bar.js") as typeof import("./progress-bar.js");
  let checked: CheckedScript | undefined;
  if (script !== undefined) {
    try {
      checked = checkScript(script);
    } catch (e) {
      if (!(e instanceof ScriptError)) throw e;
      process.stderr.write(`hyperloom local: ${e.message}\n`);
      process.exit(1);
    }
  }
  let dashboard: { host: string; port: number } | undefined;
  try {
    dashboard = opts.dashboard === false ? undefined : parseListenAddress(opts.dashboard);
  } catch (e) {
    process.stderr.write(`hyperloom local: --dashboard: ${(e as Error).message}\n`);
    process.exit(1);
  }
  let child: ChildProcess | undefined;
  let bar: ProgressBar | undefined;
  let exiting = false;
  const starting = LocalCluster.start({
    workers: opts.workers,
    cpus: opts.cpus,
    ...(opts.pin ? { pin: true } : {}),
    port: opts.port,
    tls: !!opts.tls,
    verbose: !!opts.verbose,
    ...(dashboard ? { dashboard } : {}),
    logArgs: [...(opts.debug ? ["--debug"] : []), "--log-format", opts.logFormat],
  });
  const exit = async (code: number): Promise<never> => {
    exiting = true;
    await bar?.stop().catch(() => undefined);
    if (child && child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((r) => child!.once("exit", r));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child!.kill("SIGKILL"), 3000);
      await gone;
      clearTimeout(timer);
    }
    await starting.then(
      (cluster) => cluster.stop(),
      () => undefined, // a failed start has cleaned up after itself
    );
    process.exit(code);
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    if (exiting) return;
    process.stderr.write(`hyperloom local: ${signal}: stopping the script and the cluster\n`);
    void exit(signal === "SIGINT" ? 130 : 143);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  let cluster: LocalCluster;
  try {
    cluster = await starting;
  } catch (e) {
    process.stderr.write(`hyperloom local: the cluster did not start: ${(e as Error).message}\n`);
    return exit(1);
  }
  if (exiting) return;
  // The link carries the dashboard's token: this is the user's own terminal, not a log.
  const dash = cluster.dashboardLink ? `, dashboard ${cluster.dashboardLink}` : "";
  process.stderr.write(
    `HyperLoom local cluster: server ${cluster.address}${opts.tls ? " (TLS)" : ""}, ${opts.workers} worker(s) x ${opts.cpus} cpu(s)${dash}\n`,
  );
  if (checked === undefined) return; // serve until Ctrl-C
  child = startScript(checked, cluster.address, cluster.accessFile);
  // A progress bar of the cluster's tasks, only on a terminal.
  if (process.stderr.isTTY) bar = await startProgressBar(cluster.host, cluster.port, cluster.accessFile).catch(() => undefined);
  const code = await new Promise<number>((res) => {
    child!.once("error", (e) => {
      process.stderr.write(`hyperloom local: cannot start the script: ${e.message}\n`);
      res(1);
    });
    child!.once("exit", (c, signal) => res(c ?? (signal ? 1 : 0)));
  });
  if (!exiting) await exit(code);
}

program
  .command("journal")
  .description("print what a server journal holds: client sessions, plans, tasks by state")
  .argument("<path>", "the journal file (hyperloom server --journal)")
  .option("--json", "print it as JSON")
  .action((path: string, opts: { json?: boolean }) => {
    const { journalMain } = require("./journal.js") as typeof import("./journal.js");
    process.exit(journalMain(path, opts));
  });

program
  .command("status")
  .description("show the server's workers, clients, plans (tasks by state) and recent failures")
  .option("--server <host:port>", "the server's main port (default: $HYPERLOOM_SERVER, else the access file's, else 127.0.0.1:9010)")
  .option("--access-file <path>", `the server's access file (default: $${ACCESS_FILE_ENV}, else ${defaultAccessFilePath()})`)
  .option("--json", "print the status as JSON (one line per refresh)")
  .option("--watch [seconds]", "refresh every few seconds (default 2) until interrupted", (v: string) => {
    const x = Number(v);
    if (!(x > 0)) throw new InvalidArgumentError("Invalid number of seconds");
    return x;
  })
  .action(async (opts: { server?: string; accessFile?: string; json?: boolean; watch?: number | true }) => {
    const server = opts.server ?? (process.env.HYPERLOOM_SERVER || undefined);
    const watch = opts.watch === true ? 2 : opts.watch;
    const { statusMain } = require("./status.js") as typeof import("./status.js");
    process.exit(
      await statusMain({
        ...(server !== undefined ? { server } : {}),
        ...(opts.accessFile !== undefined ? { accessFile: opts.accessFile } : {}),
        ...(opts.json ? { json: true } : {}),
        ...(watch !== undefined ? { watch } : {}),
      }),
    );
  });

program
  .command("report")
  .description("turn a trace directory (client.setTrace) into one self-contained HTML report")
  .argument("<trace-dir>", "the directory given to setTrace")
  .option("-o, --output <file>", "the HTML file to write", "report.html")
  .action((dir: string, opts: { output: string }) => {
    let r;
    try {
      r = (require("../report/index.js") as typeof import("../report/index.js")).writeReport(dir, opts.output);
    } catch (e) {
      process.stderr.write(`hyperloom report: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exit(1);
    }
    for (const w of r.warnings) process.stderr.write(`warning: ${w}\n`);
    const s = r.stats;
    process.stderr.write(
      `Report written to ${r.out} (${s.tasks} tasks planned, ${s.runs} runs, ${s.failed} failed, ${s.groups} label groups, ${(r.bytes / 1e6).toFixed(1)} MB)\n`,
    );
  });

allocCommands(program);

// `--version` on every command.
const version = (require("../../package.json") as { version: string }).version;
const withVersion = (c: Command): void => {
  c.version(version);
  c.commands.forEach(withVersion);
};
withVersion(program);

program.parseAsync(process.argv).catch((e: unknown) => {
  process.stderr.write(`hyperloom: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
