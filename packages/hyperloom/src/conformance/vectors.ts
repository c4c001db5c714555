/**
 * The original HyperLoom's recorded transcripts (`test-data/vectors/`, copied from the shared
 * spec folder): loading, decoding with our protobufjs messages, and the equivalence the
 * conformance suites use (same type, fields and their presence, ids and symbols; ports compared as
 * "some port"; our dictionary may extend the recorded one).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { comm } from "../protocol/messages.js";

/** Where the vectors live, seen from `dist/conformance/*.js`. */
export const VECTORS_DIR = join(__dirname, "..", "..", "test-data", "vectors");

/** Every recorded scenario. */
export const SCENARIOS = [
  "hello",
  "collective",
  "gradual",
  "merge_delim",
  "split_get_slice",
  "array_make",
  "open_save",
  "open_save2",
  "run_stdin",
  "run_files",
  "run_outputs",
  "run_var",
  "run_fail",
  "stats",
  "release",
] as const;
export type Scenario = (typeof SCENARIOS)[number];

/** Protobuf message names used in the transcripts (`raw` is a data frame). */
export type MsgName = "Register" | "ClientRequest" | "ClientResponse" | "WorkerCommand" | "WorkerResponse" | "Announce" | "DataHeader";

/** One recorded frame. */
export interface RecFrame {
  conn: number;
  peer: "client" | "worker";
  dir: "to_server" | "from_server";
  seq: number;
  payload: Buffer;
  msg: MsgName | "raw";
  text: string;
  channel: string;
}

/** Loads a scenario's frames in recorded order. */
export function loadScenario(name: Scenario): RecFrame[] {
  const lines = readFileSync(join(VECTORS_DIR, `${name}.jsonl`), "utf8").split("\n").filter((l) => l.trim() !== "");
  return lines.map((l) => {
    const o = JSON.parse(l) as { conn: number; peer: "client" | "worker"; dir: "to_server" | "from_server"; seq: number; len: number; hex: string; msg: MsgName | "raw"; text: string; channel: string };
    const payload = Buffer.from(o.hex, "hex");
    if (payload.length !== o.len) throw new Error(`${name} seq ${o.seq}: len ${o.len} but ${payload.length} bytes`);
    return { conn: o.conn, peer: o.peer, dir: o.dir, seq: o.seq, payload, msg: o.msg, text: o.text, channel: o.channel };
  });
}

/** The recorded dictionary (`symbols.txt`), index = id. */
export const RECORDED_SYMBOLS: string[] = readFileSync(join(VECTORS_DIR, "symbols.txt"), "utf8")
  .split("\n")
  .filter((l) => l !== "")
  .map((l) => l.split("\t")[1]!);

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const types: Record<MsgName, { decode(b: Uint8Array): any; toObject(m: any, o: object): Record<string, any>; encode(m: any): { finish(): Uint8Array }; fromObject(o: object): any }> = {
  Register: comm.Register,
  ClientRequest: comm.ClientRequest,
  ClientResponse: comm.ClientResponse,
  WorkerCommand: comm.WorkerCommand,
  WorkerResponse: comm.WorkerResponse,
  Announce: comm.Announce,
  DataHeader: comm.DataHeader,
};

/** A decoded message as a plain object: present fields only, enums by name, bytes as latin1 text. */
export type Obj = Record<string, unknown>;

/** Decodes `payload` as message `name` (throws on malformed input). */
export function decode(name: MsgName, payload: Uint8Array): Obj {
  const T = types[name];
  return plain(T.toObject(T.decode(payload), { longs: Number, enums: String })) as Obj;
}

/** Encodes a plain object (as from protobufjs `create`, camelCase fields) as message `name`. */
export function encode(name: MsgName, obj: object): Buffer {
  const T = types[name];
  return Buffer.from(T.encode(T.fromObject(obj)).finish());
}

/** Decodes to a protobufjs message (for rewriting a field and re-encoding). */
export function decodeMessage(name: MsgName, payload: Uint8Array): Record<string, unknown> {
  return types[name].decode(payload) as Record<string, unknown>;
}

/** Re-encodes a protobufjs message obtained from {@link decodeMessage}. */
export function encodeMessage(name: MsgName, msg: Record<string, unknown>): Buffer {
  return Buffer.from(types[name].encode(msg).finish());
}

function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) return "bytes:" + Buffer.from(v).toString("latin1");
  if (Array.isArray(v)) return v.map(plain);
  if (v !== null && typeof v === "object") {
    const out: Obj = {};
    for (const k of Object.keys(v).sort()) out[k] = plain((v as Obj)[k]);
    return out;
  }
  return v;
}

/** Replaces every port inside a decoded message by `<port>` (ports are ephemeral). */
export function portless(name: MsgName, o: Obj): Obj {
  const c = structuredClone(o) as Obj;
  if ((name === "Register" || name === "Announce") && "port" in c) c.port = "<port>";
  if (name === "WorkerCommand" && typeof c.address === "string") c.address = c.address.replace(/:\d+$/, ":<port>");
  if (name === "ClientResponse" && c.error && typeof (c.error as Obj).worker === "string") {
    (c.error as Obj).worker = ((c.error as Obj).worker as string).replace(/:\d+$/, ":<port>");
  }
  return c;
}

/** Whether a decoded message is a symbol dictionary. */
export function isDictionary(o: Obj): boolean {
  return o.type === "DICTIONARY";
}

/** What our server announces to workers on their registration DICTIONARY (`server_features`). */
export const OUR_SERVER_FEATURES = ["leaving", "trace-marked", "transfer-failed"];

/**
 * Equivalence of a recorded message and ours. A dictionary of ours may extend the recorded one
 * (it must start with the recorded symbols, in order): the extra symbols are returned.
 * Returns `undefined` when equivalent, else a one-line explanation.
 */
