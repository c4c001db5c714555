import { test } from "uvu";
import * as assert from "uvu/assert";
import { EventEmitter } from "node:events";
import type { Socket } from "node:net";
import { comm } from "../protocol/messages.js";
import { frame } from "../protocol/frame.js";
import { ClientWriter } from "./client-writer.js";
import { relayDataStreams, type RelayHooks } from "./data-relay.js";

/** A data connection: the test emits its chunks; pausing and closing are recorded. */
function dataSocket(): Socket & { paused: boolean; destroyedBy?: string } {
  const s = new EventEmitter() as unknown as Socket & { paused: boolean };
  Object.assign(s, {
    paused: false,
    remoteAddress: "127.0.0.1",
    pause() {
      s.paused = true;
    },
    resume() {
      s.paused = false;
    },
    destroy() {
      (s as unknown as { destroyed: boolean }).destroyed = true;
    },
  });
  return s;
}

/** A client connection collecting what the writer sends (with a queue of `backlog` bytes). */
function clientSocket(): { socket: Socket; bytes: () => Buffer; closed: () => boolean; state: { backlog: number } } {
  const out: Buffer[] = [];
  const state = { backlog: 0, closed: false };
  const socket = Object.assign(new EventEmitter(), {
    destroyed: false,
    write: (b: Buffer) => out.push(Buffer.from(b)),
    cork: () => undefined,
    uncork: () => undefined,
    destroy() {
      state.closed = true;
      socket.destroyed = true;
    },
  });
  Object.defineProperty(socket, "writableLength", { get: () => state.backlog });
  return { socket: socket as unknown as Socket, bytes: () => Buffer.concat(out), closed: () => state.closed, state };
}

/** What a worker sends for an object of plain data, as frames (header, then its one data frame). */
function object(id: number, data: string): Buffer {
  return Buffer.concat([frame(comm.DataHeader.encode({ id, nMessages: 1, typeId: 0 }).finish()), frame(Buffer.from(data))]);
}

/** The client's DATA response for object `id` (its client id is `id + 1000`). */
function dataResponse(h: { id: number; nMessages: unknown; typeId: number }): Buffer {
  return frame(comm.ClientResponse.encode({ type: comm.ClientResponse.Type.DATA, data: { id: h.id + 1000, nMessages: Number(h.nMessages), typeId: h.typeId } }).finish());
}

/**
 * Core stand-in: objects with an id in `clients` go to that client (as the core's relay says),
 * others to nobody. `calls` gets the number of objects each crossing took.
 */
function hooks(clients: Map<number, number>, writers: Map<number, ClientWriter>, calls: number[]): RelayHooks {
  return {
    relayWhole(chunk, start) {
      // As the core: whole objects from `start`, a DATA and the frames each, grouped per client.
      const per = new Map<number, Buffer[]>();
      let pos = start;
      let taken = 0;
      for (;;) {
        if (chunk.length - pos < 8) break;
        const len = chunk.readUInt32LE(pos);
        if (pos + 8 + len > chunk.length) break;
        let h: ReturnType<typeof comm.DataHeader.decode>;
        try {
          h = comm.DataHeader.decode(chunk.subarray(pos + 8, pos + 8 + len));
        } catch {
          break; // the core leaves a header it cannot read to onHeaders
        }
        let end = pos + 8 + len;
        let n = Number(h.nMessages);
        while (n > 0 && chunk.length - end >= 8 && end + 8 + chunk.readUInt32LE(end) <= chunk.length) {
          end += 8 + chunk.readUInt32LE(end);
          n--;
        }
        if (n > 0) break;
        const client = clients.get(h.id);
        if (client !== undefined) {
          if (!per.has(client)) per.set(client, []);
          per.get(client)!.push(dataResponse(h), chunk.subarray(pos + 8 + len, end));
        }
        pos = end;
        taken++;
      }
      if (taken > 0) calls.push(taken);
      const conns: number[] = [];
      const ends: number[] = [];
      const parts: Buffer[] = [];
      let at = 0;
      for (const [conn, bufs] of per) {
        for (const b of bufs) {
          parts.push(b);
          at += b.length;
        }
        conns.push(conn);
        ends.push(at);
      }
      return { consumed: pos - start, conns, ends, bytes: Buffer.concat(parts) };
    },
    onHeaders(framed) {
      const r = { clients: [] as number[], nMessages: [] as number[], ends: [] as number[], responses: Buffer.alloc(0), error: undefined as string | undefined };
      const responses: Buffer[] = [];
      let n = 0;
      for (let at = 0; at < framed.length; ) {
        const len = framed.readUInt32LE(at);
        const payload = framed.subarray(at + 8, at + 8 + len);
        at += 8 + len;
        let h: ReturnType<typeof comm.DataHeader.decode>;
        try {
          h = comm.DataHeader.decode(payload);
        } catch {
          r.error = "Malformed DataHeader";
          break;
        }
        const client = clients.get(h.id);
        r.clients.push(client ?? 0xffffffff);
        r.nMessages.push(Number(h.nMessages));
        if (client !== undefined) {
          const resp = dataResponse(h);
          responses.push(resp);
          n += resp.length;
        }
        r.ends.push(n);
      }
      calls.push(r.clients.length);
      r.responses = Buffer.concat(responses);
      return r;
    },
    clientWriter: (conn) => writers.get(conn),
  };
}

