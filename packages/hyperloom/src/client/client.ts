/**
 * The client: connects to a server, submits plans, and waits for, fetches and releases results.
 * Pure TypeScript (no native addon): the wire format comes from the code generated from `proto/`.
 */
import type { Socket } from "node:net";
import { resolve as resolvePath } from "node:path";
import { FrameReader, frame } from "../protocol/frame.js";
import { scanDataResponse, scanDataResponseAt, scanFinishedAt, scanFinishedResponse, type DataResponseHeader } from "../protocol/data-response.js";
import { idRequests, packedIdsRequest } from "../protocol/id-requests.js";
import { comm, PROTOCOL_VERSION } from "../protocol/messages.js";
import { Symbol } from "../protocol/symbols.js";
import { Future, type FetchBatch } from "./future.js";
import { FutureTable } from "./future-table.js";
import { Task } from "./task.js";
import { LoomError, TaskFailed } from "./errors.js";
import { decodeData, type DataValue } from "./data.js";
import { DirectFetcher, type Location } from "./direct-fetch.js";
import { encodePlan } from "./plan.js";
import { DEFAULT_CONNECT_TIMEOUT_MS, handshake, type Greeted } from "../protocol/handshake.js";
import { accessFor, namesAddress, sameAccess, type Access } from "../security/access-file.js";

/** The server's main port when none is given (the original's default). */
const DEFAULT_PORT = 9010;

/** Options of {@link Client.connect}. */
export interface ConnectOptions {
  /** Limit for connecting, authenticating and receiving the server's dictionary, in ms (default 10 000). */
  timeoutMs?: number;
  /**
   * Survive a lost connection (README, "Durability"): the client connects again, retrying with
   * backoff (0.1 s doubling to 2 s) for up to `reconnectTimeoutMs`, and re-attaches to its
   * session (a server restarted with `--journal` restores it); plans the server never got are
   * sent again, and every future keeps working. Without it (the default), a lost connection
   * fails every pending future with an error naming its task.
   */
  reconnect?: boolean;
  /** With `reconnect`: how long to keep trying, in ms (default 120 000). */
  reconnectTimeoutMs?: number;
  /**
   * The server's access file (secret, TLS fingerprint, host and port). Default:
   * `HYPERLOOM_ACCESS_FILE`, else `~/.hyperloom/access.json` when it exists and is for the
   * requested server; none: an open connection (for `--insecure` servers and `loom-server`).
   */
  accessFile?: string;
  /**
   * Fetch large results (1 MiB and more) from the worker that holds them instead of through the
   * server (default true; our server only, README "Fetching large results"): mapped from the
   * worker's data file when it runs on this host as this user, else streamed from its data port.
   * A direct fetch that fails falls back to the server's relay.
   */
  directFetch?: boolean;
}

/** `host:port` from `HYPERLOOM_SERVER` (as `hyperloom local` sets it), or the default address. */
function serverAddress(env: string | undefined): [string, number] {
  if (env === undefined || env === "") return ["127.0.0.1", DEFAULT_PORT];
  const m = /^(.+):(\d+)$/.exec(env.trim());
  const port = m ? Number(m[2]) : NaN;
  if (!m || port < 1 || port > 65535) throw new LoomError(`HYPERLOOM_SERVER='${env}' is not host:port (e.g. 127.0.0.1:9010)`);
  return [m[1]!, port];
}

/** Whether `host` is a loopback address. */
function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host.startsWith("127.");
}

/**
 * Where to reach a worker the server located at `address` (`ip:port` as the server sees it): a
 * worker on the server's own host is seen at a loopback address, which from a client on another
 * host means the server's host (`serverHost`, as this client reached it).
 */
function workerAddress(address: string, serverHost: string): string {
  const sep = address.lastIndexOf(":");
  const host = address.slice(0, sep);
  return isLoopback(host) && !isLoopback(serverHost) ? `${serverHost}:${address.slice(sep + 1)}` : address;
}

/**
 * Connected clients of this process, on a global shared by every copy of this module, so that
 * `hyperloom local` can find a client a finished script left open (see `cli/script-runner.ts`).
 */
export function openClients(): Set<Client> {
  const key = globalThis.Symbol.for("hyperloom.openClients");
  const g = globalThis as unknown as Record<symbol, Set<Client> | undefined>;
  return (g[key] ??= new Set<Client>());
}
import { parseStatus, type StatusSnapshot } from "../protocol/status.js";

const RequestType = comm.ClientRequest.Type;
const ResponseType = comm.ClientResponse.Type;

/** Server statistics. */
export interface Stats {
  /** Connected workers. */
  nWorkers: number;
  /** Data objects computed and not yet freed on the server (all clients' together, spec 4.1). */
  nDataObjects: number;
}

/** One future per task of a submission, each with its task's result type. */
export type FuturesOf<Ts extends readonly Task<any>[]> = { -readonly [K in keyof Ts]: Future<Ts[K] extends Task<infer T> ? T : never> };
/** Progress of a set of futures ({@link Client.progress}). */
export interface Progress {
  /** Futures finished (or finished and released). */
  finished: number;
  /** Futures failed (or released while running). */
  failed: number;
  /** Distinct futures watched. */
  total: number;
}

/** Options of {@link Client.submit}. */
export interface SubmitOptions {
  /**
   * Load existing checkpoints instead of computing (spec 8): a task with a `checkpointPath`
   * whose file exists on the server's file system is loaded from it on some worker, and the
   * tasks only it needed are not computed at all. A task whose file is missing is computed
   * (and its checkpoint written); a file that exists but cannot be loaded fails that task
   * (and what depends on it) with `File '<path>' does not exists`.
   */
  load?: boolean;
}

/** The fields of a decoded `Error` message. */
interface ErrorFields {
  id?: number | null;
  worker?: string | null;
  errorMsg?: Uint8Array | null;
  label?: string | null;
}

/** A field that was present on the wire (protobufjs puts defaults on the prototype). */
function fieldOf<K extends string>(msg: { [k in K]?: number | null } | undefined | null, key: K): number | undefined {
  return msg != null && Object.prototype.hasOwnProperty.call(msg, key) ? (msg[key] ?? undefined) : undefined;
}

/** What this client understands beyond the original protocol (`Register.features`). */
const CLIENT_FEATURES = ["dictionary-updates", "fetch-many", "session", "data-batch", "release-many"];

/** `ClientResponse.type` DATA_BATCH (ours, feature `data-batch`), and the key of its `data_batch` field (104, bytes). */
const DATA_BATCH = 103;
const DATA_BATCH_KEY = [0xc2, 0x06] as const;

/** With {@link ConnectOptions.directFetch}: large results come from their workers. */
const DIRECT_FEATURE = "fetch-direct";

