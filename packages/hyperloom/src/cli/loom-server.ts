#!/usr/bin/env node
/**
 * `loom-server`: the original server's command line (`-p/--port`, `--debug`; positionals ignored)
 * and its open behaviour (every interface, no authentication), said in one warning line. The main
 * port is bound first; the rest loads once it listens (issue #26: the original's test harness
 * connects 0.25 s after starting it).
 */
import { listenFirst } from "./listen-first.js";

listenFirst("loom-server", process.argv, () => {
  const { Command, InvalidArgumentError } = require("commander") as typeof import("commander");
  const { serverMain } = require("./roles.js") as typeof import("./roles.js");
  new Command("loom-server")
    .option("-p, --port <NUMBER>", "main port", (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1 || n > 65535) throw new InvalidArgumentError("Invalid port number");
      return n;
    }, 9010)
    .option("--debug", "debug logging")
    .option("--max-crashes <N>", "fail a task once this many workers were lost while running it (default 2)", (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("Invalid number of crashes");
      return n;
    })
    .allowExcessArguments(true)
    .argument("[ignored...]")
    .action((_ignored: string[], opts: { port: number; debug?: boolean; maxCrashes?: number }) =>
      serverMain({ port: opts.port, host: "0.0.0.0", insecure: true, ...(opts.debug ? { debug: true } : {}), ...(opts.maxCrashes !== undefined ? { maxCrashes: opts.maxCrashes } : {}) }),
    )
    .parseAsync(process.argv)
    .catch((e: unknown) => {
      process.stderr.write(`loom-server: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exit(1);
    });
});
