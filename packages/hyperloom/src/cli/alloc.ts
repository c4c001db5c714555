/**
 * `hyperloom alloc add|list|info|remove`: the allocation queues of a running server, through the
 * control protocol (allocator/control.ts). Every command has `--json` (the server's JSON answer).
 */
import { Command, InvalidArgumentError } from "commander";
import type { ControlRequest } from "../allocator/control.js";
import { accessFor } from "../security/access-file.js";
import { parseDuration } from "../allocator/duration.js";
import type { QueueInfo } from "../allocator/queue.js";

function positiveInt(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`Invalid ${name}`);
    return n;
  };
}

function duration(v: string): number {
  try {
    return parseDuration(v);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}

/**
 * `host:port` of the server: `--server`, else `HYPERLOOM_SERVER`, else the access file's
 * (`--access-file`, `HYPERLOOM_ACCESS_FILE`, the default one), else 127.0.0.1:9010.
 */
function serverAddress(opt: string | undefined, accessFile: string | undefined): { host: string; port: number } {
  const given = opt ?? (process.env.HYPERLOOM_SERVER || undefined);
  if (given === undefined) {
    const access = accessFor(undefined, undefined, accessFile);
    if (access !== undefined) return { host: access.host, port: access.port };
  }
  const text = given ?? "127.0.0.1:9010";
  const sep = text.lastIndexOf(":");
  const port = Number(text.slice(sep + 1));
  if (sep <= 0 || !Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`invalid server address '${text}' (host:port)`);
  return { host: text.slice(0, sep), port };
}

async function send(opts: { server?: string; json?: boolean; accessFile?: string }, req: ControlRequest, show: (answer: never) => string): Promise<void> {
  const { host, port } = serverAddress(opts.server, opts.accessFile);
  // Loaded here, not at the top: every `hyperloom` command (a server, a worker) defines these
  // subcommands, and only they use the control connection's messages.
  const { controlRequest } = require("../allocator/control.js") as typeof import("../allocator/control.js");
  const access = accessFor(host, port, opts.accessFile);
  const answer = await controlRequest(host, port, req, undefined, {
    ...(access !== undefined ? { secret: access.secret } : {}),
    ...(access?.tlsFingerprint !== undefined ? { tls: { fingerprint: access.tlsFingerprint } } : {}),
  });
  process.stdout.write(opts.json ? `${JSON.stringify(answer, null, 2)}\n` : show(answer as never));
}

function jobCounts(q: QueueInfo): string {
  const n = (p: string): number => q.jobs.filter((j) => j.phase === p).length;
  return `${n("queued")} queued, ${n("running")} running`;
}

function describe(q: QueueInfo): string {
  const lines = [
    `queue ${q.name} (${q.manager}): ${q.state}${q.nextSubmitAt ? ` until ${q.nextSubmitAt}` : ""}`,
    `  jobs of ${q.workersPerAlloc} worker(s) x ${q.cpus} cpus, time limit ${q.timeLimitSecs} s, at most ${q.maxAllocs} jobs, idle timeout ${q.idleTimeoutSecs} s`,
    `  workers connect to ${q.serverHost}; scripts and output in ${q.dir}`,
  ];
  if (q.extraArgs.length > 0) lines.push(`  ${q.manager === "slurm" ? "sbatch" : "qsub"} arguments: ${q.extraArgs.join(" ")}`);
  lines.push(`  jobs: ${q.jobs.length === 0 ? "none" : jobCounts(q)}`);
  for (const j of q.jobs) {
    lines.push(`    ${j.id}  ${j.state}${j.reason ? ` (${j.reason})` : ""}  ${j.workersConnected} worker(s) connected  submitted ${j.submittedAt}`);
  }
  if (q.errors.length > 0) {
    lines.push(`  recent errors (${q.failures} in a row):`);
    for (const e of q.errors) lines.push(`    ${e.at}  ${e.message}`);
  }
  return lines.join("\n") + "\n";
}

/** Adds the `alloc` command group to `program`. */
export function allocCommands(program: Command): void {
  const group = program.command("alloc").description("allocation queues: workers started as cluster jobs (Slurm, PBS) as the work needs them");
  const common = (c: Command): Command =>
    c.option("--server <host:port>", "the server (default: $HYPERLOOM_SERVER, else the access file's, else 127.0.0.1:9010)")
      .option("--access-file <path>", "the server's access file (default: $HYPERLOOM_ACCESS_FILE, else ~/.hyperloom/access.json if for this server)")
      .option("--json", "print the server's answer as JSON");

  common(
    group
      .command("add")
      .description("register a queue; extra arguments after -- go to sbatch/qsub as given")
      .argument("<manager>", "slurm or pbs")
      .argument("[submit-args...]", "arguments for sbatch/qsub (after --)")
      .requiredOption("--time-limit <duration>", "wall-time limit of each job (e.g. 30m, 1h, 01:30:00)", duration)
      .option("--workers-per-alloc <n>", "workers (nodes) per job", positiveInt("number of workers"), 1)
      .option("--cpus <n>", "cpus of each worker", positiveInt("number of cpus"), 1)
      .option("--max-allocs <n>", "jobs queued or running at once", positiveInt("number of jobs"), 4)
      .option("--idle-timeout <duration>", "let a worker go after this long with nothing to do", duration, 300)
      .option("--name <name>", "queue name (default: <manager>-<n>)")
      .option("--server-host <host>", "host name or address the workers connect to (default: the server's host name)")
      .option("--dir <directory>", "directory of the job scripts and outputs, visible to the compute nodes (default: ~/.hyperloom/alloc/...)"),
  ).action(
    (
      manager: string,
      extraArgs: string[],
      o: { server?: string; json?: boolean; timeLimit: number; workersPerAlloc: number; cpus: number; maxAllocs: number; idleTimeout: number; name?: string; serverHost?: string; dir?: string },
    ) => {
      if (manager !== "slurm" && manager !== "pbs") throw new InvalidArgumentError(`unknown manager '${manager}' (slurm or pbs)`);
      return send(
        o,
        {
          type: "add",
          queue: {
            manager,
            workersPerAlloc: o.workersPerAlloc,
            cpus: o.cpus,
            timeLimitSecs: o.timeLimit,
            maxAllocs: o.maxAllocs,
            idleTimeoutSecs: o.idleTimeout,
            extraArgs,
            ...(o.name ? { name: o.name } : {}),
            ...(o.serverHost ? { serverHost: o.serverHost } : {}),
            ...(o.dir ? { dir: o.dir } : {}),
          },
        },
        (q: QueueInfo) => `added ${describe(q)}`,
      );
    },
  );

  common(group.command("list").description("the server's queues")).action((o: { server?: string; json?: boolean }) =>
    send(o, { type: "list" }, (a: { queues: QueueInfo[] }) =>
      a.queues.length === 0
        ? "no allocation queues\n"
        : a.queues
            .map((q) => `${q.name}  ${q.manager}  ${q.state}  ${jobCounts(q)}  ${q.jobs.reduce((n, j) => n + j.workersConnected, 0)} worker(s)  ${q.errors.length} recent error(s)\n`)
            .join(""),
    ),
  );

  common(group.command("info").description("a queue, its jobs and its recent errors").argument("<name>", "queue name")).action(
    (name: string, o: { server?: string; json?: boolean }) => send(o, { type: "info", name }, describe),
  );

  common(
    group
      .command("remove")
      .description("remove a queue: cancel its queued jobs; running workers finish their tasks first (or are stopped at once with --force)")
      .argument("<name>", "queue name")
      .option("--force", "cancel running jobs too (their tasks are computed by other workers)"),
  ).action((name: string, o: { server?: string; json?: boolean; force?: boolean }) =>
    send(o, { type: "remove", name, force: !!o.force }, (q: QueueInfo) => `removed ${describe(q)}`),
  );
}