/** How long a finished future is held strongly before it is watched for being dropped (one round). */
const DROP_WATCH_MS = 500;

/** Most ids in one `fetch-many` FETCH or `release-many` RELEASE (keeps a request well under any frame limit: 5 B per id). */
const IDS_PER_REQUEST = 65_536;

interface Pending<T> {
  resolve: (v: T) => void;
  reject: (e: Error) => void;
}

/** A connection to a HyperLoom server. */
export class Client {
  private reader = new FrameReader();
  private readonly symbols = new Map<string, number>();
  private symbolNames: string[] = [];
  /**
   * The name of a dictionary id, for {@link decodeData}: one function for the client's life, so
   * that the decoder's compiled code calls the same one for every result (a closure per result
   * threw it away at the next; issue #26).
   */
  private readonly typeName = (t: number): string | undefined => this.symbolNames[t];
  /** The dictionary id of plain data (`loom/data`), whose fetched value is its one frame. */
  private plainDataType = -1;
  private nextId = 0;
  private readonly running = new FutureTable<Future<unknown>>();
  /**
   * Finished, unreleased futures by id: held strongly while young (see {@link Client.watchDrops}),
   * then weakly, so that a dropped future is released for the program.
   */
  private readonly held = new FutureTable<Future<unknown> | WeakRef<Future<unknown>>>();
  /**
   * Ids of the futures finished since the last {@link Client.watchDrops} round, and of those of
   * the round before (ids, not futures: one released meanwhile, e.g. by a gather, is then held
   * by nothing of the client's, nor is its result).
   */
  private young: number[] = [];
  private old: number[] = [];
  private dropTimer: NodeJS.Timeout | undefined;
  /** Id ranges of the submitted plans (to fail a rejected plan's futures). */
  private readonly plans: Array<{ idBase: number; end: number }> = [];
  /**
   * Finished futures whose result was asked of the server and has not come yet, by id (each id
   * is asked once however many fetch calls wait for it; they wait on the future itself).
   */
  private readonly fetching = new FutureTable<Future<unknown>>();
  /** Ids whose outstanding fetch a TASK_FAILED rejected: the server's ERROR answer to that FETCH may still come (it is expected, not a warning). */
  private readonly failedFetches = new Set<number>();
  private readonly statsWaiters: Array<Pending<Stats>> = [];
  private data: { id: number; typeId: number; remaining: number; frames: Buffer[] } | undefined;
  /**
   * A DATA_BATCH being read (feature `data-batch`): its table of 12-byte entries (client id,
   * type id, frame count; little-endian) and the offset of the next object's entry; the objects'
   * frames follow the response in table order.
   */
  private batch: { table: Buffer; next: number } | undefined;
  /** Where {@link Client.readInPlace} scans a DATA header (reused). */
  private readonly dataScratch: DataResponseHeader = { id: 0, nMessages: 0, typeId: 0 };
  private outgoing: Buffer[] = [];
  private flushScheduled = false;
  /** Whether the server offered `fetch-many` (ours): FETCHes of one turn then leave as one request. */
  private fetchMany = false;
  /** Whether the server offered `release-many` (ours): a batch of RELEASEs leaves as one request. */
  private releaseMany = false;
  /** Ids to FETCH, packed into requests when this turn's output is flushed (or before any other request). */
  private fetchIds: number[] = [];
  /** Ids of dropped futures (and other releases made one at a time) to RELEASE when this turn's output is flushed. */
  private releaseIds: number[] = [];
  private closedError: Error | undefined;
  private trace = false;
  private readonly finishedListeners = new Set<(f: Future<unknown>) => void>();
  /** Called when a future settles or is canceled (for {@link Client.progress}). */
  private readonly settleListeners = new Set<(f: Future<unknown>) => void>();
  private readonly statusWaiters: Array<Pending<StatusSnapshot>> = [];
  private readonly releaser = new FinalizationRegistry<number>((id) => this.releaseId(id));
  /** The session token the server gave (our extension), if it gave one. */
  private session: number | undefined;
  /** With `reconnect`: the plans sent, to send again those a restarted server never got. */
  private readonly sentPlans: Array<{ idBase: number; buf: Buffer }> = [];
  /** Reconnecting: requests wait (fetches, stats, status and plans are sent again on re-attach). */
  private away = false;
  /** Releases asked for while away. */
  private releasedAway: number[] = [];
  /** `close()` was called: a closed connection is no loss. */
  private closing = false;
  /** Fetches from workers' data ports (made on the first LOCATION). */
  private direct: DirectFetcher | undefined;
  /** Results being fetched from their workers; a RELEASE of one waits until it has arrived. */
  private readonly directInFlight = new Set<number>();
  /** Releases waiting for the direct fetch of their result. */
  private readonly releaseAfterFetch = new Set<number>();
  /** How fetched results arrived (see {@link Client.fetchPaths}). */
  private readonly paths = { relayed: 0, streamed: 0, mapped: 0, fellBack: 0 };

  private constructor(
    private socket: Socket,
    private readonly address: {
      host: string;
      port: number;
      timeoutMs: number;
      reconnectMs: number | undefined;
      accessFile: string | undefined;
      /** The address is the access file's: reconnecting follows the file to a moved server. */
      followsFile: boolean;
      features: string[];
    },
  ) {}

  /**
   * Connects to the server at `host:port` and waits for its symbol dictionary. Without a host,
   * the address comes from `HYPERLOOM_SERVER` (`host:port`, set by `hyperloom local`), else the
   * access file, else `127.0.0.1:9010`. With an access file (see {@link ConnectOptions}) the
   * connection authenticates, and uses TLS when the server does. Rejects with a one-line
   * `LoomError` when nothing listens there, when the peer is not a HyperLoom server, when
   * authentication fails, or when it all takes longer than `options.timeoutMs` (10 s by default).
   */
  static async connect(host?: string, port?: number, options: ConnectOptions = {}): Promise<Client> {
    let h = host;
    let p = host === undefined ? undefined : (port ?? DEFAULT_PORT);
    const timeoutMs = options.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    let greeted: Greeted;
    let followsFile = false;
    const features = options.directFetch === false ? CLIENT_FEATURES : [...CLIENT_FEATURES, DIRECT_FEATURE];
    try {
      if (h === undefined && (process.env.HYPERLOOM_SERVER ?? "") !== "") [h, p] = serverAddress(process.env.HYPERLOOM_SERVER);
      const access = accessFor(h, p, options.accessFile);
      // The address is the access file's (read from it, or the one it names): a server restarted
      // elsewhere (`--port 0`) is followed there.
      followsFile = access !== undefined && (h === undefined || namesAddress(access, h, p!));
      h ??= access?.host ?? "127.0.0.1";
      p ??= access?.port ?? DEFAULT_PORT;
      try {
        greeted = await Client.greet(h, p, timeoutMs, options.accessFile, features, undefined, access);
      } catch (e) {
        // A server restarted here answers nobody before its access file holds its new secret, and
        // one restarted on another port is not here at all: refused with what the file said, the
        // file read again says so, and is tried once more (at its address, if it moved).
        let now: Access | undefined;
        try {
          now = accessFor(followsFile ? undefined : h, followsFile ? undefined : p, options.accessFile);
        } catch {
          throw e;
        }
        if (now === undefined || sameAccess(access, now)) throw e;
        if (followsFile) [h, p] = [now.host, now.port];
        greeted = await Client.greet(h, p, timeoutMs, options.accessFile, features, undefined, now);
      }
    } catch (e) {
      throw new LoomError((e as Error).message);
    }
    const reconnectMs = options.reconnect ? (options.reconnectTimeoutMs ?? 120_000) : undefined;
    const client = new Client(greeted.socket, { host: h, port: p, timeoutMs, reconnectMs, accessFile: options.accessFile, followsFile, features });
    client.attach(greeted);
    openClients().add(client);
    return client;
  }

