/**
 * Decoding of fetched data objects: the frames that follow a `DATA` response, by type
 * (spec 4.5): plain data is one frame, an array is a frame of item type ids then each item.
 */
import { deserialize } from "node:v8";
import { Symbol } from "../protocol/symbols.js";
import { LoomError } from "./errors.js";

/** A fetched result: bytes, a JavaScript value (from `jsValue`/`ctx.wrap`), or an array of those. */
export type DataValue = Buffer | DataValue[] | unknown;

/**
 * Decodes one object of type `typeId` from `frames` starting at `pos`.
 * Returns the value and the position after it.
 */
export function decodeData(
  typeId: number,
  frames: Buffer[],
  pos: number,
  typeName: (id: number) => string | undefined,
): [DataValue, number] {
  const name = typeName(typeId);
  const frame = frames[pos];
  if (frame === undefined) throw new LoomError(`data stream ended early (type ${name ?? typeId})`);
  switch (name) {
    case Symbol.TYPE_DATA:
      return [frame, pos + 1];
    case Symbol.TYPE_JS_OBJ:
      return [deserialize(frame), pos + 1];
    case Symbol.TYPE_PYOBJ:
      // A pickled Python object: we cannot unpickle it, so the bytes are the result.
      return [frame, pos + 1];
    case Symbol.TYPE_ARRAY: {
      const n = frame.length / 4;
      // Many plain items: the same view as a streamed array gets (StreamedFrames.decode).
      if (n >= VIEW_MIN_ITEMS && pos + 1 + n <= frames.length && allPlain(frame, typeName)) {
        const first = pos + 1;
        return [plainArrayView(n, (i) => frames[first + i]!), first + n];
      }
      const items: DataValue[] = new Array(n);
      let p = pos + 1;
      // Plain items (W1's million merges) are their frame: taken without a call each (#26).
      let plain = -1;
      for (let i = 0; i < n; i++) {
        const t = frame.readInt32LE(i * 4);
        if (t === plain && p < frames.length) {
          items[i] = frames[p++];
          continue;
        }
        const [v, next] = decodeData(t, frames, p, typeName);
        if (plain < 0 && typeName(t) === Symbol.TYPE_DATA) plain = t;
        items[i] = v;
        p = next;
      }
      return [items, p];
    }
    case Symbol.TYPE_INDEX: {
      // [i32 base type][(n+1) u64 offsets], then the base: returned as its pieces.
      const baseType = frame.readInt32LE(0);
      const [base, next] = decodeData(baseType, frames, pos + 1, typeName);
      if (!Buffer.isBuffer(base)) throw new LoomError("index over a non-plain object");
      const n = (frame.length - 4) / 8 - 1;
      const pieces: Buffer[] = new Array(n);
      for (let i = 0; i < n; i++) {
        const a = Number(frame.readBigUInt64LE(4 + i * 8));
        const b = Number(frame.readBigUInt64LE(12 + i * 8));
        pieces[i] = base.subarray(a, b);
      }
      return [pieces, next];
    }
    default:
      throw new LoomError(`cannot decode data of type ${name ?? typeId}`);
  }
}

/**
 * Arrays of at least this many items, all plain data, are returned as a {@link plainArrayView}
 * (issue #26: a Buffer per item of a million-item array cost ~300 ns each, most of it the GC
 * copying them). Smaller ones are plain arrays of Buffers.
 */
export const VIEW_MIN_ITEMS = 1024;

/** Where Node's `util.inspect` (and so `console.log`) looks for a custom view. */
const inspectCustom = globalThis.Symbol.for("nodejs.util.inspect.custom");

/**
 * Methods of `Array.prototype` that read every item of an array and never return it:
 * {@link plainArrayView} runs them on its target. Those that read a few (`at`, `slice`, `find`,
 * `some`, ...) go through its traps and make only what they read.
 */
const READING_METHODS = new Set([
  "entries", "filter", "flat", "flatMap", "forEach", "includes", "indexOf", "join", "lastIndexOf", "map", "reduce", "reduceRight",
  "toLocaleString", "toString", "values",
]);

