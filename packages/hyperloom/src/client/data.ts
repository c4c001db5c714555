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
