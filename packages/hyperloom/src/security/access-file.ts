/**
 * The access file: where a server is (host, port), the secret its peers prove they know, and the
 * fingerprint of its TLS certificate when it encrypts (HyperQueue's access file is the model).
 * `hyperloom server` writes it (mode 0600); workers, clients and `hyperloom local` read it. The
 * file is refused when other users may read it, and the secret never appears in logs or errors.
 */
import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { inspect } from "node:util";

/** Bytes of a generated secret. */
const SECRET_BYTES = 32;

/** The environment variable naming an access file. */
export const ACCESS_FILE_ENV = "HYPERLOOM_ACCESS_FILE";

/** The access file of a server started without `--access-file`: `~/.hyperloom/access.json`. */
export function defaultAccessFilePath(): string {
  return join(homedir(), ".hyperloom", "access.json");
}

/**
 * A shared secret. It prints as `[secret]` (in `console.log`, `util.inspect`, JSON), so passing
 * it along in an object can never put it in a log line by accident.
 */
export class Secret {
  readonly #bytes: Buffer;

  constructor(bytes: Buffer) {
    if (bytes.length < 16) throw new AccessFileError("a secret must have at least 16 bytes");
    this.#bytes = Buffer.from(bytes);
  }

  /** A new random secret. */
  static generate(): Secret {
    // node:crypto at first use: a server or worker without a secret (`--insecure`, the
    // original's commands) never loads it (issue #26, startup).
    return new Secret((require("node:crypto") as typeof import("node:crypto")).randomBytes(SECRET_BYTES));
  }

  /** The key for HMAC (only the handshake reads it). */
  key(): Buffer {
    return this.#bytes;
  }

  /** Hex form, only for writing the access file. */
  toHex(): string {
    return this.#bytes.toString("hex");
  }

  toString(): string {
    return "[secret]";
  }

  toJSON(): string {
    return "[secret]";
  }

  [inspect.custom](): string {
    return "[secret]";
  }
}

/** What an access file says. */
export interface Access {
  /** Host name or address where clients and workers reach the server. */
  host: string;
  /** The server's main port. */
  port: number;
  /** The secret every connection proves it knows. */
  secret: Secret;
  /** SHA-256 fingerprint (`AB:CD:…`) of the server's TLS certificate; absent: no TLS. */
  tlsFingerprint?: string;
  /** The dashboard's URL with its token (`…/?token=…`), when the server serves one. */
  dashboard?: string;
}

/**
 * Whether two readings of an access file let a peer in alike: same address, secret and
 * certificate (both absent: alike). A restarted server writes a new secret, and answers nobody
 * before it has: a peer refused with one reading connects again if a second reading differs.
 */
export function sameAccess(a: Access | undefined, b: Access | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.host === b.host && a.port === b.port && a.secret.key().equals(b.secret.key()) && a.tlsFingerprint === b.tlsFingerprint;
}

/** An access file that cannot be read or used. */
export class AccessFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AccessFileError";
  }
}

/**
 * Writes an access file readable by its owner only (mode 0600, the folder 0700 when created):
 * written to a temporary name first and renamed, so no reader sees half a file.
 */
export function writeAccessFile(path: string, access: Access): void {
  const file = resolve(path);
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const body = {
    version: 1,
    host: access.host,
    port: access.port,
    secret: access.secret.toHex(),
    ...(access.tlsFingerprint !== undefined ? { tls: { fingerprint: access.tlsFingerprint } } : {}),
    ...(access.dashboard !== undefined ? { dashboard: access.dashboard } : {}),
  };
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(body, null, 2) + "\n", { mode: 0o600 });
  chmodSync(tmp, 0o600); // a leftover temporary file keeps its old mode when overwritten
  renameSync(tmp, file);
}

/**
 * Removes the access file of a server that stops, if it is still its own (`secret`): a file
 * another server has written there since is left alone. A missing file is fine.
 */
export function removeAccessFile(path: string, secret: Secret): void {
  try {
    const body = JSON.parse(readFileSync(path, "utf8")) as { secret?: unknown };
    if (body.secret === secret.toHex()) rmSync(path, { force: true });
  } catch {
    // gone or unreadable: nothing of ours to remove
  }
}

