/**
 * The worker process: registers with the server, feeds the server's commands and peers' data
 * streams to the Rust core (which runs the built-in tasks itself and the native tasks on the
 * addon's thread pool), pushes the data streams the core produces, and runs the tasks that need
 * JavaScript (`run`, JS functions) or Python (Python functions, in a pool of Python processes) as
 * the core hands them out.
 */
import type { Socket } from "node:net";
import { lookup } from "node:dns/promises";
import { hostname } from "node:os";
import { mkdirSync, mkdtempSync, rmdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { native, type TaskToRun, type WorkerCore, type WorkerEffects } from "../native.js";
import { log } from "../log.js";
import { messages } from "../protocol/lazy-messages.js";
import { DEFAULT_CONNECT_TIMEOUT_MS, handshake, type Greeted } from "../protocol/handshake.js";
import { stopProgram, stopAllPrograms } from "./run.js";
import { FunctionRunner, type FunctionOutcome } from "./functions.js";
import { PythonRunner } from "./python.js";
import { serveDirectFetch, type DirectFetchHost } from "./direct-fetch.js";
import { hostKey, opensDirectFetch } from "../protocol/direct-fetch.js";
import { helloAccepts, helloFor, isPeerHello, linkReplies, offerFrame, opensPeerLink, peerLinkEnabled, servePeerLink, type PeerLinkHost } from "./peer-link.js";
import { connectSecure, listenSecure, type ConnectSecurity, type ListenSecurity } from "../security/transport.js";
import { Secret } from "../security/access-file.js";
import { selfSignedIdentity, type TlsIdentity } from "../security/tls.js";

/** How a worker authenticates and encrypts (from the server's access file). */
export interface WorkerSecurity {
  /** The server's secret: every connection (server, data port, peers) proves it. */
  secret?: Secret;
  /**
   * TLS on every connection: the server's certificate is pinned by `serverFingerprint`; the
   * worker's data port uses `identity` (default: a self-signed certificate made at start).
   */
  tls?: { serverFingerprint: string; identity?: TlsIdentity };
}

/** Options of {@link startWorker}. */
export interface WorkerOptions {
  /** Server host name or IPv4 address. */
  serverHost: string;
  /** Server main port. */
  serverPort: number;
  /** CPU slots; defaults to the machine's cores. */
  cpus: number;
  /** Root of the work directory (`<wdir>/worker-<host>-<port>/` is created under it). */
  wdir: string;
  /**
   * Pin each program to the CPUs of its task's CPU slots (set in the program before its exec).
   * Slot `i` is the worker's `i`-th CPU: from `cpuList`, or else from the CPUs this process may
   * run on, those the fewest other pinning workers of this machine hold first (each CPU is
   * claimed machine-wide while the worker runs, so workers of one machine take distinct CPUs
   * while there are enough). A slot without a CPU, or a CPU the worker may not use, fails the
   * program's task, naming it.
   */
  pin: boolean;
  /** With `pin`: the CPUs of the slots, in slot order (`--cpu-list`); default: claimed as above. */
  cpuList?: number[];
  /** Listen address of the data port. Default `0.0.0.0`. */
  host?: string;
  /** Native task libraries to load (`--extension`). */
  extensions?: string[];
  /**
   * The Python interpreter for Python function tasks (`--python`). Given, its process pool starts
   * with the worker (and the worker refuses to start when it cannot run); otherwise `python3`'s
   * pool starts on the first Python task.
   */
  python?: string;
  /** Limit for connecting to the server and receiving its dictionary, in ms (default 10 000). */
  connectTimeoutMs?: number;
  /** The cluster job this worker runs in: sent to the server (our Register extension) and part of the work directory's name. */
  job?: { id: string; task?: string };
  /** Authentication and encryption. Default: none (the original's open worker). */
  security?: WorkerSecurity;
  /**
   * When the server connection is lost, keep the stored objects and reconnect, retrying with
   * backoff (0.1 s doubling to 2 s) for up to this many seconds; the Register then reports the
   * objects held (our extension, "keep-data"). Running tasks are stopped (the server that answers
   * decides what runs). Unset: the worker stops when its server goes (the original behaviour).
   */
  reconnectSeconds?: number;
  /**
   * With `reconnectSeconds`: called before each reconnect attempt for the security to use from
   * then on (a restarted server has a new secret and certificate: `hyperloom worker` reads the
   * access file again). Once the worker re-registered with it, its data port checks the new
   * secret and its peer connections prove it. It may throw (no access file yet): the attempt
   * fails and is retried. Unset: `security` stays.
   */
  refreshSecurity?: () => WorkerSecurity;
}

/** A running worker. */
export interface RunningWorker {
  /** Its data port. */
  dataPort: number;
  /** Its work directory. */
  workDir: string;
  /** Resolves when the worker has stopped (server connection closed, and not reconnected). */
  done: Promise<void>;
  /** Whether it stopped because reconnecting failed within `reconnectSeconds` (set when `done` resolves). */
  readonly reconnectFailed: boolean;
  /** Stops the worker and removes its work directory. */
  close(): void;
}

/** Largest piece of a data stream handed to a TLS connection at once (bytes). */
const TLS_SLICE = 1 << 20;
/** Parts smaller than this are joined with their neighbours into one buffer before a write (plain TCP). */
const JOIN_BELOW = 64 << 10;
/** Bytes a TLS connection may have queued before the next slices wait for it to drain. */
const TLS_WINDOW = 16 << 20;

/** A handler of a task type executed in JS; `signal` aborts when the server cancels the task. */
type TaskHandler = (task: TaskToRun, signal: AbortSignal) => Promise<FunctionOutcome>;

/** Starts a worker and connects it to the server. */
export async function startWorker(options: WorkerOptions): Promise<RunningWorker> {
  let serverIp: string;
  try {
    ({ address: serverIp } = await lookup(options.serverHost, { family: 4 }));
  } catch (e) {
    throw new Error(`cannot resolve the server's host name '${options.serverHost}': ${(e as Error).message}`);
  }
  const peers = new Map<number, Socket>();
  /** Connections this worker opened to peers (and the server's data port), by address; `socket` is undefined while it connects and authenticates. */
  const outgoing = new Map<string, OutgoingConnection>();
  const security = options.security ?? {};
  const tlsIdentity = security.tls !== undefined ? (security.tls.identity ?? (await selfSignedIdentity("hyperloom-worker"))) : undefined;
  // The secret (and server certificate) this worker proves and checks: replaced when it
  // re-registers with a restarted server (`adoptSecurity`).
  let toServer = connectSecurity(security, "server");
  let toPeers = connectSecurity(security, "peer");
  /** What the data port checks; read on every new connection, so replacing `secret` takes effect at once. */
  const dataPortSecurity: ListenSecurity = {
    ...(security.secret !== undefined ? { secret: security.secret } : {}),
    ...(tlsIdentity !== undefined ? { tls: tlsIdentity } : {}),
  };
  // Fault injection for tests: a data port that checks another secret than its peers prove, so
  // every transfer to this worker is refused at authentication.
  if (process.env.HYPERLOOM_FAULT_REFUSE_DATA === "1" && dataPortSecurity.secret !== undefined) dataPortSecurity.secret = Secret.generate();
  // Fault injection for tests: after this many data connections to other workers, this worker
  // proves another secret on each new one, so its later transfers are refused at authentication.
  const wrongPeerSecretAfter = Number(process.env.HYPERLOOM_FAULT_PEER_SECRET_AFTER ?? -1);
  let peerConnections = 0;
  /** The security of a new data connection to another worker. */
  const peerSecurity = (): ConnectSecurity => {
    if (wrongPeerSecretAfter < 0 || peerConnections++ < wrongPeerSecretAfter || toPeers.secret === undefined) return toPeers;
    return { ...toPeers, secret: Secret.generate() };
  };
  let nextConn = 1;
  /** This host and user (`<boot id>:<uid>`): `fetch-direct` and `peer-link` compare it with the other side's. */
  const ownHost = hostKey();
  /** Set once everything serving direct fetches and link connections exists (`directHost`, `linkHost` below). */
  let directReady = false;
  /** Clients' direct-fetch connections (closed when the worker stops). */
  const directSockets = new Set<Socket>();
  /** Counts server connections (the first is 0): a retry timer of an earlier one does nothing. */
  let connection = 0;
  let core: WorkerCore | undefined;
  let stopped = false;
  // Fault injection for tests (issue #18): the first incoming data connection is reset once it
  // has brought this many bytes, as a receiver that breaks a transfer mid-stream.
  let resetAfter = Number(process.env.HYPERLOOM_FAULT_RESET_DATA_AFTER ?? 0);

  const { server: dataServer, port: dataPort } = await listenSecure("data port", options.host ?? "0.0.0.0", 0, dataPortSecurity, (socket) => {
    const conn = nextConn++;
    peers.set(conn, socket);
    log("debug", `data connection ${conn} from ${socket.remoteAddress}:${socket.remotePort} (transfers)`);
    let received = 0;
    /** Bytes before the first frame tells a peer's transfers from a client's direct fetch or a peer's link connection. */
    let opening: Buffer | undefined = Buffer.alloc(0);
    socket.on("data", function onData(chunk: Buffer) {
      if (opening !== undefined) {
        const first: Buffer = opening.length === 0 ? chunk : Buffer.concat([opening, chunk]);
        const direct = opensDirectFetch(first);
        if (direct === undefined) {
          opening = first;
          return;
        }
        if (!direct && !opensPeerLink(first)) {
          // A peer: an Announce offering `peer-link` is answered with a PeerHello (so its whole
          // first frame, a few bytes, is awaited). The core reads the bytes as ever.
          const len = Number(first.readBigUInt64LE(0));
          if (first[8] === 0x08 && len <= 4096) {
            if (first.length < 8 + len) {
              opening = first;
              return;
            }
            const hello = directReady ? helloFor(first.subarray(8, 8 + len), ownHost) : undefined;
            if (hello !== undefined) socket.write(hello);
          }
        }
        opening = undefined;
        if (!direct && opensPeerLink(first)) {
          // A peer offering objects by their data files (`peer-link`): the core never sees it.
          socket.off("data", onData);
          peers.delete(conn);
          log("debug", `data connection ${conn}: a peer's link connection`);
          if (!directReady) return void socket.destroy(); // Still starting: the peer streams instead.
          directSockets.add(socket);
          socket.once("close", () => directSockets.delete(socket));
          servePeerLink(socket, first, linkHost);
          return;
        }
        if (direct) {
          // A client fetching objects (`fetch-direct`): not a peer, the core never sees it.
          socket.off("data", onData);
          peers.delete(conn);
          log("debug", `data connection ${conn}: a client's direct fetch`);
          if (!directReady) return void socket.destroy(); // Still starting: the client uses the relay.
          directSockets.add(socket);
          socket.once("close", () => directSockets.delete(socket));
          serveDirectFetch(socket, first, directHost);
          return;
        }
        chunk = first;
      }
      received += chunk.length;
      if (resetAfter > 0 && received >= resetAfter) {
        resetAfter = 0;
        log("warn", `data connection ${conn}: reset after ${received} bytes (HYPERLOOM_FAULT_RESET_DATA_AFTER)`);
        // A TLS socket has no TCP handle of its own to reset: it is closed instead.
        if ("encrypted" in socket) socket.destroy();
        else socket.resetAndDestroy();
        return;
      }
      guard(() => core!.onPeerData(conn, chunk), () => socket.destroy());
    });
    socket.on("error", (e) => log("debug", `data connection ${conn}: ${e.message}`));
    socket.on("close", () => {
      if (!peers.delete(conn)) return; // A direct fetch (or nothing yet): the core never knew it.
      if (!stopped) guard(() => core!.onPeerClose(conn), () => undefined);
    });
  });
  const jobTag = options.job ? `-job${options.job.id}${options.job.task !== undefined ? `.${options.job.task}` : ""}` : "";
  const named = join(options.wdir, `worker-${hostname() || "nohostname"}-${dataPort}${jobTag}`);
  // The first folder this creates (undefined: all existed); removed again at exit if empty, so a
  // worker leaves behind nothing it made.
  const createdRoot = mkdirSync(options.wdir, { recursive: true, mode: 0o700 });
  let workDir = named;
  try {
    mkdirSync(named, { mode: 0o700 });
  } catch (e) {
    // Left by a killed worker whose data port this one got again: never share it, take a fresh
    // folder beside it.
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    workDir = mkdtempSync(`${named}-`);
  }
  // Programs of a worker that is killed (SIGKILL) are killed by the reaper.
  native().startReaper();
  // Function calls answer in batches (issue #26): plain answers go to the core in one buffer.
  const functions = new FunctionRunner(options.cpus, {
    answers: (records, ids) => {
      // Refused records (a bug, none of them applied): their calls fail rather than hang.
      const refused = (): void => {
        for (const id of ids) guard(() => core!.failTask(id, "the function call's answer could not be read by the worker"), () => undefined);
      };
      if (!stopped) guard(() => core!.finishCalls(records), refused);
    },
    outcome: (id, outcome) => {
      if (!stopped) finishJsTask(id, outcome);
    },
    fail: (id, message) => {
      if (!stopped) guard(() => core!.failTask(id, message), () => undefined);
    },
  });
  const python = new PythonRunner({
    python: options.python ?? "python3",
    processes: options.cpus,
    spillDir: join(workDir, "python"),
    typeIds: () => core!.dataTypeIds(),
  });
  if (options.python !== undefined) {
    try {
      await python.start();
    } catch (e) {
      dataServer.close();
      rmSync(workDir, { recursive: true, force: true });
      throw e;
    }
  }
  const handlers: Record<string, TaskHandler> = {
    "loom/js/value": (t) => functions.value(t),
    "loom/py/call": (t, signal) => python.call(t, signal),
    "loom/py/value": (t) => python.value(t),
  };
  // The core loads the task libraries and runs their tasks itself (on the addon's thread pool).
  try {
    core = new (native().WorkerCore)(workDir, options.cpus, dataPort, options.extensions ?? []);
  } catch (e) {
    dataServer.close();
    rmSync(workDir, { recursive: true, force: true });
    throw e; // a binding error: `code` is ERR_LOOM_EXTENSION or ERR_LOOM_WORK_DIR, the message names the path
  }
  // Programs (`loom/run/run`) run on the addon's threads; JS gets the effects once per batch of
  // ended programs (issue #26).
  const pinned = options.pin ? native().claimCpus(options.cpus, options.cpuList ?? null) : undefined;
  core.runPrograms(workDir, pinned?.cpus ?? null, options.job !== undefined, (effects) => {
    if (!stopped) apply(effects);
  });
  if (pinned !== undefined) {
    if (pinned.shared.length > 0) log("warn", `Programs share CPUs ${pinned.shared.join(",")} with another pinning worker on this machine (every CPU this worker may use is taken; --cpu-list chooses, --nopin does not pin)`);
    if (pinned.cpus.length < options.cpus) log("warn", `${options.cpus} cpus but only CPUs ${pinned.cpus.join(",")} to pin programs to: programs of slots ${pinned.cpus.length} and above fail (start the worker with --cpus ${pinned.cpus.length}, or with --nopin)`);
  }
  for (const info of core.extensions()) {
    log("info", `Loaded task library ${info.name} ${info.version} from ${info.path}: ${info.taskTypes.join(", ")}`);
  }

  const greet = (toServer: ConnectSecurity): Promise<Greeted> =>
    handshake({
      host: serverIp,
      port: options.serverPort,
      register: options.job ? withJobId(core!.registerFrame(), options.job.id) : core!.registerFrame(),
      isDictionary,
      timeoutMs: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      security: toServer,
    });
  let greeted: Greeted;
  try {
    greeted = await greet(toServer);
  } catch (e) {
    // Nothing of this worker may outlive a failed start: its data port, threads, processes and directory.
    dataServer.close();
    void functions.close();
    python.close();
    if (pinned !== undefined) native().releaseCpus(pinned.claim);
    rmSync(workDir, { recursive: true, force: true });
    throw new Error((e as Error).message.replace(`${serverIp}:`, `${options.serverHost}:`));
  }
  let server = greeted.socket;

  function guard(f: () => WorkerEffects, onError: () => void): void {
    let effects: WorkerEffects;
    try {
      effects = f();
    } catch (e) {
      log("error", (e as Error).message);
      onError();
      return;
    }
    apply(effects);
  }

  /** Whether the server socket is corked until the next tick (answers of one batch, one write). */
  let corked = false;

  function apply(e: WorkerEffects): void {
    for (const l of e.logs) log(l.level, l.message);
    functions.setPoolCpus(e.jsPoolCpus);
    if (e.toServer.length > 0) {
      if (!corked) {
        corked = true;
        server.cork();
        process.nextTick(() => {
          corked = false;
          server.uncork();
        });
      }
      server.write(e.toServer);
    }
    for (const s of e.sends) sendStream(s.address, s.parts, s.lease ?? undefined, s.ids);
    if (e.calls) functions.run(e.calls);
    for (const t of e.tasks) startTask(t);
    for (const id of e.canceled) cancelTask(id);
    // Each native task in flight resolves with the effects of the core taking its result.
    for (const p of e.native) p.then(onNativeDone, onNativeError);
  }

  function onNativeDone(effects: WorkerEffects): void {
    if (!stopped) apply(effects);
  }

  function onNativeError(err: unknown): void {
    if (!stopped) log("error", `native task: ${err instanceof Error ? err.message : String(err)}`);
  }

  /** Leases of sends in flight, per socket (released on write, or all when it closes). */
  const leases = new Map<Socket, Set<number>>();
  const releaseLease = (socket: Socket, lease: number): void => {
    leases.get(socket)?.delete(lease);
    if (!stopped) core!.releaseSend(lease);
  };

  /**
   * Sends the streams of objects `ids` (back to back in `parts`). Each outgoing connection keeps
   * the streams that may not have reached the peer yet (issue #18): if it breaks while both
   * workers live (the receiver closed it, a reset, a refused connect), the server still waits for
   * the receiver's TRANSFERED, so these objects are sent again on a fresh connection
   * ({@link retrySend}). Streams count as possibly undelivered until they are written and then
   * {@link UNSURE_WINDOW} more bytes were written after them (more than kernel socket buffers
   * hold). `attempt`: times sent again already.
   */
  function sendStream(address: string, parts: Buffer[], lease: number | undefined, ids: Int32Array, attempt = 0): void {
    const target = address.startsWith("!:") ? `${serverIp}:${address.slice(2)}` : address;
    const send: QueuedSend = { ids, address, parts, lease, attempt };
    let peer = outgoing.get(target);
    if (peer === undefined) {
      const sep = target.lastIndexOf(":");
      const host = target.slice(0, sep);
      const port = Number(target.slice(sep + 1));
      const conn = nextConn++;
      const entry: OutgoingConnection = { conn, socket: undefined, ready: false, link: false, queued: [], unsure: { entries: [], head: 0, written: 0 }, dropped: false, cause: "its data connection closed" };
      peer = entry;
      outgoing.set(target, entry);
      const isServer = address.startsWith("!:");
      // Offer `peer-link` to workers (never to the server's data port) when this host is known.
      const offering = !isServer && ownHost !== "" && peerLinkEnabled();
      // Streams wait in `queued` until the connection is authenticated: nothing goes out before.
      connectSecure(isServer ? `the server's data port ${target}` : `worker ${target}`, host, port, isServer ? toServer : peerSecurity()).then(
        (socket) => {
          if (stopped || entry.dropped) {
            socket.destroy();
            return;
          }
          log("debug", `data connection ${conn} to ${target} (transfers)`);
          entry.socket = socket;
          peers.set(conn, socket);
          // The core frames our Announce and knows this connection as ours (the peer may send on
          // it too, as the original reuses connections in reverse, without announcing itself).
          socket.write(offering ? core!.openPeerOffering(conn, port, ownHost) : core!.openPeer(conn, port));
          /** Bytes of the receiver's first frame while its PeerHello may still come (`peer-link`). */
          let hello: Buffer | undefined = offering ? Buffer.alloc(0) : undefined;
          let helloTimer: NodeJS.Timeout | undefined;
          const ready = (): void => {
            if (entry.ready) return;
            clearTimeout(helloTimer);
            entry.ready = true;
            const queued = entry.queued;
            entry.queued = [];
            for (const q of queued) dispatch(target, entry, q);
          };
          socket.on("data", (chunk: Buffer) => {
            if (hello !== undefined) {
              const got: Buffer = hello.length === 0 ? chunk : Buffer.concat([hello, chunk]);
              const len = got.length >= 8 ? Number(got.readBigUInt64LE(0)) : -1;
              if (got.length < 10 || (isPeerHello(got.subarray(8)) && got.length < 8 + len)) {
                hello = got;
                return;
              }
              hello = undefined;
              if (isPeerHello(got.subarray(8))) {
                entry.link = helloAccepts(got.subarray(8, 8 + len), ownHost);
                log("debug", `data connection ${conn} to ${target}: peer-link ${entry.link ? "accepted" : "declined"}`);
                chunk = got.subarray(8 + len);
              } else chunk = got; // data sent back: the receiver does not speak peer-link
              ready();
              if (chunk.length === 0) return;
            }
            guard(() => core!.onPeerData(conn, chunk), () => socket.destroy());
          });
          socket.on("error", (err) => {
            entry.cause = err.message;
            if (!stopped && !entry.dropped) log("debug", `data connection to ${target}: ${err.message}`);
          });
          socket.on("close", () => {
            clearTimeout(helloTimer);
            if (outgoing.get(target) === entry) outgoing.delete(target);
            peers.delete(conn);
            for (const l of leases.get(socket) ?? []) releaseLease(socket, l);
            leases.delete(socket);
            const queued = entry.queued;
            entry.queued = [];
            for (const q of queued) if (q.lease !== undefined && !stopped) core!.releaseSend(q.lease);
            if (stopped || entry.dropped) return;
            guard(() => core!.onPeerClose(conn), () => undefined);
            for (const q of queued) retrySend(target, q.ids, q.address, q.attempt + 1, entry.cause);
            for (const u of entry.unsure.entries.slice(entry.unsure.head)) retrySend(target, u.ids, u.address, u.attempt + 1, entry.cause);
          });
          socket.resume();
          // A receiver of ours answers the offer at once; the original never does, so streams
          // wait for the answer only when the handshake proved the peer ours (the cluster has a
          // secret), and at most PEER_HELLO_WAIT_MS (an older version of ours does not answer).
          if (offering && toPeers.secret !== undefined) helloTimer = setTimeout(ready, PEER_HELLO_WAIT_MS);
          else ready();
        },
        (err: Error) => {
          if (outgoing.get(target) === entry) outgoing.delete(target);
          // What was queued is sent again on a fresh connection, as on any broken one.
          const queued = entry.queued;
          entry.queued = [];
          for (const q of queued) if (q.lease !== undefined && !stopped) core!.releaseSend(q.lease);
          if (stopped || entry.dropped) return;
          for (const q of queued) retrySend(target, q.ids, q.address, q.attempt + 1, err.message);
        },
      );
    }
    if (!peer.ready) peer.queued.push(send);
    else dispatch(target, peer, send);
  }

  /**
   * Sends streams on a ready connection: a lone object in a data file by that file on the link
   * connection when the receiver accepted `peer-link`, else the streams (several objects of one
   * event leave joined, issue #26).
   */
  function dispatch(target: string, peer: OutgoingConnection, s: QueuedSend): void {
    if (peer.link && s.ids.length === 1 && offerLink(target, peer, s)) return;
    writeStream(peer, s);
  }

  /** Writes a stream on a ready connection, counted as possibly undelivered until far behind. */
  function writeStream(peer: OutgoingConnection, s: QueuedSend): void {
    const unsure = peer.unsure;
    const stream: UnsureStream = { ids: s.ids, address: s.address, bytes: s.parts.reduce((n, p) => n + p.length, 0), attempt: s.attempt, writtenAt: -1 };
    unsure.entries.push(stream);
    const written = (): void => {
      unsure.written += stream.bytes;
      stream.writtenAt = unsure.written;
      trimUnsure(unsure);
    };
    writeParts(peer.socket!, s.parts, s.lease, written);
  }

  /** Link connections to peers that accepted `peer-link`, by address. */
  const links = new Map<string, LinkConnection>();

  /**
   * Offers the one object of `s` to `target` by its data file (`peer-link`); false when it is not in a
   * data file (then it is streamed). The stream's lease keeps the object, and so its file, until
   * the receiver answers; a refusal, or the link connection breaking, sends the stream instead.
   */
  function offerLink(target: string, peer: OutgoingConnection, s: QueuedSend): boolean {
    const obj = core!.directObject(s.ids[0]!, true);
    if (obj === null) return false;
    if (obj.lease != null) core!.releaseSend(obj.lease); // `s.lease` keeps the object
    const offer = obj.path != null ? offerFrame(s.ids[0]!, obj.path, obj.size, dataPort) : undefined;
    if (offer === undefined) return false;
    let link = links.get(target);
    if (link === undefined) {
      const l: LinkConnection = { socket: undefined, queued: [], pending: [], dropped: false };
      link = l;
      links.set(target, l);
      const sep = target.lastIndexOf(":");
      const refused = (why: string): void => {
        if (links.get(target) === l) links.delete(target);
        // Links to this peer stop (the next connection asks again); what was offered is streamed.
        peer.link = false;
        const back = [...l.pending, ...l.queued.map((q) => q.send)];
        l.pending = [];
        l.queued = [];
        if (stopped || l.dropped) return;
        if (back.length > 0) log("warn", `peer-link connection to ${target}: ${why}; streaming ${back.length} object(s) instead`);
        for (const b of back) sendStream(b.address, b.parts, b.lease, b.ids, b.attempt);
      };
      connectSecure(`worker ${target} (peer-link)`, target.slice(0, sep), Number(target.slice(sep + 1)), toPeers).then(
        (socket) => {
          if (stopped || l.dropped) return void socket.destroy();
          l.socket = socket;
          socket.on(
            "data",
            linkReplies((object, error) => {
              const p = l.pending.shift();
              if (p === undefined || p.ids[0] !== object) {
                socket.destroy();
                return;
              }
              if (error === undefined) {
                if (p.lease !== undefined && !stopped) core!.releaseSend(p.lease);
              } else {
                log("debug", `peer-link of data id=${object} to ${target} refused: ${error}; streaming it`);
                peer.link = false;
                if (!stopped) sendStream(p.address, p.parts, p.lease, p.ids, p.attempt);
              }
            }),
          );
          socket.on("error", (err) => log("debug", `peer-link connection to ${target}: ${err.message}`));
          socket.on("close", () => refused("connection closed"));
          socket.resume();
          for (const q of l.queued) {
            l.pending.push(q.send);
            socket.write(q.offer);
          }
          l.queued = [];
        },
        (err: Error) => refused(err.message),
      );
    }
    if (link.socket === undefined) link.queued.push({ send: s, offer });
    else {
      link.pending.push(s);
      link.socket.write(offer);
    }
    return true;
  }

  /** Forgets written streams followed by more than {@link UNSURE_WINDOW} written bytes (amortized O(1)). */
  function trimUnsure(u: UnsureStreams): void {
    while (u.head < u.entries.length) {
      const e = u.entries[u.head]!;
      if (e.writtenAt < 0 || u.written - e.writtenAt <= UNSURE_WINDOW) break;
      u.head++;
    }
    if (u.head > 1024 && u.head * 2 > u.entries.length) {
      u.entries = u.entries.slice(u.head);
      u.head = 0;
    }
  }

  /**
   * Sends `ids` to `target` again after its connection broke or was refused (`cause`), after 200,
   * 400, 800, 1600 ms. After {@link SEND_ATTEMPTS} such attempts the transfers are given up and
   * the server told (TRANSFER_FAILED, our extension, per object): it sends each object from
   * another worker or fails the tasks waiting for it there, naming the cause. Nothing is logged
   * for a retry the worker's stop or a lost server connection makes moot (a cluster going down).
   */
  function retrySend(target: string, ids: Int32Array, address: string, attempt: number, cause: string): void {
    const at = connection;
    if (attempt > SEND_ATTEMPTS) {
      if (!stopped) for (const id of ids) guard(() => core!.transferFailed(id, address, `${cause} (${SEND_ATTEMPTS + 1} attempts)`), () => undefined);
      return;
    }
    const timer = setTimeout(() => {
      // The server connection was lost meanwhile: that server's transfers are over.
      if (stopped || at !== connection) return;
      const what = ids.length === 1 ? `data id=${ids[0]}` : `data ids=${ids[0]}..${ids[ids.length - 1]} (${ids.length} objects)`;
      log("warn", `data connection to ${target} failed (${cause}); sending ${what} again (attempt ${attempt + 1})`);
      let effects: WorkerEffects;
      try {
        effects = core!.resend(ids, address);
      } catch (e) {
        log("error", (e as Error).message);
        return;
      }
      for (const l of effects.logs) log(l.level, l.message);
      if (effects.toServer.length > 0) server.write(effects.toServer);
      for (const s of effects.sends) sendStream(s.address, s.parts, s.lease ?? undefined, s.ids, attempt);
    }, 200 * 2 ** (attempt - 1));
    timer.unref();
  }

  /** What the data port's direct-fetch connections use (see `direct-fetch.ts`). */
  const directHost: DirectFetchHost = {
    core: () => core!,
    writeParts: (socket, parts, lease, written) => writeParts(socket, parts, lease, written),
    releaseLeases: (socket) => {
      for (const l of leases.get(socket) ?? []) releaseLease(socket, l);
      leases.delete(socket);
    },
    stopped: () => stopped || core === undefined,
  };
  /** What the data port's link connections (`peer-link`) use (see `peer-link.ts`). */
  const linkHost: PeerLinkHost = {
    core: () => core!,
    dataDir: join(workDir, "data"),
    apply: (effects) => apply(effects),
    stopped: () => stopped || core === undefined,
  };
  directReady = true;

  /** Parts waiting for a TLS connection to drain, per connection. */
  const backlogs = new WeakMap<Socket, { parts: { part: Buffer; lease: number | undefined; written?: () => void }[]; next: number; waiting: boolean }>();

  /**
   * Writes a stream's parts. `lease`: the stored objects this stream shares, let go as soon as
   * its last part is written, so a released object's data file and mapping go at once (not at
   * the next GC). `written`: called once its last part is written.
   */
  function writeParts(socket: Socket, parts: Buffer[], lease: number | undefined, written: () => void): void {
    if (lease !== undefined) {
      let set = leases.get(socket);
      if (set === undefined) leases.set(socket, (set = new Set()));
      set.add(lease);
    }
    if (tlsIdentity === undefined) {
      // Plain TCP: the streams of one turn leave together (see `flushBatch`).
      let batch = batches.get(socket);
      if (batch === undefined) {
        batch = { parts: [], done: [] };
        batches.set(socket, batch);
        const b = batch;
        process.nextTick(() => flushBatch(socket, b));
      }
      for (const p of parts) batch.parts.push(p);
      batch.done.push(() => {
        if (lease !== undefined) releaseLease(socket, lease);
        written();
      });
      return;
    }
    // TLS encrypts what it is given at once: written all together, a large object would be held
    // a second time as ciphertext. At most a window of it is queued; the rest waits for a drain.
    let b = backlogs.get(socket);
    if (b === undefined) {
      b = { parts: [], next: 0, waiting: false };
      backlogs.set(socket, b);
    }
    parts.forEach((p, i) => {
      // Slices of a large part (views, no copy), so that no more than one is encrypted ahead.
      for (let at = 0; at < p.length || at === 0; at += TLS_SLICE) {
        const end = at + TLS_SLICE >= p.length;
        const lastSlice = end && i === parts.length - 1;
        b.parts.push({ part: p.subarray(at, at + TLS_SLICE), lease: lastSlice ? lease : undefined, ...(lastSlice ? { written } : {}) });
      }
    });
    pump(socket, b);
  }

  /** Parts of the streams of this turn per plain TCP connection, and what to call once written. */
  const batches = new Map<Socket, { parts: Buffer[]; done: Array<() => void> }>();

  /**
   * Writes the streams of one turn to a plain TCP connection: runs of small parts (the headers and
   * data of small objects: a gather of 100,000 futures sends 100,000 of them) are joined into one
   * buffer, large parts (views of mapped data objects) are queued as they are, all corked into one
   * `writev`; the streams' callbacks run once the last part is written.
   */
  function flushBatch(socket: Socket, batch: { parts: Buffer[]; done: Array<() => void> }): void {
    batches.delete(socket);
    if (socket.destroyed) {
      // The close handler releases the leases and sends the unsure streams again.
      return;
    }
    const out: Buffer[] = [];
    let run: Buffer[] = [];
    let runBytes = 0;
    const endRun = (): void => {
      if (run.length > 0) out.push(run.length === 1 ? run[0]! : Buffer.concat(run, runBytes));
      run = [];
      runBytes = 0;
    };
    for (const p of batch.parts) {
      if (p.length >= JOIN_BELOW) {
        endRun();
        out.push(p);
      } else {
        run.push(p);
        runBytes += p.length;
        if (runBytes >= JOIN_BELOW) endRun();
      }
    }
    endRun();
    const done = (): void => {
      for (const d of batch.done) d();
    };
    if (out.length === 0) return done();
    socket.cork();
    const last = out.length - 1;
    out.forEach((p, i) => (i === last ? socket.write(p, done) : socket.write(p)));
    socket.uncork();
  }

  function pump(socket: Socket, b: { parts: { part: Buffer; lease: number | undefined; written?: () => void }[]; next: number; waiting: boolean }): void {
    while (!b.waiting && b.next < b.parts.length && !socket.destroyed) {
      const { part, lease, written } = b.parts[b.next++]!;
      if (lease !== undefined || written !== undefined)
        socket.write(part, () => {
          if (lease !== undefined) releaseLease(socket, lease);
          written?.();
        });
      else socket.write(part);
      if (socket.writableLength >= TLS_WINDOW) {
        b.waiting = true;
        socket.once("drain", () => {
          b.waiting = false;
          pump(socket, b);
        });
      }
    }
    if (b.next === b.parts.length) {
      b.parts = [];
      b.next = 0;
    }
  }

  /** Running JS tasks: their abort controllers (a canceled task's answer is dropped). */
  const active = new Map<number, AbortController>();

  /**
   * The server canceled task `id` (its client is gone; the core has freed its cores): a
   * program gets SIGTERM, then SIGKILL after a grace period; a function thread is terminated;
   * a native task is left to finish and its result dropped.
   */
  function cancelTask(id: number): void {
    stopProgram(id); // programs run in the addon, not in `active`
    if (functions.cancel(id)) return log("debug", `Task id=${id} canceled (its client is gone)`);
    const ctl = active.get(id);
    if (ctl === undefined) return;
    active.delete(id);
    ctl.abort();
    log("debug", `Task id=${id} canceled (its client is gone)`);
  }

  /** JS task `id` ended with `outcome`: its result stored, or the task it redirects to run. */
  function finishJsTask(id: number, outcome: FunctionOutcome): void {
    if ("redirect" in outcome) {
      const r = outcome.redirect;
      guard(() => core!.redirectTask(id, r.taskType, r.config, r.inputs), () => undefined);
    } else {
      // A result the core cannot take (e.g. an output file gone) fails the task instead.
      guard(
        () => core!.finishTask(id, outcome.result),
        () => guard(() => core!.failTask(id, "the task's result could not be stored"), () => undefined),
      );
    }
  }

  function startTask(t: TaskToRun): void {
    const handler = handlers[t.taskType];
    if (handler === undefined) {
      guard(() => core!.failTask(t.id, `Task type '${t.taskType}' is not supported by this worker`), () => undefined);
      return;
    }
    const ctl = new AbortController();
    active.set(t.id, ctl);
    const current = (): boolean => {
      if (active.get(t.id) !== ctl) return false;
      active.delete(t.id);
      return !stopped;
    };
    handler(t, ctl.signal).then(
      (outcome) => {
        if (current()) finishJsTask(t.id, outcome);
      },
      (err: unknown) => {
        if (!current()) return; // canceled: its answer is dropped
        const message = err instanceof Error ? err.message : String(err);
        const report = (): void => {
          if (!stopped) guard(() => core!.failTask(t.id, message), () => undefined);
        };
        // Slurm's stop signal before a job's time limit (SIGUSR1, see allocator/slurm.ts) reaches
        // the step's programs as it reaches this worker: such a death is not the task's failure
        // when this worker is stopping (its tasks go back to the server). The worker's own signal
        // may be handled just after the program's exit, so the verdict waits a moment.
        if (options.job !== undefined && /terminated by signal SIGUSR1\b/.test(message)) setTimeout(report, 2000);
        else report();
      },
    );
  }

  /**
   * The server connection was lost: every data connection (incoming or outgoing, authenticated
   * with the previous server's secret, carrying its transfers) is closed, and nothing of them is
   * sent again; streams waiting for an outgoing connection are let go.
   */
  function dropDataConnections(): void {
    connection++;
    for (const entry of outgoing.values()) {
      entry.dropped = true;
      for (const q of entry.queued) if (q.lease !== undefined) core!.releaseSend(q.lease);
      entry.queued = [];
    }
    outgoing.clear();
    for (const l of links.values()) {
      l.dropped = true;
      for (const q of [...l.pending, ...l.queued.map((x) => x.send)]) if (q.lease !== undefined) core!.releaseSend(q.lease);
      l.pending = [];
      l.queued = [];
      l.socket?.destroy();
    }
    links.clear();
    for (const s of peers.values()) s.destroy();
  }

  /**
   * Uses `next` from now on (after re-registering with a restarted server): the server
   * connection and outgoing data connections prove its secret, and the data port checks it for
   * every connection it accepts from now on (peers and the server's relay know only the new one).
   */
  function adoptSecurity(next: WorkerSecurity): void {
    toServer = connectSecurity(next, "server");
    toPeers = connectSecurity(next, "peer");
    if (next.secret !== undefined) dataPortSecurity.secret = next.secret;
    else delete dataPortSecurity.secret;
  }

  let resolveDone: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  // Tracing: CPU samples and the trace written out about once a second.
  const traceTimer = setInterval(() => {
    if (!stopped) guard(() => core!.traceTick(), () => undefined);
  }, 1000).unref();
  const close = (): void => {
    if (stopped) return;
    stopped = true;
    clearInterval(traceTimer);
    // Every program this worker started dies with it (and whatever those programs started);
    // queued ones never start.
    core!.stopPrograms();
    stopAllPrograms();
    core!.traceFlush();
    // A worker stopping on purpose says so first (our extension, when the server announced it):
    // the server then shows it as departed, not lost. The connection closes once that is written.
    // `done` resolves once it is written (the CLI exits then), at most 2 s later.
    const leaving = server.destroyed ? null : core!.leavingFrame();
    let left: Promise<void> = Promise.resolve();
    if (leaving) {
      left = new Promise<void>((resolve) => {
        const give = setTimeout(resolve, 2000);
        server.end(leaving, () => {
          clearTimeout(give);
          resolve();
        });
      }).then(() => void server.destroy());
    } else server.destroy();
    for (const s of peers.values()) s.destroy();
    for (const s of directSockets) s.destroy();
    for (const l of links.values()) l.socket?.destroy();
    dataServer.close();
    void functions.close();
    python.close();
    if (pinned !== undefined) native().releaseCpus(pinned.claim);
    rmSync(workDir, { recursive: true, force: true });
    removeCreatedParents(workDir, createdRoot);
    void left.then(() => resolveDone());
  };

  let reconnectFailed = false;
  /** Serves the server connection `g` (the first, or one after a reconnect). */
  const attach = (g: Greeted): void => {
    const socket = g.socket;
    server = socket;
    socket.on("data", (chunk: Buffer) => guard(() => core!.onServerData(chunk), () => socket.destroy()));
    socket.on("error", (e) => log("warn", `server connection: ${e.message}`));
    socket.on("close", () => {
      if (stopped) return;
      if (options.reconnectSeconds === undefined || core!.stopRequested()) {
        log("info", "Connection to server is closed. Terminating ...");
        close();
      } else {
        void reconnect(options.reconnectSeconds);
      }
    });
    guard(() => core!.onServerData(g.received), () => socket.destroy());
    socket.resume();
  };
  /**
   * The server went away: stop every task (the next server decides what runs), forget the data
   * connections, keep the stored objects, and register again (reporting them) within `seconds`.
   */
  const reconnect = async (seconds: number): Promise<void> => {
    log("info", `Connection to server is closed; reconnecting to ${options.serverHost}:${options.serverPort} (for up to ${seconds} s), keeping its data objects ...`);
    // Every task is stopped at once and its answer dropped: a restored task may be given to this
    // worker again under the same id, so no per-id kill may come later (cancelTask's SIGKILL
    // after a grace would hit the next run) and the old programs must be gone before it
    // registers again (their outcomes are dropped by the reset core).
    for (const ctl of active.values()) ctl.abort();
    active.clear();
    functions.cancelAll();
    dropDataConnections();
    try {
      for (const l of core!.resetConnection().logs) log(l.level, l.message);
    } catch (e) {
      log("error", (e as Error).message);
    }
    for (let i = 0; i < 250 && stopAllPrograms() > 0; i++) await new Promise((r) => setTimeout(r, 20));
    const deadline = Date.now() + seconds * 1000;
    for (let delay = 100; !stopped; delay = Math.min(delay * 2, 2000)) {
      try {
        // A restarted server has a new secret (and certificate): asked for anew on every attempt.
        const next = options.refreshSecurity?.() ?? security;
        if ((next.tls !== undefined) !== (tlsIdentity !== undefined)) {
          // The data port cannot change between plain TCP and TLS under its peers.
          log("error", `Cannot reconnect to ${options.serverHost}:${options.serverPort}: the server ${next.tls !== undefined ? "now uses" : "no longer uses"} TLS; start the worker again`);
          reconnectFailed = true;
          close();
          return;
        }
        const g = await greet(connectSecurity(next, "server"));
        if (stopped) {
          g.socket.destroy();
          return;
        }
        adoptSecurity(next);
        attach(g);
        log("info", `Worker re-registered at ${options.serverHost}:${options.serverPort}`);
        return;
      } catch (e) {
        if (stopped) return;
        if (Date.now() + delay > deadline) {
          log("error", `Cannot reconnect to ${options.serverHost}:${options.serverPort}: ${(e as Error).message}`);
          reconnectFailed = true;
          close();
          return;
        }
        log("debug", `reconnecting: ${(e as Error).message}`);
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  };
  attach(greeted);
  // Function threads start once registered (registering first keeps the worker's start short).
  functions.start();
  const inJob = options.job ? `, job ${options.job.id}${options.job.task !== undefined ? ` task ${options.job.task}` : ""}` : "";
  const pinText = pinned !== undefined ? ` (programs pinned to CPUs ${pinned.cpus.join(",")})` : "";
  log("info", `Worker registered at ${options.serverHost}:${options.serverPort}; data port ${dataPort}, ${options.cpus} cpus${pinText}, work dir ${workDir}${inJob}`);
  return {
    dataPort,
    workDir,
    done,
    close,
    get reconnectFailed() {
      return reconnectFailed;
    },
  };
}

/** How connections to the server (`"server"`, its certificate pinned) or to peers prove `s`. */
function connectSecurity(s: WorkerSecurity, to: "server" | "peer"): ConnectSecurity {
  return {
    ...(s.secret !== undefined ? { secret: s.secret } : {}),
    ...(s.tls !== undefined ? { tls: to === "server" ? { fingerprint: s.tls.serverFingerprint } : {} } : {}),
  };
}

/** Streams to send: the objects (in stream order), the SEND's address, their parts and lease. */
interface QueuedSend {
  ids: Int32Array;
  address: string;
  parts: Buffer[];
  lease: number | undefined;
  /** Times sent again already. */
  attempt: number;
}

/** A link connection (`peer-link`) to a peer that accepted it. */
interface LinkConnection {
  /** Undefined while it connects and authenticates. */
  socket: Socket | undefined;
  /** Offers waiting for `socket`. */
  queued: { send: QueuedSend; offer: Buffer }[];
  /** Offers written, in order, waiting for their replies. */
  pending: QueuedSend[];
  /** Made for a server connection since lost: nothing offered on it is sent again. */
  dropped: boolean;
}

/** How long a new connection's streams wait for the receiver's PeerHello (`peer-link`) at most. */
const PEER_HELLO_WAIT_MS = 1000;

/** A data connection this worker opened (to a peer, or the server's data port). */
interface OutgoingConnection {
  conn: number;
  /** Undefined while it connects and authenticates. */
  socket: Socket | undefined;
  /** Set once streams may be written: authenticated, and the receiver's PeerHello came (or will not). */
  ready: boolean;
  /** The receiver accepted `peer-link`: objects in data files are offered by path. */
  link: boolean;
  /** Streams waiting for `ready`. */
  queued: QueuedSend[];
  /** Streams written that may not have reached the peer yet (sent again if it breaks). */
  unsure: UnsureStreams;
  /** Made for a server connection since lost: its transfers are over, nothing is sent on it. */
  dropped: boolean;
  /** Why it failed last (a refused connect, a socket error), for the retries and TRANSFER_FAILED. */
  cause: string;
}

/** Bytes written after a stream before it counts as delivered (beyond any kernel socket buffer). */
const UNSURE_WINDOW = 64 * 1024 * 1024;
/** Times a stream is sent again after its data connection broke, before it is given up. */
const SEND_ATTEMPTS = 4;

/** Streams sent on a data connection together that may not have reached the peer yet. */
interface UnsureStream {
  /** The data objects, in stream order. */
  ids: Int32Array;
  /** The address the server gave in its SEND. */
  address: string;
  /** Its length on the wire, in bytes. */
  bytes: number;
  /** Times it was sent again already. */
  attempt: number;
  /** The connection's written byte count once the stream was written; -1 before. */
  writtenAt: number;
}

/** A data connection's streams in order of writing; those before `head` count as delivered. */
interface UnsureStreams {
  entries: UnsureStream[];
  head: number;
  /** Bytes of streams written so far on the connection. */
  written: number;
}

/** `WorkerCommand.type` DICTIONARY (proto/comm.proto). */
const DICTIONARY = 8;

/**
 * Whether the server's first frame is its DICTIONARY. Serializers write fields in number order,
 * so `type` (field 1, varint) comes first and two bytes tell; anything else is decoded in full.
 * The worker's own frames are read by the core: the generated messages (protobufjs, 10-20 ms to
 * load) stay unloaded, and a worker registers that much sooner (issue #26).
 */
function isDictionary(payload: Buffer): boolean {
  if (payload[0] === 0x08 && payload[1]! < 0x80) return payload[1] === DICTIONARY;
  const { comm } = messages();
  return comm.WorkerCommand.decode(payload).type === comm.WorkerCommand.Type.DICTIONARY;
}

/**
 * The framed Register with our extension field `job_id` (100, proto/alloc.proto) appended: a
 * protobuf message may be extended by concatenation, and servers that do not know the field skip it.
 */
function withJobId(framed: Buffer, jobId: string): Buffer {
  const protobuf = require("protobufjs/minimal.js") as typeof import("protobufjs/minimal.js");
  const field = Buffer.from(protobuf.Writer.create().uint32((100 << 3) | 2).string(jobId).finish());
  const out = Buffer.concat([framed, field]);
  out.writeBigUInt64LE(BigInt(out.length - 8), 0);
  return out;
}

/** Removes the empty parents of `dir` this worker created, up to `createdRoot` (none: nothing). */
function removeCreatedParents(dir: string, createdRoot: string | undefined): void {
  if (createdRoot === undefined || createdRoot === dir) return;
  for (let d = dirname(dir); d.startsWith(createdRoot); d = dirname(d)) {
    try {
      rmdirSync(d); // only an empty one
    } catch {
      return;
    }
    if (d === createdRoot) return;
  }
}

