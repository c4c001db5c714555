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
