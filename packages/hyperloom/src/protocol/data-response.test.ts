import { test } from "uvu";
import * as assert from "uvu/assert";
import { comm } from "./messages.js";
import { scanDataResponse, scanFinishedResponse, scanHeaderCount } from "./data-response.js";

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

test("a TASK_FINISHED response scans to its id; anything else is left to the generated decoder", () => {
  const T = comm.ClientResponse.Type;
  for (const id of [0, 1, 127, 128, 300_000, 0x7fffffff]) assert.is(scanFinishedResponse(encode({ type: T.TASK_FINISHED, id })), id);
  assert.is(scanFinishedResponse(encode({ type: T.TASK_FINISHED, id: -1 })), undefined);
  assert.is(scanFinishedResponse(encode({ type: T.TASK_FAILED, id: 5 })), undefined);
  assert.is(scanFinishedResponse(encode({ type: T.TASK_FINISHED, id: 5, status: new Uint8Array([1]) })), undefined);
  const b = encode({ type: T.TASK_FINISHED, id: 300_000 });
  assert.is(scanFinishedResponse(b.subarray(0, b.length - 1)), undefined);
});

test("a DataHeader's frame count scans as the generated decoder reads it; other encodings are left to the core", () => {
  for (const [id, nMessages, typeId] of [
    [0, 0, 0],
    [7, 1, 2],
    [300_000, 70_000, 16383],
    [0x7fffffff, 2 ** 40, 1],
  ] as const) {
    const b = comm.DataHeader.encode({ id, nMessages, typeId }).finish();
    assert.is(scanHeaderCount(b), nMessages);
  }
  assert.is(scanHeaderCount(comm.DataHeader.encode({ id: 1, nMessages: -1, typeId: 0 }).finish()), undefined);
  assert.is(scanHeaderCount(Uint8Array.from([0x08, 0x01])), undefined, "no frame count");
  assert.is(scanHeaderCount(Uint8Array.from([0x08, 0x01, 0x10])), undefined, "truncated");
  assert.is(scanHeaderCount(Uint8Array.from([0x0a, 0x00, 0x10, 0x01])), undefined, "a length-delimited field");
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
