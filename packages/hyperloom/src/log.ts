/**
 * Process logs, on stderr: `HH:MM:SS [level] message` (the original's format), or one JSON
 * object per line with `--log-format json` (`{"time","level","process","pid","message"}`, time in
 * ISO 8601, process the role: `server`, `worker` or `hyperloom`).
 */

/** Log levels, lowest first. */
export type Level = "debug" | "info" | "warn" | "error";

/** Line formats. */
export type LogFormat = "text" | "json";

const order: Record<Level, number> = { debug: 0, info: 1, warn: 2, error: 3 };
let threshold: Level = "info";
let format: LogFormat = "text";
let role = "hyperloom";

/** Names the process in JSON lines (`server`, `worker`), so merged logs say who wrote each. */
export function setLogProcess(name: string): void {
  role = name;
}

/** Sets the lowest level printed (`--debug` sets `debug`). */
export function setLogLevel(level: Level): void {
  threshold = level;
}

/** Sets the line format (`--log-format`). */
export function setLogFormat(f: LogFormat): void {
  format = f;
}

/** The level below which nothing is printed. */
export function logLevel(): Level {
  return threshold;
}

/** Whether lines of `level` are printed (to skip building costly debug text). */
export function logs(level: Level): boolean {
  return order[level] >= order[threshold];
}

/** Writes one log line if `level` is at or above the threshold. */
export function log(level: Level, message: string): void {
  if (order[level] < order[threshold]) return;
  const now = new Date();
  if (format === "json") {
    process.stderr.write(JSON.stringify({ time: now.toISOString(), level, process: role, pid: process.pid, message }) + "\n");
  } else {
    process.stderr.write(`${now.toTimeString().slice(0, 8)} [${level}] ${message}\n`);
  }
}

/** The message of a log line in either format (for a parent process reading a child's logs). */
export function parseLogLine(line: string): { level: Level | undefined; message: string } {
  if (line.startsWith("{")) {
    try {
      const o = JSON.parse(line) as { level?: Level; message?: string };
      if (typeof o.message === "string") return { level: o.level, message: o.message };
    } catch {
      // not one of ours
    }
  }
  const m = /^\d\d:\d\d:\d\d \[(debug|info|warn|error)\] (.*)$/.exec(line);
  return m ? { level: m[1] as Level, message: m[2]! } : { level: undefined, message: line };
}
