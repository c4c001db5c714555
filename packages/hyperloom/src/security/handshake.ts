/**
 * The challenge–response every authenticated connection starts with, before any byte reaches a
 * role's code. Both sides prove they know the shared secret (HMAC-SHA256 over fresh nonces of
 * both sides); the secret never crosses the wire, and a recorded handshake replayed later fails
 * because the acceptor's nonce is new. Over TLS the proofs also cover the TLS session's exported
 * keying material, so a man in the middle holding two TLS sessions cannot relay them.
 *
 * ```
 * connector -> acceptor   "HLAUTH1\n" Nc(32)
 * acceptor  -> connector  "HLAUTH1\n" Na(32) HMAC(k, "A" Nc Na cb)
 * connector -> acceptor   HMAC(k, "C" Nc Na cb)   (or "HLAUTHNO" + 24 zero bytes: the acceptor's proof was wrong)
 * acceptor  -> connector  "HLAUTHOK" | "HLAUTHNO"
 * ```
 * An acceptor buffers at most 40 bytes of an unauthenticated peer; more is refused.
 */
import type * as Crypto from "node:crypto";
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import type { Secret } from "./access-file.js";

const MAGIC = Buffer.from("HLAUTH1\n");
/** The answer of a side that refuses; also what an acceptor sends a peer that did not authenticate. */
export const REFUSED = Buffer.from("HLAUTHNO");
const OK = Buffer.from("HLAUTHOK");
const NONCE = 32;
const MAC = 32;
/** The connector's "your proof was wrong" in place of its own proof. */
const REFUSED_PROOF = Buffer.concat([REFUSED, Buffer.alloc(MAC - REFUSED.length)]);

const NOT_AUTHENTICATING = "it did not authenticate (a client or worker without the server's access file, or not a HyperLoom peer)";

/** How long an unauthenticated connection may take to authenticate, by default. */
export const HANDSHAKE_TIMEOUT_MS = 10_000;

/** A failed authentication; the message is the one line to show (it never contains the secret). */
export class AuthError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AuthError";
  }
}

/** Reads exact byte counts from a socket during the handshake, keeping what arrives after. */
class ExactReader {
  private buf: Buffer = Buffer.alloc(0);
  private want = 0;
  private waiter: { resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  private failure: Error | undefined;
  /** Bytes beyond what the handshake asked for (only possible on the connector's side). */
  extra: Buffer = Buffer.alloc(0);

  constructor(
    private readonly socket: Socket,
    private readonly maxBuffered: number,
  ) {
    socket.on("data", this.onData);
    socket.on("error", this.onError);
    socket.on("close", this.onClose);
    socket.resume();
  }

  private readonly onData = (chunk: Buffer): void => {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    if (this.buf.length > this.maxBuffered) {
      const n = Math.min(MAGIC.length, this.buf.length);
      this.fail(new AuthError(this.buf.subarray(0, n).equals(MAGIC.subarray(0, n)) ? "it sent data before authenticating" : NOT_AUTHENTICATING));
      return;
    }
    this.deliver();
  };

  private readonly onError = (e: Error): void => this.fail(new AuthError(`connection failed during authentication: ${e.message}`));
  private readonly onClose = (): void => this.fail(new AuthError("the connection closed during authentication"));

  private fail(e: Error): void {
    this.failure ??= e;
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(this.failure);
  }

  private deliver(): void {
    if (this.waiter === undefined || this.buf.length < this.want) return;
    const out = this.buf.subarray(0, this.want);
    this.buf = this.buf.subarray(this.want);
    const w = this.waiter;
    this.waiter = undefined;
    w.resolve(out);
  }

  read(n: number): Promise<Buffer> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.want = n;
      this.waiter = { resolve, reject };
      this.deliver();
    });
  }

  /** Stops reading: the socket is paused, anything read beyond the handshake is kept in `extra`. */
  detach(): void {
    this.socket.pause();
    this.socket.off("data", this.onData);
    this.socket.off("error", this.onError);
    this.socket.off("close", this.onClose);
    this.extra = this.buf;
  }
}

/** TLS exported keying material binding the proofs to this TLS session (empty without TLS). */
function channelBinding(socket: Socket): Buffer {
  const tls = socket as TLSSocket;
  return typeof tls.exportKeyingMaterial === "function" && tls.encrypted ? tls.exportKeyingMaterial(32, "EXPORTER-hyperloom-auth", Buffer.alloc(0)) : Buffer.alloc(0);
}

