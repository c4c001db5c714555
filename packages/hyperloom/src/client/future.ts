/**
 * A future: the client's handle on a result task of a submitted plan. It can be waited for,
 * fetched, released, and used as an input of later plans while it is active.
 */
import type { Client } from "./client.js";
import type { DataValue } from "./data.js";

/**
 * @internal One `fetch`/`gather` call waiting for results: it resolves once every future it
 * names has its result (read from the futures, in order), or rejects with the first error. The
 * futures point at it while they wait (no closure or promise per future: a gather of 100,000
 * futures allocated and collected several per future, issue #26).
 */
export interface FetchBatch {
  /** Results still missing (one per future of the call that had none, duplicates included). */
  pending: number;
  /** Resolved or rejected already. */
  settled: boolean;
  /** Called when `pending` reaches 0. */
  done(): void;
  /** Called with the first error. */
  fail(e: Error): void;
}

/** @internal Something waiting for a future to settle (`wait`). */
export interface Waiter {
  resolve: () => void;
  reject: (e: Error) => void;
}

/** Where a future stands, as the guide names it. */
export type FutureStatus = "running" | "finished" | "failed" | "released" | "canceled";

/**
 * The handle on one result task. Created by `Client.submit`. `T` is the task's result type
 * (from its {@link Task}), what `fetch`/`gather` resolve to.
 */
export class Future<T = Buffer> {
  /** @internal */ status_: FutureStatus = "running";
  /** @internal */ error: Error | undefined;
  /** @internal */ result: DataValue | undefined;
  /** @internal */ hasResult = false;
  /** @internal Fetches in progress that hold this future (it cannot be dropped meanwhile). */ fetching = 0;
  /** @internal Waiting for it to settle (made on first use: most futures are only gathered). */ waiters: Waiter[] | undefined = undefined;
  /** @internal Skipped by a drop-watch round while fetched: watched when the fetch ends. */ dropWatchDeferred = false;
  /** @internal The fetch calls waiting for its result (one, or several). */ fetchers: FetchBatch | FetchBatch[] | undefined = undefined;

  /** Futures are made by `Client.submit`/`submitOne`, not by user code. */
  constructor(
    /** The client that submitted the task. */
    readonly client: Client,
    /** The task's id in this client's numbering. */
    readonly taskId: number,
    /** The task's label, if any. */
    readonly label: string | undefined,
  ) {}

  /** `running`, `finished`, `failed`, `released` or `canceled`. */
  get status(): FutureStatus {
    return this.status_;
  }

  /** True once the task has finished (its result is held on the workers). */
  finished(): boolean {
    return this.status_ === "finished";
  }

  /** True while the future may be used as an input (running or finished). */
  active(): boolean {
    return this.status_ === "running" || this.status_ === "finished";
  }

  /** True after release. */
  released(): boolean {
    return this.status_ === "released" || this.status_ === "canceled";
  }

  /** Resolves when the task finishes; rejects with `TaskFailed` if it (or an input) failed. */
  wait(): Promise<void> {
    return this.client.wait([this]);
  }

  /**
   * Waits and downloads the result; the result stays on the workers. The result type comes from
   * the task (`Buffer` for plain data, an array for `arrayMake`/`split`/several outputs, the
   * value for a value object); `fetch<U>()` states another one (e.g. for a `new Task(...)`).
   * (Two signatures, so that the type is never inferred from where the result is assigned.)
   */
  fetch(): Promise<T>;
  fetch<U>(): Promise<U>;
  async fetch(): Promise<unknown> {
    const [r] = await this.client.fetch<unknown>([this]);
    return r;
  }

  /** Fetches the result, then releases it (see {@link Future.fetch} for its type). */
  gather(): Promise<T>;
  gather<U>(): Promise<U>;
  async gather(): Promise<unknown> {
    const [r] = await this.client.gather<unknown>([this]);
    return r;
  }

  /** Releases the result on the server (nothing is sent for a running future: it is canceled). */
  release(): void {
    this.client.release([this]);
  }

  /** @internal Resolves or rejects every waiter. */
  settle(error?: Error): void {
    const waiters = this.waiters;
    if (waiters === undefined) return;
    this.waiters = undefined;
    for (const w of waiters) {
      if (error) w.reject(error);
      else w.resolve();
    }
  }

  /** @internal Adds a fetch call waiting for the result. */
  addFetcher(b: FetchBatch): void {
    const f = this.fetchers;
    if (f === undefined) this.fetchers = b;
    else if (Array.isArray(f)) f.push(b);
    else this.fetchers = [f, b];
  }

  /** @internal The result arrived (`error` undefined) or cannot come: tells every fetch call waiting for it. */
  settleFetchers(error?: Error): void {
    const f = this.fetchers;
    if (f === undefined) return;
    this.fetchers = undefined;
    if (Array.isArray(f)) for (const b of f) settleOne(b, error);
    else settleOne(f, error);
  }

  toString(): string {
    return `<Future task_id=${this.taskId} ${this.status_}${this.hasResult ? " R" : ""}>`;
  }
}

function settleOne(b: FetchBatch, error: Error | undefined): void {
  if (b.settled) return;
  if (error !== undefined) b.fail(error);
  else if (--b.pending === 0) b.done();
}
