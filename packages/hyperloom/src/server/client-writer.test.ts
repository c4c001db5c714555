import { test } from "uvu";
import * as assert from "uvu/assert";
import type { Socket } from "node:net";
import { ClientWriter } from "./client-writer.js";

function fakeSocket(): { socket: Socket; out: string[] } {
  const out: string[] = [];
  const socket = {
    destroyed: false,
    writableLength: 0,
    write: (b: Buffer) => out.push(b.toString()),
    cork: () => out.push("<cork>"),
    uncork: () => out.push("<uncork>"),
    destroy(this: { destroyed: boolean }) {
      out.push("<closed>");
      this.destroyed = true;
    },
  } as unknown as Socket;
  return { socket, out };
}

/** The end of the current turn (when a writer sends what it was given). */
const turnEnds = (): Promise<void> => new Promise((r) => setImmediate(r));

test("a relay's writes are contiguous; other writes wait for it and keep their order", async () => {
  const { socket, out } = fakeSocket();
  const w = new ClientWriter(socket);
  w.write(Buffer.from("n1"));
  const a = w.open();
  a.write(Buffer.from("A-head"));
  w.write(Buffer.from("n2"));
  const b = w.open();
  b.write(Buffer.from("B-head"));
  a.write(Buffer.from("A-1"));
  b.write(Buffer.from("B-1"));
  b.end();
  w.write(Buffer.from("n3"));
  a.write(Buffer.from("A-2"));
  a.end();
  w.write(Buffer.from("n4"));
  assert.equal(out, [], "nothing is written before the turn ends");
  await turnEnds();
  // The turn's small writes leave joined, in one write.
  assert.equal(out, ["<cork>", "n1A-headA-1A-2n2n3B-headB-1n4", "<uncork>"]);
});

test("large buffers are written as they are between joined runs of small ones; the backlog counts the turn", async () => {
  const { socket, out } = fakeSocket();
  const w = new ClientWriter(socket);
  const big = Buffer.alloc(100 << 10, "x");
  w.write(Buffer.from("a"));
  w.write(Buffer.from("b"));
  w.write(big);
  w.write(Buffer.from("c"));
  assert.is(w.backlog, 3 + big.length);
  await turnEnds();
  assert.equal(out, ["<cork>", "ab", big.toString(), "c", "<uncork>"]);
  assert.is(w.backlog, 0);
});

test("flush sends the turn's bytes at once (before the server closes a connection)", async () => {
  const { socket, out } = fakeSocket();
  const w = new ClientWriter(socket);
  w.write(Buffer.from("last"));
  w.write(Buffer.from(" answer"));
  w.flush();
  assert.equal(out, ["<cork>", "last answer", "<uncork>"]);
  await turnEnds();
  assert.equal(out, ["<cork>", "last answer", "<uncork>"], "nothing twice");
});

test("an aborted relay closes the client connection", async () => {
  const { socket, out } = fakeSocket();
  const w = new ClientWriter(socket);
  const a = w.open();
  a.write(Buffer.from("A-head"));
  await turnEnds();
  a.write(Buffer.from("A-1"));
  a.abort();
  await turnEnds();
  assert.equal(out, ["A-head", "<closed>"]);
});

test.run();
