import { test } from "uvu";
import * as assert from "uvu/assert";
import type { Socket } from "node:net";
import { ClientWriter } from "./client-writer.js";

function fakeSocket(): { socket: Socket; out: string[] } {
  const out: string[] = [];
  const socket = { write: (b: Buffer) => out.push(b.toString()), destroy: () => out.push("<closed>") } as unknown as Socket;
  return { socket, out };
}

test("a relay's writes are contiguous; other writes wait for it and keep their order", () => {
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
  assert.equal(out, ["n1", "A-head", "A-1", "A-2", "n2", "n3", "B-head", "B-1", "n4"]);
});

test("an aborted relay closes the client connection", () => {
  const { socket, out } = fakeSocket();
  const w = new ClientWriter(socket);
  const a = w.open();
  a.write(Buffer.from("A-head"));
  a.abort();
  assert.equal(out, ["A-head", "<closed>"]);
});

test.run();
