/**
 * The server process: accepts clients and workers on the main port and workers' data streams on
 * the data port. Every byte of the main port goes to the Rust core, which answers with the framed
 * bytes to write; this layer only moves bytes between sockets and the core.
 */
import { createServer, type Server as NetServer, type Socket } from "node:net";
import { native, type ServerCore, type ServerOutput } from "../native.js";
import { log } from "../log.js";
import { relayDataStreams } from "./data-relay.js";
import { ClientWriter } from "./client-writer.js";
import { WaitingWarnings } from "./waiting.js";

/** Options of {@link startServer}. */
export interface ServerOptions {
  /** Main port; 0 picks a free one. Default 9010. */
  port?: number;
  /** Listen address. Default `0.0.0.0` (as the original); tests use `127.0.0.1`. */
  host?: string;
}

/** A running server. */
export interface RunningServer {
  /** The main port. */
  port: number;
  /** The data port (workers push fetched results here). */
  dataPort: number;
  /** Stops listening and closes every connection. */
  close(): Promise<void>;
}

/** Starts a server; resolves once both ports listen. */
export async function startServer(options: ServerOptions = {}): Promise<RunningServer> {
  const host = options.host ?? "0.0.0.0";
  const sockets = new Map<number, Socket>();
  const writers = new Map<number, ClientWriter>();
  let nextConn = 1;
  let core: ServerCore | undefined;

  const apply = (out: ServerOutput): void => {
    for (const l of out.logs) log(l.level, l.message);
    for (const w of out.writes) writers.get(w.conn)?.write(w.data);
    for (const c of out.close) {
      const s = sockets.get(c);
      if (s) {
        sockets.delete(c);
        writers.delete(c);
        s.end();
        s.destroySoon();
      }
    }
    if (out.terminate) {
      log("info", "Terminate requested by a client; exiting");
      core!.traceFlush();
      const pending = [...sockets.values()].map((s) => new Promise<void>((r) => s.end(r)));
      void Promise.race([Promise.all(pending), new Promise((r) => setTimeout(r, 500))]).then(() => process.exit(0));
    }
  };

  /** Runs a core call and applies its output; a core error is logged, never fatal. */
  const safely = (f: () => ServerOutput, what: string): void => {
    let out: ServerOutput;
    try {
      out = f();
    } catch (e) {
      log("error", `${what}: ${(e as Error).message}`);
      return;
    }
    apply(out);
  };

  const dataServer = createServer({ noDelay: true }, (socket) => {
    relayDataStreams(socket, {
      onHeader: (header) => core!.onDataHeader(header),
      clientWriter: (conn) => writers.get(conn),
    });
  });
  const dataPort = await listen(dataServer, 0, host);
  core = new (native().ServerCore)(dataPort);

  const main = createServer({ noDelay: true }, (socket) => {
    const conn = nextConn++;
    sockets.set(conn, socket);
    writers.set(conn, new ClientWriter(socket));
    const ip = (socket.remoteAddress ?? "127.0.0.1").replace(/^::ffff:/, "");
    safely(() => core!.onConnect(conn, ip), `connection ${conn}`);
    socket.on("data", (chunk: Buffer) => {
      let out: ServerOutput;
      try {
        out = core!.onData(conn, chunk);
      } catch (e) {
        // The core turns bad input into closed connections; anything else is a bug of ours,
        // still confined to the connection that triggered it.
        log("error", `connection ${conn}: ${(e as Error).message}; closing it`);
        socket.destroy();
        return;
      }
      apply(out);
    });
    socket.on("error", (e) => log("debug", `connection ${conn}: ${e.message}`));
    socket.on("close", () => {
      sockets.delete(conn);
      writers.delete(conn);
      safely(() => core!.onClose(conn), `closing connection ${conn}`);
    });
  });
  const port = await listen(main, options.port ?? 9010, host);
  // Tracing: the core writes its trace out at least once a second.
  const traceTimer = setInterval(() => safely(() => core!.traceTick(), "trace"), 1000).unref();
  // Work that cannot make progress (no worker, or none able to run it) is said, not silent.
  const waiting = new WaitingWarnings(`hyperloom worker ${host === "0.0.0.0" ? "<this host>" : host} ${port}`);
  const waitingTimer = setInterval(() => {
    for (const line of waiting.observe(Date.now(), core!.waiting())) log("warn", line);
  }, 1000).unref();
  return {
    port,
    dataPort,
    close: async () => {
      clearInterval(traceTimer);
      clearInterval(waitingTimer);
      core!.traceFlush();
      for (const s of sockets.values()) s.destroy();
      await Promise.all([closeServer(main), closeServer(dataServer)]);
    },
  };
}

function listen(server: NetServer, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ port, host, backlog: 128 }, () => {
      const addr = server.address();
      resolve(typeof addr === "object" && addr ? addr.port : port);
    });
  });
}

function closeServer(server: NetServer): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}
