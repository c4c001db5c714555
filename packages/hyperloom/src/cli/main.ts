#!/usr/bin/env node
/**
 * The `hyperloom` command: `server`, `worker`, `local` (a local cluster, optionally running a
 * client script against it) and `report` (a trace directory as an HTML report).
 */
import { Command, InvalidArgumentError } from "commander";
import { serverMain, workerMain } from "./roles.js";
import { LocalCluster } from "../cluster/local-cluster.js";
import { runScript } from "./script.js";
import { writeReport } from "../report/index.js";

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
  .description("run a server")
  .option("-p, --port <number>", "main port (0: any free port)", intArg("port number", 0, 65535), 9010)
  .option("--host <address>", "listen address", "0.0.0.0")
  .option("--debug", "debug logging")
  .action((opts: { port: number; host: string; debug?: boolean }) => serverMain(opts));

program
  .command("worker")
  .description("run a worker connected to a server")
  .argument("<server-address>", "server host name or IPv4 address")
  .argument("<port>", "server main port", intArg("port number", 1, 65535))
  .option("--cpus <number>", "CPU slots (0: all cores)", intArg("number of cpus", 0, 1 << 20), 0)
  .option("--wdir <directory>", "root of the work directory", "/tmp")
  .option("--nopin", "do not pin programs to their CPU slots with taskset")
  .option("--host <address>", "listen address of the data port", "0.0.0.0")
  .option("--extension <path>", "load a native task library (repeatable)", (v: string, prev: string[]) => [...prev, v], [] as string[])
  .option("--python <path>", "Python interpreter for Python function tasks (needs cloudpickle; default python3, started on the first Python task)")
  .option("--debug", "debug logging")
  .action((host: string, port: number, opts: { cpus: number; wdir: string; nopin?: boolean; debug?: boolean; host: string; extension: string[]; python?: string }) =>
    workerMain(host, port, opts),
  );

program
  .command("local")
  .description("start a server and workers on 127.0.0.1; run a client script against them, or wait for Ctrl-C")
  .argument("[script]", "a .js, .mjs or .ts client script (it finds the server in HYPERLOOM_SERVER)")
  .option("--workers <number>", "number of workers", intArg("number of workers", 1, 1024), 2)
  .option("--cpus <number>", "CPUs per worker", intArg("number of cpus", 1, 1 << 20), 1)
  .option("--port <number>", "server main port (0: any free port)", intArg("port number", 0, 65535), 0)
  .option("-v, --verbose", "show the server's and workers' logs")
  .action(async (script: string | undefined, opts: { workers: number; cpus: number; port: number; verbose?: boolean }) => {
    const cluster = await LocalCluster.start({ workers: opts.workers, cpus: opts.cpus, port: opts.port, verbose: !!opts.verbose });
    process.stderr.write(`HyperLoom local cluster: server ${cluster.address}, ${opts.workers} worker(s) x ${opts.cpus} cpu(s)\n`);
    let code = 0;
    const stop = async (): Promise<never> => {
      await cluster.stop();
      process.exit(130);
    };
    process.once("SIGINT", () => void stop());
    process.once("SIGTERM", () => void stop());
    if (script !== undefined) {
      code = await runScript(script, cluster.address);
      await cluster.stop();
      process.exit(code);
    }
  });

program
  .command("report")
  .description("turn a trace directory (client.setTrace) into one self-contained HTML report")
  .argument("<trace-dir>", "the directory given to setTrace")
  .option("-o, --output <file>", "the HTML file to write", "report.html")
  .action((dir: string, opts: { output: string }) => {
    let r;
    try {
      r = writeReport(dir, opts.output);
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

program.parseAsync(process.argv).catch((e: unknown) => {
  process.stderr.write(`hyperloom: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
