/**
 * The direct arguments of a function task (its config): `v8.serialize` of the argument array,
 * read on the worker by `v8.deserialize`. The common case — a short array of small integers,
 * numbers, one-byte strings, booleans, null or undefined — is written and read here in the
 * same bytes V8 uses (its serialization format, version 15), several times cheaper than
 * creating V8's serializer for every call (issue #26: that was most of a client's cost per
 * small call). Anything else, and every value on a Node whose V8 writes these values otherwise
 * (checked once at load), goes through `node:v8`.
 */
import { deserialize, serialize } from "node:v8";

/** Tags of V8's value serializer (v8/src/objects/value-serializer.cc). */
const Tag = {
  Version: 0xff,
  DenseArray: 0x41, // 'A'
  EndDenseArray: 0x24, // '$'
  Int32: 0x49, // 'I' (zig-zag varint)
  Double: 0x4e, // 'N'
  OneByteString: 0x22, // '"'
  True: 0x54, // 'T'
  False: 0x46, // 'F'
  Null: 0x30, // '0'
  Undefined: 0x5f, // '_'
} as const;
const VERSION = 15;
/** Integers V8 stores as a small integer on every build (31-bit with pointer compression). */
const SMALL_INT = 2 ** 30;
/** Arrays and strings longer than this go through `node:v8`. */
const MAX_FAST = 64;

function varint(out: number[], v: number): void {
  while (v >= 0x80) {
    out.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  out.push(v);
}

/** The fast encoding of `args`, or undefined when it is not the simple case. */
function fastEncode(args: readonly unknown[]): Buffer | undefined {
  if (args.length > MAX_FAST) return undefined;
  const out: number[] = [Tag.Version, VERSION, Tag.DenseArray];
  varint(out, args.length);
  for (const v of args) {
    if (typeof v === "number") {
      if (Number.isInteger(v) && v > -SMALL_INT && v < SMALL_INT && !Object.is(v, -0)) {
        out.push(Tag.Int32);
        varint(out, ((v << 1) ^ (v >> 31)) >>> 0);
      } else {
        out.push(Tag.Double);
        const d = Buffer.allocUnsafe(8);
        d.writeDoubleLE(v);
        for (const b of d) out.push(b);
      }
    } else if (typeof v === "string") {
      if (v.length > MAX_FAST) return undefined;
      out.push(Tag.OneByteString);
      varint(out, v.length);
      for (let i = 0; i < v.length; i++) {
        const c = v.charCodeAt(i);
        if (c > 0xff) return undefined;
        out.push(c);
      }
    } else if (v === true) out.push(Tag.True);
    else if (v === false) out.push(Tag.False);
    else if (v === null) out.push(Tag.Null);
    else if (v === undefined) out.push(Tag.Undefined);
    else return undefined;
  }
  out.push(Tag.EndDenseArray, 0);
  varint(out, args.length);
  return Buffer.from(out);
}

/** Read position of {@link fastDecode} (module state: no closure per call, cheap before the JIT). */
let at = 0;

/** An unsigned varint of `b` at {@link at} (advanced), or -1. */
function uvarint(b: Uint8Array): number {
  let v = 0;
  for (let shift = 0; shift < 35; shift += 7) {
    if (at >= b.length) return -1;
    const x = b[at++]!;
    v += (x & 0x7f) * 2 ** shift;
    if (x < 0x80) return v;
  }
  return -1;
}

/** The fast decoding of `b`, or undefined when it is not the simple case. */
function fastDecode(b: Uint8Array): unknown[] | undefined {
  if (b.length < 6 || b[0] !== Tag.Version || b[1] !== VERSION || b[2] !== Tag.DenseArray) return undefined;
  at = 3;
  const n = uvarint(b);
  if (n < 0 || n > MAX_FAST) return undefined;
  const out: unknown[] = new Array(n);
  for (let i = 0; i < n; i++) {
    if (at >= b.length) return undefined;
    switch (b[at++]) {
      case Tag.Int32: {
        const z = uvarint(b);
        if (z < 0) return undefined;
        out[i] = z % 2 === 0 ? z / 2 : -(z + 1) / 2;
        break;
      }
      case Tag.Double:
        if (at + 8 > b.length) return undefined;
        out[i] = new DataView(b.buffer, b.byteOffset + at, 8).getFloat64(0, true);
        at += 8;
        break;
      case Tag.OneByteString: {
        const len = uvarint(b);
        if (len < 0 || at + len > b.length) return undefined;
        out[i] = String.fromCharCode.apply(null, b.subarray(at, at + len) as unknown as number[]);
        at += len;
        break;
      }
      case Tag.True:
        out[i] = true;
        break;
      case Tag.False:
        out[i] = false;
        break;
      case Tag.Null:
        out[i] = null;
        break;
      case Tag.Undefined:
        out[i] = undefined;
        break;
      default:
        return undefined;
    }
  }
  if (at + 2 > b.length || b[at] !== Tag.EndDenseArray || b[at + 1] !== 0) return undefined;
  at += 2;
  if (uvarint(b) !== n || at !== b.length) return undefined;
  return out;
}

/** Whether this Node's V8 writes the simple case exactly as {@link fastEncode} does (then it is used). */
export const fastOk = ((): boolean => {
  const sample = [0, 1, -7, 70000, -(2 ** 29), 1.5, -0, "ab", "\u00e9", "", true, false, null, undefined];
  const mine = fastEncode(sample);
  return mine !== undefined && mine.equals(serialize(sample));
})();

/** `v8.serialize(args)` (throws what it throws). */
export function encodeDirectArgs(args: readonly unknown[]): Buffer {
  return (fastOk ? fastEncode(args) : undefined) ?? serialize(args);
}

/** `v8.deserialize(bytes)` of direct arguments (throws what it throws). */
export function decodeDirectArgs(bytes: Uint8Array): unknown {
  return (fastOk ? fastDecode(bytes) : undefined) ?? deserialize(bytes);
}
