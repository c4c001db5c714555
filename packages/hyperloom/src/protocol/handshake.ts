/**
 * The opening of a main-port connection, shared by the client and the worker: connect, send
 * `Register`, and wait for the server's first frame (the symbol dictionary, spec section 1.3),
 * within a time limit. Anything else — a refused connection, a peer that says nothing, a first
 * frame that is not a dictionary (a web server, the server's data port) — is one line that says
 * what is wrong and what to do. The socket is opened through the security layer (TLS and the
 * secret's challenge–response, when the access file asks for them) before `Register` is sent.
 */
import type { Socket } from "node:net";
import { ACCESS_FILE_ENV, defaultAccessFilePath } from "../security/access-file.js";
import { REFUSED } from "../security/handshake.js";
import { connectSecure, type ConnectSecurity } from "../security/transport.js";

/** How long connecting plus the handshake may take by default (ms). */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

/** The largest first frame accepted: a dictionary is a few KiB; megabytes mean another protocol. */
const MAX_FIRST_FRAME = 16 << 20;

/** What the handshake needs. */
export interface HandshakeOptions {
  host: string;
  port: number;
  /** The framed `Register` message to send once connected. */
  register: Buffer;
  /** Whether the first frame's payload is the dictionary this role expects. */
  isDictionary: (payload: Buffer) => boolean;
  /** Limit for connecting, authenticating and receiving the dictionary (ms). */
  timeoutMs: number;
  /** A first frame that is not the dictionary but a refusal the peer explains: its message (the handshake fails with it). */
  refusal?: (payload: Buffer) => string | undefined;
  /** Secret and TLS (from the access file); none: the open protocol. */
  security?: ConnectSecurity;
}

/** A connection whose handshake succeeded. The socket is paused: attach a data handler, then resume it. */
export interface Greeted {
  socket: Socket;
  /** The dictionary frame's payload. */
  dictionary: Buffer;
  /** Every byte received so far (the dictionary frame with its prefix, and what followed it). */
  received: Buffer;
}

/** The one line for a peer that does not speak the protocol. */
export function notAServer(address: string, why?: string): string {
  return `${address} is not a HyperLoom server${why ? ` (${why})` : ""} — is 'hyperloom server' running there?`;
}

/** Connects, registers and waits for the dictionary; rejects with an `Error` of one line. */
export function handshake(options: HandshakeOptions): Promise<Greeted> {
  const address = `${options.host}:${options.port}`;
  return new Promise((resolve, reject) => {
    let socket: Socket | undefined;
    let connected = false;
    let settled = false;
    const chunks: Buffer[] = [];
    let buffered = 0;
    const fail = (message: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket?.destroy();
      reject(new Error(message));
    };
    const seconds = `${Math.round(options.timeoutMs / 100) / 10} s`;
    const timer = setTimeout(() => {
      fail(connected ? notAServer(address, `no answer to the handshake within ${seconds}`) : `cannot connect to ${address}: no answer within ${seconds}`);
    }, options.timeoutMs);
    const greet = (socket: Socket): void => {
      socket.on("data", (chunk: Buffer) => {
        if (settled) return;
        chunks.push(chunk);
        buffered += chunk.length;
        if (buffered < 8) return;
        const all = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, buffered);
        if (all.subarray(0, 8).equals(REFUSED)) {
          return fail(`${address} requires authentication and no access file was given (${ACCESS_FILE_ENV}, --access-file, or ${defaultAccessFilePath()})`);
        }
        const length = all.readUInt32LE(4) * 2 ** 32 + all.readUInt32LE(0);
        if (length === 0 || length > MAX_FIRST_FRAME) return fail(notAServer(address));
        if (buffered < 8 + length) return;
        const payload = all.subarray(8, 8 + length);
        let ok = false;
        try {
          ok = options.isDictionary(payload);
        } catch {
          ok = false;
        }
        if (!ok) {
          let why: string | undefined;
          try {
            why = options.refusal?.(payload);
          } catch {
            why = undefined;
          }
          return fail(why ?? notAServer(address));
        }
        settled = true;
        clearTimeout(timer);
        socket.pause();
        socket.removeAllListeners("data");
        socket.removeAllListeners("error");
        socket.removeAllListeners("close");
        resolve({ socket, dictionary: payload, received: all });
      });
      socket.on("error", (e: NodeJS.ErrnoException) => fail(notAServer(address, e.message)));
      // A --tls port closes a plain connection without a word: say that it may be one.
      socket.on("close", () => fail(notAServer(address, "it closed the connection; a server started with --tls needs its access file")));
      socket.write(options.register);
      socket.resume();
    };
    connectSecure(address, options.host, options.port, { ...options.security, timeoutMs: options.timeoutMs }).then(
      (s) => {
        if (settled) return void s.destroy();
        socket = s;
        connected = true;
        greet(s);
      },
      (e: Error & { code?: string }) => {
        if (e.code === "ECONNREFUSED") fail(`cannot connect to ${address}: connection refused — is 'hyperloom server' running there?`);
        else fail(e.message);
      },
    );
  });
}
