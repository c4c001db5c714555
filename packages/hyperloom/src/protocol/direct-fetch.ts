/**
 * What the two ends of a direct fetch (`fetch-direct`, our extension: a client fetching a result
 * from the data port of the worker holding it; docs/protocol-extensions.md) agree on besides the
 * messages of `proto/comm.proto`.
 */
import { readFileSync } from "node:fs";

/**
 * Whether the first bytes of a data connection open a direct fetch: its first frame is a
 * `DirectFetch`, whose first field (100) is keyed `0xa0 0x06`; a peer's `Announce` begins with
 * field 1 (`0x08`). Undefined: fewer than 9 bytes arrived.
 */
export function opensDirectFetch(first: Buffer): boolean | undefined {
  if (first.length < 9) return undefined;
  return first[8] === 0xa0;
}

/** This host and user as `DirectFetch.host` says them: `<boot id>:<uid>` ("" when unknown). */
export function hostKey(): string {
  try {
    const boot = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
    return boot !== "" && typeof process.getuid === "function" ? `${boot}:${process.getuid()}` : "";
  } catch {
    return "";
  }
}