/** `key` as an array index (a canonical decimal integer below 2^32 - 1), or -1. */
function indexKey(key: string): number {
  const n = key.length;
  if (n === 0 || n > 10) return -1;
  let c = key.charCodeAt(0) - 48;
  if (c < 0 || c > 9 || (c === 0 && n > 1)) return -1;
  let v = c;
  for (let i = 1; i < n; i++) {
    c = key.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return -1;
    v = v * 10 + c;
  }
  return v < 4294967295 ? v : -1;
}

/**
 * An array of `n` Buffers whose item `i` is made by `item(i)` when first read, then kept (so
 * `a[i] === a[i]`). It is a real `Array` to every reader — `Array.isArray`, `instanceof
 * Array`, `length`, indexing, iteration, spread, every `Array.prototype` method, `JSON.stringify`,
 * `console.log` — through a `Proxy` whose traps make items on demand; writing to it, deleting
 * or listing its keys first makes every item, after which it is an ordinary array behind the
 * proxy; iterating it or calling a method that reads every item (`map`, `forEach`, `join`,
 * `indexOf`, ...) makes every item and runs on that array. What differs from a literal array: `structuredClone`,
 * `v8.serialize` and `postMessage` refuse a proxy (`Array.from(a)` or `[...a]` is a plain copy);
 * the callbacks of its methods see the array behind the proxy as their third argument, and an
 * index read costs ~0.1-0.25 µs (a proxy's trap) instead of ~15 ns: iterate (`for...of`, `map`)
 * rather than index in a hot loop.
 */
export function plainArrayView(n: number, item: (i: number) => Buffer): Buffer[] {
  const target: Buffer[] = new Array<Buffer>(n);
  let whole = false;
  const makeAll = (): void => {
    if (whole) return;
    whole = true;
    for (let i = 0; i < n; i++) if (target[i] === undefined) target[i] = item(i);
  };
  // `util.inspect` shows a proxy's target without calling its traps: the target shows its items.
  Object.defineProperty(target, inspectCustom, {
    value: (_depth: number, options: object, inspect: (v: unknown, o: object) => string): string => {
      makeAll();
      return inspect(target.slice(), options);
    },
    enumerable: false,
  });
  // Iteration and the reading methods run on the target once every item is made: at an
  // array's speed, not a trap or two per item.
  const bulk = new Map<string | symbol, unknown>();
  const view: Buffer[] = new Proxy(target, {
    get(t, key, receiver) {
      if (typeof key === "string") {
        if (!whole) {
          const i = indexKey(key);
          if (i >= 0) return i < n ? (t[i] ?? (t[i] = item(i))) : undefined;
        }
        if (!READING_METHODS.has(key)) return Reflect.get(t, key, receiver);
      } else if (key !== globalThis.Symbol.iterator) {
        return Reflect.get(t, key, receiver);
      }
      const method = Reflect.get(t, key, receiver) as (...args: unknown[]) => unknown;
      if (method !== (Array.prototype as unknown as Record<string | symbol, unknown>)[key]) return method;
      let f = bulk.get(key);
      if (f === undefined) {
        f = (...args: unknown[]): unknown => {
          makeAll();
          return method.apply(t, args);
        };
        bulk.set(key, f);
      }
      return f;
    },
    has(t, key) {
      if (!whole && typeof key === "string") {
        const i = indexKey(key);
        if (i >= 0) return i < n;
      }
      return Reflect.has(t, key);
    },
    set(t, key, value, receiver) {
      makeAll();
      return Reflect.set(t, key, value, receiver === view ? t : receiver);
    },
    defineProperty(t, key, desc) {
      makeAll();
      return Reflect.defineProperty(t, key, desc);
    },
    deleteProperty(t, key) {
      makeAll();
      return Reflect.deleteProperty(t, key);
    },
    ownKeys(t) {
      makeAll();
      return Reflect.ownKeys(t);
    },
    getOwnPropertyDescriptor(t, key) {
      makeAll();
      return Reflect.getOwnPropertyDescriptor(t, key);
    },
    preventExtensions(t) {
      makeAll();
      return Reflect.preventExtensions(t);
    },
  });
  return view;
}

