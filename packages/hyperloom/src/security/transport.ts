/**
 * Where every role opens and accepts sockets: plain TCP or TLS, then the secret handshake, and
 * only then the role's own handlers. One hook per side, used by the server's main and data ports,
 * the worker's server connection, data port and peer connections, and the client.
 */
import { createServer as createNetServer, connect as netConnect, type Server, type Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { log } from "../log.js";
import type { Secret } from "./access-file.js";
import { acceptHandshake, connectHandshake, HANDSHAKE_TIMEOUT_MS, REFUSED } from "./handshake.js";
import type { TlsIdentity } from "./tls.js";
import type { EarlyListener } from "../server/early-listen.js";

/**
 * node:tls, loaded by the first TLS port or connection: without TLS (the default) a server or
 * worker never loads it, 6-16 ms less before it is ready (issue #26, startup).
 */
function tls(): typeof import("node:tls") {
  return require("node:tls") as typeof import("node:tls");
}

/** How a listening port protects itself. */
export interface ListenSecurity {
  /** Peers must prove they know it; absent: anyone may connect (`--insecure`, `loom-server`). */
  secret?: Secret;
  /** Encrypt with this identity; absent: plain TCP. */
  tls?: TlsIdentity;
  /** Deadline of TLS + authentication for a new connection (ms). Default 10 s. */
  handshakeTimeoutMs?: number;
}

/** How a connection is opened. */
export interface ConnectSecurity {
  /** Prove knowledge of this secret (and check the peer's proof); absent: open connection. */
  secret?: Secret;
  /**
   * Use TLS. `fingerprint` pins the peer's certificate (the server's, from the access file);
   * without it (worker to worker) the certificate is not checked, and the handshake's channel
   * binding is what defeats a man in the middle.
   */
  tls?: { fingerprint?: string };
  /** Deadline of connect + TLS + authentication (ms). Default 10 s. */
  timeoutMs?: number;
}

/**
 * Listens on `host:port`; calls `onPeer` for each connection only after it authenticated, with
 * the socket paused (it is resumed right after `onPeer` returns, so attach handlers there).
 * A peer that fails gets a refusal and is closed; one line is logged naming `what` and the cause.
 * `early`: a port already listening there (bound at process start): its connections, those it
 * accepted already included, go through the same TLS and authentication. `hold`: connections
 * wait (unanswered: no TLS, no handshake) until `open()` is called — the server writes its access
 * file in between, so whoever is answered can read the secret it is answered with.
 * `connections`: every connection open on the port, authenticated or not (a server that stops
 * ends them all: one that never sent a byte would otherwise keep `close` waiting).
 */
export async function listenSecure(
  what: string,
  host: string,
  port: number,
  security: ListenSecurity,
  onPeer: (socket: Socket) => void,
  early?: EarlyListener,
  hold = false,
): Promise<{ server: Server; port: number; connections: ReadonlySet<Socket>; open(): void }> {
  const timeoutMs = security.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS;
  const connections = new Set<Socket>();
  const track = (socket: Socket): void => {
    if (connections.has(socket)) return;
    connections.add(socket);
    socket.once("close", () => connections.delete(socket));
  };
  const accept = (socket: Socket): void => {
    socket.setNoDelay(true);
    const secret = security.secret;
    if (secret === undefined) {
      onPeer(socket);
      return;
    }
    const from = `${(socket.remoteAddress ?? "?").replace(/^::ffff:/, "")}:${socket.remotePort ?? "?"}`;
    acceptHandshake(socket, secret, timeoutMs).then(
      () => {
        onPeer(socket);
        socket.resume();
      },
      (e: Error) => {
        log("warn", `${what}: refused a connection from ${from}: ${e.message}`);
        socket.on("error", () => undefined);
        if (!socket.destroyed) socket.end(REFUSED);
        setTimeout(() => socket.destroy(), 1000).unref();
      },
    );
  };
  let server: Server;
  let accepting = accept;
  if (security.tls !== undefined) {
    server = tls().createServer({ cert: security.tls.cert, key: security.tls.key(), handshakeTimeout: timeoutMs, minVersion: "TLSv1.3" }, accept);
    server.on("tlsClientError", (e: NodeJS.ErrnoException, socket: TLSSocket) => {
      const from = socket.remoteAddress !== undefined ? `from ${socket.remoteAddress.replace(/^::ffff:/, "")}:${socket.remotePort}` : "(the peer already left)";
      log("warn", `${what}: refused a connection ${from}: ${tlsFailure(e)}`);
    });
    // A TLS server takes a plain connection it is handed as one it accepted itself.
    const tlsServer = server;
    accepting = (socket) => tlsServer.emit("connection", socket);
  } else {
    server = createNetServer({ noDelay: true }, accept);
  }
  // A plain connection taken over (early, or held): from here on as one the server accepted.
  const enter = (socket: Socket): void => {
    track(socket);
    socket.setNoDelay(true);
    accepting(socket);
  };
  let held: Socket[] | undefined = hold ? [] : undefined;
  const admit = (socket: Socket): void => {
    if (held === undefined) return enter(socket);
    track(socket);
    // A peer may reset while it waits: not an uncaught error.
    socket.on("error", ignore);
    held.push(socket);
  };
  const open = (): void => {
    const waiting = held ?? [];
    held = undefined;
    for (const s of waiting) {
      s.off("error", ignore);
      // Gone while it waited: nothing to serve.
      if (!s.destroyed) enter(s);
    }
  };
  if (early !== undefined) {
    early.serve(admit);
    return { server: early.server, port: early.port, connections, open };
  }
  let listener = server;
  if (hold) {
    // Held connections are plain ones: TLS, too, starts only once they are let in.
    listener = createNetServer({ noDelay: true }, admit);
  } else {
    // (A TLS server's "connection" is the plain socket under the TLS one: ending it ends both.)
    server.on("connection", track);
  }
  const bound = await new Promise<number>((resolve, reject) => {
    listener.once("error", reject);
    listener.listen({ port, host, backlog: 128 }, () => {
      listener.off("error", reject);
      const addr = listener.address();
      resolve(typeof addr === "object" && addr ? addr.port : port);
    });
  });
  return { server: listener, port: bound, connections, open };
}

function ignore(): void {}

/**
 * Connects to `host:port` (`peer` names it in errors, e.g. "server 127.0.0.1:9010"), with TLS
 * and the handshake as `security` says. Resolves with the socket paused once it may carry the
 * role's bytes: attach handlers, then `resume()`. Rejects with one clear line.
 */
export function connectSecure(peer: string, host: string, port: number, security: ConnectSecurity): Promise<Socket> {
  const timeoutMs = security.timeoutMs ?? HANDSHAKE_TIMEOUT_MS;
  return new Promise<Socket>((resolve, reject) => {
    const tlsOptions = security.tls;
    const socket: Socket =
      tlsOptions !== undefined
        ? tls().connect({ host, port, rejectUnauthorized: false, minVersion: "TLSv1.3", ...(isIp(host) ? {} : { servername: host }) })
        : netConnect({ host, port, noDelay: true });
    socket.setNoDelay(true);
    let settled = false;
    const timer = setTimeout(() => fail(new Error(`no answer within ${timeoutMs / 1000} s`)), timeoutMs);
    const fail = (e: NodeJS.ErrnoException): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      // The errno code (ECONNREFUSED, …) is kept for callers that word it for their role.
      reject(Object.assign(new Error(`cannot connect to ${peer}: ${e.message}`), e.code !== undefined ? { code: e.code } : {}));
    };
    const ready = (): void => {
      if (tlsOptions?.fingerprint !== undefined) {
        const got = (socket as TLSSocket).getPeerCertificate().fingerprint256;
        if (got !== tlsOptions.fingerprint) {
          fail(new Error("its TLS certificate is not the one pinned in the access file (another server, or a man in the middle)"));
          return;
        }
      }
      const secret = security.secret;
      const authenticated = secret === undefined ? Promise.resolve() : connectHandshake(socket, secret, peer, timeoutMs);
      authenticated.then(
        () => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          socket.pause();
          resolve(socket);
        },
        (e: Error) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          socket.destroy();
          reject(new Error(e.message.startsWith(peer) ? e.message : `cannot connect to ${peer}: ${e.message}`));
        },
      );
    };
    socket.once(tlsOptions !== undefined ? "secureConnect" : "connect", ready);
    socket.on("error", fail);
  });
}

/** One line for a failed TLS handshake of a peer (OpenSSL's messages span lines and name source files). */
export function tlsFailure(e: NodeJS.ErrnoException): string {
  const code = e.code ?? "";
  if (code === "ERR_SSL_WRONG_VERSION_NUMBER" || code === "ERR_SSL_HTTP_REQUEST" || /wrong version number|http request/i.test(e.message)) {
    return "it does not speak TLS (this port requires it: a peer without the access file's TLS fingerprint, or not a HyperLoom peer)";
  }
  if (code === "ECONNRESET" || /socket hang up/.test(e.message)) return "it closed the connection during the TLS handshake";
  if (code === "ERR_TLS_HANDSHAKE_TIMEOUT" || /handshake timeout/i.test(e.message)) return "its TLS handshake did not finish in time";
  const reason = /:SSL routines:[^:]*:([^:]+):/.exec(e.message)?.[1];
  return `TLS failed: ${reason ?? e.message.split("\n")[0]}`;
}

function isIp(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(":");
}
