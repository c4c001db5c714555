/**
 * The fault-injection suite (issue #18): random plans from several clients on a local cluster
 * of 3 workers while workers are killed (SIGKILL) and restarted and clients are killed, at
 * random moments. Rounds are bounded and deterministic from the seed (the moments of the
 * faults depend on timing, the plans and the choice of victims do not).
 *
 * For every future: it settles before a deadline (else **hung**); a success has the bytes
 * computed by the harness (else **wrong**); a failure names the task and a cause explained by a
 * fault of its round — `Worker lost` or `crashed N workers` after a worker kill, the closed
 * connection of a killed client (else **wrong**, unexplained). After every round: `stats()`
 * shows 0 objects, the live workers' data directories are empty and no process runs in a run
 * directory of the cluster (else **leaked**).
 */
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import type { ChildProcess } from "node:child_process";
import type { Socket } from "node:net";
import { LocalCluster } from "../cluster/local-cluster.js";
import type { Client } from "../client/client.js";
import type { Future } from "../client/future.js";
import { TaskFailed } from "../client/errors.js";
import { Random, randomExpected } from "./plans.js";

/** Options of {@link runChaos}. */
export interface ChaosOptions {
  /** Stop starting rounds after this many milliseconds. */
  durationMs: number;
  /** Seed of the random choices. */
  seed: number;
  /** Stop after this many rounds (default: unbounded, the duration decides). */
  maxRounds?: number;
  /**
   * Number of the first round (default 0). A round's plans and faults depend only on the seed
   * and its number, so `firstRound: R, maxRounds: 1` replays round R of a longer run.
   */
  firstRound?: number;
  /** Run the first round again and again instead of counting up (to replay a rare failure). */
  repeat?: boolean;
  /** Path of the native task library with `my/count` (none: no native tasks). */
  nativeLibrary?: string;
  /** Show every log line of the server and the workers (on stderr). */
  verbose?: boolean;
  /** Encrypt every connection (`hyperloom server --tls`); the cluster always requires its access file. */
  tls?: boolean;
  /** Called after each round (progress). */
  onRound?: (r: ChaosTotals, round: RoundReport) => void;
}

/** Counts over the whole run. */
export interface ChaosTotals {
  seed: number;
  rounds: number;
  workerKills: number;
  clientKills: number;
  futures: number;
  ok: number;
  failedAsExpected: number;
  wrong: number;
  hung: number;
  leaked: number;
  /** What went wrong (wrong, hung, leaked), at most 50 entries. */
  problems: string[];
  /** Numbers of the rounds with a problem (replay one with `--seed S --round R`). */
  failedRounds: number[];
  elapsedMs: number;
}

/** What one round did. */
export interface RoundReport {
  round: number;
  futures: number;
  workerKills: number;
  clientKills: number;
  problems: string[];
}

const WORKERS = 3;
const CPUS = 2;
/** A future must settle within this after the round's faults are over. */
const SETTLE_MS = 60_000;
/** The round's leak checks must pass within this. */
const CLEAN_MS = 3_000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function withDeadline<T>(p: Promise<T>, ms: number): Promise<{ value?: T; error?: Error; hung?: true }> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.then(
      (value) => ({ value }),
      (error: Error) => ({ error }),
    ),
    new Promise<{ hung: true }>((r) => (timer = setTimeout(() => r({ hung: true }), ms))),
  ]).finally(() => clearTimeout(timer));
}

/** Processes whose working directory is under `dir` (programs of our workers). */
export function processesIn(dir: string): number[] {
  const pids: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readlinkSync(`/proc/${d}/cwd`).startsWith(dir)) pids.push(Number(d));
    } catch {
      // gone, or not ours to read
    }
  }
  return pids;
}

/** The state letter of process `pid` from /proc (R, S, D, Z...), or "gone". */
function processState(pid: number | undefined): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0] ?? "?";
  } catch {
    return "gone";
  }
}

/** Files in the data directories of the live workers of `cluster`. */
export function dataFiles(cluster: LocalCluster): string[] {
  const out: string[] = [];
  for (const dir of cluster.liveWorkerDirs()) {
    try {
      for (const f of readdirSync(join(dir, "data"))) out.push(join(dir, "data", f));
    } catch {
      // stopping meanwhile
    }
  }
  return out;
}

