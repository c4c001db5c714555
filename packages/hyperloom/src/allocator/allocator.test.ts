import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Allocator, AllocRequestError, stopBefore, type AllocatorHost, type QueueRequest } from "./allocator.js";
import { SubmitError, type JobManager, type JobRequest, type JobStatus } from "./manager.js";
import { backoffMs } from "./queue.js";
import type { WaitingClass, WorkerLoad } from "../native.js";
import { setLogLevel } from "../log.js";

setLogLevel("error");

/** A cluster manager that records what it is asked and answers what the test sets. */
class FakeManager implements JobManager {
  readonly kind = "slurm";
  submitted: JobRequest[] = [];
  cancelled: string[] = [];
  states = new Map<string, JobStatus>();
  failWith: string | undefined;
  private next = 100;
  script(): string {
    return "";
  }
  async submit(req: JobRequest): Promise<string> {
    if (this.failWith !== undefined) throw new SubmitError(this.failWith);
    this.submitted.push(req);
    const id = String(this.next++);
    this.states.set(id, { phase: "queued", state: "PENDING" });
    return id;
  }
  async status(ids: string[]): Promise<Map<string, JobStatus>> {
    return new Map(ids.map((id) => [id, this.states.get(id) ?? { phase: "ended", state: "GONE" }]));
  }
  async cancel(ids: string[]): Promise<void> {
    this.cancelled.push(...ids);
    for (const id of ids) this.states.set(id, { phase: "ended", state: "CANCELLED" });
  }
}

/** A server as the allocator sees it. */
class FakeHost implements AllocatorHost {
  waiting: WaitingClass[] = [];
  loads: WorkerLoad[] = [];
  sole = new Map<number, number>();
  retired: number[] = [];
  allocatable = 0;
  port = 9010;
  host = "127.0.0.1";
  waitingTasks(): WaitingClass[] {
    return this.waiting;
  }
  workerLoads(): WorkerLoad[] {
    return this.loads;
  }
  soleCopies(): Array<{ conn: number; objects: number }> {
    return this.loads.map((l) => ({ conn: l.conn, objects: this.sole.get(l.conn) ?? 0 }));
  }
  setAllocatableCpus(cpus: number): void {
    this.allocatable = cpus;
  }
  retire(conn: number): void {
    this.retired.push(conn);
    this.loads = this.loads.filter((l) => l.conn !== conn);
  }
}

function setup(): { host: FakeHost; manager: FakeManager; allocator: Allocator; dir: string } {
  const host = new FakeHost();
  const manager = new FakeManager();
  const allocator = new Allocator(host, { managers: { slurm: () => manager }, intervalMs: 0, pollMs: 0, soleScanMs: 0, workerProgram: ["hyperloom"] });
  return { host, manager, allocator, dir: mkdtempSync(join(tmpdir(), "hyperloom-alloc-test-")) };
}

const queue = (dir: string, over: Partial<QueueRequest> = {}): QueueRequest => ({
  manager: "slurm",
  name: "q",
  workersPerAlloc: 1,
  cpus: 2,
  timeLimitSecs: 3600,
  maxAllocs: 3,
  idleTimeoutSecs: 0,
  extraArgs: ["--partition=x"],
  dir,
  ...over,
});

