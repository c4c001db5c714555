import { test } from "uvu";
import * as assert from "uvu/assert";
import { frame } from "./frame.js";
import { comm } from "./messages.js";
import { hostKey, opensDirectFetch } from "./direct-fetch.js";

test("a worker's data port tells a client's DirectFetch from a peer's Announce by the first frame's first byte", () => {
  for (const [object, host] of [
    [0, undefined],
    [1, "x:0"],
    [2 ** 31 - 1, hostKey()],
  ] as const) {
    const bytes = frame(comm.DirectFetch.encode({ object, ...(host !== undefined ? { host } : {}) }).finish());
    assert.is(opensDirectFetch(bytes), true, `DirectFetch{object: ${object}}`);
    assert.is(opensDirectFetch(bytes.subarray(0, 8)), undefined, "undecided before its first payload byte");
  }
  // `done` frames start with the object too.
  assert.is(opensDirectFetch(frame(comm.DirectFetch.encode({ object: 5, done: true }).finish())), true);
  // Every Announce (its required port, field 1) is a peer's, whatever the port.
  for (const port of [0, 1, 9010, 65535]) assert.is(opensDirectFetch(frame(comm.Announce.encode({ port }).finish())), false);
});

test("hostKey is this machine's boot id and this user's uid", () => {
  const key = hostKey();
  assert.match(key, /^[0-9a-f-]{36}:\d+$/);
  assert.ok(key.endsWith(`:${process.getuid!()}`));
});

test.run();
