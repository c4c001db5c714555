/**
 * The server's data port: workers answer `SEND{id, "!:port"}` here with `Announce`, then per object
 * a `DataHeader` and its frames. Each object is relayed to the client that fetched it as
 * `ClientResponse{DATA}` plus the same frames. Data frames are passed through chunk by chunk as
 * they arrive — never assembled or decoded — so a large object costs the server no memory and
 * reaches the client while it is still arriving; the client's {@link ClientWriter} keeps the
 * relay contiguous on the client's connection.
 */
import type { Socket } from "node:net";
import { log } from "../log.js";
import type { ClientWriter, RelayChannel } from "./client-writer.js";

/** Control frames (Announce, DataHeader) larger than this are garbage. */
const MAX_CONTROL_FRAME = 1 << 20;

/** Hooks into the server. */
export interface RelayHooks {
  /** Maps a DataHeader payload to the client, its DATA response frame and the frame count. */
  onHeader(header: Buffer): { client: number; response: Buffer; nMessages: number };
  /** The writer of a client connection, if still open. */
  clientWriter(conn: number): ClientWriter | undefined;
}

/** A relay writing nowhere: the client has gone, the frames are read and dropped. */
const sink: RelayChannel = { write: () => undefined, end: () => undefined, abort: () => undefined };

/** Handles one data connection until it closes. */
export function relayDataStreams(socket: Socket, hooks: RelayHooks): void {
  let announced = false;
  /** The object being relayed, and how many of its frames are still to come. */
  let current: { channel: RelayChannel; remaining: number } | undefined;
  /** Bytes of a control frame (Announce, DataHeader), collected across chunks. */
  let held: Buffer[] = [];
  let heldBytes = 0;
  /** Length of the control frame being collected (-1: reading its length prefix). */
  let controlLength = -1;
  /** Inside an object: bytes of the current frame's length prefix seen so far, and the prefix. */
  const prefix = Buffer.alloc(8);
  let prefixBytes = 0;
  /** Inside an object: payload bytes of the current frame still to come. */
  let passing = 0;

  const take = (n: number): Buffer => {
    const all = held.length === 1 ? held[0]! : Buffer.concat(held, heldBytes);
    held = [];
    heldBytes = 0;
    return all.subarray(0, n);
  };

  const onControl = (payload: Buffer): void => {
    if (!announced) {
      announced = true; // Announce: the sender's port; nothing to do with it here.
      return;
    }
    const relay = hooks.onHeader(payload);
    const channel = hooks.clientWriter(relay.client)?.open() ?? sink;
    channel.write(relay.response);
    if (relay.nMessages === 0) channel.end();
    else current = { channel, remaining: relay.nMessages };
  };

  /**
   * Inside an object every byte is forwarded as it is (the frames keep their prefixes), so a chunk
   * goes out in one write whatever the number of frames in it; the frames are only counted to
   * find where the object ends.
   */
  const forwardObject = (chunk: Buffer, start: number): number => {
    let pos = start;
    const obj = current!;
    while (pos < chunk.length && obj.remaining > 0) {
      if (passing > 0) {
        const n = Math.min(passing, chunk.length - pos);
        pos += n;
        passing -= n;
        if (passing === 0) obj.remaining--;
        continue;
      }
      const n = Math.min(8 - prefixBytes, chunk.length - pos);
      chunk.copy(prefix, prefixBytes, pos, pos + n);
      prefixBytes += n;
      pos += n;
      if (prefixBytes === 8) {
        prefixBytes = 0;
        passing = prefix.readUInt32LE(0) + prefix.readUInt32LE(4) * 2 ** 32;
        if (passing === 0) obj.remaining--;
      }
    }
    obj.channel.write(chunk.subarray(start, pos));
    if (obj.remaining === 0) {
      obj.channel.end();
      current = undefined;
    }
    return pos;
  };

  const feed = (chunk: Buffer): void => {
    let pos = 0;
    while (pos < chunk.length) {
      if (current !== undefined) {
        pos = forwardObject(chunk, pos);
        continue;
      }
      const want = controlLength < 0 ? 8 : controlLength;
      const n = Math.min(want - heldBytes, chunk.length - pos);
      held.push(chunk.subarray(pos, pos + n));
      heldBytes += n;
      pos += n;
      if (heldBytes < want) continue;
      if (controlLength < 0) {
        const p = take(8);
        const length = p.readUInt32LE(0) + p.readUInt32LE(4) * 2 ** 32;
        if (length > MAX_CONTROL_FRAME) throw new Error(`control frame of ${length} bytes`);
        controlLength = length;
        if (length === 0) {
          controlLength = -1;
          onControl(Buffer.alloc(0));
        }
      } else {
        const payload = take(controlLength);
        controlLength = -1;
        onControl(payload);
      }
    }
  };

  socket.on("data", (chunk: Buffer) => {
    try {
      feed(chunk);
    } catch (e) {
      log("warn", `data connection from ${socket.remoteAddress}: ${(e as Error).message}; closing it`);
      current?.channel.abort();
      current = undefined;
      socket.destroy();
    }
  });
  socket.on("error", (e) => log("debug", `data connection: ${e.message}`));
  socket.on("close", () => {
    if (current !== undefined) {
      // The worker went away mid-object: the client cannot get a partial object.
      log("warn", "a worker closed its data connection in the middle of an object; closing the fetching client");
      current.channel.abort();
      current = undefined;
    }
  });
}