test("jobs for the waiting work, within max-allocs, counting jobs already coming", async () => {
  const { host, manager, allocator, dir } = setup();
  try {
    allocator.add(queue(dir));
    host.waiting = [{ cpus: 1, tasks: 3 }];
    await allocator.tick();
    // Three one-cpu tasks on two-cpu workers: two jobs.
    assert.is(manager.submitted.length, 2);
    const r = manager.submitted[0]!;
    // An open server (no access file): the jobs' workers connect without one.
    assert.equal(r.workerCommand, ["hyperloom", "worker", "127.0.0.1", "9010", "--nopin", "--insecure"]);
    assert.equal([r.workers, r.cpus, r.timeLimitSecs, r.stopBeforeSecs, r.name, r.extraArgs], [1, 2, 3600, 120, "hyperloom-q", ["--partition=x"]]);
    // The same work still waits (the jobs are pending): nothing more.
    await allocator.tick();
    assert.is(manager.submitted.length, 2);
    // Much more work: up to max-allocs (3) jobs in all.
    host.waiting = [{ cpus: 1, tasks: 200 }];
    await allocator.tick();
    assert.is(manager.submitted.length, 3);
    await allocator.tick();
    assert.is(manager.submitted.length, 3);
    const info = allocator.info("q");
    assert.is(info.jobs.length, 3);
    assert.ok(info.jobs.every((j) => j.phase === "queued" && j.state === "PENDING"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("tasks a queue's workers cannot run ask nothing of it; light tasks ask for one worker", async () => {
  const { host, manager, allocator, dir } = setup();
  try {
    allocator.add(queue(dir));
    host.waiting = [{ cpus: 4, tasks: 10 }];
    await allocator.tick();
    assert.is(manager.submitted.length, 0);
    host.waiting = [{ cpus: 0, tasks: 1000 }];
    await allocator.tick();
    assert.is(manager.submitted.length, 1);
    await allocator.tick();
    assert.is(manager.submitted.length, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a rejected submission is reported and the queue backs off", async () => {
  const { host, manager, allocator, dir } = setup();
  try {
    allocator.add(queue(dir));
    host.waiting = [{ cpus: 1, tasks: 5 }];
    manager.failWith = "sbatch: error: Batch job submission failed: Invalid partition name specified";
    await allocator.tick();
    await allocator.tick();
    await allocator.tick();
    const info = allocator.info("q");
    assert.is(info.errors.length, 1, "one attempt, then backing off");
    assert.is(info.errors[0]!.message, manager.failWith);
    assert.is(info.state, "backing-off");
    assert.is(info.failures, 1);
    assert.ok(Date.parse(info.nextSubmitAt!) > Date.now() + 5000);
    assert.equal([backoffMs(1), backoffMs(2), backoffMs(3), backoffMs(20)], [10_000, 20_000, 40_000, 600_000]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a job that ends before its worker connects is a failure; a connecting worker ends the back-off", async () => {
  const { host, manager, allocator, dir } = setup();
  try {
    allocator.add(queue(dir, { maxAllocs: 1 }));
    host.waiting = [{ cpus: 1, tasks: 1 }];
    await allocator.tick();
    const id = "100";
    manager.states.set(id, { phase: "ended", state: "FAILED", reason: "NonZeroExitCode" });
    await allocator.tick();
    let info = allocator.info("q");
    assert.is(info.failures, 1);
    assert.match(info.errors[0]!.message, `job 100 ended (FAILED: NonZeroExitCode) before any of its workers connected; see ${dir}/job-100.out`);
    assert.is(manager.submitted.length, 1, "backing off");
    // After the back-off, a job whose worker registers.
    (allocator as unknown as { queues: Map<string, { nextSubmitAt: number }> }).queues.get("q")!.nextSubmitAt = 0;
    await allocator.tick();
    assert.is(manager.submitted.length, 2);
    manager.states.set("101", { phase: "running", state: "RUNNING" });
    allocator.workerRegistered(7, "101");
    host.loads = [{ conn: 7, cpus: 2, bookedCpus: 2, lightTasks: 0 }];
    await allocator.tick();
    info = allocator.info("q");
    assert.is(info.failures, 0);
    assert.equal(info.jobs.find((j) => j.id === "101")?.workersConnected, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("idle workers of a queue are let go unless they hold the only copy of an object", async () => {
  const { host, allocator, dir } = setup();
  try {
    allocator.add(queue(dir, { idleTimeoutSecs: 0 }));
    host.waiting = [{ cpus: 1, tasks: 2 }];
    await allocator.tick();
    host.waiting = [];
    allocator.workerRegistered(5, "100");
    allocator.workerRegistered(6, "999"); // started by hand in some other job: not the allocator's
    host.loads = [
      { conn: 5, cpus: 2, bookedCpus: 0, lightTasks: 0 },
      { conn: 6, cpus: 2, bookedCpus: 0, lightTasks: 0 },
    ];
    host.sole.set(5, 3);
    await allocator.tick();
    assert.equal(host.retired, [], "holds data nobody else has");
    host.sole.set(5, 0);
    await allocator.tick();
    assert.equal(host.retired, [5]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("remove cancels queued jobs and keeps the queue until its running jobs end; bad requests are refused", async () => {
  const { host, manager, allocator, dir } = setup();
  try {
    allocator.add(queue(dir));
    assert.throws(() => allocator.add(queue(dir)), (e: Error) => e instanceof AllocRequestError && /exists already/.test(e.message));
    assert.throws(() => allocator.add(queue(dir, { name: "x", cpus: 0 })), /cpus must be an integer of at least 1/);
    assert.throws(() => allocator.add(queue(dir, { name: "a b" })), /invalid queue name/);
    assert.throws(() => allocator.info("nope"), /no allocation queue named 'nope'/);
    host.waiting = [{ cpus: 2, tasks: 2 }];
    await allocator.tick();
    assert.is(manager.submitted.length, 2);
    manager.states.set("100", { phase: "running", state: "RUNNING" });
    allocator.workerRegistered(5, "100");
    // Its worker took one of the tasks.
    host.waiting = [{ cpus: 2, tasks: 1 }];
    host.loads = [{ conn: 5, cpus: 2, bookedCpus: 2, lightTasks: 0 }];
    await allocator.tick();
    assert.is(manager.submitted.length, 2);
    const info = await allocator.remove("q", false);
    assert.equal(manager.cancelled, ["101"]);
    assert.is(info.state, "removing");
    assert.is(allocator.list().length, 1);
    // Its worker finishes its task, is let go, and its job ends: the queue is gone.
    host.loads = [{ conn: 5, cpus: 2, bookedCpus: 0, lightTasks: 0 }];
    await allocator.tick();
    assert.equal(host.retired, [5]);
    allocator.connectionClosed(5);
    manager.states.set("100", { phase: "ended", state: "COMPLETED" });
    await allocator.tick();
    assert.is(allocator.list().length, 0);
    assert.is(manager.submitted.length, 2, "a removed queue submits nothing");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("remove --force cancels running jobs too", async () => {
  const { host, manager, allocator, dir } = setup();
  try {
    allocator.add(queue(dir));
    host.waiting = [{ cpus: 2, tasks: 1 }];
    await allocator.tick();
    manager.states.set("100", { phase: "running", state: "RUNNING" });
    allocator.workerRegistered(5, "100");
    host.waiting = [];
    host.loads = [{ conn: 5, cpus: 2, bookedCpus: 2, lightTasks: 0 }];
    await allocator.tick();
    assert.is(host.allocatable, 2, "the core accepts tasks as large as the queue's workers");
    const info = await allocator.remove("q", true);
    assert.is(host.allocatable, 0);
    assert.equal(manager.cancelled, ["100"]);
    assert.is(info.state, "removing");
    await allocator.tick();
    assert.is(allocator.list().length, 0, "its job ended: the queue is gone");
    // Its job's end is no failure.
    assert.equal(info.errors, []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a manager that cannot report its jobs does not stop the allocator", async () => {
  const { host, manager, allocator, dir } = setup();
  try {
    allocator.add(queue(dir, { maxAllocs: 2 }));
    host.waiting = [{ cpus: 2, tasks: 1 }];
    await allocator.tick();
    manager.status = async () => {
      throw new Error("squeue: slurm_load_jobs error: Unable to contact slurm controller");
    };
    host.waiting = [{ cpus: 2, tasks: 2 }];
    await allocator.tick();
    assert.is(manager.submitted.length, 2, "submitting goes on");
    assert.equal(allocator.info("q").jobs.map((j) => j.state), ["SUBMITTED", "SUBMITTED"], "the last states known");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("workers are told to stop a tenth of the time limit early, between 10 s and 2 minutes", () => {
  assert.equal([stopBefore(60), stopBefore(600), stopBefore(3600), stopBefore(86400)], [10, 60, 120, 120]);
});

test.run();
