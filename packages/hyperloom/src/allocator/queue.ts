/**
 * An allocation queue: how to ask a cluster manager for workers (its spec), the jobs it has
 * submitted and what became of them, and its recent submission errors with the back-off they cause.
 * The allocator decides when to submit; the queue owns the record.
 */
import type { JobManager, JobStatus } from "./manager.js";

/** What `hyperloom alloc add` registers. */
export interface QueueSpec {
  manager: "slurm" | "pbs";
  name: string;
  /** Workers (nodes) per job. */
  workersPerAlloc: number;
  /** Cpus of each worker. */
  cpus: number;
  /** Wall-time limit of each job, seconds. */
  timeLimitSecs: number;
  /** Jobs queued or running at once. */
  maxAllocs: number;
  /** A worker with nothing to do (and holding no data only it has) for this long is let go, seconds. */
  idleTimeoutSecs: number;
  /** Arguments for sbatch/qsub, as given. */
  extraArgs: string[];
  /** Where the jobs' workers connect. */
  serverHost: string;
  /** The jobs' script and output files. */
  dir: string;
}

/** One job submitted by a queue. */
export interface Job {
  id: string;
  submittedAt: number;
  status: JobStatus;
  /** Connections of its workers now registered with the server. */
  workers: number[];
  /** Workers of this job that ever registered. */
  everConnected: number;
  /** We cancelled it (its end is not a failure). */
  cancelled: boolean;
  endedAt?: number;
}

/** A failed submission, or a job that ended before any of its workers connected. */
export interface AllocError {
  at: number;
  message: string;
}

/** Back-off after consecutive failures: 10 s, 20 s, 40 s... at most 10 minutes. */
export function backoffMs(failures: number): number {
  return failures <= 0 ? 0 : Math.min(10_000 * 2 ** (failures - 1), 600_000);
}

/** Errors kept per queue; ended jobs kept for `alloc info`. */
const KEEP_ERRORS = 10;
const KEEP_ENDED = 20;

/** The JSON document of one queue (`alloc info --json`, an entry of `alloc list --json`). */
export interface QueueInfo extends QueueSpec {
  /**
   * `active`, `backing-off` (after a failure, until `nextSubmitAt`), `removing` (waiting for its
   * jobs to end) or `removed` (gone: the answer to a remove that had no job left to wait for).
   */
  state: "active" | "backing-off" | "removing" | "removed";
  nextSubmitAt: string | null;
  /** Consecutive failures (reset by a job whose worker connects). */
  failures: number;
  jobs: Array<{ id: string; phase: JobStatus["phase"]; state: string; reason?: string; workersConnected: number; submittedAt: string }>;
  errors: Array<{ at: string; message: string }>;
}

/** A queue and its jobs. */
export class AllocationQueue {
  readonly jobs = new Map<string, Job>();
  readonly errors: AllocError[] = [];
  failures = 0;
  nextSubmitAt = 0;
  removing = false;
  /** Jobs being submitted right now (their ids are not known yet). */
  submitting = 0;

  constructor(
    readonly spec: QueueSpec,
    readonly manager: JobManager,
  ) {}

  /** Jobs not ended (queued or running). */
  activeJobs(): Job[] {
    return [...this.jobs.values()].filter((j) => j.status.phase !== "ended");
  }

  /** Records a job just submitted. */
  submitted(id: string, now: number): void {
    this.jobs.set(id, { id, submittedAt: now, status: { phase: "queued", state: "SUBMITTED" }, workers: [], everConnected: 0, cancelled: false });
  }

  /** Records a failure and backs off. */
  failed(message: string, now: number): void {
    this.failures += 1;
    this.nextSubmitAt = now + backoffMs(this.failures);
    this.errors.push({ at: now, message });
    if (this.errors.length > KEEP_ERRORS) this.errors.shift();
  }

  /** A worker of one of its jobs connected: the queue works, back-off ends. */
  succeeded(): void {
    this.failures = 0;
    this.nextSubmitAt = 0;
  }

  /** Marks `job` ended; a job none of whose workers ever connected (and that we did not cancel) is a failure. */
  ended(job: Job, status: JobStatus, now: number): void {
    job.status = status;
    job.endedAt = now;
    job.workers = [];
    if (job.everConnected === 0 && !job.cancelled) {
      const why = status.reason ? `${status.state}: ${status.reason}` : status.state;
      this.failed(`job ${job.id} ended (${why}) before any of its workers connected; see ${this.spec.dir}/job-${job.id}.out`, now);
    }
    const ended = [...this.jobs.values()].filter((j) => j.status.phase === "ended");
    for (const old of ended.slice(0, Math.max(0, ended.length - KEEP_ENDED))) this.jobs.delete(old.id);
  }

  info(now: number): QueueInfo {
    const backingOff = this.nextSubmitAt > now;
    return {
      ...this.spec,
      state: this.removing ? (this.activeJobs().length > 0 ? "removing" : "removed") : backingOff ? "backing-off" : "active",
      nextSubmitAt: backingOff ? new Date(this.nextSubmitAt).toISOString() : null,
      failures: this.failures,
      jobs: [...this.jobs.values()].map((j) => ({
        id: j.id,
        phase: j.status.phase,
        state: j.status.state,
        ...(j.status.reason !== undefined ? { reason: j.status.reason } : {}),
        workersConnected: j.workers.length,
        submittedAt: new Date(j.submittedAt).toISOString(),
      })),
      errors: this.errors.map((e) => ({ at: new Date(e.at).toISOString(), message: e.message })),
    };
  }
}
