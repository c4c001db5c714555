/**
 * Objects passed between two workers on the same host by their data files (`peer-link`, our
 * extension; docs/protocol-extensions.md, docs/data-paths.md). Negotiated on the ordinary peer
 * connection: the sender's `Announce` offers it with its `<boot id>:<uid>`; a receiver of ours
 * answers with one `PeerHello`, listing `peer-link` when that is its own host and user. The
 * sender then offers each spilled object by path on a separate link connection (first frame a
 * `PeerLink`); the receiver hard-links the file into its own data directory (no byte copied),
 * checks it is that file, stores it as if it had arrived on the stream, and answers. Anything
 * else — another host or user, another filesystem (EXDEV), a refused link, an object in memory,
 * a peer that does not announce the extension (the original) — is sent on the stream as before.
 */
import type { Socket } from "node:net";
import { linkSync, statSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { FrameReader, frame } from "../protocol/frame.js";
import { messages } from "../protocol/lazy-messages.js";
import type { comm } from "../protocol/messages.js";
import { log } from "../log.js";
import type { WorkerCore, WorkerEffects } from "../native.js";

/** The feature announced and accepted. */
export const PEER_LINK = "peer-link";

/** Largest frame on a link connection (offers and replies are a few hundred bytes). */
const MAX_LINK_FRAME = 64 * 1024;

/** Whether this worker offers and accepts `peer-link` (`HYPERLOOM_PEER_LINK=0`: neither, as the original). */
export function peerLinkEnabled(): boolean {
  return process.env.HYPERLOOM_PEER_LINK !== "0";
}

/** Whether a frame's payload is a `PeerHello` (first key: field 110, length-delimited: `f2 06`). */
export function isPeerHello(payload: Buffer): boolean {
  return payload.length >= 2 && payload[0] === 0xf2 && payload[1] === 0x06;
}

/** Whether the first bytes of a data connection open a link connection (its first frame a `PeerLink`: key `c0 07`). */
export function opensPeerLink(first: Buffer): boolean {
  return first.length >= 9 && first[8] === 0xc0;
}

/**
 * The receiver's answer to the first frame of a peer connection (`payload`, its Announce): a
 * framed `PeerHello` when the Announce offers `peer-link`, listing it when the sender's host is
 * `ownHost` (and this worker accepts it); undefined for an Announce without the offer (the
 * original's, or ours with it disabled): nothing is written back, as the original expects.
 */
export function helloFor(payload: Buffer, ownHost: string): Buffer | undefined {
  let announce;
  try {
    announce = messages().comm.Announce.decode(payload);
  } catch {
    return undefined; // not an Announce (data without one): the core judges it
  }
  if (!announce.features.includes(PEER_LINK)) return undefined;
  const accept = peerLinkEnabled() && ownHost !== "" && announce.host === ownHost;
  return frame(messages().comm.PeerHello.encode({ host: ownHost, features: accept ? [PEER_LINK] : [] }).finish());
}

/** Whether a `PeerHello` (payload) from a receiver accepts links from this worker (on `ownHost`). */
export function helloAccepts(payload: Buffer, ownHost: string): boolean {
  try {
    const hello = messages().comm.PeerHello.decode(payload);
    return ownHost !== "" && hello.host === ownHost && hello.features.includes(PEER_LINK);
  } catch {
    return false;
  }
}

/** What serving a link connection needs from the receiving worker. */
export interface PeerLinkHost {
  core(): WorkerCore;
  /** The worker's data directory (`<work dir>/data`), where linked files go. */
  dataDir: string;
  /** Applies the effects of storing an object (its TRANSFERED, tasks woken). */
  apply(effects: WorkerEffects): void;
  /** The worker stopped: nothing is taken any more. */
  stopped(): boolean;
}

let linked = 0;

/**
 * Serves a peer's link connection (receiver side), starting with the bytes already read.
 * Each `PeerLink` offer is answered by one `PeerLinkReply`, in order.
 */
export function servePeerLink(socket: Socket, first: Buffer, host: PeerLinkHost): void {
  const reader = new FrameReader(MAX_LINK_FRAME);
  const { comm } = messages();
  const reply = (object: number, error?: string): void => {
    socket.write(frame(comm.PeerLinkReply.encode(error === undefined ? { object } : { object, error }).finish()));
  };
  const onOffer = (payload: Buffer): void => {
    if (host.stopped()) return void socket.destroy();
    const offer = comm.PeerLink.decode(payload);
    const id = offer.object;
    const error = take(offer, id, host);
    if (error !== undefined) log("debug", `peer-link of data id=${id} from ${socket.remoteAddress}: ${error}; the sender streams it`);
    else log("debug", `peer-link: data id=${id} taken from ${offer.path} (hard link, no copy)`);
    reply(id, error);
  };
  const feed = (chunk: Buffer): void => {
    try {
      for (const f of reader.push(chunk)) onOffer(f);
    } catch (e) {
      log("warn", `peer-link connection from ${socket.remoteAddress}: ${(e as Error).message}; closing it`);
      socket.destroy();
    }
  };
  socket.on("data", feed);
  feed(first);
}

/** Links an offered file into this worker and stores it; the error when it cannot. */
function take(offer: ReturnType<typeof comm.PeerLink.decode>, id: number, host: PeerLinkHost): string | undefined {
  if (!offer.path) return "no path";
  // Test hook (fault injection, like HYPERLOOM_FAULT_REFUSE_DIRECT_FETCH): refuse every link, as
  // another filesystem (EXDEV) or a hardened kernel (EPERM) would.
  if (process.env.HYPERLOOM_FAULT_REFUSE_PEER_LINK === "1") return "link refused (HYPERLOOM_FAULT_REFUSE_PEER_LINK)";
  const path = join(host.dataDir, `peer-${process.pid}-${++linked}`);
  try {
    linkSync(offer.path, path);
  } catch (e) {
    return `cannot link ${offer.path}: ${(e as Error).message}`;
  }
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    unlinkQuietly(path);
    return `cannot stat ${path}: ${(e as Error).message}`;
  }
  // Only the file the sender meant (it exists while the sender holds the object), a regular file
  // of this user: anything else is let go and the object streamed.
  const uid = typeof process.getuid === "function" ? process.getuid() : st.uid;
  if (!st.isFile() || st.uid !== uid || st.size !== Number(offer.size) || st.dev !== Number(offer.dev) || st.ino !== Number(offer.ino)) {
    unlinkQuietly(path);
    return `${offer.path} is not the offered file (size, device or inode differ)`;
  }
  let effects: WorkerEffects;
  try {
    effects = host.core().adoptReceived(id, path, offer.fromPort ?? 0); // the core deletes the file on failure
  } catch (e) {
    return (e as Error).message;
  }
  host.apply(effects);
  return undefined;
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

/** The sender's offer of object `id`'s data file `path`, framed; `fromPort`: the sender's data port (the receiver's trace names the sender by it). */
export function offerFrame(id: number, path: string, size: number, fromPort: number): Buffer | undefined {
  let st;
  try {
    st = statSync(path);
  } catch {
    return undefined;
  }
  return frame(messages().comm.PeerLink.encode({ object: id, path, size, dev: st.dev, ino: st.ino, fromPort }).finish());
}

/** Reads the receiver's replies on a link connection. */
export function linkReplies(onReply: (object: number, error: string | undefined) => void): (chunk: Buffer) => void {
  const reader = new FrameReader(MAX_LINK_FRAME);
  const { comm } = messages();
  return (chunk) => {
    for (const f of reader.push(chunk)) {
      const r = comm.PeerLinkReply.decode(f);
      onReply(r.object, r.error ? r.error : undefined); // unset reads as ""
    }
  };
}
