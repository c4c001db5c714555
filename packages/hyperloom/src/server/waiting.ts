/**
 * Warnings about work that cannot make progress: ready tasks while no worker is connected, or
 * ready tasks no connected worker can run (task type not registered, or more cores requested than
 * any worker has). The server polls the core's count once a second and logs a warning when such
 * tasks have waited {@link WAIT_WARN_AFTER_MS}, then again every {@link WAIT_REPEAT_MS} while it lasts.
 */

/** How long ready tasks may wait for a worker before the first warning (ms). */
export const WAIT_WARN_AFTER_MS = 2_000;
/** Interval between repeated warnings while the tasks still wait (ms). */
export const WAIT_REPEAT_MS = 30_000;

/** The core's count (`ServerCore.waiting()`). */
export interface WaitingCount {
  workers: number;
  withoutWorker: number;
  unrunnable: number;
}

/** One condition's episode: since when it holds, and when it was last reported. */
interface Episode {
  since: number;
  warned: number;
}

/** Turns successive counts into warning lines (stateful; one instance per server). */
export class WaitingWarnings {
  private noWorker: Episode | undefined;
  private unrunnable: Episode | undefined;

  /** @param workerHint How to start a worker for this server, e.g. `hyperloom worker 127.0.0.1 9010`. */
  constructor(private readonly workerHint: string) {}

  /** The warnings to log for the count taken at `now` (ms). */
  observe(now: number, count: WaitingCount): string[] {
    const out: string[] = [];
    this.noWorker = this.track(this.noWorker, count.withoutWorker > 0, now, () =>
      out.push(`${tasksText(count.withoutWorker)} waiting: no worker is connected — start one with '${this.workerHint}'`),
    );
    this.unrunnable = this.track(this.unrunnable, count.unrunnable > 0, now, () =>
      out.push(
        `${tasksText(count.unrunnable)} waiting: none of the ${count.workers} connected worker(s) can run them (no worker registered their task type, or they request more cores than any worker has)`,
      ),
    );
    return out;
  }

  private track(e: Episode | undefined, holds: boolean, now: number, warn: () => void): Episode | undefined {
    if (!holds) return undefined;
    const episode = e ?? { since: now, warned: -Infinity };
    if (now - episode.since >= WAIT_WARN_AFTER_MS && now - episode.warned >= WAIT_REPEAT_MS) {
      episode.warned = now;
      warn();
    }
    return episode;
  }
}

function tasksText(n: number): string {
  return n === 1 ? "1 ready task is" : `${n} ready tasks are`;
}