/**
 * node:crypto, loaded by the first handshake: a role that authenticates nothing (`--insecure`,
 * the original's `loom-server`/`loom-worker`) starts without it (issue #26, startup).
 */
function crypto(): typeof Crypto {
  return require("node:crypto") as typeof Crypto;
}

function proof(secret: Secret, side: "A" | "C", nc: Buffer, na: Buffer, cb: Buffer): Buffer {
  return crypto().createHmac("sha256", secret.key()).update(side).update(nc).update(na).update(cb).digest();
}

function withDeadline<T>(p: Promise<T>, ms: number, socket: Socket): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new AuthError(`authentication did not complete within ${ms / 1000} s`));
      socket.destroy();
    }, ms);
  });
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

/**
 * The acceptor's side. Resolves once the peer has proven it knows the secret, with the socket
 * paused and nothing of it read beyond the handshake. Rejects with an {@link AuthError} saying
 * why; the caller tells the peer ({@link REFUSED}) and closes the socket.
 */
export function acceptHandshake(socket: Socket, secret: Secret, timeoutMs = HANDSHAKE_TIMEOUT_MS): Promise<void> {
  const reader = new ExactReader(socket, MAGIC.length + NONCE);
  const run = async (): Promise<void> => {
    // The magic first, on its own: a peer that sends a frame instead is refused at once.
    if (!(await reader.read(MAGIC.length)).equals(MAGIC)) {
      throw new AuthError(NOT_AUTHENTICATING);
    }
    const nc = Buffer.from(await reader.read(NONCE));
    const na = crypto().randomBytes(NONCE);
    const cb = channelBinding(socket);
    socket.write(Buffer.concat([MAGIC, na, proof(secret, "A", nc, na, cb)]));
    const answer = await reader.read(MAC);
    if (answer.equals(REFUSED_PROOF)) throw new AuthError("it holds a different secret (an access file of another server?)");
    if (!crypto().timingSafeEqual(answer, proof(secret, "C", nc, na, cb))) {
      throw new AuthError("wrong proof of the secret (a different secret, or a replayed handshake)");
    }
    socket.write(OK);
  };
  return withDeadline(run(), timeoutMs, socket).finally(() => reader.detach());
}

/**
 * The connector's side; `peer` names the other end in errors (e.g. "server 10.0.0.1:9010").
 * Resolves once both sides are authenticated, with the socket paused and any bytes the acceptor
 * sent after the handshake put back (`unshift`), so the caller attaches its handlers and resumes.
 */
export function connectHandshake(socket: Socket, secret: Secret, peer: string, timeoutMs = HANDSHAKE_TIMEOUT_MS): Promise<void> {
  const reader = new ExactReader(socket, Number.MAX_SAFE_INTEGER);
  const run = async (): Promise<void> => {
    const nc = crypto().randomBytes(NONCE);
    socket.write(Buffer.concat([MAGIC, nc]));
    const first = await reader.read(REFUSED.length).catch((e: Error) => {
      throw new AuthError(`${e.message} (a --tls server whose certificate this access file does not name, i.e. an old access file; a server started with --insecure; or not HyperLoom?)`);
    });
    if (first.equals(REFUSED)) throw new AuthError(`${peer} refused the connection: it requires authentication`);
    if (!first.equals(MAGIC)) throw new AuthError(`${peer} did not answer the authentication (is it a HyperLoom server started with --insecure, or not HyperLoom at all?)`);
    const rest = await reader.read(NONCE + MAC);
    const na = Buffer.from(rest.subarray(0, NONCE));
    const cb = channelBinding(socket);
    if (!crypto().timingSafeEqual(rest.subarray(NONCE), proof(secret, "A", nc, na, cb))) {
      socket.write(REFUSED_PROOF);
      throw new AuthError(`${peer} did not prove it holds our secret (an access file of another server, or a man in the middle)`);
    }
    socket.write(proof(secret, "C", nc, na, cb));
    const verdict = await reader.read(OK.length);
    if (!verdict.equals(OK)) throw new AuthError(`${peer} refused our proof of the secret`);
  };
  return withDeadline(run(), timeoutMs, socket).finally(() => {
    reader.detach();
    if (reader.extra.length > 0) socket.unshift(reader.extra);
  });
}