/** The client's view: per DATA response, its client id and the data that followed. */
function received(bytes: Buffer): Array<[number, string]> {
  const out: Array<[number, string]> = [];
  for (let at = 0; at < bytes.length; ) {
    const len = bytes.readUInt32LE(at);
    const r = comm.ClientResponse.decode(bytes.subarray(at + 8, at + 8 + len));
    at += 8 + len;
    const dlen = bytes.readUInt32LE(at);
    out.push([r.data!.id, bytes.subarray(at + 8, at + 8 + dlen).toString()]);
    at += 8 + dlen;
  }
  return out;
}

const turnEnds = (): Promise<void> => new Promise((r) => setImmediate(r));

test("objects reach their clients whole and in order however the stream is cut; the whole objects of a chunk cross to the core at once", async () => {
  const stream = Buffer.concat([
    frame(comm.Announce.encode({ port: 1 }).finish()),
    object(1, "one"),
    object(2, "two"),
    object(3, "dropped: nobody waits"),
    object(4, "x".repeat(70_000)),
    object(5, "five"),
  ]);
  for (const cut of [1, 3, 8, 13, 64, 1000, stream.length]) {
    const a = clientSocket();
    const b = clientSocket();
    const writers = new Map([
      [1, new ClientWriter(a.socket)],
      [2, new ClientWriter(b.socket)],
    ]);
    const calls: number[] = [];
    const data = dataSocket();
    relayDataStreams(data, hooks(new Map([[1, 1], [2, 2], [4, 1], [5, 2]]), writers, calls));
    for (let at = 0; at < stream.length; at += cut) data.emit("data", stream.subarray(at, at + cut));
    await turnEnds();
    assert.equal(received(a.bytes()), [[1001, "one"], [1004, "x".repeat(70_000)]], `cut ${cut}`);
    assert.equal(received(b.bytes()), [[1002, "two"], [1005, "five"]], `cut ${cut}`);
    assert.is(calls.reduce((x, y) => x + y, 0), 5, "every header crosses once");
    if (cut === stream.length) assert.equal(calls, [5], "one crossing for a chunk's whole objects");
  }
});

test("a relay pauses the worker's connection while its client is more than 8 MiB behind, and resumes on drain", async () => {
  const a = clientSocket();
  const writers = new Map([[1, new ClientWriter(a.socket)]]);
  const data = dataSocket();
  relayDataStreams(data, hooks(new Map([[1, 1]]), writers, []));
  const big = Buffer.alloc(4 << 20);
  const header = frame(comm.DataHeader.encode({ id: 1, nMessages: 1, typeId: 0 }).finish());
  const prefix = Buffer.alloc(8);
  prefix.writeUInt32LE(3 * big.length, 0);
  data.emit("data", Buffer.concat([frame(comm.Announce.encode({ port: 1 }).finish()), header, prefix]));
  data.emit("data", big);
  assert.not.ok(data.paused, "4 MiB behind");
  a.state.backlog = 9 << 20;
  data.emit("data", big);
  assert.ok(data.paused, "paused past 8 MiB");
  await turnEnds();
  assert.ok(data.paused, "still paused: the client has not drained");
  a.state.backlog = 0;
  (a.socket as unknown as EventEmitter).emit("drain");
  assert.not.ok(data.paused, "resumed on drain");
  data.emit("data", big);
  await turnEnds();
  assert.is(received(a.bytes())[0]![1].length, 3 * big.length);
});