/**
 * Reads an access file. Refuses one that users other than the owner may read or write (the
 * secret would not be a secret), naming the `chmod` that fixes it.
 */
export function readAccessFile(path: string): Access {
  const file = resolve(path);
  let mode: number;
  let text: string;
  try {
    mode = statSync(file).mode;
    text = readFileSync(file, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new AccessFileError(
      code === "ENOENT" ? `access file ${file} does not exist (is the server running? see --access-file and ${ACCESS_FILE_ENV})` : `cannot read access file ${file}: ${code ?? (e as Error).message}`,
    );
  }
  if (process.platform !== "win32" && (mode & 0o077) !== 0) {
    throw new AccessFileError(
      `access file ${file} has mode ${(mode & 0o777).toString(8).padStart(4, "0")}: other users could read its secret; it must be readable by its owner only (chmod 600 ${file})`,
    );
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new AccessFileError(`access file ${file} is not valid JSON`);
  }
  const b = body as { version?: unknown; host?: unknown; port?: unknown; secret?: unknown; tls?: { fingerprint?: unknown }; dashboard?: unknown };
  if (b.version !== 1) throw new AccessFileError(`access file ${file} has an unknown version (expected 1)`);
  if (typeof b.host !== "string" || b.host === "") throw new AccessFileError(`access file ${file}: 'host' must be a non-empty string`);
  if (typeof b.port !== "number" || !Number.isInteger(b.port) || b.port < 1 || b.port > 65535) {
    throw new AccessFileError(`access file ${file}: 'port' must be a port number`);
  }
  if (typeof b.secret !== "string" || !/^[0-9a-f]{32,}$/.test(b.secret) || b.secret.length % 2 !== 0) {
    // Never echo the value: it may be a real secret with a typo.
    throw new AccessFileError(`access file ${file}: 'secret' must be at least 32 hexadecimal digits`);
  }
  const access: Access = { host: b.host, port: b.port, secret: new Secret(Buffer.from(b.secret, "hex")) };
  if (b.tls !== undefined && b.tls !== null) {
    const f = b.tls.fingerprint;
    if (typeof f !== "string" || !/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/.test(f)) {
      throw new AccessFileError(`access file ${file}: 'tls.fingerprint' must be a SHA-256 fingerprint (AB:CD:…)`);
    }
    access.tlsFingerprint = f;
  }
  if (typeof b.dashboard === "string") access.dashboard = b.dashboard;
  return access;
}

/**
 * The access file a client or worker uses: the one given, else `HYPERLOOM_ACCESS_FILE`, else the
 * default place if a file is there. `undefined`: none (the connection is open, and a server that
 * requires authentication refuses it with a message saying so).
 */
export function findAccessFile(given?: string): string | undefined {
  if (given !== undefined && given !== "") return given;
  const env = process.env[ACCESS_FILE_ENV];
  if (env !== undefined && env !== "") return env;
  const def = defaultAccessFilePath();
  try {
    statSync(def);
    return def;
  } catch {
    return undefined;
  }
}

/**
 * The access of a connection to `host:port` (either may be undefined: take it from the file):
 * the file given or named by `HYPERLOOM_ACCESS_FILE` is always used (its errors are thrown); the
 * default file only when it is readable and for that port (else the connection is open).
 */
export function accessFor(host: string | undefined, port: number | undefined, given?: string): Access | undefined {
  const path = findAccessFile(given);
  if (path === undefined) return undefined;
  const chosen = (given ?? "") !== "" || (process.env[ACCESS_FILE_ENV] ?? "") !== "";
  if (chosen || port === undefined) return readAccessFile(path);
  let a: Access;
  try {
    a = readAccessFile(path);
  } catch {
    return undefined; // the default file of some other server; this connection is open
  }
  return namesAddress(a, host, port) ? a : undefined;
}

/**
 * Whether `a` is the access of the server at `host:port` (`host` undefined: any host): the same
 * port, and the same host or both loopback or both not (a server's file names the address it was
 * told to listen on, a peer may name it otherwise).
 */
export function namesAddress(a: Access, host: string | undefined, port: number): boolean {
  return a.port === port && (host === undefined || host === a.host || isLoopback(host) === isLoopback(a.host));
}

function isLoopback(host: string): boolean {
  return host === "localhost" || host.startsWith("127.") || host === "::1";
}