/**
 * Collects the frames of a streamed data object (`frames` of them, as its `DataHeader` says)
 * straight from the connection's bytes into one buffer, noting where each frame starts: no
 * Buffer per frame. Used for arrays, whose million items would otherwise each be a Buffer
 * before being decoded (issue #26).
 */
export class StreamedFrames {
  private bytes: Buffer;
  /** Bytes of `bytes` filled. */
  private filled = 0;
  /** Where the next frame's length prefix is (all before it are complete). */
  private scan = 0;
  /** Offset of each complete frame's length prefix in `bytes`. */
  private readonly at: Float64Array;
  private count = 0;

  /**
   * @param frames Frames of the object.
   * @param sizeHint Expected bytes of the frames' payloads (a first allocation; grown as needed).
   * @param limit Largest frame accepted (bytes).
   */
  constructor(
    private readonly frames: number,
    sizeHint: number,
    private readonly limit: number = 2 ** 32,
  ) {
    this.at = new Float64Array(frames);
    this.bytes = Buffer.allocUnsafe(Math.max(64 * 1024, Math.min(8 * frames + sizeHint, 2 ** 31)));
  }

  /** True once every frame has arrived. */
  get done(): boolean {
    return this.count === this.frames;
  }

  /**
   * Takes bytes from the connection; returns those after the object's last frame (an empty
   * view while more are needed). Throws `LoomError` for a frame over the limit.
   */
  push(chunk: Buffer): Buffer {
    if (this.filled + chunk.length > this.bytes.length) {
      let size = this.bytes.length * 2;
      while (size < this.filled + chunk.length) size *= 2;
      const next = Buffer.allocUnsafe(size);
      this.bytes.copy(next, 0, 0, this.filled);
      this.bytes = next;
    }
    chunk.copy(this.bytes, this.filled);
    this.filled += chunk.length;
    const b = this.bytes;
    const at = this.at;
    let pos = this.scan;
    let count = this.count;
    const frames = this.frames;
    const filled = this.filled;
    while (count < frames && filled - pos >= 8) {
      const len = b.readUInt32LE(pos) + b.readUInt32LE(pos + 4) * 2 ** 32;
      if (len > this.limit) throw new LoomError(`frame of ${len} bytes exceeds the limit of ${this.limit} bytes`);
      if (filled - pos - 8 < len) break;
      at[count++] = pos;
      pos += 8 + len;
    }
    this.scan = pos;
    this.count = count;
    if (count < frames) return chunk.subarray(chunk.length);
    // Done: what lies past the last frame belongs to the next reply.
    const extra = filled - pos;
    this.filled = pos;
    return chunk.subarray(chunk.length - extra);
  }

  /** Payload of frame `i` (once it has arrived). */
  frame(i: number): Buffer {
    const p = this.at[i]!;
    return this.bytes.subarray(p + 8, p + 8 + this.bytes.readUInt32LE(p));
  }

  /**
   * The object, once {@link done}: an array of {@link VIEW_MIN_ITEMS} or more plain items as a
   * {@link plainArrayView} over the collected bytes, anything else as {@link decodeData} makes it.
   */
  decode(typeId: number, typeName: (id: number) => string | undefined): DataValue {
    const name = typeName(typeId);
    if (name === Symbol.TYPE_ARRAY && this.frames > VIEW_MIN_ITEMS) {
      const types = this.frame(0);
      const n = types.length / 4;
      if (n === this.frames - 1 && allPlain(types, typeName)) return plainArrayView(n, (i) => this.frame(i + 1));
    }
    const frames: Buffer[] = new Array(this.frames);
    for (let i = 0; i < this.frames; i++) frames[i] = this.frame(i);
    return decodeData(typeId, frames, 0, typeName)[0];
  }
}

/** True when every type id in `types` (i32 little-endian each) is plain data. */
function allPlain(types: Buffer, typeName: (id: number) => string | undefined): boolean {
  const n = types.length >>> 2;
  if (n === 0) return false;
  const plain = types.readInt32LE(0);
  if (typeName(plain) !== Symbol.TYPE_DATA) return false;
  for (let i = 1; i < n; i++) if (types.readInt32LE(4 * i) !== plain) return false;
  return true;
}
