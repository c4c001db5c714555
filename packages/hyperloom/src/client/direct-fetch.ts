/**
 * Fetching large results from the worker that holds them (`fetch-direct`, our extension; see
 * docs/protocol-extensions.md): the server answered the FETCH with the result's location, and
 * the client asks that worker's data port for it — authenticated with the cluster secret like
 * every connection, over TLS when the cluster uses it. A worker on this host and user offers
 * its data file, which is mapped (the result is a Buffer over the mapping: no byte copied);
 * otherwise the worker streams the object, received into one buffer of its size. Any failure
 * rejects, and the client then has the server relay the result as before.
 */
import type { Socket } from "node:net";
import { FrameReader, frame } from "../protocol/frame.js";
import { comm } from "../protocol/messages.js";
import { hostKey } from "../protocol/direct-fetch.js";
import { connectSecure, type ConnectSecurity } from "../security/transport.js";
import { native } from "../native.js";
import { decodeData, StreamedFrames, type DataValue } from "./data.js";
import { LoomError } from "./errors.js";
import { Symbol } from "../protocol/symbols.js";

/** Where a result is, from the server's LOCATION answer. */
export interface Location {
  /** The worker's data port, `ip:port`. */
  address: string;
  /** The object's id on the worker. */
  object: number;
  /** Its size in bytes. */
  size: number;
}

/** How a directly fetched result arrived. */
export type DirectPath = "mapped" | "streamed";

/** A request on a connection, answered in order. */
interface Request {
  object: number;
  resolve: (v: { value: DataValue; path: DirectPath }) => void;
  reject: (e: Error) => void;
  /**
   * Its reply came and said a stream follows: the header and frames being collected (an
   * array's straight from the connection's bytes, in `raw`).
   */
  stream?: { remaining: number; typeId: number; frames: Buffer[]; raw?: StreamedFrames } | undefined;
  /** Its size in bytes (the LOCATION's). */
  size: number;
}

/** One authenticated connection to a worker's data port. */
interface Connection {
  socket: Socket | undefined;
  /** Requests written (or to write once connected), in order. */
  pending: Request[];
  /** Frames to write once connected. */
  queued: Buffer[];
  reader: FrameReader;
}

/** What the fetcher needs from its client. */
export interface DirectFetchOptions {
  /** How to connect (the cluster's secret and TLS), read when a connection is opened. */
  security: () => ConnectSecurity;
  /** Dictionary names of type ids. */
  typeName: (id: number) => string | undefined;
  /** The id of `loom/data`. */
  plainDataType: () => number;
  /** Deadline of connecting and authenticating (ms). */
  timeoutMs: number;
}

/** Fetches results from workers' data ports; one connection per worker, kept while open. */
export class DirectFetcher {
  private readonly conns = new Map<string, Connection>();
  /** `DirectFetch.host` when this process may map workers' files (this host's key, the addon loads). */
  private readonly host: string | undefined = mappingHost();
  private closed = false;

  constructor(private readonly options: DirectFetchOptions) {}

  /** Fetches the object at `loc`; rejects with why it could not (the caller then falls back). */
  fetch(loc: Location): Promise<{ value: DataValue; path: DirectPath }> {
    if (this.closed) return Promise.reject(new LoomError("client closed"));
    return new Promise((resolve, reject) => {
      const conn = this.connection(loc.address);
      conn.pending.push({ object: loc.object, size: loc.size, resolve, reject });
      this.write(conn, request(loc.object, this.host));
    });
  }

  /** Closes every connection; what is pending rejects. */
  close(): void {
    this.closed = true;
    for (const [address, c] of this.conns) this.drop(address, c, new LoomError("client closed"));
  }

  private connection(address: string): Connection {
    let conn = this.conns.get(address);
    if (conn !== undefined) return conn;
    const c: Connection = { socket: undefined, pending: [], queued: [], reader: new FrameReader() };
    conn = c;
    this.conns.set(address, c);
    const sep = address.lastIndexOf(":");
    const security = { ...this.options.security(), timeoutMs: this.options.timeoutMs };
    connectSecure(`worker ${address}`, address.slice(0, sep), Number(address.slice(sep + 1)), security).then(
      (socket) => {
        if (this.conns.get(address) !== c) return void socket.destroy();
        c.socket = socket;
        socket.on("data", (chunk: Buffer) => {
          try {
            this.onChunk(c, chunk);
          } catch (e) {
            this.drop(address, c, e as Error);
          }
        });
        socket.on("error", () => undefined);
        socket.on("close", () => this.drop(address, c, new LoomError(`connection to worker ${address} closed`)));
        socket.resume();
        for (const b of c.queued) socket.write(b);
        c.queued = [];
      },
      (e: Error) => this.drop(address, c, e),
    );
    return c;
  }

  private write(c: Connection, b: Buffer): void {
    if (c.socket !== undefined) c.socket.write(b);
    else c.queued.push(b);
  }

