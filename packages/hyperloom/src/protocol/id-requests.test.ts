import { test } from "uvu";
import * as assert from "uvu/assert";
import { comm } from "./messages.js";
import { frame } from "./frame.js";
import { idRequests } from "./id-requests.js";

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

test.run();
