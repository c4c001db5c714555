/**
 * The server's allocator: submits worker jobs to its queues when ready tasks wait that the
 * connected workers cannot take, follows the jobs, and lets idle workers go.
 *
 * Rules:
 * - Demand is what the core reports as waiting after its scheduling round: ready tasks per cpu
 *   request. A queue serves the tasks that fit its workers (`cpus` >= request). A job of W workers
 *   of C cpus runs W * floor(C / c) tasks of c cpus at once; jobs already queued or starting count
 *   for the workers they will bring. New jobs = what the waiting work can use beyond that, at most
 *   `maxAllocs` active jobs per queue. Light (0-cpu) tasks ask for one worker when none is there.
 *   Queues are served in the order they were added; work one queue takes is not counted again.
 * - A submission that fails, or a job that ends before any of its workers connected, is recorded
 *   with the manager's message and the queue backs off (10 s, doubling, at most 10 minutes).
 * - A worker of a queue's job that has had nothing to do for the queue's idle timeout, and holds
 *   no data object that exists nowhere else, is let go: the server closes its connection and it
 *   exits, which ends its job. (A worker holding a result a client may still fetch stays.)
 * - Removing a queue cancels its queued jobs; its running workers are let go once idle, or at
 *   once (jobs cancelled, their tasks computed elsewhere) with `force`.
 */
import { hostname, homedir } from "node:os";
import { join, resolve } from "node:path";
import { mkdirSync } from "node:fs";
import type { WaitingClass, WorkerLoad } from "../native.js";
import { log } from "../log.js";
import { AllocationQueue, type QueueInfo, type QueueSpec } from "./queue.js";
import { SubmitError, type JobManager, type JobStatus } from "./manager.js";
import { SlurmManager } from "./slurm.js";
import { PbsManager } from "./pbs.js";

/** What the allocator needs from the server. */
export interface AllocatorHost {
  /** See `ServerCore.waitingTasks`. */
  waitingTasks(limit: number): WaitingClass[];
  /** See `ServerCore.workerLoads`. */
  workerLoads(): WorkerLoad[];
  /** See `ServerCore.soleCopies`. */
  soleCopies(): Array<{ conn: number; objects: number }>;
  /** Closes a worker's connection (it exits). */
  retire(conn: number): void;
  /** See `ServerCore.setAllocatableCpus`: called whenever the queues change. */
  setAllocatableCpus(cpus: number): void;
  /** The server's main port. */
  port: number;
  /** The server's listen address. */
  host: string;
  /** The server's access file, which the jobs' workers are told to read (a shared file system); absent: open server. */
  accessFile?: string;
}

/** A queue request that cannot be honoured (bad spec, unknown or duplicate name). */
export class AllocRequestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AllocRequestError";
  }
}

/** A queue as `alloc add` gives it: name, server host and directory may be left to the server. */
export type QueueRequest = Omit<QueueSpec, "name" | "serverHost" | "dir"> & { name?: string; serverHost?: string; dir?: string };

/** Options of {@link Allocator} (tests substitute managers and drive `tick` themselves). */
export interface AllocatorOptions {
  /** Managers by kind. Default: Slurm and PBS through their commands. */
  managers?: Record<string, () => JobManager>;
  /** The program of the jobs' workers; `worker <host> <port> --nopin` follows. Default: this installation's `hyperloom`. */
  workerProgram?: string[];
  /** Rounds every this many ms (0: only when `tick` is called). Default 1000. */
  intervalMs?: number;
  /** Job states are polled at most this often, ms. Default 2000. */
  pollMs?: number;
  /** Least time between two scans for objects only one idle worker holds, ms. Default 10000. */
  soleScanMs?: number;
}

/** The allocator of one server. */
export class Allocator {
  private readonly queues = new Map<string, AllocationQueue>();
  /** Job id each registered worker reported (workers started in a cluster job). */
  private readonly workerJobs = new Map<number, string>();
  private readonly idleSince = new Map<number, number>();
  private busy = false;
  private soleScanAt = -Infinity;
  private lastPoll = 0;
  private nextName = 1;
  private readonly timer: NodeJS.Timeout | undefined;
  private readonly managers: Record<string, () => JobManager>;
  private readonly workerProgram: string[];
  private readonly pollMs: number;
  private readonly soleScanMs: number;

