/**
 * The server's main port, bound at process start, before the server's modules load (issue #26:
 * a server accepts connections within 100 ms of `exec`; the original's test harness connects
 * 0.25 s after starting `loom-server`). The addon binds it (`listenTcp`): Node's own `listen`
 * would first load `node:net` and the cluster module, 8-10 ms of CPU, while the addon is loaded
 * by the server anyway. From `listen` on, the kernel completes connections and holds them in the
 * backlog; once the server is ready it takes the socket into a `net.Server`
 * ({@link claimEarlyListener}), which accepts them. Nothing is answered or acted on before: a
 * connection accepted early is authenticated (TLS, handshake) and served exactly as one
 * accepted later. Only the addon is loaded here.
 */
import type { Server, Socket } from "node:net";
import { closeSync } from "node:fs";
import { native } from "../native.js";

/** A main port bound early: where, and its socket's file descriptor. */
interface Early {
  host: string;
  port: number;
  fd: number;
}

let early: Early | undefined;

/**
 * Binds `host:port` (0: any free port) now, for {@link claimEarlyListener}; false when it did
 * not. Only an IP address is bound early (a host name would need a lookup: the server resolves
 * and binds it itself). A failure (port in use, bad address, no addon) is kept silent: the
 * server listens itself later and reports it as always.
 */
export function listenEarly(host: string, port: number): boolean {
  if (early !== undefined) throw new Error("the main port is bound early once");
  try {
    early = { host, port, fd: native().listenTcp(host, port) };
    return true;
  } catch {
    return false;
  }
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
 * full may say otherwise: then it is closed, and the server listens itself), in a listening
 * `net.Server`; the connections it accepts wait for {@link EarlyListener.serve}. Claimed once.
 */
export async function claimEarlyListener(host: string, port: number): Promise<EarlyListener | undefined> {
  const e = early;
  early = undefined;
  if (e === undefined) return undefined;
  if (e.host !== host || e.port !== port) {
    closeSync(e.fd);
    return undefined;
  }
  const { createServer } = require("node:net") as typeof import("node:net");
  const server = createServer({ noDelay: true });
  const queued: Socket[] = [];
  const hold = (socket: Socket): void => {
    // A peer may reset before the server takes it: not an uncaught error.
    socket.on("error", ignore);
    queued.push(socket);
  };
  server.on("connection", hold);
  const listening = await new Promise<boolean>((resolve) => {
    server.once("error", () => resolve(false));
    server.listen({ fd: e.fd, backlog: 128 }, () => resolve(true));
  });
  const addr = server.address();
  if (!listening || addr === null || typeof addr !== "object") {
    // (Node closed the socket; the server's own listen reports what is wrong.)
    server.close();
    return undefined;
  }
  return {
    server,
    port: addr.port,
    serve(accept) {
      server.off("connection", hold);
      server.on("connection", accept);
      for (const s of queued) {
        s.off("error", ignore);
        // Gone before the server was ready: nothing to serve.
        if (!s.destroyed) accept(s);
      }
      queued.length = 0;
    },
  };
}

function ignore(): void {}
