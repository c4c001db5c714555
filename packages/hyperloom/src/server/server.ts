/**
 * The server process: accepts clients and workers on the main port and workers' data streams on
 * the data port. Every byte of the main port goes to the Rust core, which answers with the framed
 * bytes to write; this layer only moves bytes between sockets and the core.
 */
import type { Server as NetServer, Socket } from "node:net";
import { native, type ServerCore, type ServerOutput } from "../native.js";
import { listenSecure, type ListenSecurity } from "../security/transport.js";
import { defaultFrameLimits, FrameLimiter, type FrameLimits } from "../security/frame-limits.js";
import { log, logs } from "../log.js";
import { parseStatus, type StatusSnapshot } from "../protocol/status.js";
import { relayDataStreams } from "./data-relay.js";
import { ClientWriter } from "./client-writer.js";
import { WaitingWarnings } from "./waiting.js";
import { Allocator } from "../allocator/allocator.js";
import type { RunningDashboard } from "./dashboard.js";
import type { EarlyListener } from "./early-listen.js";

/**
 * The allocation control connection and its messages (protobufjs, 10-20 ms to load), loaded by
 * the first control connection only, never before the server listens nor for a worker or client
 * (issue #26: accepting within 100 ms of exec, a worker registered within 250 ms).
 */
const control = (): typeof import("../allocator/control.js") => require("../allocator/control.js") as typeof import("../allocator/control.js");
import { dashboardToken } from "../security/dashboard-access.js";

/** Default of {@link ServerOptions.reconnectGraceSeconds} (`--reconnect-grace`), in seconds. */
export const DEFAULT_RECONNECT_GRACE_S = 5;

/** Options of {@link startServer}. */
export interface ServerOptions {
  /** Main port; 0 picks a free one. Default 9010. */
  port?: number;
  /** Listen address. Default `127.0.0.1`; `0.0.0.0` (the original's) listens on every interface. */
  host?: string;
  /** Serve the live dashboard, `/metrics` and `/status.json` on this address (host default 127.0.0.1; port 0: any free one). */
  dashboard?: { host?: string; port: number };
  /** A task whose worker is lost while running it this many times fails (default 2). */
  maxCrashes?: number;
  /**
   * Journal to this file (`--journal`): accepted plans, releases, completions and client
   * sessions, so that a restarted server resumes its clients' plans. An existing journal is
   * restored first (README, "Durability").
   */
  journal?: string;
  /** Compact the journal while running once it reaches this many bytes (and twice its compacted size). Default 64 MiB. */
  journalCompactBytes?: number;
  /** How long a restored client session waits for its client to re-attach before its plans are discarded, in seconds (default 300). */
  reattachSeconds?: number;
  /**
   * After a restore: how long results reported before the restart (without a checkpoint) wait
   * for a reconnecting worker to bring them back before they are computed again, in seconds
   * (default {@link DEFAULT_RECONNECT_GRACE_S}; 0: no waiting). Tasks that need none of them run
   * at once; the wait ends early once every such result is back.
   */
  reconnectGraceSeconds?: number;
  /**
   * Authentication and encryption of both ports. Default: none (the original's open server);
   * `hyperloom server` gives a secret unless `--insecure`.
   */
  security?: ListenSecurity;
  /** The access file the server writes (for the allocation queues' workers); absent: an open server. */
  accessFile?: string;
  /** Frame limits of the main port (bounded memory per peer). Default {@link defaultFrameLimits}. */
  limits?: Partial<FrameLimits>;
  /**
   * The main port, already listening on `host:port` since process start (`hyperloom server`,
   * `loom-server`: `claimEarlyListener` in `early-listen.ts`); its connections accepted meanwhile are served
   * once the server is ready.
   */
  mainListener?: EarlyListener;
  /**
   * The main port answers no connection (they wait, unanswered) until {@link RunningServer.serve}:
   * the command writes the access file in between, so a peer answered by this server finds its
   * secret in the file (a restarted server's file still holds the previous one until then).
   */
  holdConnections?: boolean;
}

/** A running server. */
export interface RunningServer {
  /** The main port. */
  port: number;
  /** The data port (workers push fetched results here). */
  dataPort: number;
  /** The dashboard, if one was asked for. */
  dashboard?: RunningDashboard;
  /** Starts answering the main port's connections (held until now with `holdConnections`; else a no-op). */
  serve(): void;
  /** Stops listening and closes every connection. */
  close(): Promise<void>;
}