  constructor(
    private readonly host: AllocatorHost,
    options: AllocatorOptions = {},
  ) {
    this.managers = options.managers ?? { slurm: () => new SlurmManager(), pbs: () => new PbsManager() };
    this.workerProgram = options.workerProgram ?? [process.execPath, join(__dirname, "..", "cli", "main.js")];
    this.pollMs = options.pollMs ?? 2000;
    this.soleScanMs = options.soleScanMs ?? 10_000;
    const interval = options.intervalMs ?? 1000;
    if (interval > 0) {
      this.timer = setInterval(() => void this.tick(), interval);
      this.timer.unref();
    }
  }

  /** A worker registered; `jobId` is the cluster job it reported, if any. */
  workerRegistered(conn: number, jobId: string): void {
    this.workerJobs.set(conn, jobId);
  }

  /** A main-port connection closed. */
  connectionClosed(conn: number): void {
    this.workerJobs.delete(conn);
    this.idleSince.delete(conn);
  }

  /** Registers a queue; returns its info. */
  add(req: QueueRequest): QueueInfo {
    const make = this.managers[req.manager];
    if (make === undefined) throw new AllocRequestError(`unknown manager '${req.manager}' (slurm or pbs)`);
    for (const [k, min] of [["workersPerAlloc", 1], ["cpus", 1], ["timeLimitSecs", 60], ["maxAllocs", 1], ["idleTimeoutSecs", 0]] as const) {
      const v = req[k];
      if (!Number.isInteger(v) || v < min) throw new AllocRequestError(`${k} must be an integer of at least ${min} (got ${v})`);
    }
    let name = req.name ?? "";
    if (name === "") {
      while (this.queues.has(`${req.manager}-${this.nextName}`)) this.nextName++;
      name = `${req.manager}-${this.nextName++}`;
    }
    if (!/^[\w.-]{1,64}$/.test(name)) throw new AllocRequestError(`invalid queue name '${name}' (letters, digits, '.', '_', '-')`);
    if (this.queues.has(name)) throw new AllocRequestError(`a queue named '${name}' exists already`);
    const serverHost = req.serverHost || (this.host.host === "0.0.0.0" || this.host.host === "::" ? hostname() : this.host.host);
    const dir = resolve(req.dir || join(homedir(), ".hyperloom", "alloc", `${hostname()}-${this.host.port}`, name));
    try {
      mkdirSync(dir, { recursive: true });
    } catch (e) {
      throw new AllocRequestError(`cannot create the queue's directory ${dir}: ${(e as Error).message}`);
    }
    const spec: QueueSpec = { ...req, name, serverHost, dir };
    const q = new AllocationQueue(spec, make());
    this.queues.set(name, q);
    this.queuesChanged();
    log("info", `Allocation queue '${name}' added (${spec.manager}: ${spec.workersPerAlloc} worker(s) x ${spec.cpus} cpus per job, at most ${spec.maxAllocs} jobs)`);
    if (this.timer !== undefined) setImmediate(() => void this.tick());
    return q.info(Date.now());
  }

  /** Whether a queue (not being removed) can bring workers. */
  serving(): boolean {
    for (const q of this.queues.values()) if (!q.removing) return true;
    return false;
  }

  /** Every queue's info. */
  list(): QueueInfo[] {
    const now = Date.now();
    return [...this.queues.values()].map((q) => q.info(now));
  }

  /** One queue's info. */
  info(name: string): QueueInfo {
    return this.queue(name).info(Date.now());
  }

  /**
   * Removes a queue: its queued jobs are cancelled; its running workers finish what they have
   * and are let go when idle, or are stopped now with `force` (their jobs cancelled; the server
   * computes their tasks elsewhere). The queue is listed as `removing` until its jobs have ended.
   */
  async remove(name: string, force: boolean): Promise<QueueInfo> {
    const q = this.queue(name);
    q.removing = true;
    this.queuesChanged();
    const cancel = q.activeJobs().filter((j) => force || j.status.phase === "queued" || j.workers.length === 0);
    for (const j of cancel) j.cancelled = true;
    await q.manager.cancel(cancel.map((j) => j.id));
    log("info", `Allocation queue '${name}' removed${force ? " (force)" : ""}: ${cancel.length} job(s) cancelled`);
    if (q.activeJobs().length === 0) this.queues.delete(name);
    if (this.timer !== undefined) setImmediate(() => void this.tick());
    return q.info(Date.now());
  }