  /**
   * Connects, authenticates and registers (re-attaching to `session` when given); resolves with
   * the dictionary. Every connection, re-attaching ones too, does the whole handshake with the
   * access file read anew (`access`, else read here): a restarted server may have a new secret.
   */
  private static greet(
    host: string,
    port: number,
    timeoutMs: number,
    accessFile: string | undefined,
    features: string[],
    session: number | undefined,
    access: Access | undefined = accessFor(host, port, accessFile),
  ): Promise<Greeted> {
    const register = comm.Register.encode({
      protocolVersion: PROTOCOL_VERSION,
      type: comm.Register.Type.REGISTER_CLIENT,
      features,
      ...(session !== undefined ? { session } : {}),
    }).finish();
    return handshake({
      host,
      port,
      register: frame(register),
      isDictionary: (payload) => comm.ClientResponse.decode(payload).type === ResponseType.DICTIONARY,
      // A server that cannot re-attach the session says why (an ERROR instead of the dictionary).
      refusal: (payload) => {
        const m = comm.ClientResponse.decode(payload);
        return m.type === ResponseType.ERROR ? Buffer.from(m.error?.errorMsg ?? []).toString("utf8") : undefined;
      },
      timeoutMs,
      security: {
        ...(access !== undefined ? { secret: access.secret } : {}),
        ...(access?.tlsFingerprint !== undefined ? { tls: { fingerprint: access.tlsFingerprint } } : {}),
      },
    });
  }

  /** Takes over a greeted connection: its dictionary, then every frame that follows. */
  private attach(greeted: Greeted): void {
    const { socket } = greeted;
    const { host: h, port: p } = this.address;
    this.socket = socket;
    this.reader = new FrameReader();
    this.data = undefined;
    this.batch = undefined;
    const dictionary = comm.ClientResponse.decode(greeted.dictionary);
    this.setDictionary(dictionary.symbols);
    // The original server offers no features: each future is then fetched by a FETCH of its own.
    this.fetchMany = dictionary.features.includes("fetch-many");
    this.releaseMany = dictionary.features.includes("release-many");
    const onChunk = (chunk: Buffer): void => {
      try {
        // A frame split across chunks is completed by the reader; the whole frames after it
        // are read in place; an incomplete one at the end is left with the reader.
        while (chunk.length > 0 && this.reader.pendingBytes > 0) {
          const missing = this.reader.missing;
          const part = missing >= chunk.length ? chunk : chunk.subarray(0, missing);
          chunk = missing >= chunk.length ? chunk.subarray(chunk.length) : chunk.subarray(missing);
          for (const f of this.reader.push(part)) this.onFrame(f);
        }
        if (chunk.length > 0) chunk = this.readInPlace(chunk);
        if (chunk.length > 0) for (const f of this.reader.push(chunk)) this.onFrame(f);
      } catch (e) {
        this.fail(e instanceof Error ? e : new Error(String(e)));
        socket.destroy();
      }
    };
    socket.on("data", onChunk);
    let lost: string | undefined;
    socket.on("error", (e) => (lost = `connection to server ${h}:${p} failed: ${e.message}`));
    socket.on("close", () => {
      const why = new LoomError(lost ?? `connection to server ${h}:${p} closed`);
      if (this.closing || this.address.reconnectMs === undefined || this.session === undefined || this.closedError) {
        openClients().delete(this);
        this.fail(why);
        return;
      }
      void this.reconnect(why);
    });
    const rest = greeted.received.subarray(8 + greeted.dictionary.length);
    if (rest.length > 0) onChunk(rest);
    socket.resume();
  }

  /**
   * Reconnecting to the access file's server: takes the address the file names now (a server
   * restarted on another port, `--port 0`, wrote its new one there). A file that cannot be read
   * (being rewritten, gone) leaves the address as it is.
   */
  private followAccessFile(): void {
    if (!this.address.followsFile) return;
    let now: Access | undefined;
    try {
      now = accessFor(undefined, undefined, this.address.accessFile);
    } catch {
      return;
    }
    if (now === undefined || namesAddress(now, this.address.host, this.address.port)) return;
    this.address.host = now.host;
    this.address.port = now.port;
  }

