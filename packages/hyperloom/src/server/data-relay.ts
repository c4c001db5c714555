/**
 * The server's data port: workers answer `SEND{id, "!:port"}` here with `Announce`, then per object
 * a `DataHeader` and its frames. Each object is relayed to the client that fetched it as
 * `ClientResponse{DATA}` plus the same frames. The whole objects of a chunk (a gather's small
 * results, ~2,000 to a chunk) cross into the core in one call, which answers with what to write
 * to each client: one `DATA_BATCH` and their frames per client that announced `data-batch` —
 * nothing per object here. An object whose frames are still to come is passed through chunk by
 * chunk as it arrives — never assembled or decoded — so a large object costs the server no
 * memory and reaches the client while it is still arriving; the client's {@link ClientWriter} keeps the
 * relay contiguous on the client's connection. A relay that gets more than {@link MAX_BACKLOG}
 * ahead of its client pauses the worker's data connection until the client's has drained.
 */
import type { Socket } from "node:net";
import { log } from "../log.js";
import type { ClientWriter, RelayChannel } from "./client-writer.js";
import { scanHeaderCount } from "../protocol/data-response.js";

/** `clients[i]` of {@link RelayHooks.onHeaders} when nobody waits for the object. */
const NO_CLIENT = 0xffffffff;

/** Control frames (Announce, DataHeader) larger than this are garbage. */
const MAX_CONTROL_FRAME = 1 << 20;

/** Bytes a client's connection may have queued before the worker's data connection waits for it. */
const MAX_BACKLOG = 8 << 20;

/** Hooks into the server. */
export interface RelayHooks {
  /**
   * Takes the whole objects of `chunk` from `start` (an object's start): each header with all its
   * frames in the chunk, up to the first that is not (or whose header is not in the layout
   * workers send). Says how many bytes it took, and what to write to each client: per client, its
   * objects' responses (one DATA_BATCH for a client that announced `data-batch`, else a DATA each)
   * and their frames, `bytes` up to `ends[i]` for client `conns[i]`.
   */
  relayWhole(chunk: Buffer, start: number): { consumed: number; conns: number[]; ends: number[]; bytes: Buffer };
  /**
   * Takes DataHeader frames (length prefixes included, one after the other) and says, per header,
   * the client (`u32::MAX`: nobody), its framed DATA response (`responses` up to `ends[i]`) and
   * the frame count; `error` when a header was malformed (those before it were taken).
   */
  onHeaders(framed: Buffer): { clients: number[]; nMessages: number[]; responses: Buffer; ends: number[]; error?: string | null };
  /** The writer of a client connection, if still open. */
  clientWriter(conn: number): ClientWriter | undefined;
}

/** A relay writing nowhere: the client has gone, the frames are read and dropped. */
const sink: RelayChannel = { write: () => undefined, end: () => undefined, abort: () => undefined };

/** One object on a data connection: its header, what of it arrived, and where it goes once known. */
interface RelayedObject {
  header: Buffer;
  /** Its frame count (-1: not known before the core has read the header). */
  frames: number;
  /** Frames still to come. */
  remaining: number;
  /** Bytes that arrived before the core said where the object goes. */
  parts: Buffer[];
  channel?: RelayChannel;
  writer?: ClientWriter | undefined;
}

