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
  // type (field 1, varint) = 1, then data (field 2, length-delimited).
  if (payload.length < 4 || payload[0] !== 0x08 || payload[1] !== DATA || payload[2] !== 0x12) return undefined;
  let pos = 3;
  const len = payload[pos++]!;
  if (len > 0x7f || pos + len !== payload.length) return undefined;
  let id: number | undefined;
  let nMessages: number | undefined;
  let typeId: number | undefined;
  while (pos < payload.length) {
    const key = payload[pos++]!;
    // A varint of at most 5 bytes (int32 ids and counts below 2^35; negative int32s take 10).
    let v = 0;
    let shift = 0;
    for (;;) {
      if (pos >= payload.length || shift > 28) return undefined;
      const b = payload[pos++]!;
      v += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) break;
      shift += 7;
    }
    if (key === 0x08) id = v;
    else if (key === 0x10) nMessages = v;
    else if (key === 0x18) typeId = v;
    else return undefined;
  }
  if (id === undefined || nMessages === undefined || typeId === undefined || id > 0x7fffffff || typeId > 0x7fffffff) return undefined;
  return { id, nMessages, typeId };
}

/** `ClientResponse.type` TASK_FINISHED. */
const TASK_FINISHED = 2;

/**
 * Scans `payload` as `ClientResponse{type: TASK_FINISHED, id}` with nothing else (the other
 * commonest response of a gather: one per future); the id, or `undefined` when it is anything
 * else (decode it in full then).
 */
export function scanFinishedResponse(payload: Uint8Array): number | undefined {
  // type (field 1, varint) = 2, then id (field 7, varint): a non-negative int32, at most 5 bytes.
  if (payload.length < 4 || payload.length > 8 || payload[0] !== 0x08 || payload[1] !== TASK_FINISHED || payload[2] !== 0x38) return undefined;
  let v = 0;
  let shift = 0;
  for (let pos = 3; pos < payload.length; pos++) {
    const b = payload[pos]!;
    v += (b & 0x7f) * 2 ** shift;
    if (b < 0x80) return pos === payload.length - 1 && v <= 0x7fffffff ? v : undefined;
    shift += 7;
  }
  return undefined;
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
    let shift = 0;
    for (;;) {
      if (pos >= payload.length || shift > 42) return undefined;
      const b = payload[pos++]!;
      v += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) break;
      shift += 7;
    }
    if (key === 0x10) count = v;
  }
  return count;
}