test("a client that goes away while its relay waits for it to drain lets the worker's connection go on", async () => {
  const a = clientSocket();
  const b = clientSocket();
  const writers = new Map([
    [1, new ClientWriter(a.socket)],
    [2, new ClientWriter(b.socket)],
  ]);
  const data = dataSocket();
  relayDataStreams(data, hooks(new Map([[1, 1], [2, 2]]), writers, []));
  const big = Buffer.alloc(9 << 20);
  const prefix = Buffer.alloc(8);
  prefix.writeUInt32LE(big.length, 0);
  a.state.backlog = 9 << 20;
  data.emit("data", Buffer.concat([frame(comm.Announce.encode({ port: 1 }).finish()), frame(comm.DataHeader.encode({ id: 1, nMessages: 1, typeId: 0 }).finish()), prefix, big.subarray(0, 1000)]));
  assert.ok(data.paused);
  data.emit("data", big.subarray(1000));
  await turnEnds();
  assert.ok(data.paused);
  a.socket.destroy();
  (a.socket as unknown as EventEmitter).emit("close");
  assert.not.ok(data.paused, "resumed when the client closed");
  data.emit("data", object(2, "next"));
  await turnEnds();
  assert.equal(received(b.bytes()), [[1002, "next"]]);
});

test("a malformed header closes the data connection; the objects before it still reach their clients", async () => {
  const a = clientSocket();
  const writers = new Map([[1, new ClientWriter(a.socket)]]);
  const data = dataSocket();
  relayDataStreams(data, hooks(new Map([[1, 1]]), writers, []));
  // A header the relay's scan cannot read (a length-delimited field) goes to the core alone.
  const bad = frame(Buffer.from([0x0a, 0x05, 1, 2]));
  data.emit("data", Buffer.concat([frame(comm.Announce.encode({ port: 1 }).finish()), object(1, "before"), bad, object(1, "after")]));
  await turnEnds();
  assert.ok((data as unknown as { destroyed: boolean }).destroyed);
  assert.equal(received(a.bytes()), [[1001, "before"]]);
  assert.not.ok(a.closed(), "no object of that client was cut");
});

test("a worker closing mid-object closes the fetching client (it cannot be given part of an object)", async () => {
  const a = clientSocket();
  const writers = new Map([[1, new ClientWriter(a.socket)]]);
  const data = dataSocket();
  relayDataStreams(data, hooks(new Map([[1, 1], [2, 1]]), writers, []));
  const whole = Buffer.concat([frame(comm.Announce.encode({ port: 1 }).finish()), object(1, "whole"), object(2, "cut short")]);
  data.emit("data", whole.subarray(0, whole.length - 3));
  data.emit("close");
  await turnEnds();
  assert.ok(a.closed());
});

test("the core relays a chunk's whole objects; the one still arriving is passed through as it comes, after them", async () => {
  const big = object(3, "y".repeat(70_000));
  const chunk = Buffer.concat([frame(comm.Announce.encode({ port: 1 }).finish()), object(1, "one"), object(2, "two"), big.subarray(0, 1000)]);
  const a = clientSocket();
  const seen: string[] = [];
  const base = hooks(new Map([[1, 1], [2, 1], [3, 1], [4, 1]]), new Map([[1, new ClientWriter(a.socket)]]), []);
  const socket = dataSocket();
  relayDataStreams(socket, {
    ...base,
    relayWhole: (c, start) => {
      const r = base.relayWhole(c, start);
      seen.push(`whole ${r.consumed > 0 ? "some" : "none"}`);
      return r;
    },
    onHeaders: (framed) => (seen.push("header"), base.onHeaders(framed)),
  });
  socket.emit("data", chunk);
  socket.emit("data", Buffer.concat([big.subarray(1000), object(4, "four")]));
  await turnEnds();
  assert.equal(seen, ["whole some", "header", "whole some"]);
  assert.equal(received(a.bytes()), [[1001, "one"], [1002, "two"], [1003, "y".repeat(70_000)], [1004, "four"]]);
});

test.run();
