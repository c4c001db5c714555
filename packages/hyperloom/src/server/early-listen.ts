/**
 * The server's main port, bound at process start, before the server's modules load (issue #26:
 * a server accepts connections within 100 ms of `exec`; the original's test harness connects
 * 0.25 s after starting `loom-server`). From `listen` on, the kernel completes connections and
 * holds them; this module keeps the connections Node accepts meanwhile (their first bytes wait in
 * the socket's buffer) and hands them to the server once it is ready ({@link claimEarlyListener}).
 * Nothing is answered or acted on before: a connection accepted early is authenticated (TLS,
 * handshake) and served exactly as one accepted later. Only `node:net` is loaded here.
 */
import { createServer, type Server, type Socket } from "node:net";

/** A main port bound early: where, and the connections accepted before the server took it. */
interface Early {
  host: string;
  port: number;
  server: Server;
  queued: Socket[];
  /** True once listening; false if the bind failed (the server's own listen then says why). */
  bound: Promise<boolean>;
  hold: (socket: Socket) => void;
}

let early: Early | undefined;

/**
 * Binds `host:port` (0: any free port) now, for {@link claimEarlyListener}, and calls `done` once
 * it listens or failed to. A failure (port in use, bad address) is kept silent: the server
 * listens itself later and reports it as always.
 */
export function listenEarly(host: string, port: number, done: () => void): void {
  if (early !== undefined) throw new Error("the main port is bound early once");
  const server = createServer({ noDelay: true });
  const queued: Socket[] = [];
  const hold = (socket: Socket): void => {
    // A peer may reset before the server takes it: not an uncaught error.
    socket.on("error", ignore);
    queued.push(socket);
  };
  server.on("connection", hold);
  const bound = new Promise<boolean>((resolve) => {
    const settle = (ok: boolean): void => {
      server.off("error", failed);
      resolve(ok);
      done();
    };
    const failed = (): void => settle(false);
    server.once("error", failed);
    server.listen({ host, port, backlog: 128 }, () => settle(true));
  });
  early = { host, port, server, queued, bound, hold };
}

/** A main port bound early, claimed by the server. */
export interface EarlyListener {
  /** The listening server (closing it closes the port). */
  server: Server;
  /** The port it listens on. */
  port: number;
  /** Routes the connections accepted so far, then every later one, to `accept`. */
  serve(accept: (socket: Socket) => void): void;
}

/**
 * The main port bound early, if it was bound on exactly `host:port` (the command line parsed in
 * full may say otherwise: then it is closed, and the server listens itself). Claimed once.
 */
export async function claimEarlyListener(host: string, port: number): Promise<EarlyListener | undefined> {
  const e = early;
  early = undefined;
  if (e === undefined) return undefined;
  if (!(await e.bound)) return undefined;
  const addr = e.server.address();
  if (e.host !== host || e.port !== port || addr === null || typeof addr !== "object") {
    await new Promise<void>((r) => e.server.close(() => r()));
    for (const s of e.queued) s.destroy();
    return undefined;
  }
  return {
    server: e.server,
    port: addr.port,
    serve(accept) {
      e.server.off("connection", e.hold);
      e.server.on("connection", accept);
      for (const s of e.queued) {
        s.off("error", ignore);
        // Gone before the server was ready: nothing to serve.
        if (!s.destroyed) accept(s);
      }
      e.queued.length = 0;
    },
  };
}

function ignore(): void {}