/** Starts a server; resolves once both ports listen. */
export async function startServer(options: ServerOptions = {}): Promise<RunningServer> {
  const host = options.host ?? "127.0.0.1";
  const security = options.security ?? {};
  const limits: FrameLimits = { ...defaultFrameLimits, ...options.limits };
  const limiters = new Map<number, { limiter: FrameLimiter; socket: Socket }>();
  const sockets = new Map<number, Socket>();
  const writers = new Map<number, ClientWriter>();
  let nextConn = 1;
  let core: ServerCore | undefined;
  let allocator: Allocator | undefined;
  // Set once the server itself is going away: the connections it then closes are not departures
  // to report (nor work to reschedule).
  let stopping = false;

  const apply = (out: ServerOutput): void => {
    for (const l of out.logs) log(l.level, l.message);
    for (const w of out.writes) writers.get(w.conn)?.write(w.data);
    for (const c of out.close) {
      const s = sockets.get(c);
      if (s) {
        sockets.delete(c);
        writers.get(c)?.flush();
        writers.delete(c);
        s.end();
        s.destroySoon();
      }
    }
    if (out.terminate) {
      log("info", "Terminate requested by a client; exiting");
      stopping = true;
      core!.traceFlush();
      core!.journalSync();
      // Workers that would reconnect are told STOP first (our extension): they exit.
      safely(() => core!.goodbye(), "letting workers go");
      for (const w of writers.values()) w.flush(); // what this turn wrote (STOP included) leaves before the sockets end
      const pending = [...sockets.values()].map((s) => new Promise<void>((r) => s.end(r)));
      pending.push(allocator!.close());
      void Promise.race([Promise.all(pending), new Promise((r) => setTimeout(r, 500))]).then(() => process.exit(0));
    }
  };

  /** Runs a core call and applies its output; a core error is logged, never fatal. */
  const safely = (f: () => ServerOutput, what: string): void => {
    let out: ServerOutput;
    try {
      out = f();
    } catch (e) {
      log("error", `${what}: ${(e as Error).message}`);
      return;
    }
    apply(out);
  };

  const { server: dataServer, port: dataPort, connections: dataConnections } = await listenSecure("data port", host, 0, security, (socket) => {
    relayDataStreams(socket, {
      relayWhole: (chunk, start) => core!.relayWhole(chunk, start),
      onHeaders: (framed) => core!.onDataHeaders(framed),
      clientWriter: (conn) => writers.get(conn),
    });
  });
  core = new (native().ServerCore)(dataPort);
  if (options.maxCrashes !== undefined) core.setMaxCrashes(options.maxCrashes);
  let reattachTimer: NodeJS.Timeout | undefined;
  let graceTimer: NodeJS.Timeout | undefined;
  if (options.journal !== undefined) {
    try {
      apply(core.openJournal(options.journal, options.journalCompactBytes));
    } catch (e) {
      dataServer.close();
      options.mainListener?.server.close();
      throw e;
    }
    // Restored sessions whose client never comes back do not keep their plans forever.
    reattachTimer = setTimeout(() => safely(() => core!.discardDetached(), "journal"), (options.reattachSeconds ?? 300) * 1000).unref();
    // Results held by workers that have not reconnected yet are not computed again at once.
    const grace = options.reconnectGraceSeconds ?? DEFAULT_RECONNECT_GRACE_S;
    const awaiting = core.awaitingResults();
    if (awaiting > 0 && grace > 0) {
      log("info", `journal: ${awaiting} results reported before the restart wait up to ${grace} s (--reconnect-grace) for their workers to reconnect`);
      graceTimer = setTimeout(() => safely(() => core!.endReconnectGrace(), "reconnect grace"), grace * 1000).unref();
    } else if (awaiting > 0) {
      apply(core.endReconnectGrace());
    }
  }

  const { server: main, port, connections: mainConnections, open: serve } = await listenSecure("main port", host, options.port ?? 9010, security, (socket) => {
    const conn = nextConn++;
    const limiter = new FrameLimiter(limits);
    limiters.set(conn, { limiter, socket });
    const ip = (socket.remoteAddress ?? "127.0.0.1").replace(/^::ffff:/, "");
    log("debug", `connection ${conn} from ${socket.remoteAddress}:${socket.remotePort}`);
    let attached = false;
    /** Counts `chunk`'s frames against the limits; false: the connection is closed. */
    const withinLimits = (chunk: Buffer): boolean => {
      try {
        limiter.check(chunk, Date.now());
        return true;
      } catch (e) {
        // Refused before the core buffers it: the core never holds more than the limits allow.
        log("warn", `connection ${conn} from ${ip}: ${(e as Error).message}; closing it`);
        socket.destroy();
        return false;
      }
    };
    const onData = (chunk: Buffer, counted = false): void => {
      let out: ServerOutput;
      if (!counted && !withinLimits(chunk)) return;
      try {
        out = core!.onData(conn, chunk);
      } catch (e) {
        // The core turns bad input into closed connections; anything else is a bug of ours,
        // still confined to the connection that triggered it.
        log("error", `connection ${conn}: ${(e as Error).message}; closing it`);
        socket.destroy();
        return;
      }
      apply(out);
    };
    // The first frame says what connects: allocation control connections (our extension) are
    // served here; everything else goes to the core, which reads the same frame again.
    const head = new FirstFrame();
    const onFirst = (chunk: Buffer): void => {
      if (!withinLimits(chunk)) return;
      const first = head.push(chunk);
      if (first === undefined) return;
      socket.off("data", onFirst);
      // Scanned by the core's protobuf scanner: no JavaScript decoder is loaded for a worker's or
      // a client's first frame (issue #26: protobufjs took 10-20 ms on the first registration).
      const reg = first.payload === undefined ? null : native().scanRegister(first.payload);
      if (reg?.allocControl) {
        control().serveControl(socket, first.rest, allocator!, conn);
        return;
      }
      if (reg?.jobId) allocator!.workerRegistered(conn, reg.jobId);
      attached = true;
      sockets.set(conn, socket);
      writers.set(conn, new ClientWriter(socket));
      safely(() => core!.onConnect(conn, ip), `connection ${conn}`);
      socket.on("data", onData);
      onData(first.bytes, true);
    };
    socket.on("data", onFirst);
    socket.on("error", (e) => log("debug", `connection ${conn}: ${e.message}`));
    socket.on("close", () => {
      log("debug", `connection ${conn} closed`);
      limiters.delete(conn);
      if (!attached || stopping) return;
      sockets.delete(conn);
      writers.delete(conn);
      allocator!.connectionClosed(conn);
      safely(() => core!.onClose(conn), `closing connection ${conn}`);
    });
  }, options.mainListener, options.holdConnections ?? false);
  allocator = new Allocator({
    waitingTasks: (limit) => core!.waitingTasks(limit),
    workerLoads: () => core!.workerLoads(),
    soleCopies: () => core!.soleCopies(),
    setAllocatableCpus: (cpus) => core!.setAllocatableCpus(cpus),
    retire: (conn) => {
      // The core forgets the worker now (its tasks, if any, go elsewhere); it exits when its
      // connection closes.
      const s = sockets.get(conn);
      if (s === undefined) return;
      // STOP (our extension) first: a worker that would reconnect exits instead.
      safely(() => core!.goodbye(conn), `letting connection ${conn} go`);
      sockets.delete(conn);
      // The STOP is in the connection's joined writes for this turn: it leaves before the end.
      writers.get(conn)?.flush();
      writers.delete(conn);
      safely(() => core!.retireWorker(conn), `letting connection ${conn} go`);
      s.end();
      s.destroySoon();
    },
    port,
    host,
    ...(options.accessFile !== undefined ? { accessFile: options.accessFile } : {}),
  });
  // Tracing: the core writes its trace out at least once a second; frames overdue are checked as often.
  const traceTimer = setInterval(() => {
    safely(() => core!.traceTick(), "trace");
    const now = Date.now();
    for (const [conn, { limiter, socket }] of limiters) {
      const late = limiter.overdue(now);
      if (late !== undefined) {
        log("warn", `connection ${conn}: ${late.message}; closing it`);
        limiters.delete(conn);
        socket.destroy();
      }
    }
  }, 1000).unref();
  // --debug: once a second, what the scheduler and the transfers did (from the core's counters).
  let previous: StatusSnapshot | undefined;
  const summaryTimer = setInterval(() => {
    if (!logs("debug")) return;
    const s = parseStatus(core!.snapshot());
    const line = previous && debugSummary(previous, s);
    if (line) log("debug", line);
    previous = s;
  }, 1000).unref();
  // Work that cannot make progress (no worker, or none able to run it) is said, not silent.
  const waiting = new WaitingWarnings(`hyperloom worker ${host === "0.0.0.0" ? "<this host>" : host} ${port}`);
  const waitingTimer = setInterval(() => {
    const count = core!.waiting();
    // While an allocation queue serves this server, its jobs bring the workers (alloc info says how).
    if (allocator!.serving()) count.withoutWorker = 0;
    for (const line of waiting.observe(Date.now(), count)) log("warn", line);
  }, 1000).unref();
  const dashboard = options.dashboard
    ? await (require("./dashboard.js") as typeof import("./dashboard.js")).startDashboard({
        ...options.dashboard,
        snapshot: () => core!.snapshot(),
        // The dashboard is as closed as the ports: a token derived from the secret, HTTPS with TLS.
        ...(security.secret !== undefined ? { token: dashboardToken(security.secret) } : {}),
        ...(security.tls !== undefined ? { tls: security.tls } : {}),
      })
    : undefined;
  return {
    port,
    dataPort,
    ...(dashboard ? { dashboard } : {}),
    serve,
    close: async () => {
      stopping = true;
      clearInterval(traceTimer);
      clearInterval(summaryTimer);
      clearInterval(waitingTimer);
      clearTimeout(reattachTimer);
      clearTimeout(graceTimer);
      await allocator!.close();
      await dashboard?.close();
      core!.traceFlush();
      core!.journalSync();
      // Workers that would reconnect are told STOP (our extension) before their connections end.
      safely(() => core!.goodbye(), "letting workers go");
      for (const w of writers.values()) w.flush(); // the joined writes of this turn leave before the sockets end
      const ending = [...sockets.values()].map((s) => new Promise<void>((r) => s.end(r)));
      await Promise.race([Promise.all(ending), new Promise((r) => setTimeout(r, 500))]);
      for (const s of sockets.values()) s.destroy();
      // Connections that never became a client or worker (authenticating, or silent) too: the
      // ports' close waits for every connection.
      for (const s of [...mainConnections, ...dataConnections]) s.destroy();
      await Promise.all([closeServer(main), closeServer(dataServer)]);
    },
  };
}

