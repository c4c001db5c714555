/**
 * The progress bar `hyperloom local` draws on stderr while its script runs (only when stderr is
 * a terminal): tasks settled out of tasks planned since it started, from the server's status
 * (our STATUS request, twice a second) — the same counters as the dashboard.
 */
import { Presets, SingleBar } from "cli-progress";
import { Client } from "../client/client.js";
import type { StatusSnapshot } from "../protocol/status.js";

/** A running bar. */
export interface ProgressBar {
  /** Draws the last state and stops (closes its connection). */
  stop(): Promise<void>;
}

const settled = (s: StatusSnapshot): number => s.tasks.finished + s.tasks.failed;
const planned = (s: StatusSnapshot): number => s.tasks.waiting + s.tasks.ready + s.tasks.running + settled(s);

/**
 * Starts polling the server at `host:port` (authenticating with `accessFile` when given); the bar
 * appears with the first planned task.
 */
export async function startProgressBar(host: string, port: number, accessFile?: string, intervalMs = 500): Promise<ProgressBar> {
  const client = await Client.connect(host, port, accessFile !== undefined ? { accessFile } : {});
  const base = await client.status();
  const bar = new SingleBar(
    {
      stream: process.stderr,
      format: "{bar} {percentage}% | {value}/{total} tasks | {failed} failed | {running} running on {workers} worker(s)",
      hideCursor: true,
      barsize: 30,
    },
    Presets.shades_classic,
  );
  let started = false;
  let busy = false;
  const draw = (s: StatusSnapshot): void => {
    const total = planned(s) - planned(base);
    if (total <= 0) return;
    const payload = { failed: s.tasks.failed - base.tasks.failed, running: s.tasks.running, workers: s.workers.filter((w) => w.alive).length };
    const value = settled(s) - settled(base);
    if (!started) {
      bar.start(total, value, payload);
      started = true;
    } else {
      bar.setTotal(total);
      bar.update(value, payload);
    }
  };
  const poll = async (): Promise<void> => {
    if (busy) return;
    busy = true;
    try {
      draw(await client.status());
    } catch {
      // the server is going away: the bar stops with the cluster
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(() => void poll(), intervalMs);
  return {
    stop: async () => {
      clearInterval(timer);
      await poll();
      if (started) bar.stop();
      await client.close();
    },
  };
}
