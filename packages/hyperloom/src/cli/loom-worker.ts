#!/usr/bin/env node
/**
 * `loom-worker`: the original worker's command line (`SERVER-ADDRESS PORT --cpus --wdir --nopin
 * --debug`) and its open behaviour (no access file; its data port accepts anyone), said in one
 * warning line; plus `hyperloom worker`'s `--cpu-list`, `--extension` and `--python`.
 */
import { Command, InvalidArgumentError } from "commander";
import { cpuListArg } from "./cpu-list.js";
import { workerMain } from "./roles.js";

new Command("loom-worker")
  .argument("<SERVER-ADDRESS>")
  .argument("<PORT>", "server port", (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw new InvalidArgumentError("Invalid port number");
    return n;
  })
  .option("--cpus <NUMBER>", "CPU slots (0: autodetect)", (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError("Invalid number of cpus");
    return n;
  }, 0)
  .option("--wdir <DIRECTORY>", "work directory root", "/tmp")
  .option("--nopin", "do not pin programs to the CPUs of their CPU slots")
  .option("--cpu-list <CPUS>", "pin programs to these CPUs, slot 0 to the first (e.g. 0-3,6; --cpus defaults to their number)", cpuListArg)
  .option("--extension <PATH>", "load a native task library (repeatable)", (v: string, prev: string[]) => [...prev, v], [] as string[])
  .option("--python <PATH>", "Python interpreter for Python function tasks (needs cloudpickle; default python3, started on the first Python task)")
  .option("--debug", "debug logging")
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 64))
  .action((host: string, port: number, opts: { cpus: number; wdir: string; nopin?: boolean; cpuList?: number[]; debug?: boolean; extension: string[]; python?: string }) => {
    return workerMain(host, port, {
      ...opts,
      accessFile: false,
      openWarning: "loom-worker: connections are not authenticated (the original's behaviour); `hyperloom worker` with the server's access file is",
    });
  })
  .parseAsync(process.argv)
  .catch((e: unknown) => {
    process.stderr.write(`loom-worker: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
