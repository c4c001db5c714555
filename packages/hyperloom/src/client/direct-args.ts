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

/**
 * Where encodings are written: one block shared by many calls' configs (each a view of its
 * bytes), so a call costs one view and no array or allocation of its own (issue #26). A new
 * block is taken when the rest of this one is too small; old blocks live as long as a view.
 */
let slab = Buffer.allocUnsafeSlow(0);
/** Next free byte of {@link slab}. */
let slabAt = 0;
/**
 * Small enough that a function-task plan takes a new block within its first few hundred calls
 * (W5: every ~650), while `fastEncode` still runs unoptimized: its optimized code then knows the
 * refill. With 64 KiB the first refill came after the optimizing compile, which had never seen
 * it, and threw that code away (a recompile in a plan's first repetitions; issue #26).
 */
const SLAB_BYTES = 8 * 1024;
/** Largest fast encoding: version, array tag and length, MAX_FAST values of up to 2 + MAX_FAST bytes, end. */
const MAX_FAST_BYTES = 3 + 5 + MAX_FAST * (2 + MAX_FAST) + 2 + 5;

/** Writes `v` (0 <= v < 2^32) as an unsigned varint at `pos` of `b`; returns the end. */
function varint(b: Buffer, pos: number, v: number): number {
  while (v >= 0x80) {
    b[pos++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  b[pos++] = v;
  return pos;
}

/**
 * The fast encoding of `args[from..to)` (as the array of those), or undefined when it is not the
 * simple case.
 */
function fastEncode(args: readonly unknown[], from: number, to: number): Buffer | undefined {
  const n = to - from;
  if (n > MAX_FAST) return undefined;
  if (slabAt + MAX_FAST_BYTES > slab.length) {
    slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
    slabAt = 0;
  }
  const b = slab;
  const start = slabAt;
  b[start] = Tag.Version;
  b[start + 1] = VERSION;
  b[start + 2] = Tag.DenseArray;
  let pos = varint(b, start + 3, n);
  for (let i = from; i < to; i++) {
    const v = args[i];
    if (typeof v === "number") {
      if (Number.isInteger(v) && v > -SMALL_INT && v < SMALL_INT && !Object.is(v, -0)) {
        b[pos++] = Tag.Int32;
        pos = varint(b, pos, ((v << 1) ^ (v >> 31)) >>> 0);
      } else {
        b[pos++] = Tag.Double;
        b.writeDoubleLE(v, pos);
        pos += 8;
      }
    } else if (typeof v === "string") {
      const len = v.length;
      if (len > MAX_FAST) return undefined;
      b[pos++] = Tag.OneByteString;
      pos = varint(b, pos, len);
      for (let k = 0; k < len; k++) {
        const c = v.charCodeAt(k);
        if (c > 0xff) return undefined;
        b[pos++] = c;
      }
    } else if (v === true) b[pos++] = Tag.True;
    else if (v === false) b[pos++] = Tag.False;
    else if (v === null) b[pos++] = Tag.Null;
    else if (v === undefined) b[pos++] = Tag.Undefined;
    else return undefined;
  }
  b[pos++] = Tag.EndDenseArray;
  b[pos++] = 0;
  pos = varint(b, pos, n);
  slabAt = pos;
  return Buffer.from(b.buffer, b.byteOffset + start, pos - start);
}

/** Read position of {@link fastDecode} (module state: no closure per call, cheap before the JIT). */
let at = 0;

/** An unsigned varint of `b` at {@link at} (advanced), ending before `end`, or -1. */
function uvarint(b: Uint8Array, end: number): number {
  let v = 0;
  // A running factor, not `2 ** shift` (a call of pow for every byte).
  for (let mul = 1; mul < 2 ** 35; mul *= 128) {
    if (at >= end) return -1;
    const x = b[at++]!;
    v += (x & 0x7f) * mul;
    if (x < 0x80) return v;
  }
  return -1;
}

/**
 * The fast decoding of `b[start..end)` (all of `b` by default), or undefined when it is not the
 * simple case. Bounds rather than a view: a function thread reads the arguments of each call in
 * place in its batch's bytes (a view per call was ~15% of a thread's time; issue #26).
 */
function fastDecode(b: Uint8Array, start = 0, end = b.length): unknown[] | undefined {
  if (end - start < 6 || b[start] !== Tag.Version || b[start + 1] !== VERSION || b[start + 2] !== Tag.DenseArray) return undefined;
  at = start + 3;
  const n = uvarint(b, end);
  if (n < 0 || n > MAX_FAST) return undefined;
  const out: unknown[] = new Array(n);
  for (let i = 0; i < n; i++) {
    if (at >= end) return undefined;
    switch (b[at++]) {
      case Tag.Int32: {
        const z = uvarint(b, end);
        if (z < 0) return undefined;
        out[i] = z % 2 === 0 ? z / 2 : -(z + 1) / 2;
        break;
      }
      case Tag.Double:
        if (at + 8 > end) return undefined;
        out[i] = new DataView(b.buffer, b.byteOffset + at, 8).getFloat64(0, true);
        at += 8;
        break;
      case Tag.OneByteString: {
        const len = uvarint(b, end);
        if (len < 0 || at + len > end) return undefined;
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
  if (at + 2 > end || b[at] !== Tag.EndDenseArray || b[at + 1] !== 0) return undefined;
  at += 2;
  if (uvarint(b, end) !== n || at !== end) return undefined;
  return out;
}

/** Whether this Node's V8 writes the simple case exactly as {@link fastEncode} does (then it is used). */
export const fastOk = ((): boolean => {
  const sample = [0, 1, -7, 70000, -(2 ** 29), 1.5, -0, "ab", "\u00e9", "", true, false, null, undefined];
  const mine = fastEncode(sample, 0, sample.length);
  return mine !== undefined && mine.equals(serialize(sample));
})();

/** `v8.serialize(args)` (throws what it throws). */
export function encodeDirectArgs(args: readonly unknown[]): Buffer {
  return (fastOk ? fastEncode(args, 0, args.length) : undefined) ?? serialize(args);
}

/** `v8.serialize(args.slice(0, n))` without the slice when it is the simple case (throws what it throws). */
export function encodeLeadingArgs(args: readonly unknown[], n: number): Buffer {
  return (fastOk ? fastEncode(args, 0, n) : undefined) ?? serialize(args.slice(0, n));
}

/** `v8.deserialize(bytes)` of direct arguments (throws what it throws). */
export function decodeDirectArgs(bytes: Uint8Array): unknown {
  return (fastOk ? fastDecode(bytes) : undefined) ?? deserialize(bytes);
}

/** {@link decodeDirectArgs} of `b[start..end)`, with no view made in the simple case. */
export function decodeDirectArgsAt(b: Buffer, start: number, end: number): unknown {
  return (fastOk ? fastDecode(b, start, end) : undefined) ?? deserialize(b.subarray(start, end));
}