  /** Cancels every job of every queue (the server is stopping). */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await Promise.all(
      [...this.queues.values()].map((q) => {
        const jobs = q.activeJobs();
        for (const j of jobs) j.cancelled = true;
        return q.manager.cancel(jobs.map((j) => j.id)).catch((e: unknown) => log("warn", `${(e as Error).message}`));
      }),
    );
    this.queues.clear();
    this.queuesChanged();
  }

  /** Tells the core how large a worker the queues can still bring. */
  private queuesChanged(): void {
    let cpus = 0;
    for (const q of this.queues.values()) if (!q.removing) cpus = Math.max(cpus, q.spec.cpus);
    this.host.setAllocatableCpus(cpus);
  }

  private queue(name: string): AllocationQueue {
    const q = this.queues.get(name);
    if (q === undefined) throw new AllocRequestError(`no allocation queue named '${name}'`);
    return q;
  }

  /** One round: follow jobs, let idle workers go, submit what the waiting work needs. */
  async tick(): Promise<void> {
    if (this.busy || this.queues.size === 0) return;
    this.busy = true;
    try {
      const now = Date.now();
      if (now - this.lastPoll >= this.pollMs) {
        this.lastPoll = now;
        await this.poll();
      }
      this.attachWorkers();
      this.letIdleWorkersGo();
      await this.submit();
    } catch (e) {
      log("warn", `allocator: ${(e as Error).message}`);
    } finally {
      this.busy = false;
    }
  }

  /** Updates every active job's state from its manager. */
  private async poll(): Promise<void> {
    for (const [name, q] of this.queues) {
      const jobs = q.activeJobs();
      if (jobs.length > 0) {
        let states: Map<string, JobStatus>;
        try {
          states = await q.manager.status(jobs.map((j) => j.id));
        } catch (e) {
          // The manager does not answer (its controller is down...): keep the last states and
          // go on with the other queues and the rest of the round.
          log("warn", `Allocation queue '${name}': cannot follow its jobs: ${(e as Error).message}`);
          continue;
        }
        const now = Date.now();
        for (const j of jobs) {
          const s = states.get(j.id);
          if (s === undefined) continue;
          if (s.phase === "ended") {
            q.ended(j, s, now);
            if (j.everConnected === 0 && !j.cancelled) log("warn", `Allocation queue '${name}': ${q.errors.at(-1)!.message}`);
          } else {
            j.status = s;
          }
        }
      }
      if (q.removing && q.activeJobs().length === 0) {
        this.queues.delete(name);
        log("info", `Allocation queue '${name}': its last job ended; queue gone`);
      }
    }
  }

  /** Connects registered workers to their jobs (a worker may register before sbatch has returned). */
  private attachWorkers(): void {
    const byJob = new Map<string, number[]>();
    for (const [conn, job] of this.workerJobs) {
      const list = byJob.get(job);
      if (list) list.push(conn);
      else byJob.set(job, [conn]);
    }
    for (const q of this.queues.values()) {
      for (const j of q.jobs.values()) {
        if (j.status.phase === "ended") continue;
        const conns = byJob.get(j.id) ?? [];
        const fresh = conns.filter((c) => !j.workers.includes(c)).length;
        if (fresh > 0) {
          log("info", `Allocation queue '${q.spec.name}': ${fresh} worker(s) of job ${j.id} connected`);
          j.everConnected += fresh;
          q.succeeded();
          if (j.status.phase === "queued") j.status = { phase: "running", state: "RUNNING" };
        }
        j.workers = conns;
      }
    }
  }

  private letIdleWorkersGo(): void {
    const now = Date.now();
    const timeoutOf = new Map<number, number>();
    for (const q of this.queues.values()) {
      for (const j of q.jobs.values()) for (const c of j.workers) timeoutOf.set(c, q.removing ? 0 : q.spec.idleTimeoutSecs * 1000);
    }
    if (timeoutOf.size === 0) return;
    const due: number[] = [];
    for (const w of this.host.workerLoads()) {
      const timeout = timeoutOf.get(w.conn);
      if (timeout === undefined) continue;
      if (w.bookedCpus > 0 || w.lightTasks > 0) {
        this.idleSince.delete(w.conn);
        continue;
      }
      const since = this.idleSince.get(w.conn) ?? now;
      this.idleSince.set(w.conn, since);
      if (now - since >= timeout) due.push(w.conn);
    }
    // soleCopies scans the live tasks: while idle workers are kept for their data, look again
    // every 10 s, not every round.
    if (due.length === 0 || now - this.soleScanAt < this.soleScanMs) return;
    this.soleScanAt = now;
    const sole = new Map(this.host.soleCopies().map((s) => [s.conn, s.objects]));
    for (const conn of due) {
      const held = sole.get(conn) ?? 0;
      if (held > 0) continue;
      log("info", `Letting idle worker go (connection ${conn}, job ${this.workerJobs.get(conn)})`);
      this.idleSince.delete(conn);
      this.host.retire(conn);
    }
  }

  /** Submits the jobs the waiting work can use. */
  private async submit(): Promise<void> {
    const queues = [...this.queues.values()].filter((q) => !q.removing);
    if (queues.length === 0) return;
    const limit = Math.min(1 << 20, queues.reduce((n, q) => n + q.spec.maxAllocs * q.spec.workersPerAlloc * q.spec.cpus, 0) * 4);
    const waiting = this.host.waitingTasks(limit).map((c) => ({ ...c }));
    if (waiting.every((c) => c.tasks === 0)) return;
    const anyWorker = this.host.workerLoads().length > 0;
    for (const q of queues) {
      const { cpus, workersPerAlloc: W } = q.spec;
      // Jobs' worth of work this queue can take, and what it takes off the list.
      let need = 0;
      const fits = waiting.filter((c) => c.cpus <= cpus && c.tasks > 0);
      const active = q.activeJobs();
      const coming = active.reduce((n, j) => n + Math.max(0, W - j.workers.length), 0) / W + q.submitting;
      for (const c of fits) if (c.cpus > 0) need += c.tasks / (W * Math.floor(cpus / c.cpus));
      // Light tasks run anywhere: they ask for one job only when no worker exists or is coming.
      if (need === 0 && fits.some((c) => c.cpus === 0) && !anyWorker && coming === 0) need = 1;
      const room = q.spec.maxAllocs - active.length - q.submitting;
      // (The epsilon absorbs rounding of the sum of fractions: 0.1 + 0.2 jobs is not 1 job.)
      const wanted = Math.min(Math.max(0, Math.ceil(need - coming - 1e-9)), room);
      // What this queue has and will have serves these tasks; the next queue sees the rest.
      const served = Math.min(need, coming + Math.max(0, wanted));
      if (need > 0) for (const c of fits) c.tasks = Math.max(0, Math.round(c.tasks * (1 - served / need)));
      if (wanted <= 0 || Date.now() < q.nextSubmitAt) continue;
      for (let i = 0; i < wanted; i++) {
        if (!(await this.submitOne(q))) break;
      }
    }
  }

  private async submitOne(q: AllocationQueue): Promise<boolean> {
    const s = q.spec;
    q.submitting++;
    try {
      const id = await q.manager.submit({
        name: `hyperloom-${s.name}`,
        workers: s.workersPerAlloc,
        cpus: s.cpus,
        timeLimitSecs: s.timeLimitSecs,
        stopBeforeSecs: stopBefore(s.timeLimitSecs),
        workerCommand: [
          ...this.workerProgram,
          "worker",
          s.serverHost,
          String(this.host.port),
          "--nopin",
          ...(this.host.accessFile !== undefined ? ["--access-file", this.host.accessFile] : ["--insecure"]),
        ],
        dir: s.dir,
        extraArgs: s.extraArgs,
      });
      q.submitted(id, Date.now());
      log("info", `Allocation queue '${s.name}': submitted job ${id}`);
      return true;
    } catch (e) {
      const message = e instanceof SubmitError ? e.message : `cannot submit: ${(e as Error).message}`;
      q.failed(message, Date.now());
      log("warn", `Allocation queue '${s.name}': ${message}; next attempt in ${Math.round((q.nextSubmitAt - Date.now()) / 1000)} s`);
      return false;
    } finally {
      q.submitting--;
    }
  }
}

/**
 * Seconds before a job's time limit at which its workers are told to stop: a tenth of the limit,
 * between 10 s and 2 minutes (they only need to hand their tasks back and disconnect).
 */
export function stopBefore(timeLimitSecs: number): number {
  return Math.max(10, Math.min(120, Math.floor(timeLimitSecs / 10)));
}
