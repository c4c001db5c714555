/**
 * Client requests that carry result ids: one each (`ClientRequest{type, id}`: FETCH, RELEASE),
 * framed and concatenated for many ids at once, or many in one (`ClientRequest{type, ids}`, our
 * `fetch-many` and `release-many`). A gather releases each of its futures with one such
 * request (and fetches each with one from the original server): encoding 100,000 of them through
 * the generated encoder cost more than the rest of the release.
 */
import { comm } from "./messages.js";
import { frame } from "./frame.js";

/**
 * The framed requests `{type, id}` for every id of `ids`, one after the other; byte for byte what
 * the generated encoder gives (`type` field 1, then `id` field 3, both varints).
 */
export function idRequests(type: number, ids: readonly number[]): Buffer {
  // 8 (prefix) + 2 (type) + 1 (key) + at most 5 (a non-negative int32) per request.
  const out = Buffer.allocUnsafe(ids.length * 16);
  let at = 0;
  for (const id of ids) {
    if (!(id >= 0 && id <= 0x7fffffff && Number.isInteger(id)) || type > 0x7f) {
      // Not the shape written here (never for this client's ids): the generated encoder.
      const f = frame(comm.ClientRequest.encode({ type, id }).finish());
      return Buffer.concat([out.subarray(0, at), f, idRequests(type, ids.slice(ids.indexOf(id) + 1))]);
    }
    const start = at;
    at += 8;
    out[at++] = 0x08;
    out[at++] = type;
    out[at++] = 0x18;
    let v = id;
    while (v >= 0x80) {
      out[at++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    out[at++] = v;
    out.writeUInt32LE(at - start - 8, start);
    out.writeUInt32LE(0, start + 4);
  }
  return out.subarray(0, at);
}

/**
 * One framed request `{type, ids}` (`ids`: field 101, packed), byte for byte what the generated
 * encoder gives: our `fetch-many` FETCH and `release-many` RELEASE (docs/protocol-extensions.md).
 * Written here because the generated encoder's first packed list of 100,000 ids (a gather's) ran
 * cold and cost more than the rest of the request's handling.
 */
export function packedIdsRequest(type: number, ids: readonly number[]): Buffer {
  // 8 (prefix) + 2 (type) + 2 (key) + 5 (length) + at most 5 per id.
  const out = Buffer.allocUnsafe(17 + 5 * ids.length);
  let at = 8;
  out[at++] = 0x08;
  out[at++] = type;
  out[at++] = 0xaa; // field 101, length-delimited
  out[at++] = 0x06;
  let len = 0;
  for (const id of ids) {
    if (!(id >= 0 && id <= 0x7fffffff && Number.isInteger(id)) || type > 0x7f) {
      // Not the shape written here (never for this client's ids): the generated encoder.
      return frame(comm.ClientRequest.encode({ type, ids: [...ids] }).finish());
    }
    len += id < 0x80 ? 1 : id < 0x4000 ? 2 : id < 0x200000 ? 3 : id < 0x10000000 ? 4 : 5;
  }
  if (ids.length === 0) {
    // An empty packed list is not written at all.
    at -= 2;
  } else {
    let v = len;
    while (v >= 0x80) {
      out[at++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    out[at++] = v;
    for (const id of ids) {
      let w = id;
      while (w >= 0x80) {
        out[at++] = (w & 0x7f) | 0x80;
        w >>>= 7;
      }
      out[at++] = w;
    }
  }
  out.writeUInt32LE(at - 8, 0);
  out.writeUInt32LE(0, 4);
  return out.subarray(0, at);
}
