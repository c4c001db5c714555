/**
 * The server's data port: workers answer `SEND{id, "!:port"}` here with `Announce`, then per object
 * a `DataHeader` and its frames. Each object is relayed to the client that fetched it as
 * `ClientResponse{DATA}` plus the same frames, written contiguously once all have arrived
 * (the client reads them as one group). Frames are not decoded.
 */
import type { Socket } from "node:net";
import { FrameReader, frameHeader } from "../protocol/frame.js";
import { log } from "../log.js";

/** Data frames may be as large as memory allows. */
const MAX_DATA_FRAME = Number.MAX_SAFE_INTEGER;

/** Hooks into the server. */
export interface RelayHooks {
  /** Maps a DataHeader payload to the client, its DATA response frame and the frame count. */
  onHeader(header: Buffer): { client: number; response: Buffer; nMessages: number };
  /** The socket of a client connection, if still open. */
  clientSocket(conn: number): Socket | undefined;
}

/** Handles one data connection until it closes. */
export function relayDataStreams(socket: Socket, hooks: RelayHooks): void {
  const reader = new FrameReader(MAX_DATA_FRAME);
  let announced = false;
  let current: { client: number; parts: Buffer[]; remaining: number } | undefined;
  const finish = (): void => {
    const c = current!;
    current = undefined;
    const target = hooks.clientSocket(c.client);
    if (target === undefined) return;
    target.cork();
    for (const p of c.parts) target.write(p);
    process.nextTick(() => target.uncork());
  };
  socket.on("data", (chunk: Buffer) => {
    try {
      for (const f of reader.push(chunk)) {
        if (!announced) {
          announced = true; // Announce: the sender's port; nothing to do with it here.
          continue;
        }
        if (current === undefined) {
          const relay = hooks.onHeader(f);
          current = { client: relay.client, parts: [relay.response], remaining: relay.nMessages };
          if (current.remaining === 0) finish();
          continue;
        }
        current.parts.push(frameHeader(f.length), f);
        if (--current.remaining === 0) finish();
      }
    } catch (e) {
      log("warn", `data connection from ${socket.remoteAddress}: ${(e as Error).message}; closing it`);
      socket.destroy();
    }
  });
  socket.on("error", (e) => log("debug", `data connection: ${e.message}`));
}
