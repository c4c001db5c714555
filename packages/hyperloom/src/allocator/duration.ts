/** Durations as users write them on the command line (`1h`, `5m`, `90s`, `1h30m`, `01:30:00`). */

/** A duration that cannot be read. */
export class DurationError extends Error {
  constructor(text: string) {
    super(`invalid duration '${text}' (examples: 90s, 5m, 1h30m, 2h, 01:30:00)`);
    this.name = "DurationError";
  }
}

const UNIT_SECS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/** Seconds in `text`: `<n><unit>...` with units s, m, h, d; `[[H:]M:]S`; or a bare number of seconds. */
export function parseDuration(text: string): number {
  const t = text.trim();
  if (/^\d+$/.test(t)) return Number(t);
  if (/^\d+(:\d{1,2}){1,2}$/.test(t)) {
    return t.split(":").reduce((acc, part) => acc * 60 + Number(part), 0);
  }
  if (!/^(\d+[smhd])+$/.test(t)) throw new DurationError(text);
  let secs = 0;
  for (const m of t.matchAll(/(\d+)([smhd])/g)) secs += Number(m[1]) * UNIT_SECS[m[2]!]!;
  return secs;
}

/** `HH:MM:SS` (hours may exceed 24), the wall-time form sbatch and qsub both accept. */
export function wallTime(secs: number): string {
  const h = Math.floor(secs / 3600);
  const m = Math.floor((secs % 3600) / 60);
  const s = secs % 60;
  return `${String(h).padStart(2, "0")}:${String(m).padStart(2, "0")}:${String(s).padStart(2, "0")}`;
}
