/**
 * Clients fetching objects from this worker's data port (`fetch-direct`, our extension; see
 * docs/protocol-extensions.md). The server answered the client's FETCH with the object's
 * location; the client connected here (authenticated with the cluster secret like a peer, over
 * TLS when the cluster uses it) and asks for objects by id with `DirectFetch` frames. Each is
 * answered by a `DirectFetchReply`: the object's data file when the client is on this host and
 * user (it maps the file, then says `done`; the object is kept until then or until the
 * connection closes), else followed by the object's data stream as a peer would get it.
 */
import type { Socket } from "node:net";
import { statSync } from "node:fs";
import { FrameReader, frame } from "../protocol/frame.js";
import { messages } from "../protocol/lazy-messages.js";
import { log } from "../log.js";
import { hostKey } from "../protocol/direct-fetch.js";
import type { WorkerCore } from "../native.js";

/** Largest request frame a direct-fetch connection accepts (they are a few dozen bytes). */
const MAX_REQUEST = 4096;

/** What serving a direct-fetch connection needs from the worker. */
export interface DirectFetchHost {
  core(): WorkerCore;
  /** Writes a stream's parts as to a peer (`written` once the last one is written); its lease goes with it. */
  writeParts(socket: Socket, parts: Buffer[], lease: number | undefined, written: () => void): void;
  /** Lets go of the leases of streams written on `socket` (it closed). */
  releaseLeases(socket: Socket): void;
  /** The worker stopped: nothing is served any more. */
  stopped(): boolean;
}

/** Serves one client's direct-fetch connection, starting with the bytes already read (`first`). */
export function serveDirectFetch(socket: Socket, first: Buffer, host: DirectFetchHost): void {
  const reader = new FrameReader(MAX_REQUEST);
  const ownHost = hostKey();
  /** Data files offered and not yet mapped, by object: their leases. */
  const offered = new Map<number, number>();
  // Test hook (fault injection, like HYPERLOOM_FAULT_RESET_DATA_AFTER): a worker that refuses
  // direct fetches by closing their connections, as an unreachable or old worker would.
  if (process.env.HYPERLOOM_FAULT_REFUSE_DIRECT_FETCH === "1") {
    log("warn", "direct fetch refused (HYPERLOOM_FAULT_REFUSE_DIRECT_FETCH)");
    socket.destroy();
    return;
  }
  const { comm } = messages();
  const reply = (m: { object: number; path?: string; size?: number; dev?: number; ino?: number; error?: string }): Buffer =>
    frame(comm.DirectFetchReply.encode(m).finish());
  const onRequest = (payload: Buffer): void => {
    const req = comm.DirectFetch.decode(payload);
    const id = req.object;
    if (req.done) {
      const lease = offered.get(id);
      offered.delete(id);
      if (lease !== undefined && !host.stopped()) host.core().releaseSend(lease);
      return;
    }
    if (host.stopped()) return void socket.destroy();
    const wantsFile = ownHost !== "" && req.host === ownHost;
    const obj = host.core().directObject(id, wantsFile);
    if (obj === null) {
      host.writeParts(socket, [reply({ object: id, error: `data id=${id} is not held by this worker` })], undefined, () => undefined);
      return;
    }
    if (obj.path != null) {
      let st;
      try {
        st = statSync(obj.path);
      } catch (e) {
        if (obj.lease != null) host.core().releaseSend(obj.lease);
        host.writeParts(socket, [reply({ object: id, error: `data id=${id}: ${(e as Error).message}` })], undefined, () => undefined);
        return;
      }
      if (obj.lease != null) {
        const old = offered.get(id);
        if (old !== undefined) host.core().releaseSend(old);
        offered.set(id, obj.lease);
      }
      // Through the same writer as streams, so replies leave in the order of the requests.
      host.writeParts(socket, [reply({ object: id, path: obj.path, size: obj.size, dev: st.dev, ino: st.ino })], undefined, () => undefined);
      return;
    }
    host.writeParts(socket, [reply({ object: id }), ...obj.parts], obj.lease ?? undefined, () => undefined);
  };
  const feed = (chunk: Buffer): void => {
    try {
      for (const f of reader.push(chunk)) onRequest(f);
    } catch (e) {
      log("warn", `direct-fetch connection from ${socket.remoteAddress}: ${(e as Error).message}; closing it`);
      socket.destroy();
    }
  };
  socket.on("data", feed);
  socket.on("close", () => {
    if (!host.stopped()) for (const lease of offered.values()) host.core().releaseSend(lease);
    offered.clear();
    host.releaseLeases(socket);
  });
  feed(first);
}
