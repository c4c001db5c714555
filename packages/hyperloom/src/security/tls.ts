/**
 * TLS identities (certificate + private key) of the ports that encrypt: given as files
 * (`--tls-cert`/`--tls-key`) or a self-signed certificate generated in memory (the `selfsigned`
 * library; the key is never written anywhere). Peers pin the server's certificate by its SHA-256
 * fingerprint from the access file instead of trusting a CA.
 */
import { readFileSync } from "node:fs";
import { inspect } from "node:util";

/** A certificate and its private key. The key never prints (`[private key]`). */
export class TlsIdentity {
  readonly #key: string | Buffer;

  constructor(
    /** PEM certificate (chain). */
    readonly cert: string | Buffer,
    key: string | Buffer,
  ) {
    this.#key = key;
  }

  /** The private key, for `tls.createServer` only. */
  key(): string | Buffer {
    return this.#key;
  }

  /** SHA-256 fingerprint of the (first) certificate, `AB:CD:…` as Node prints it. */
  get fingerprint(): string {
    return new (require("node:crypto") as typeof import("node:crypto")).X509Certificate(this.cert).fingerprint256;
  }

  toJSON(): string {
    return `[TLS identity ${this.fingerprint}]`;
  }

  [inspect.custom](): string {
    return this.toJSON();
  }
}

/** Reads a PEM certificate and key; errors name the file, never print its content. */
export function loadTlsIdentity(certPath: string, keyPath: string): TlsIdentity {
  const read = (path: string, what: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (e) {
      throw new Error(`cannot read the TLS ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  };
  const id = new TlsIdentity(read(certPath, "certificate"), read(keyPath, "key"));
  try {
    void id.fingerprint;
  } catch {
    throw new Error(`the TLS certificate ${certPath} is not a PEM certificate`);
  }
  return id;
}

/** A new self-signed certificate (ECDSA P-256, SHA-256, valid ten years) named `commonName`. */
export async function selfSignedIdentity(commonName = "hyperloom"): Promise<TlsIdentity> {
  // Loaded when first needed: only servers and workers that encrypt pay for it.
  const { generate } = await import("selfsigned");
  const now = new Date();
  const pems = await generate([{ name: "commonName", value: commonName }], {
    keyType: "ec",
    curve: "P-256",
    algorithm: "sha256",
    notBeforeDate: new Date(now.getTime() - 60_000),
    notAfterDate: new Date(now.getTime() + 3650 * 86_400_000),
  });
  return new TlsIdentity(pems.cert, pems.private);
}