/** Runs rounds until the time is up; resolves with the totals. */
export async function runChaos(opts: ChaosOptions): Promise<ChaosTotals> {
  const start = Date.now();
  const totals: ChaosTotals = {
    seed: opts.seed,
    rounds: 0,
    workerKills: 0,
    clientKills: 0,
    futures: 0,
    ok: 0,
    failedAsExpected: 0,
    wrong: 0,
    hung: 0,
    leaked: 0,
    problems: [],
    failedRounds: [],
    elapsedMs: 0,
  };
  const problem = (p: string): void => {
    if (totals.problems.length < 50) totals.problems.push(p);
  };
  const workerArgs = opts.nativeLibrary ? ["--extension", opts.nativeLibrary] : [];
  // The last log lines of each worker, to explain one that does not come up.
  const lastLines = new Map<number, string[]>();
  const onWorkerLine = (i: number, line: string): void => {
    const l = lastLines.get(i) ?? [];
    l.push(line);
    if (l.length > 20) l.shift();
    lastLines.set(i, l);
  };
  const cluster = await LocalCluster.start({ workers: WORKERS, cpus: CPUS, workerArgs, onWorkerLine, ...(opts.tls ? { tls: true } : {}), ...(opts.verbose ? { verbose: true, logArgs: ["--debug"] } : {}) });
  const observer = await cluster.connect();
  /** Worker processes we killed (their exit event may come later). */
  const killed = new WeakSet<ChildProcess>();
  try {
    const first = opts.firstRound ?? 0;
    for (let n = 0; Date.now() - start < opts.durationMs && n < (opts.maxRounds ?? Infinity); n++) {
      const round = opts.repeat ? first : first + n;
      const rng = new Random(opts.seed * 1_000_003 + round);
      const report: RoundReport = { round, futures: 0, workerKills: 0, clientKills: 0, problems: [] };
      const say = (p: string): void => {
        if (report.problems.length === 0) totals.failedRounds.push(round);
        report.problems.push(p);
        problem(`round ${round}: ${p}`);
      };

      // Clients and their plans.
      const nClients = rng.int(1, 3);
      const clients: Client[] = [];
      for (let i = 0; i < nClients; i++) clients.push(await cluster.connect());
      const killedClients = new Set<Client>();
      const entries: Array<{ client: Client; future: Future; bytes: Buffer }> = [];
      for (const client of clients) {
        const nPlans = rng.int(1, 3);
        for (let p = 0; p < nPlans; p++) {
          const exprs = Array.from({ length: rng.int(1, 5) }, () => randomExpected(rng, 3, { native: opts.nativeLibrary !== undefined }));
          const futures = client.submit(exprs.map((e) => e.task));
          futures.forEach((future, k) => entries.push({ client, future, bytes: exprs[k]!.bytes }));
        }
      }
      report.futures = entries.length;

      // Faults at random moments of the round (0-1.5 s in), decided now from the seed.
      let workerKillsThisRound = 0;
      const faults: Array<Promise<void>> = [];
      const nWorkerKills = rng.int(0, 2);
      for (let k = 0; k < nWorkerKills; k++) {
        const at = rng.int(0, 1500);
        const victim = rng.int(0, WORKERS - 1);
        const restartAfter = rng.int(50, 800);
        faults.push(
          (async () => {
            await sleep(at);
            const alive = cluster.workerProcesses.filter((w) => w.exitCode === null && w.signalCode === null);
            const w = alive[victim % Math.max(1, alive.length)];
            if (w === undefined) return;
            w.kill("SIGKILL");
            killed.add(w);
            workerKillsThisRound++;
            report.workerKills++;
            totals.workerKills++;
            await sleep(restartAfter);
          })(),
        );
      }
      if (nClients > 1 && rng.chance(0.4)) {
        const at = rng.int(0, 1500);
        const victim = clients[rng.int(0, nClients - 1)]!;
        faults.push(
          (async () => {
            await sleep(at);
            killedClients.add(victim);
            report.clientKills++;
            totals.clientKills++;
            // Killed, not closed: the connection just drops.
            (victim as unknown as { socket: Socket }).socket.destroy();
          })(),
        );
      }

      // Every future: gathered (fetch + release), judged.
      const judged = entries.map(async ({ client, future, bytes }) => {
        const r = await withDeadline(client.gather([future]), SETTLE_MS + 3_000);
        const name = `${future}`;
        if (r.hung) {
          totals.hung++;
          say(`${name} did not settle within ${SETTLE_MS / 1000} s`);
          return;
        }
        if (r.error === undefined) {
          const got = r.value![0] as Buffer;
          if (Buffer.isBuffer(got) && got.equals(bytes)) totals.ok++;
          else {
            totals.wrong++;
            say(`${name}: wrong bytes (${Buffer.isBuffer(got) ? got.length : typeof got} vs ${bytes.length} expected)`);
          }
          return;
        }
        const e = r.error;
        const killedClient = killedClients.has(client) && /^Task id=\d+.*: connection to server .* (closed|failed)/.test(e.message);
        const lost =
          e instanceof TaskFailed &&
          /Worker lost|crashed \d+ workers?/.test(e.errorMessage) &&
          workerKillsThisRound > 0 &&
          /^Task id=\d+/.test(e.message);
        if (killedClient || lost) totals.failedAsExpected++;
        else {
          totals.wrong++;
          say(`${name}: unexplained failure: ${e.message.slice(0, 300)}`);
        }
      });
      await Promise.all(faults);
      // Restart the killed workers (the cluster always returns to 3).
      // Until the server counts exactly WORKERS workers and that many of our worker processes
      // run: a killed process is seen as gone only when its exit event arrives (possibly after
      // the server saw its connection close), so both are checked again until they agree.
      const running = (): ChildProcess[] => cluster.workerProcesses.filter((w) => w.exitCode === null && w.signalCode === null);
      let leakedWorker: string | undefined;
      for (const deadline = Date.now() + 30_000; ; await sleep(50)) {
        // Started without waiting: the loop waits for the server's count.
        while (running().length < WORKERS) await cluster.addWorker([], 0);
        const n = (await observer.stats()).nWorkers;
        if (n === WORKERS && running().length === WORKERS) break;
        if (Date.now() > deadline) {
          const procs = running().map((w) => `${w.pid} (${processState(w.pid)}${killed.has(w) ? ", killed" : ""})`);
          const lines = [...lastLines.entries()].slice(-WORKERS - 2).map(([i, l]) => `\n    worker ${i}: ${l.slice(-2).join(" | ")}`).join("");
          leakedWorker = `the server counts ${n} workers 30 s after the restarts; worker processes running: ${procs.join(", ")}${lines}`;
          break;
        }
      }
      await Promise.all(judged);
      totals.futures += entries.length;
      for (const c of clients) if (!killedClients.has(c)) await c.close();

      // Leak checks.
      const clean = async (): Promise<string | undefined> => {
        const s = await observer.stats();
        if (s.nDataObjects !== 0) return `stats shows ${s.nDataObjects} objects`;
        const files = dataFiles(cluster);
        if (files.length > 0) return `data files left: ${files.slice(0, 5).join(", ")}`;
        const procs = processesIn(cluster.workDir);
        if (procs.length > 0) return `processes left in run directories: ${procs.join(", ")}`;
        return undefined;
      };
      let leak = leakedWorker ?? (await clean());
      for (const deadline = Date.now() + CLEAN_MS; leakedWorker === undefined && leak !== undefined && Date.now() < deadline; ) {
        await sleep(50);
        leak = await clean();
      }
      if (leak !== undefined) {
        totals.leaked++;
        say(`leaked after ${CLEAN_MS} ms: ${leak}`);
      }
      totals.rounds++;
      totals.elapsedMs = Date.now() - start;
      opts.onRound?.(totals, report);
    }
  } finally {
    await observer.close().catch(() => undefined);
    await cluster.stop();
  }
  totals.elapsedMs = Date.now() - start;
  return totals;
}

