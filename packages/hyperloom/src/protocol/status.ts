/**
 * The server's status snapshot: the JSON carried by our `ClientResponse{STATUS}` extension
 * (docs/protocol-extensions.md) and pushed by the dashboard. Built by the server core from
 * counters (`crates/loom-core/src/server/counters.rs`); the field names are that file's.
 */

/** Tasks by the state a user sees (`finished` includes tasks whose data was freed since). */
export interface TaskCounts {
  waiting: number;
  ready: number;
  running: number;
  finished: number;
  failed: number;
}

/** One worker (gone workers stay listed, `alive: false`). */
export interface WorkerStatus {
  /** Index on the server, in registration order from 0. */
  id: number;
  /** `ip:port` of its data listener. */
  address: string;
  cpus: number;
  /** Cpus booked by tasks sent to it (usually up to twice `cpus`, more for function calls and short programs: it queues the extra tasks). */
  busy_cpus: number;
  /** Tasks sent to it and not answered yet. */
  running: number;
  /** Objects it holds and their size in bytes. */
  objects: number;
  bytes: number;
  /** False once it is gone (departed or lost). */
  alive: boolean;
  /**
   * `connected`; `departed`: it said it was stopping (stop, SIGTERM, end of its job; our
   * extension) or the server let it go (an allocation queue scaling down); `lost`: its
   * connection closed unannounced (a crash, a kill, a network failure, or an original worker).
   */
  state: "connected" | "departed" | "lost";
}

/** One client (gone clients stay listed, `alive: false`). */
export interface ClientStatus {
  id: number;
  address: string;
  alive: boolean;
  /** Its plans with tasks left. */
  plans: number;
  /** Computed objects it holds or still needs. */
  objects: number;
}

/** One plan: the newest 50 finished ones stay listed. */
export interface PlanStatus {
  /** Plan number on the server, from 1. */
  id: number;
  client: number;
  /** The client's id of its first task. */
  client_base: number;
  /** Tasks as sent (including ones no result needs, which are never counted). */
  size: number;
  state: "running" | "done" | "discarded";
  /** Arrival, ms since the Unix epoch. */
  submitted_ms: number;
  /** Validation and insertion time, ms. */
  ingest_ms: number;
  tasks: TaskCounts;
  /** Per label group (text of the label before its first `:`); empty without labels. */
  groups: { name: string; tasks: TaskCounts }[];
}

/** A task failure reported by a worker (the newest 50 are kept). */
export interface FailureStatus {
  plan: number;
  /** The client's id of the task (-1: a task made by a dslice/dget expansion). */
  task: number;
  label: string;
  worker: string;
  /** The error message (cut to 4 KiB). */
  message: string;
  time_ms: number;
}

/** Everything the server reports about itself at `time_ms`. */
export interface StatusSnapshot {
  time_ms: number;
  workers: WorkerStatus[];
  clients: ClientStatus[];
  plans: PlanStatus[];
  /** Every task of every plan the server has seen, by state. */
  tasks: TaskCounts;
  tasks_submitted: number;
  transfers: {
    /** Worker-to-worker transfers in flight / started / their bytes (arrived). */
    in_flight: number;
    total: number;
    bytes: number;
    /** Objects fetched by clients through the server, and their bytes. */
    fetches: number;
    fetch_bytes: number;
  };
  scheduler_rounds: number;
  tasks_assigned: number;
  plans_accepted: number;
  plans_rejected: number;
  /** Total plan ingest time, seconds. */
  ingest_seconds: number;
  /** Task failures reported by workers (dependants not counted). */
  task_failures: number;
  failures: FailureStatus[];
}

/** Parses a snapshot (throws on text that is not one). */
export function parseStatus(json: string): StatusSnapshot {
  const s = JSON.parse(json) as StatusSnapshot;
  if (typeof s !== "object" || s === null || !Array.isArray(s.workers) || typeof s.tasks !== "object") {
    throw new Error("not a HyperLoom status snapshot");
  }
  return s;
}
