/**
 * The process of a client script run by `hyperloom local` (`node script-runner.js SCRIPT ...`):
 * imports the script, prints an uncaught HyperLoom error as one line (other errors with their
 * source-mapped stack), and once the script has finished — its top level done, nothing but
 * HyperLoom connections keeping the process alive, nothing awaiting them — warns about the
 * clients it left open and closes them, so `local` does not wait forever.
 */
import { basename, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { openClients } from "../client/client.js";

const script = resolve(process.argv[2]!);
const name = basename(script);
// The script sees itself as the program: `process.argv[1]` is its path, its own arguments follow.
process.argv.splice(1, 2, script);

function report(e: unknown): void {
  const error = e instanceof Error ? e : new Error(String(e));
  // HyperLoom's own errors (cannot connect, task failed, ...) say all there is to say.
  const ours = error.name === "LoomError" || error.name === "TaskFailed";
  process.stderr.write(ours ? `${name}: ${error.message}\n` : `${error.stack ?? error.message}\n`);
  process.exit(1);
}

process.on("uncaughtException", report);

/** Handles that may stay open in a finished script: the standard output and error streams. */
const STDIO = new Set(["TTYWrap", "PipeWrap"]);

/** True when only the open clients' sockets (and stdout/stderr) keep the process alive and nothing awaits them. */
function onlyIdleClients(): boolean {
  const clients = openClients();
  if (clients.size === 0) return false;
  for (const c of clients) if (c._awaited()) return false;
  let sockets = 0;
  let stdio = 0;
  for (const r of process.getActiveResourcesInfo()) {
    if (r === "TCPSocketWrap") sockets++;
    else if (STDIO.has(r)) stdio++;
    else return false;
  }
  return sockets <= clients.size && stdio <= 2;
}

function watchForOpenClients(): void {
  let idleChecks = 0;
  const timer = setInterval(() => {
    idleChecks = onlyIdleClients() ? idleChecks + 1 : 0;
    // Two checks in a row (~0.5 s) so a script between two awaits is not taken for finished.
    if (idleChecks < 2) return;
    clearInterval(timer);
    const clients = [...openClients()];
    process.stderr.write(
      `hyperloom local: ${name} finished but left ${clients.length === 1 ? "a client" : `${clients.length} clients`} connected; closing (end the script with 'await client.close()')\n`,
    );
    for (const c of clients) c._destroy();
  }, 250);
  timer.unref();
}

import(pathToFileURL(script).href).then(watchForOpenClients, report);