/** One line of what happened between two snapshots, or undefined when nothing did. */
export function debugSummary(a: StatusSnapshot, b: StatusSnapshot): string | undefined {
  const d = (f: (s: StatusSnapshot) => number): number => f(b) - f(a);
  const rounds = d((s) => s.scheduler_rounds);
  const assigned = d((s) => s.tasks_assigned);
  const finished = d((s) => s.tasks.finished);
  const failed = d((s) => s.tasks.failed);
  const transfers = d((s) => s.transfers.total);
  const fetches = d((s) => s.transfers.fetches);
  if (rounds + assigned + finished + failed + transfers + fetches === 0) return undefined;
  const secs = ((b.time_ms - a.time_ms) / 1000).toFixed(1);
  const t = b.tasks;
  return (
    `last ${secs} s: ${rounds} scheduling rounds, ${assigned} tasks assigned, ${finished} finished, ${failed} failed; ` +
    `${transfers} transfers (${d((s) => s.transfers.bytes)} bytes arrived, ${b.transfers.in_flight} in flight), ` +
    `${fetches} fetches (${d((s) => s.transfers.fetch_bytes)} bytes); now waiting ${t.waiting}, ready ${t.ready}, running ${t.running}`
  );
}

function closeServer(server: NetServer): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Longest first frame looked at before the core gets the connection (a Register is tens of bytes). */
const MAX_FIRST_FRAME = 64 << 10;

/** Collects a connection's first frame. */
class FirstFrame {
  private chunks: Buffer[] = [];
  private length = 0;

  /**
   * Feeds a chunk; once the first frame is complete (or cannot be one we read), returns every byte
   * so far (`bytes`), the frame's payload (undefined when oversized) and what followed it (`rest`).
   */
  push(chunk: Buffer): { bytes: Buffer; payload: Buffer | undefined; rest: Buffer } | undefined {
    this.chunks.push(chunk);
    this.length += chunk.length;
    if (this.length < 8) return undefined;
    const bytes = this.chunks.length === 1 ? chunk : Buffer.concat(this.chunks, this.length);
    this.chunks = [bytes];
    const len = bytes.readUInt32LE(0) + bytes.readUInt32LE(4) * 2 ** 32;
    if (len > MAX_FIRST_FRAME) return { bytes, payload: undefined, rest: Buffer.alloc(0) };
    if (bytes.length < 8 + len) return undefined;
    return { bytes, payload: bytes.subarray(8, 8 + len), rest: bytes.subarray(8 + len) };
  }
}