/** Handles one data connection until it closes. */
export function relayDataStreams(socket: Socket, hooks: RelayHooks): void {
  let announced = false;
  /** The object being relayed (its frames are still arriving). */
  let current: RelayedObject | undefined;
  /**
   * Objects of this chunk whose headers the core has not seen yet (objects not whole in their
   * chunk): the core takes them in one call at the end of the chunk, then each object goes to
   * its client in order.
   */
  let unrouted: RelayedObject[] = [];
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
  /** Reading is paused until the client's connection drains. */
  let paused = false;

  const take = (n: number): Buffer => {
    const all = held.length === 1 ? held[0]! : Buffer.concat(held, heldBytes);
    held = [];
    heldBytes = 0;
    return all.subarray(0, n);
  };

  /** A relay that got ahead of its client waits for it (TCP backpressure reaches the worker). */
  const throttle = (writer: ClientWriter | undefined): void => {
    if (writer === undefined || paused || writer.backlog <= MAX_BACKLOG) return;
    paused = true;
    socket.pause();
    writer.onDrain(() => {
      paused = false;
      socket.resume();
    });
  };

  /**
   * Has the core relay the whole objects of `chunk` from `pos` (see {@link RelayHooks.relayWhole});
   * returns where they end.
   */
  const relayWhole = (chunk: Buffer, pos: number): number => {
    if (unrouted.length > 0) route(); // objects before these reach their clients first
    const r = hooks.relayWhole(chunk, pos);
    let from = 0;
    for (let i = 0; i < r.conns.length; i++) {
      const writer = hooks.clientWriter(r.conns[i]!);
      writer?.writeWhole(r.bytes.subarray(from, r.ends[i]), []);
      from = r.ends[i]!;
      throttle(writer);
    }
    return pos + r.consumed;
  };

  /** Has the core route the objects whose headers arrived; sends what they have so far. */
  const route = (): void => {
    if (unrouted.length === 0) return;
    const objs = unrouted;
    unrouted = [];
    let total = 0;
    for (const o of objs) total += 8 + o.header.length;
    const framed = Buffer.allocUnsafe(total);
    let at = 0;
    for (let i = 0; i < objs.length; i++) {
      const o = objs[i]!;
      framed.writeUInt32LE(o.header.length, at);
      framed.writeUInt32LE(0, at + 4);
      o.header.copy(framed, at + 8);
      at += 8 + o.header.length;
    }
    const r = hooks.onHeaders(framed);
    let from = 0;
    for (let i = 0; i < r.clients.length; i++) {
      const o = objs[i]!;
      if (o.frames < 0) o.frames = o.remaining = r.nMessages[i]!;
      else if (r.nMessages[i] !== o.frames) throw new Error("the core and the relay disagree on an object's frame count");
      const writer = r.clients[i] === NO_CLIENT ? undefined : hooks.clientWriter(r.clients[i]!);
      const response = r.responses.subarray(from, r.ends[i]);
      from = r.ends[i]!;
      if (o.remaining === 0) {
        // Whole already (a small object): written in one piece, no relay channel needed.
        writer?.writeWhole(response, o.parts);
        o.parts = [];
        continue;
      }
      const channel = writer?.open() ?? sink;
      channel.write(response);
      for (const p of o.parts) channel.write(p);
      o.parts = [];
      o.channel = channel;
      o.writer = writer;
      throttle(writer);
    }
    if (r.error) throw new Error(r.error);
  };

  const onControl = (payload: Buffer): void => {
    if (!announced) {
      announced = true; // Announce: the sender's port; nothing to do with it here.
      return;
    }
    const n = scanHeaderCount(payload);
    const obj: RelayedObject = { header: payload, frames: n ?? -1, remaining: n ?? 0, parts: [] };
    if (n === undefined) {
      // A header our scan does not read: the core reads it at once (and says what is wrong with it).
      route();
      unrouted.push(obj);
      route();
    } else unrouted.push(obj);
    if (obj.remaining > 0) current = obj;
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
      if (prefixBytes === 0 && chunk.length - pos >= 8) {
        passing = chunk.readUInt32LE(pos) + chunk.readUInt32LE(pos + 4) * 4294967296;
        pos += 8;
        if (passing === 0) obj.remaining--;
        continue;
      }
      const n = Math.min(8 - prefixBytes, chunk.length - pos);
      chunk.copy(prefix, prefixBytes, pos, pos + n);
      prefixBytes += n;
      pos += n;
      if (prefixBytes === 8) {
        prefixBytes = 0;
        passing = prefix.readUInt32LE(0) + prefix.readUInt32LE(4) * 4294967296;
        if (passing === 0) obj.remaining--;
      }
    }
    const piece = chunk.subarray(start, pos);
    if (obj.channel === undefined) obj.parts.push(piece);
    else {
      obj.channel.write(piece);
      throttle(obj.writer);
    }
    if (obj.remaining === 0) {
      obj.channel?.end();
      current = undefined;
    }
    return pos;
  };

  const feed = (chunk: Buffer): void => {
    let pos = 0;
    /** Where the core's relay of whole objects last stopped in this chunk. */
    let wholeTo = -1;
    while (pos < chunk.length) {
      if (current !== undefined) {
        pos = forwardObject(chunk, pos);
        continue;
      }
      if (announced && controlLength < 0 && heldBytes === 0 && pos !== wholeTo) {
        // At an object's start: the core takes the whole objects from here at once; the first
        // that is not whole (its frames still to come) is relayed below, as it arrives.
        pos = wholeTo = relayWhole(chunk, pos);
        continue;
      }
      if (controlLength < 0 && heldBytes === 0 && chunk.length - pos >= 8) {
        // The commonest case, a whole control frame inside the chunk: a view, nothing collected.
        const length = chunk.readUInt32LE(pos) + chunk.readUInt32LE(pos + 4) * 4294967296;
        if (length > MAX_CONTROL_FRAME) throw new Error(`control frame of ${length} bytes`);
        if (chunk.length - pos - 8 >= length) {
          pos += 8 + length;
          onControl(chunk.subarray(pos - length, pos));
          continue;
        }
      }
      const want = controlLength < 0 ? 8 : controlLength;
      const n = Math.min(want - heldBytes, chunk.length - pos);
      held.push(chunk.subarray(pos, pos + n));
      heldBytes += n;
      pos += n;
      if (heldBytes < want) continue;
      if (controlLength < 0) {
        const p = take(8);
        const length = p.readUInt32LE(0) + p.readUInt32LE(4) * 4294967296;
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
    route();
  };

  socket.on("data", (chunk: Buffer) => {
    try {
      feed(chunk);
    } catch (e) {
      log("warn", `data connection from ${socket.remoteAddress}: ${(e as Error).message}; closing it`);
      try {
        // The objects whose headers arrived before the bad bytes still reach their clients (a
        // partial one is then aborted below, closing its client, as the core has let it go).
        route();
      } catch {
        // Nothing more can be relayed from this connection.
      }
      current?.channel?.abort();
      current = undefined;
      socket.destroy();
    }
  });
  socket.on("error", (e) => log("debug", `data connection: ${e.message}`));
  socket.on("close", () => {
    if (current !== undefined) {
      // The worker went away mid-object: the client cannot get a partial object.
      log("warn", "a worker closed its data connection in the middle of an object; closing the fetching client");
      current.channel?.abort();
      current = undefined;
    }
  });
}
