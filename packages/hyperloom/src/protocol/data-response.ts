/**
 * A fast path for the commonest response of a gather: `ClientResponse{DATA, data: DataHeader}`.
 * protobufjs decodes a DataHeader's int64 `n_messages` through a Long object per response; a
 * gather of 100,000 futures reads 100,000 of them, so the client scans this one shape itself and
 * leaves every other response (and any DATA with further fields) to the generated decoder.
 */

/** The fields of a DATA response's header. */
export interface DataResponseHeader {
  id: number;
  nMessages: number;
  typeId: number;
}

/** `ClientResponse.type` DATA. */
const DATA = 1;

/**
 * Scans `payload` as `ClientResponse{type: DATA, data: {id, n_messages, type_id}}` with nothing
 * else; `undefined` when it is anything else (decode it in full then).
 */
export function scanDataResponse(payload: Uint8Array): DataResponseHeader | undefined {
  const h = { id: 0, nMessages: 0, typeId: 0 };
  return scanDataResponseAt(payload, 0, payload.length, h) ? h : undefined;
}

/**
 * {@link scanDataResponse} of `buf[start, end)` into `out` (no allocation: the client reads its
 * responses in place, issue #26); false when it is anything else.
 */
export function scanDataResponseAt(buf: Uint8Array, start: number, end: number, out: DataResponseHeader): boolean {
  // type (field 1, varint) = 1, then data (field 2, length-delimited).
  if (end - start < 4 || buf[start] !== 0x08 || buf[start + 1] !== DATA || buf[start + 2] !== 0x12) return false;
  let pos = start + 3;
  const len = buf[pos++]!;
  if (len > 0x7f || pos + len !== end) return false;
  let seen = 0;
  while (pos < end) {
    const key = buf[pos++]!;
    // A varint of at most 5 bytes (int32 ids and counts below 2^35; negative int32s take 10).
    // (A running multiplier, not `2 ** shift`: V8 calls pow() for a variable exponent.)
    let v = 0;
    let mul = 1;
    for (;;) {
      if (pos >= end || mul > 2 ** 28) return false;
      const b = buf[pos++]!;
      v += (b & 0x7f) * mul;
      if (b < 0x80) break;
      mul *= 128;
    }
    if (key === 0x08) {
      if (v > 0x7fffffff) return false;
      out.id = v;
      seen |= 1;
    } else if (key === 0x10) {
      out.nMessages = v;
      seen |= 2;
    } else if (key === 0x18) {
      if (v > 0x7fffffff) return false;
      out.typeId = v;
      seen |= 4;
    } else return false;
  }
  return seen === 7;
}

/** `ClientResponse.type` TASK_FINISHED. */
const TASK_FINISHED = 2;

/**
 * Scans `payload` as `ClientResponse{type: TASK_FINISHED, id}` with nothing else (the other
 * commonest response of a gather: one per future); the id, or `undefined` when it is anything
 * else (decode it in full then).
 */
export function scanFinishedResponse(payload: Uint8Array): number | undefined {
  const id = scanFinishedAt(payload, 0, payload.length);
  return id < 0 ? undefined : id;
}

/** {@link scanFinishedResponse} of `buf[start, end)`, in place; -1 when it is anything else. */
export function scanFinishedAt(buf: Uint8Array, start: number, end: number): number {
  // type (field 1, varint) = 2, then id (field 7, varint): a non-negative int32, at most 5 bytes.
  const n = end - start;
  if (n < 4 || n > 8 || buf[start] !== 0x08 || buf[start + 1] !== TASK_FINISHED || buf[start + 2] !== 0x38) return -1;
  let v = 0;
  let mul = 1;
  for (let pos = start + 3; pos < end; pos++) {
    const b = buf[pos]!;
    v += (b & 0x7f) * mul;
    if (b < 0x80) return pos === end - 1 && v <= 0x7fffffff ? v : -1;
    mul *= 128;
  }
  return -1;
}

/**
 * The frame count (`n_messages`, field 2) of a `DataHeader` payload whose fields are all
 * non-negative varints of at most 7 bytes (what workers send); `undefined` for anything else.
 * The server's data relay uses it to find where each object ends before the core has looked at
 * the headers of a whole chunk at once (which checks them in full).
 */
export function scanHeaderCount(payload: Uint8Array): number | undefined {
  let pos = 0;
  let count: number | undefined;
  while (pos < payload.length) {
    const key = payload[pos++]!;
    if ((key & 7) !== 0 || key > 0x7f) return undefined;
    let v = 0;
    let mul = 1;
    for (;;) {
      if (pos >= payload.length || mul > 2 ** 42) return undefined;
      const b = payload[pos++]!;
      v += (b & 0x7f) * mul;
      if (b < 0x80) break;
      mul *= 128;
    }
    if (key === 0x10) count = v;
  }
  return count;
}
