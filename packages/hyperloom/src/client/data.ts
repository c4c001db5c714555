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
 * Collects the frames of a streamed data object (`frames` of them, as its `DataHeader` says)
 * straight from the connection's bytes into one buffer, noting where each frame starts: no
 * Buffer, call or array slot per frame while they arrive. Used for arrays (a million tiny items
 * at W1), whose items {@link StreamedFrames.decode} then makes as `subarray`s of that buffer
 * (issue #26).
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
   * @param limit Largest frame accepted (bytes; at most 2^32 - 1: items are read with 32-bit lengths).
   */
  constructor(
    private readonly frames: number,
    sizeHint: number,
    private readonly limit: number = 2 ** 32 - 1,
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
   * The object, once {@link done}. An array whose items are all plain data is a plain `Array`
   * of Buffers over the collected bytes (a `subarray` each: no byte copied); anything else is
   * what {@link decodeData} makes of the frames.
   */
  decode(typeId: number, typeName: (id: number) => string | undefined): DataValue {
    if (typeName(typeId) === Symbol.TYPE_ARRAY && this.frames > 1) {
      const types = this.frame(0);
      const n = types.length / 4;
      if (n === this.frames - 1 && allPlain(types, typeName)) {
        const items: Buffer[] = new Array(n);
        const b = this.bytes;
        const at = this.at;
        for (let i = 0; i < n; i++) {
          const p = at[i + 1]!;
          items[i] = b.subarray(p + 8, p + 8 + b.readUInt32LE(p));
        }
        return items;
      }
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
