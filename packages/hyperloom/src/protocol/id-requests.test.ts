import { test } from "uvu";
import * as assert from "uvu/assert";
import { comm } from "./messages.js";
import { frame } from "./frame.js";
import { idRequests, packedIdsRequest } from "./id-requests.js";

const T = comm.ClientRequest.Type;
const generated = (type: number, ids: number[]): Buffer => Buffer.concat(ids.map((id) => frame(comm.ClientRequest.encode({ type, id }).finish())));

test("many RELEASEs and FETCHes encode byte for byte as the generated encoder's, one after the other", () => {
  const ids = [0, 1, 127, 128, 16_383, 16_384, 300_000, 2 ** 28, 0x7fffffff];
  for (const type of [T.RELEASE, T.FETCH]) {
    assert.equal(idRequests(type, ids), generated(type, ids));
    assert.equal(idRequests(type, []), Buffer.alloc(0));
  }
});

test("an id outside a non-negative int32 goes through the generated encoder, in its place", () => {
  const ids = [5, -1, 7];
  assert.equal(idRequests(T.RELEASE, ids), generated(T.RELEASE, ids));
});

test("a packed FETCH or RELEASE of many ids encodes byte for byte as the generated encoder's", () => {
  const many = Array.from({ length: 70_000 }, (_, i) => (i * 7919) % 2 ** 31);
  for (const ids of [[], [0], [0, 1, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, 2 ** 28 - 1, 2 ** 28, 0x7fffffff], many, [3, -1, 4]]) {
    for (const type of [T.RELEASE, T.FETCH]) {
      assert.equal(packedIdsRequest(type, ids), frame(comm.ClientRequest.encode({ type, ids }).finish()));
    }
  }
});

test.run();