export function difference(name: MsgName, recorded: Uint8Array, ours: Uint8Array, extras?: string[]): string | undefined {
  let r: Obj, o: Obj;
  r = portless(name, decode(name, recorded));
  try {
    o = portless(name, decode(name, ours));
  } catch (e) {
    return `ours does not decode as ${name}: ${(e as Error).message}`;
  }
  if (isDictionary(r) && isDictionary(o)) {
    const rs = r.symbols as string[];
    const os = (o.symbols as string[]) ?? [];
    for (let i = 0; i < rs.length; i++) {
      if (os[i] !== rs[i]) return `dictionary symbol ${i}: recorded '${rs[i]}', ours '${os[i]}'`;
    }
    extras?.push(...os.slice(rs.length));
    // Ours also lists what our server understands (WorkerCommand.server_features, field 123,
    // skipped by the original worker): exactly these, or none.
    const features = (o.serverFeatures as string[] | undefined) ?? [];
    if (features.length > 0 && JSON.stringify(features) !== JSON.stringify(OUR_SERVER_FEATURES)) return `dictionary server_features: ${JSON.stringify(features)}`;
    if (features.length > 0) extras?.push(...features.map((f) => `feature:${f}`));
    delete r.serverFeatures;
    delete o.serverFeatures;
    r = { ...r, symbols: "<checked>" };
    o = { ...o, symbols: "<checked>" };
  }
  const a = JSON.stringify(r);
  const b = JSON.stringify(o);
  return a === b ? undefined : `recorded ${a}\n      ours ${b}`;
}

/** A short text of a message for error reports. */
export function show(name: MsgName | "raw", payload: Uint8Array): string {
  if (name === "raw") return `raw ${payload.length} bytes ${JSON.stringify(Buffer.from(payload).toString("latin1"))}`;
  try {
    const o = decode(name, payload);
    if (isDictionary(o)) return `${name} DICTIONARY (${(o.symbols as string[]).length} symbols)`;
    return `${name} ${JSON.stringify(o)}`;
  } catch (e) {
    return `${name} <undecodable: ${(e as Error).message}> ${Buffer.from(payload).toString("hex")}`;
  }
}

/**
 * A unit of comparison on one connection: a message and, for DATA / DataHeader, the raw frames
 * that belong to it (they must follow it contiguously).
 */
export interface Unit {
  name: MsgName;
  payload: Buffer;
  raws: Buffer[];
  /** Recorded sequence number of the message (for causal waits); -1 for units we synthesise. */
  seq: number;
  /** Why this unit differs from the recording, if it was synthesised (a deliberate difference). */
  note?: string;
}

/** Groups a connection's recorded frames (already filtered to one connection and direction) into units. */
export function units(frames: RecFrame[]): Unit[] {
  const out: Unit[] = [];
  for (const f of frames) {
    if (f.msg === "raw") {
      const last = out[out.length - 1];
      if (last === undefined) throw new Error(`raw frame ${f.seq} without a header`);
      last.raws.push(f.payload);
    } else {
      out.push({ name: f.msg, payload: f.payload, raws: [], seq: f.seq });
    }
  }
  return out;
}

/** Number of raw frames that follow a DATA response or a DataHeader. */
export function rawCount(name: MsgName, payload: Uint8Array): number {
  if (name === "DataHeader") return Number(comm.DataHeader.decode(payload).nMessages);
  if (name === "ClientResponse") {
    const m = comm.ClientResponse.decode(payload);
    return m.type === comm.ClientResponse.Type.DATA ? Number(m.data!.nMessages) : 0;
  }
  return 0;
}

/**
 * Matches the units received on one connection against the recorded ones, in any order (the
 * recordings themselves are not repeatable in order; cause and effect is enforced by the
 * harness, which only answers what has been asked).
 */
export class Pool {
  readonly pending: Unit[];
  readonly consumed: Unit[] = [];
  readonly errors: string[] = [];
  readonly dictionaryExtras: string[] = [];

  constructor(
    readonly label: string,
    expected: Unit[],
  ) {
    this.pending = [...expected];
  }

  /** Takes a received unit; returns the recorded unit it matched, or undefined (an error is kept). */
  take(u: Unit): Unit | undefined {
    const reasons: string[] = [];
    for (let i = 0; i < this.pending.length; i++) {
      const e = this.pending[i]!;
      if (e.name !== u.name) continue;
      const d = difference(e.name, e.payload, u.payload, this.dictionaryExtras);
      if (d !== undefined) {
        reasons.push(d);
        continue;
      }
      if (e.raws.length !== u.raws.length || e.raws.some((r, k) => !r.equals(u.raws[k]!))) {
        reasons.push(`data frames differ: recorded ${e.raws.map((r) => show("raw", r)).join(", ")}; ours ${u.raws.map((r) => show("raw", r)).join(", ")}`);
        continue;
      }
      this.pending.splice(i, 1);
      this.consumed.push(e);
      return e;
    }
    this.errors.push(
      `${this.label}: unexpected ${show(u.name, u.payload)}${u.raws.length ? ` + ${u.raws.length} raw` : ""}` +
        (reasons.length ? `\n    closest candidates:\n      ${reasons.slice(0, 3).join("\n      ")}` : ""),
    );
    return undefined;
  }

  /** True once every recorded unit with a sequence number below `seq` has been received. */
  doneBefore(seq: number): boolean {
    return this.pending.every((u) => u.seq < 0 || u.seq >= seq);
  }

  /** A report of what is wrong (unexpected units, and recorded units never received). */
  problems(): string[] {
    return [...this.errors, ...this.pending.map((u) => `${this.label}: never received ${show(u.name, u.payload)}${u.note ? ` (${u.note})` : ""}`)];
  }
}