  /**
   * The connection was lost (`reconnect`): connects again with backoff and re-attaches to the
   * session; on the server's SESSION answer ({@link Client.resume}) what was lost is sent again.
   * Fails every pending future when the time is up or the server no longer knows the session.
   */
  private async reconnect(why: LoomError): Promise<void> {
    this.away = true;
    this.outgoing = [];
    // Releases not written yet are sent on re-attach.
    for (const id of this.releaseIds.splice(0)) this.releasedAway.push(id);
    const { timeoutMs, accessFile, features } = this.address;
    const deadline = Date.now() + this.address.reconnectMs!;
    for (let delay = 100; ; delay = Math.min(delay * 2, 2000)) {
      if (this.closing) return this.fail(why);
      this.followAccessFile();
      const { host, port } = this.address;
      try {
        const greeted = await Client.greet(host, port, Math.min(timeoutMs, Math.max(deadline - Date.now(), 1000)), accessFile, features, this.session);
        if (this.closing) {
          // Closed while re-attaching: nothing more to do on this connection.
          greeted.socket.destroy();
          return this.fail(why);
        }
        this.attach(greeted);
        return;
      } catch (e) {
        const msg = (e as Error).message;
        if (/^Session [0-9a-f]+ is unknown/.test(msg)) {
          openClients().delete(this);
          return this.fail(new LoomError(`${why.message}; re-attaching failed: ${msg}`));
        }
        if (Date.now() + delay > deadline) {
          openClients().delete(this);
          return this.fail(new LoomError(`${why.message}; not re-attached within ${this.address.reconnectMs! / 1000} s (last attempt: ${msg})`));
        }
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  /** Re-attached (SESSION after a reconnect): sends again what the server may not have got. */
  private resume(nextBase: number): void {
    this.away = false;
    this.outgoing = [];
    this.fetchIds = [];
    for (const p of this.sentPlans) if (p.idBase >= nextBase) this.send(p.buf);
    for (const id of this.fetching.keys()) this.queueFetch(id);
    if (this.releasedAway.length > 0) this.sendReleases(this.releasedAway.splice(0));
    for (let i = 0; i < this.statsWaiters.length; i++) this.sendRequest({ type: RequestType.STATS });
    for (let i = 0; i < this.statusWaiters.length; i++) this.sendRequest({ type: RequestType.STATUS });
  }

  /**
   * @internal Whether anything waits on this client (a future, a fetch, stats): used by
   * `hyperloom local` to tell a script that forgot `close()` from one still working.
   */
  _awaited(): boolean {
    if (this.fetching.size > 0 || this.statsWaiters.length > 0 || this.finishedListeners.size > 0) return true;
    for (const f of this.running.values()) if (f.waiters !== undefined || f.fetchers !== undefined) return true;
    return false;
  }

  /** @internal Drops the connection at once (`hyperloom local`, for a script that did not close it). */
  _destroy(): void {
    this.closing = true;
    this.direct?.close();
    this.socket.destroy();
  }

  /**
   * The id of a symbol in the server's dictionary; throws for a name the server does not know.
   * The dictionary grows while connected: our server sends it again whenever a worker registers
   * new task types.
   */
  symbolId(name: string): number {
    const id = this.symbols.get(name);
    if (id === undefined) throw new LoomError(`Unknown symbol '${name}': no worker registered this task type`);
    return id;
  }

  /** Submits a plan made of `tasks` and everything they reach; returns one future per task. */
  submit<Ts extends readonly Task<any>[]>(tasks: Ts, options: SubmitOptions = {}): FuturesOf<Ts> {
    this.checkOpen();
    const idBase = this.nextId;
    const { buf, count } = encodePlan(
      tasks,
      idBase,
      {
        symbol: (n) => this.symbolId(n),
        cpusSymbol: this.symbolId(Symbol.RESOURCE_CPUS),
        labels: true,
        loadCheckpoints: options.load ?? false,
      },
      this,
    );
    this.nextId = idBase + count;
    const futures: Future<unknown>[] = new Array(tasks.length);
    for (let i = 0; i < tasks.length; i++) {
      const t = tasks[i]!;
      // The plan's ids are new: a future already running under this id is this call's own (the
      // same task listed twice gets the same future).
      let f = this.running.get(t._planId);
      if (f === undefined) {
        f = new Future<unknown>(this, t._planId, t.label);
        this.running.set(f.taskId, f);
      }
      futures[i] = f;
    }
    this.plans.push({ idBase, end: this.nextId });
    if (this.address.reconnectMs !== undefined) this.sentPlans.push({ idBase, buf });
    this.send(buf);
    return futures as FuturesOf<Ts>;
  }

  /** Submits one task; returns its future. */
  submitOne<T>(task: Task<T>, options: SubmitOptions = {}): Future<T> {
    return this.submit([task], options)[0] as Future<T>;
  }

  /** Resolves when every future has finished; rejects with the first `TaskFailed`. */
  async wait(futures: readonly Future<unknown>[]): Promise<void> {
    this.checkOwn(futures);
    await Promise.all(futures.map((f) => this.waitOne(f)));
  }

  /**
   * Fetches the results (kept on the workers), in the order of `futures`. `T` is what the tasks
   * produce, from their futures (`Buffer` for plain data, arrays, values of value objects);
   * `fetch<U>(...)` states another one.
   */
  async fetch<T = Buffer>(futures: readonly Future<T>[]): Promise<T[]> {
    this.checkOwn(futures);
    return this.fetchAll(futures, false);
  }

  /** Fetches the results, then releases them (see {@link Client.fetch} for `T`). */
  async gather<T = Buffer>(futures: readonly Future<T>[]): Promise<T[]> {
    this.checkOwn(futures);
    return this.fetchAll(futures, true);
  }

  /**
   * One promise for the whole call, not one per future; it rejects with the first error. Each
   * future without its result points at the call ({@link FetchBatch}) and is asked of the server
   * once it has finished; the results are read from the futures when the last one has come.
   * `release`: release them then (gather), before they are unpinned (so they are never watched
   * for being dropped).
   */
  private fetchAll<T>(futures: readonly Future<T>[], release: boolean): Promise<T[]> {
    // The futures are held until the call settles: not worth watching for drops meanwhile.
    for (const f of futures) f.fetching++;
    return new Promise<T[]>((resolve, reject) => {
      const batch: FetchBatch = {
        pending: 0,
        settled: false,
        done: () => {
          batch.settled = true;
          const out = new Array<T>(futures.length);
          for (let i = 0; i < futures.length; i++) out[i] = futures[i]!.result as T;
          if (release) this.releaseOwn(futures);
          this.unpin(futures);
          resolve(out);
        },
        fail: (e) => {
          batch.settled = true;
          this.unpin(futures);
          reject(e);
        },
      };
      for (const f of futures) {
        if (f.hasResult) continue;
        batch.pending++;
        this.fetchInto(f, batch);
        if (batch.settled) return;
      }
      if (batch.pending === 0) batch.done();
    });
  }

  /** A fetch call ended: its futures may be watched for being dropped again. */
  private unpin(futures: readonly Future<unknown>[]): void {
    for (const f of futures) {
      if (--f.fetching === 0 && f.dropWatchDeferred) {
        f.dropWatchDeferred = false;
        if (f.status_ === "finished") this.watchLater(f);
      }
    }
  }

  /** Releases results on the server, in one batch. Running futures are canceled locally. */
  release(futures: readonly Future<unknown>[]): void {
    this.checkOwn(futures);
    this.releaseOwn(futures);
  }

  /** {@link Client.release} of futures known to be this client's. */
  private releaseOwn(futures: readonly Future<unknown>[]): void {
    const ids: number[] = [];
    for (const f of futures) {
      if (f.status_ === "finished") {
        f.status_ = "released";
        this.forget(f.taskId);
        // Being fetched from its worker: released once it has arrived (the worker keeps it till then).
        if (this.directInFlight.has(f.taskId)) this.releaseAfterFetch.add(f.taskId);
        else ids.push(f.taskId);
      } else if (f.status_ === "running") {
        f.status_ = "canceled";
        // Whoever waits for it or its result learns it will never come.
        if (f.waiters !== undefined || f.fetchers !== undefined) {
          const e = new LoomError(`Task id=${f.taskId}${f.label ? ` (${f.label})` : ""}: released while running (canceled): it has no result`);
          f.settle(e);
          f.settleFetchers(e);
        }
        for (const l of this.settleListeners) l(f);
      }
    }
    if (ids.length === 0) return;
    if (this.away) for (const id of ids) this.releasedAway.push(id);
    else if (!this.socket.destroyed) this.sendReleases(ids);
  }

  /** Yields the futures as they finish (in completion order). */
  async *asCompleted<T>(futures: readonly Future<T>[]): AsyncGenerator<Future<T>> {
    const ready: Future<T>[] = [];
    let wake: (() => void) | undefined;
    let remaining = 0;
    this.checkOwn(futures);
    const unique = new Set(futures);
    const listener = (f: Future<unknown>): void => {
      if (unique.has(f as Future<T>)) {
        ready.push(f as Future<T>);
        wake?.();
      }
    };
    this.finishedListeners.add(listener);
    try {
      for (const f of unique) {
        if (f.status_ === "running") remaining++;
        else if (f.error) throw f.error;
        else ready.push(f);
      }
      let yielded = 0;
      const total = ready.length + remaining;
      while (yielded < total) {
        if (ready.length === 0) {
          await new Promise<void>((r) => (wake = r));
          wake = undefined;
          continue;
        }
        const f = ready.shift()!;
        if (f.error) throw f.error;
        yielded++;
        yield f;
      }
    } finally {
      this.finishedListeners.delete(listener);
    }
  }

  /**
   * Progress of `futures` as they settle: yields `{ finished, failed, total }` at once, then
   * after every change (changes that happen between two reads are merged: counts only grow),
   * and ends when every future has settled. A future released while running counts as failed
   * (it will never have a result). O(1) per settled future.
   */
  async *progress(futures: readonly Future<unknown>[]): AsyncGenerator<Progress> {
    const pending = new Set<Future<unknown>>();
    let finished = 0;
    let failed = 0;
    for (const f of new Set(futures)) {
      if (f.client !== this) throw new LoomError(`${f} belongs to another client`);
      if (f.status_ === "running") pending.add(f);
      else if (f.status_ === "failed" || f.status_ === "canceled") failed++;
      else finished++;
    }
    const total = pending.size + finished + failed;
    let changed = false;
    let wake: (() => void) | undefined;
    const listener = (f: Future<unknown>): void => {
      if (!pending.delete(f)) return;
      if (f.status_ === "finished" || f.status_ === "released") finished++;
      else failed++;
      changed = true;
      wake?.();
    };
    this.settleListeners.add(listener);
    try {
      yield { finished, failed, total };
      while (finished + failed < total) {
        if (!changed) await new Promise<void>((r) => (wake = r));
        wake = undefined;
        changed = false;
        yield { finished, failed, total };
      }
    } finally {
      this.settleListeners.delete(listener);
    }
  }

  /**
   * The server's status: workers, clients, plans with their tasks by state and label group,
   * transfers, counters and recent failures (our STATUS extension, docs/protocol-extensions.md;
   * the original server does not answer it).
   */
  status(): Promise<StatusSnapshot> {
    this.checkOpen();
    return new Promise((resolve, reject) => {
      this.statusWaiters.push({ resolve, reject });
      this.sendRequest({ type: RequestType.STATUS });
    });
  }

  /** Asks the server for statistics. */
  stats(): Promise<Stats> {
    this.checkOpen();
    return new Promise((resolve, reject) => {
      this.statsWaiters.push({ resolve, reject });
      this.sendRequest({ type: RequestType.STATS });
    });
  }

  /**
   * Traces this client's plans: the server and the workers write trace files under `path`
   * (`hyperloom report path`). Other clients' plans are not traced; one trace at a time per
   * server (the latest `setTrace` wins). `setTrace(null)` stops it, as does closing the client
   * (an empty TRACE path: our extension, docs/protocol-extensions.md).
   */
  setTrace(path: string | null): void {
    this.trace = path !== null;
    this.sendRequest({ type: RequestType.TRACE, tracePath: path === null ? "" : resolvePath(path) });
  }

  /** Whether `setTrace` was called. */
  get tracing(): boolean {
    return this.trace;
  }

  /** Asks the server to exit; its workers exit too. */
  async terminate(): Promise<void> {
    this.sendRequest({ type: RequestType.TERMINATE });
    await this.close();
  }

  /** Closes the connection; the server discards this client's tasks and results. */
  close(): Promise<void> {
    this.closing = true;
    openClients().delete(this);
    this.direct?.close();
    this.flush();
    return new Promise((resolve) => {
      if (this.socket.destroyed) return resolve();
      this.socket.end(() => resolve());
      this.socket.once("close", () => resolve());
    });
  }

  /** Refuses futures made by another client (their ids name other tasks here). */
  private checkOwn(futures: readonly Future<unknown>[]): void {
    for (const f of futures) {
      if (!(f instanceof Future)) throw new LoomError(`${String(f)} is not a future`);
      if (f.client !== this) {
        throw new LoomError(`${f} belongs to another client (a future can only be used by the client that submitted it)`);
      }
    }
  }

  private setDictionary(symbols: string[]): void {
    this.symbolNames = symbols;
    this.symbols.clear();
    symbols.forEach((s, i) => this.symbols.set(s, i));
    this.plainDataType = this.symbols.get(Symbol.TYPE_DATA) ?? -1;
  }

  private waitOne(f: Future<unknown>): Promise<void> {
    if (f.status_ === "finished" || f.status_ === "released") return Promise.resolve();
    if (f.error) return Promise.reject(f.error);
    if (f.status_ === "canceled") return Promise.reject(new LoomError(`${f} was canceled`));
    return new Promise((resolve, reject) => (f.waiters ??= []).push({ resolve, reject }));
  }

  /**
   * Makes `batch` wait for `f`'s result, or fails it with why it cannot come: `f` failed, was
   * released or canceled, or the connection closed. A running future is asked of the server once
   * it has finished ({@link Client.onFinished}).
   */
  private fetchInto(f: Future<unknown>, batch: FetchBatch): void {
    if (f.error) return batch.fail(f.error);
    if (!f.active()) return batch.fail(new LoomError(`Fetch called on invalid future ${f}`));
    f.addFetcher(batch);
    if (f.status_ === "finished") this.request(f);
  }

  /** Asks the server for the result of finished `f` (once while the answer is outstanding). */
  private request(f: Future<unknown>): void {
    if (this.closedError) return f.settleFetchers(this.closedError);
    if (this.fetching.has(f.taskId)) return;
    this.fetching.set(f.taskId, f);
    this.queueFetch(f.taskId);
  }

  private releaseId(id: number): void {
    const h = this.held.get(id);
    if (h instanceof WeakRef && h.deref() === undefined) this.held.delete(id);
    this.queueRelease(id);
  }

  /**
   * Queues a RELEASE of `id`; those of one turn (e.g. the futures one collection found dropped)
   * leave together at its end, as {@link Client.sendReleases} packs them.
   */
  private queueRelease(id: number): void {
    if (this.away) return void this.releasedAway.push(id);
    if (this.socket.destroyed) return;
    this.releaseIds.push(id);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  private sendRequest(msg: { type: number; id?: number; tracePath?: string; relay?: boolean }): void {
    this.send(frame(comm.ClientRequest.encode(msg).finish()));
  }

  /** Queues a FETCH of `id`; the FETCHes of one turn leave together (see {@link Client.packFetches}). */
  private queueFetch(id: number): void {
    // Away (reconnecting): every outstanding fetch is sent again on re-attach (see `resume`).
    if (this.away) return;
    this.fetchIds.push(id);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /**
   * Moves the queued FETCHes into the output, before whatever is sent next (a RELEASE after a
   * FETCH of the same result keeps its order): one `fetch-many` request per 65,536 ids when the
   * server offered it, else a FETCH per id (the original protocol).
   */
  private packFetches(): void {
    const ids = this.fetchIds;
    if (ids.length === 0) return;
    this.fetchIds = [];
    if (!this.fetchMany) {
      this.outgoing.push(idRequests(RequestType.FETCH, ids));
      return;
    }
    for (let i = 0; i < ids.length; i += IDS_PER_REQUEST) {
      const part = ids.length <= IDS_PER_REQUEST ? ids : ids.slice(i, i + IDS_PER_REQUEST);
      this.outgoing.push(packedIdsRequest(RequestType.FETCH, part));
    }
  }

  /**
   * Sends RELEASEs of `ids`: one `release-many` request per 65,536 ids when the server offered it
   * (a gather of 100,000 futures: one request, not 100,000), else a RELEASE per id.
   */
  private sendReleases(ids: number[]): void {
    if (!this.releaseMany) return this.send(idRequests(RequestType.RELEASE, ids));
    for (let i = 0; i < ids.length; i += IDS_PER_REQUEST) {
      this.send(packedIdsRequest(RequestType.RELEASE, ids.length <= IDS_PER_REQUEST ? ids : ids.slice(i, i + IDS_PER_REQUEST)));
    }
  }

  /** Queues bytes; everything queued in one tick goes out in one write. */
  private send(buf: Buffer): void {
    // Away (reconnecting): what matters is sent again on re-attach (see `resume`).
    if (this.away) return;
    this.packFetches();
    this.outgoing.push(buf);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    this.packFetches();
    if (this.releaseIds.length > 0) {
      const ids = this.releaseIds;
      this.releaseIds = [];
      this.sendReleases(ids);
    }
    if (this.outgoing.length === 0 || this.socket.destroyed) return;
    const out = this.outgoing.length === 1 ? this.outgoing[0]! : Buffer.concat(this.outgoing);
    this.outgoing = [];
    this.socket.write(out);
  }

  private checkOpen(): void {
    if (this.closedError) throw this.closedError;
  }

  /**
   * Handles the whole frames at the start of `chunk` where they lie; returns the rest (from the
   * first incomplete frame). The commonest responses of a gather — TASK_FINISHED, and DATA of
   * plain data followed by its one frame — cost no object but the result's view; every other
   * frame goes to {@link Client.onFrame} as a view.
   */
  private readInPlace(chunk: Buffer): Buffer {
    const end = chunk.length;
    const h = this.dataScratch;
    let pos = 0;
    while (end - pos >= 8) {
      // Frames of 4 GiB or more (a high word) are left to the reader, which refuses them.
      if (chunk.readUInt32LE(pos + 4) !== 0) break;
      const len = chunk.readUInt32LE(pos);
      const start = pos + 8;
      const stop = start + len;
      if (stop > end) break;
      if (this.data === undefined && this.batch !== undefined) {
        // The next object of a DATA_BATCH: plain data (one frame) is its view.
        const b = this.batch;
        const e = b.next;
        const typeId = b.table.readInt32LE(e + 4);
        if (typeId === this.plainDataType && b.table.readUInt32LE(e + 8) === 1) {
          b.next = e + 12;
          this.afterBatchObject();
          this.onResult(b.table.readInt32LE(e), chunk.subarray(start, stop));
          pos = stop;
          continue;
        }
      }
      if (this.data === undefined && this.batch === undefined) {
        const id = scanFinishedAt(chunk, start, stop);
        if (id >= 0) {
          this.onFinished(id);
          pos = stop;
          continue;
        }
        if (scanDataResponseAt(chunk, start, stop, h) && h.nMessages === 1 && h.typeId === this.plainDataType && end - stop >= 8 && chunk.readUInt32LE(stop + 4) === 0) {
          const vstart = stop + 8;
          const vstop = vstart + chunk.readUInt32LE(stop);
          if (vstop <= end) {
            this.onResult(h.id, chunk.subarray(vstart, vstop));
            pos = vstop;
            continue;
          }
        }
      }
      this.onFrame(chunk.subarray(start, stop));
      pos = stop;
    }
    return pos === 0 ? chunk : chunk.subarray(pos);
  }

  /**
   * Takes a DATA_BATCH response in `buf[start, stop)` (the objects' frames follow it); false when
   * it is not one.
   */
  private beginBatch(buf: Buffer, start: number, stop: number): boolean {
    if (stop - start < 5 || buf[start] !== 0x08 || buf[start + 1] !== DATA_BATCH || buf[start + 2] !== DATA_BATCH_KEY[0] || buf[start + 3] !== DATA_BATCH_KEY[1]) return false;
    let pos = start + 4;
    let len = 0;
    for (let shift = 0; ; shift += 7) {
      if (pos >= stop || shift > 28) return false;
      const b = buf[pos++]!;
      len += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) break;
    }
    if (pos + len !== stop || len === 0 || len % 12 !== 0) throw new LoomError(`malformed DATA_BATCH response (table of ${len} bytes)`);
    this.batch = { table: buf.subarray(pos, stop), next: 0 };
    this.afterBatchObject();
    return true;
  }

  /** Moves past objects of the batch that have no frames (delivering them), and ends it after its last. */
  private afterBatchObject(): void {
    const b = this.batch!;
    const t = b.table;
    while (b.next < t.length && t.readUInt32LE(b.next + 8) === 0) {
      const e = b.next;
      b.next = e + 12;
      this.onData(t.readInt32LE(e), t.readInt32LE(e + 4), []);
    }
    if (b.next >= t.length) this.batch = undefined;
  }

  private onFrame(f: Buffer): void {
    if (this.data === undefined && this.batch !== undefined) {
      // The first frame of the batch's next object (which has at least one).
      const b = this.batch;
      const e = b.next;
      b.next = e + 12;
      this.data = { id: b.table.readInt32LE(e), typeId: b.table.readInt32LE(e + 4), remaining: b.table.readUInt32LE(e + 8), frames: [] };
      this.afterBatchObject();
    }
    const d = this.data;
    if (d !== undefined) {
      d.frames.push(f);
      if (--d.remaining === 0) {
        this.data = undefined;
        this.onData(d.id, d.typeId, d.frames);
      }
      return;
    }
    const finished = scanFinishedResponse(f);
    if (finished !== undefined) return this.onFinished(finished);
    if (this.beginBatch(f, 0, f.length)) return;
    const data = scanDataResponse(f);
    if (data !== undefined) {
      if (data.nMessages === 0) this.onData(data.id, data.typeId, []);
      else this.data = { id: data.id, typeId: data.typeId, remaining: data.nMessages, frames: [] };
      return;
    }
    const msg = comm.ClientResponse.decode(f);
    switch (msg.type) {
      case ResponseType.TASK_FINISHED:
        this.onFinished(msg.id);
        break;
      case ResponseType.TASK_FAILED:
        this.onFailed(fieldOf(msg, "id"), msg.error ?? undefined);
        break;
      case ResponseType.DATA: {
        const h = msg.data!;
        if (h.nMessages === 0) this.onData(h.id, h.typeId, []);
        else this.data = { id: h.id, typeId: h.typeId, remaining: h.nMessages, frames: [] };
        break;
      }
      case ResponseType.ERROR:
        this.onError(msg.error ?? undefined);
        break;
      case ResponseType.LOCATION:
        this.onLocation(msg.id, msg.location!);
        break;
      case ResponseType.DICTIONARY:
        // Our server sends the whole dictionary again when a worker adds task types.
        this.setDictionary(msg.symbols);
        break;
      case ResponseType.STATS: {
        const w = this.statsWaiters.shift();
        w?.resolve({ nWorkers: msg.stats?.nWorkers ?? 0, nDataObjects: msg.stats?.nDataObjects ?? 0 });
        break;
      }
      case ResponseType.SESSION:
        // Our extension: the session token (and, re-attaching, where the server's plans end).
        this.session = Number(msg.session);
        if (this.away) this.resume(msg.id);
        break;
      case ResponseType.STATUS: {
        const w = this.statusWaiters.shift();
        try {
          w?.resolve(parseStatus(Buffer.from(msg.status ?? []).toString("utf8")));
        } catch (e) {
          w?.reject(new LoomError(`malformed STATUS response: ${(e as Error).message}`));
        }
        break;
      }
      default:
        throw new LoomError(`unexpected response type ${msg.type} from the server`);
    }
  }

  /** The held future of result `id`, if it is still referenced. */
  private heldFuture(id: number): Future<unknown> | undefined {
    const h = this.held.get(id);
    return h instanceof WeakRef ? h.deref() : h;
  }

  /** Result `id` is no longer held (released, or failed after the fact). */
  private forget(id: number): void {
    const h = this.held.get(id);
    this.held.delete(id);
    if (h instanceof WeakRef) {
      const f = h.deref();
      if (f !== undefined) this.releaser.unregister(f);
    }
  }

  /**
   * Starts watching for being dropped (a weak reference and a finalizer) the futures that stayed
   * finished and unreleased for a whole round ({@link DROP_WATCH_MS}). Doing it for every future as it
   * finishes cost a gather of 100,000 futures a third of the client's time and made every
   * collection slower (issue #26), while a gather releases its futures as soon as it has them
   * all (futures held by a fetch in progress wait for it to end); a dropped future is released
   * at most two rounds (plus a collection) later.
   */
  private watchDrops(): void {
    for (const id of this.old) {
      const f = this.held.get(id);
      if (f === undefined || f instanceof WeakRef || f.status_ !== "finished") continue;
      if (f.fetching > 0) {
        // Part of a fetch in progress (a gather releases it right after): watched once the
        // fetch has ended, if it is still held then (see `unpin`).
        f.dropWatchDeferred = true;
        continue;
      }
      this.held.set(f.taskId, new WeakRef(f));
      this.releaser.register(f, f.taskId, f);
    }
    this.old = this.young;
    this.young = [];
    if (this.old.length === 0) {
      clearInterval(this.dropTimer);
      this.dropTimer = undefined;
    }
  }

  /** Watches finished `f` for being dropped from the next round on. */
  private watchLater(f: Future<unknown>): void {
    this.young.push(f.taskId);
    this.dropTimer ??= setInterval(() => this.watchDrops(), DROP_WATCH_MS).unref();
  }

  private onFinished(id: number): void {
    const f = this.running.get(id);
    if (f === undefined) return;
    this.running.delete(id);
    if (f.status_ === "canceled") {
      // Released while running: release it now that the server holds it.
      this.releaseId(id);
      return;
    }
    f.status_ = "finished";
    this.held.set(id, f);
    // A future the program drops is released for it (watched once it has been held a while);
    // one a fetch call holds (a gather's) is watched only if still held when the call ends.
    if (f.fetching > 0) f.dropWatchDeferred = true;
    else this.watchLater(f);
    if (f.fetchers !== undefined) this.request(f);
    f.settle();
    if (this.finishedListeners.size > 0) for (const l of this.finishedListeners) l(f);
    if (this.settleListeners.size > 0) for (const l of this.settleListeners) l(f);
  }

  /**
   * TASK_FAILED. `heldId` (our server's extension) is the result of ours that fails; `error.id`
   * the task whose failure caused it (the same for a result that failed itself). The original
   * server sets only `error.id` (a result of ours, or -1 for "Worker lost").
   */
  private onFailed(heldId: number | undefined, err: ErrorFields | undefined): void {
    const id = fieldOf(err, "id") ?? -1;
    const msg = Buffer.from(err?.errorMsg ?? []).toString("utf8");
    const worker = err?.worker ?? "";
    const label = err?.label ? err.label : undefined;
    if (heldId === undefined && id < 0) {
      // The original server's "Worker lost": it discards every task, so every future that is
      // not settled fails, finished ones whose data is gone included.
      for (const f of [...this.running.values()]) this.failFuture(f, new TaskFailed(f.taskId, f.label, worker, msg));
      for (const [fid, f] of [...this.fetching]) this.failFinished(fid, new TaskFailed(fid, f.label, worker, msg));
      return;
    }
    const target = heldId ?? id;
    const cause = heldId !== undefined && heldId !== id ? new TaskFailed(id, label, worker, msg) : undefined;
    const f = this.running.get(target);
    if (f !== undefined) {
      this.failFuture(f, cause ?? new TaskFailed(id, f.label, worker, msg));
      return;
    }
    // A finished future whose data was lost and cannot be recomputed.
    this.failFinished(target, cause ?? new TaskFailed(target, label, worker, msg));
  }

  /** A finished (not yet released) future failed after the fact: its fetches reject. */
  private failFinished(id: number, e: Error): void {
    const fetched = this.fetching.get(id);
    if (fetched !== undefined) {
      this.fetching.delete(id);
      this.failedFetches.add(id);
    }
    const f = fetched ?? this.heldFuture(id);
    if (f !== undefined && f.status_ === "finished") {
      f.status_ = "failed";
      f.error = e;
      this.forget(id);
    }
    fetched?.settleFetchers(e);
  }

  private failFuture(f: Future<unknown>, e: Error): void {
    this.running.delete(f.taskId);
    const wasCanceled = f.status_ === "canceled";
    f.status_ = "failed";
    f.error = e;
    if (wasCanceled) return;
    f.settle(e);
    for (const l of this.finishedListeners) l(f);
    for (const l of this.settleListeners) l(f);
    this.fetching.delete(f.taskId);
    f.settleFetchers(e);
  }

  private onError(err: ErrorFields | undefined): void {
    const text = Buffer.from(err?.errorMsg ?? []).toString("utf8");
    const e = new LoomError(text);
    const id = fieldOf(err, "id") ?? -1;
    // A rejected plan names one of its tasks: every future of that plan fails.
    const plan = id >= 0 ? this.plans.find((p) => id >= p.idBase && id < p.end) : undefined;
    if (plan && text.startsWith("Plan rejected")) {
      for (const f of [...this.running.values()]) {
        if (f.taskId >= plan.idBase && f.taskId < plan.end) this.failFuture(f, e);
      }
      return;
    }
    // Otherwise it answers a FETCH or RELEASE of task `id` (our server always names it; the
    // original names it only in "Invalid id: N"). Never routed by position: an error without an
    // id goes to a fetch only when exactly one is outstanding.
    const match = /Invalid id: (-?\d+)/.exec(text);
    let fid: number | undefined = id >= 0 ? id : match ? Number(match[1]) : undefined;
    if (fid === undefined && this.fetching.size === 1) fid = [...this.fetching.keys()][0];
    const fetched = fid !== undefined ? this.fetching.get(fid) : undefined;
    if (fetched !== undefined) {
      this.fetching.delete(fid!);
      fetched.settleFetchers(e);
      return;
    }
    if (fid !== undefined && this.failedFetches.delete(fid)) return;
    if (fid === undefined && this.fetching.size > 1) {
      // An id-less error (the original server) with several fetches outstanding: which one it
      // answers is unknown, so all fail rather than one hanging or the wrong one failing.
      const all = new LoomError(`${text} (the server did not say which task; every outstanding fetch fails)`);
      const all_ = [...this.fetching.values()];
      this.fetching.clear();
      for (const f of all_) f.settleFetchers(all);
      return;
    }
    process.emitWarning(`HyperLoom server error: ${text}`);
  }

  /**
   * How this client's fetched results arrived: `relayed` through the server, `streamed` from
   * their worker's data port, `mapped` from their worker's data file on this host (no copy);
   * `fellBack`: direct fetches that failed and were relayed instead (see
   * {@link ConnectOptions.directFetch}).
   */
  fetchPaths(): { relayed: number; streamed: number; mapped: number; fellBack: number } {
    return { ...this.paths };
  }

  /**
   * LOCATION (our `fetch-direct`): result `id` is on a worker; fetched from there, or through
   * the server's relay (a FETCH with `relay`) when that fails.
   */
  private onLocation(id: number, loc: { address: string; object: number; size: unknown }): void {
    const where: Location = { address: workerAddress(loc.address, this.address.host), object: loc.object, size: Number(loc.size) };
    this.direct ??= new DirectFetcher({
      security: () => {
        const access = accessFor(this.address.host, this.address.port, this.address.accessFile);
        return {
          ...(access !== undefined ? { secret: access.secret } : {}),
          ...(access?.tlsFingerprint !== undefined ? { tls: {} } : {}),
        };
      },
      typeName: this.typeName,
      plainDataType: () => this.plainDataType,
      timeoutMs: this.address.timeoutMs,
    });
    this.directInFlight.add(id);
    const settled = (): void => {
      this.directInFlight.delete(id);
      if (!this.releaseAfterFetch.delete(id)) return;
      // The release it held back (reconnecting: sent on re-attach, as every release meanwhile).
      this.queueRelease(id);
    };
    this.direct.fetch(where).then(
      ({ value, path }) => {
        this.paths[path]++;
        settled();
        this.deliver(id, value);
      },
      (e: Error) => {
        if (this.closing || this.closedError) return settled();
        this.paths.fellBack++;
        process.emitWarning(`HyperLoom: fetching result id=${id} from worker ${loc.address} failed (${e.message}); fetching it through the server`);
        // Relayed instead; a release waiting for it follows the FETCH, so the data still comes.
        if (this.fetching.has(id) && !this.away) this.sendRequest({ type: RequestType.FETCH, id, relay: true });
        settled();
      },
    );
  }

  private onData(id: number, typeId: number, frames: Buffer[]): void {
    // Plain data (most results) is its one frame.
    if (frames.length === 1 && typeId === this.plainDataType) return this.onResult(id, frames[0]);
    const f = this.fetching.get(id);
    if (f === undefined) return;
    let value: DataValue;
    try {
      value = decodeData(typeId, frames, 0, this.typeName)[0];
    } catch (e) {
      this.paths.relayed++;
      this.fetching.delete(id);
      return f.settleFetchers(e as Error);
    }
    this.onResult(id, value);
  }

  /** The result of `id` arrived through the server's relay (see {@link Client.deliver}). */
  private onResult(id: number, value: DataValue): void {
    this.paths.relayed++;
    this.deliver(id, value);
  }

  /** The result of `id` arrived: kept on its future, every fetch call waiting for it told. */
  private deliver(id: number, value: DataValue): void {
    const f = this.fetching.get(id);
    if (f === undefined) return;
    this.fetching.delete(id);
    f.result = value;
    f.hasResult = true;
    f.settleFetchers();
  }

  private fail(e: Error): void {
    if (this.closedError) return;
    this.closedError = e;
    this.direct?.close();
    // Each future's error names its task, like every other error about a task.
    const about = (id: number, label: string | undefined): LoomError =>
      new LoomError(`Task id=${id}${label ? ` (${label})` : ""}: ${e.message}`);
    for (const f of [...this.running.values()]) this.failFuture(f, about(f.taskId, f.label));
    const fetched = [...this.fetching];
    this.fetching.clear();
    for (const [id, f] of fetched) f.settleFetchers(about(id, f.label));
    for (const w of this.statsWaiters.splice(0)) w.reject(e);
    for (const w of this.statusWaiters.splice(0)) w.reject(e);
  }
}
