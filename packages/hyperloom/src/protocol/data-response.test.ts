import { test } from "uvu";
import * as assert from "uvu/assert";
import { comm } from "./messages.js";
import { scanDataResponse } from "./data-response.js";

const encode = (m: Parameters<typeof comm.ClientResponse.encode>[0]): Uint8Array => comm.ClientResponse.encode(m).finish();

test("a DATA response scans to the fields the generated decoder reads", () => {
  for (const [id, nMessages, typeId] of [
    [0, 0, 0],
    [1, 1, 1],
    [127, 128, 20],
    [300_000, 1, 2],
    [0x7fffffff, 70_000, 16383],
  ] as const) {
    const b = encode({ type: comm.ClientResponse.Type.DATA, data: { id, nMessages, typeId } });
    assert.equal(scanDataResponse(b), { id, nMessages, typeId });
  }
});

test("anything but a plain DATA response is left to the generated decoder", () => {
  const T = comm.ClientResponse.Type;
  assert.is(scanDataResponse(encode({ type: T.TASK_FINISHED, id: 5 })), undefined);
  assert.is(scanDataResponse(encode({ type: T.DICTIONARY, symbols: ["a"] })), undefined);
  // A negative id (10-byte varint), an extra field, a truncated header.
  assert.is(scanDataResponse(encode({ type: T.DATA, data: { id: -1, nMessages: 1, typeId: 0 } })), undefined);
  assert.is(scanDataResponse(encode({ type: T.DATA, data: { id: 1, nMessages: 1, typeId: 0 }, id: 3 })), undefined);
  const b = encode({ type: T.DATA, data: { id: 1, nMessages: 1, typeId: 0 } });
  assert.is(scanDataResponse(b.subarray(0, b.length - 1)), undefined);
});

test.run();
