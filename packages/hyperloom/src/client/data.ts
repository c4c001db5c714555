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
      if (n === 0) return [items, pos + 1];
      // The first item here, the others in a loop of their own: the array takes its final kind
      // here (a first store of an object changes it), not in the loop's compiled code, and the
      // loop has nothing before it, so the code V8 compiles while one result is decoded is not
      // thrown away at the next result's first item (issue #26).
      const first = frame.readInt32LE(0);
      const [v, next] = decodeData(first, frames, pos + 1, typeName);
      items[0] = v;
      return [items, decodeItems(frame, frames, next, typeName, items, typeName(first) === Symbol.TYPE_DATA ? first : -1)];
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
 * Items 1.. of an array (`frame`: their type ids) from `frames` at `p`, into `items`; returns the
 * position after them. Plain items (W1's million merges) are their frame: taken without a call
 * each (#26) once `plain`, the type id of plain data, is known.
 */
function decodeItems(frame: Buffer, frames: Buffer[], p: number, typeName: (id: number) => string | undefined, items: DataValue[], plain: number): number {
  for (let i = 1; i < items.length; i++) {
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
  return p;
}

/**
 * Collects the frames of a streamed data object (`frames` of them, as its `DataHeader` says) as
 * they arrive: each frame is a view (`subarray`) of the connection's chunk it lies in; only a frame
 * split across chunks is copied (into a buffer of its own size). No buffer of the whole object is
 * allocated or copied into, and the Buffers of an array's items are made while the rest is still
 * on its way (a million tiny items at W1: issue #26). {@link StreamedFrames.decode} then returns
 * the items of an all-plain array as they are, a plain `Array` of Buffers.
 */
export class StreamedFrames {
  /** Frame 0 (an array's item types) once complete. */
  private first: Buffer | undefined;
  /** Frames 1.. once complete (an array's items). */
  private readonly rest: Buffer[];
  /** Complete frames. */
  private count = 0;
  /** The 8-byte length prefix of a frame split across chunks (`headFill` bytes of it so far). */
  private readonly head = Buffer.alloc(8);
  private headFill = 0;
  /** The payload of a frame split across chunks (`partFill` bytes of it so far). */
  private part: Buffer | undefined;
  private partFill = 0;

  /**
   * @param frames Frames of the object.
   * @param _sizeHint Expected bytes of the frames' payloads (unused: no buffer of the whole object is made).
   * @param limit Largest frame accepted (bytes; at most 2^32 - 1: lengths are read as 32-bit with a zero high word).
   */
  constructor(
    private readonly frames: number,
    _sizeHint: number,
    private readonly limit: number = 2 ** 32 - 1,
  ) {
    this.rest = new Array<Buffer>(Math.max(frames - 1, 0));
  }

  /** True once every frame has arrived. */
  get done(): boolean {
    return this.count === this.frames;
  }

  /** Frame `i` is complete. */
  private add(f: Buffer): void {
    const i = this.count++;
    if (i === 0) this.first = f;
    else this.rest[i - 1] = f;
  }

  /** The payload length in the prefix at `b[pos]`; throws `LoomError` over the limit. */
  private length(b: Buffer, pos: number): number {
    const len = b.readUInt32LE(pos) + b.readUInt32LE(pos + 4) * 2 ** 32;
    if (len > this.limit) throw new LoomError(`frame of ${len} bytes exceeds the limit of ${this.limit} bytes`);
    return len;
  }

  /**
   * Takes bytes from the connection (kept: the frames are views of them, so they must not be
   * reused); returns those after the object's last frame (an empty view while more are needed).
   * Throws `LoomError` for a frame over the limit.
   */
  push(chunk: Buffer): Buffer {
    const end = chunk.length;
    let pos = 0;
    while (this.count < this.frames && pos < end) {
      if (this.part !== undefined) {
        // The rest of a split frame's payload.
        const n = Math.min(this.part.length - this.partFill, end - pos);
        chunk.copy(this.part, this.partFill, pos, pos + n);
        this.partFill += n;
        pos += n;
        if (this.partFill === this.part.length) {
          this.add(this.part);
          this.part = undefined;
        }
        continue;
      }
      if (this.headFill > 0 || end - pos < 8) {
        // A length prefix split across chunks.
        const n = Math.min(8 - this.headFill, end - pos);
        chunk.copy(this.head, this.headFill, pos, pos + n);
        this.headFill += n;
        pos += n;
        if (this.headFill < 8) break;
        this.headFill = 0;
        const len = this.length(this.head, 0);
        if (len === 0) this.add(Buffer.alloc(0));
        else {
          this.part = Buffer.allocUnsafe(len);
          this.partFill = 0;
        }
        continue;
      }
      // Whole frames where they lie (the common case): a view each.
      const frames = this.frames;
      let count = this.count;
      while (count < frames && end - pos >= 8) {
        const len = chunk.readUInt32LE(pos) + chunk.readUInt32LE(pos + 4) * 2 ** 32;
        if (len > this.limit) throw new LoomError(`frame of ${len} bytes exceeds the limit of ${this.limit} bytes`);
        const stop = pos + 8 + len;
        if (stop > end) break;
        const f = chunk.subarray(pos + 8, stop);
        if (count === 0) this.first = f;
        else this.rest[count - 1] = f;
        count++;
        pos = stop;
      }
      this.count = count;
      if (count < frames && end - pos >= 8) {
        // A frame that starts here and ends in a later chunk: its payload is copied.
        const len = this.length(chunk, pos);
        this.part = Buffer.allocUnsafe(len);
        this.partFill = 0;
        pos += 8;
      }
    }
    // Done: what lies past the last frame belongs to the next reply.
    return chunk.subarray(this.count < this.frames ? end : pos);
  }

  /** Payload of frame `i` (once it has arrived). */
  frame(i: number): Buffer {
    return (i === 0 ? this.first : this.rest[i - 1])!;
  }

  /**
   * The object, once {@link done}. An array whose items are all plain data is a plain `Array`
   * of Buffers over the received bytes (a view each: no byte copied but for items split across
   * chunks); anything else is what {@link decodeData} makes of the frames.
   */
  decode(typeId: number, typeName: (id: number) => string | undefined): DataValue {
    if (typeName(typeId) === Symbol.TYPE_ARRAY && this.frames > 1) {
      const types = this.first!;
      if (types.length / 4 === this.frames - 1 && allPlain(types, typeName)) return this.rest;
    }
    return decodeData(typeId, [this.first!, ...this.rest], 0, typeName)[0];
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
