/** The server and worker roles as the commands run them (shared by `hyperloom`, `loom-server`, `loom-worker`). */
import { cpus as machineCpus } from "node:os";
import { startServer } from "../server/server.js";
import { startWorker } from "../worker/worker.js";
import { setLogLevel, log } from "../log.js";

/** Runs a server until it is terminated. */
export async function serverMain(opts: { port: number; host: string; debug?: boolean }): Promise<void> {
  if (opts.debug) setLogLevel("debug");
  const s = await startServer({ port: opts.port, host: opts.host });
  log("info", `HyperLoom server listening on ${opts.host}:${s.port} (data port ${s.dataPort})`);
  const stop = (): void => {
    void s.close().then(() => process.exit(0));
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  stopWithParent(stop);
}

/** Runs a worker until its server goes away. */
export async function workerMain(
  host: string,
  port: number,
  opts: { cpus: number; wdir: string; nopin?: boolean; debug?: boolean; host?: string; extension?: string[]; python?: string },
): Promise<void> {
  if (opts.debug) setLogLevel("debug");
  const w = await startWorker({
    serverHost: host,
    serverPort: port,
    cpus: opts.cpus > 0 ? opts.cpus : machineCpus().length,
    wdir: opts.wdir,
    pin: !opts.nopin,
    ...(opts.host ? { host: opts.host } : {}),
    extensions: opts.extension ?? [],
    ...(opts.python !== undefined ? { python: opts.python } : {}),
  });
  const stop = (): void => {
    w.close();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  stopWithParent(stop);
  await w.done;
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
