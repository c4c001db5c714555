/** Process logs in the original's format: `HH:MM:SS [level] message`, on stdout. */

/** Log levels, lowest first. */
export type Level = "debug" | "info" | "warn" | "error";

const order: Record<Level, number> = { debug: 0, info: 1, warn: 2, error: 3 };
let threshold: Level = "info";

/** Sets the lowest level printed (`--debug` sets `debug`). */
export function setLogLevel(level: Level): void {
  threshold = level;
}

/** Writes one log line if `level` is at or above the threshold. */
export function log(level: Level, message: string): void {
  if (order[level] < order[threshold]) return;
  const t = new Date().toTimeString().slice(0, 8);
  process.stdout.write(`${t} [${level}] ${message}\n`);
}