  /** The connection broke (or the client closed): its requests reject. */
  private drop(address: string, c: Connection, e: Error): void {
    if (this.conns.get(address) === c) this.conns.delete(address);
    const pending = c.pending;
    c.pending = [];
    c.socket?.destroy();
    for (const r of pending) r.reject(e);
  }

  /**
   * Bytes from a worker: frame by frame (whole frames where they lie, a split one through the
   * reader); the frames of a streamed array go to its {@link StreamedFrames}, which keeps them as
   * views of the chunks.
   */
  private onChunk(c: Connection, chunk: Buffer): void {
    while (chunk.length > 0) {
      const raw = c.pending[0]?.stream?.raw;
      if (raw !== undefined) {
        chunk = raw.push(chunk);
        if (raw.done) this.streamed(c, c.pending[0]!);
        continue;
      }
      if (c.reader.pendingBytes > 0) {
        // Complete the frame the reader holds, and no more: what follows may be an array's.
        const missing = c.reader.missing;
        const part = missing >= chunk.length ? chunk : chunk.subarray(0, missing);
        chunk = chunk.subarray(part.length);
        for (const f of c.reader.push(part)) this.onFrame(c, f);
        continue;
      }
      const len = chunk.length >= 8 && chunk.readUInt32LE(4) === 0 ? chunk.readUInt32LE(0) : -1;
      if (len < 0 || 8 + len > chunk.length) {
        // An incomplete frame (or a length the reader refuses): the reader holds or rejects it.
        for (const f of c.reader.push(chunk)) this.onFrame(c, f);
        return;
      }
      this.onFrame(c, chunk.subarray(8, 8 + len));
      chunk = chunk.subarray(8 + len);
    }
  }

  /** The stream of the first pending request is complete: it resolves with the decoded object. */
  private streamed(c: Connection, r: Request): void {
    const s = r.stream!;
    c.pending.shift();
    try {
      const plain = s.raw === undefined && s.frames.length === 1 && s.typeId === this.options.plainDataType();
      const value = plain ? s.frames[0] : s.raw !== undefined ? s.raw.decode(s.typeId, this.options.typeName) : decodeData(s.typeId, s.frames, 0, this.options.typeName)[0];
      r.resolve({ value, path: "streamed" });
    } catch (e) {
      r.reject(e as Error);
    }
  }

  private onFrame(c: Connection, f: Buffer): void {
    const r = c.pending[0];
    if (r === undefined) throw new LoomError("a worker sent data nobody asked for");
    const s = r.stream;
    if (s !== undefined) {
      if (s.remaining < 0) {
        // The stream's DataHeader.
        const h = comm.DataHeader.decode(f);
        s.typeId = h.typeId;
        s.remaining = Number(h.nMessages);
        // An array's frames (a million items, each tiny) are taken straight from the
        // connection's chunks as views, not through the frame reader.
        if (s.remaining > 1 && this.options.typeName(s.typeId) === Symbol.TYPE_ARRAY) {
          s.raw = new StreamedFrames(s.remaining, r.size);
          return;
        }
      } else {
        s.frames.push(f);
        s.remaining--;
      }
      if (s.remaining === 0) this.streamed(c, r);
      return;
    }
    const reply = comm.DirectFetchReply.decode(f);
    if (reply.object !== r.object) throw new LoomError(`a worker answered for data id=${reply.object} instead of ${r.object}`);
    if (reply.error) {
      c.pending.shift();
      return r.reject(new LoomError(reply.error));
    }
    if (reply.path) {
      c.pending.shift();
      let value: Buffer | undefined;
      try {
        value = native().mapDataFile(reply.path, Number(reply.size), Number(reply.dev), Number(reply.ino));
      } catch {
        // Not mappable here after all (another mount namespace, ...): the stream instead.
        value = undefined;
      }
      // Either way the worker may let its file go now.
      this.write(c, frame(comm.DirectFetch.encode({ object: r.object, done: true }).finish()));
      if (value !== undefined) return r.resolve({ value, path: "mapped" });
      c.pending.push(r);
      this.write(c, request(r.object, undefined));
      return;
    }
    r.stream = { remaining: -1, typeId: -1, frames: [] };
  }
}

/** A `DirectFetch` request frame. */
function request(object: number, host: string | undefined): Buffer {
  return frame(comm.DirectFetch.encode({ object, ...(host !== undefined ? { host } : {}) }).finish());
}

/** This host's key when this process can map workers' files (the addon loads), else undefined. */
function mappingHost(): string | undefined {
  if (process.env.HYPERLOOM_FETCH_NO_MAP === "1") return undefined;
  const key = hostKey();
  if (key === "") return undefined;
  try {
    return typeof native().mapDataFile === "function" ? key : undefined;
  } catch {
    return undefined;
  }
}
