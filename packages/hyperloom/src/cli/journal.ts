/**
 * `hyperloom journal PATH [--json]`: what a server journal holds — client sessions, plans, and
 * the tasks of the plans a restart would restore, by state (README, "Durability"). Only reads
 * the file; the summary is built by the core (`loom_core::journal::summary`).
 */
import { native } from "../native.js";

/** The summary's JSON shape (`Summary` of `loom_core::journal::summary`). */
export interface JournalSummary {
  /** Bytes of whole records, with the 8-byte magic. */
  bytes: number;
  records: number;
  /** Why the tail would be cut (a corrupt or truncated record), or null. */
  cut: string | null;
  clients: Array<{ session: string; state: "open" | "closed"; plans: number }>;
  plans: Array<{ session: string; client_base: number; tasks: number; results: number; checkpoints: number; bytes: number; state: "live" | "done" | "closed" }>;
  /** Tasks of the live plans: results reported finished, checkpoints written, results released, the rest. */
  tasks: { total: number; finished: number; checkpointed: number; released: number; other: number };
}

/** Reads the journal at `path` (throws `ERR_LOOM_JOURNAL` naming it when it cannot). */
export function readJournal(path: string): JournalSummary {
  return JSON.parse(native().readJournal(path)) as JournalSummary;
}

/** The summary as `hyperloom journal` prints it. */
export function journalText(path: string, s: JournalSummary): string {
  const live = s.plans.filter((p) => p.state === "live");
  const open = s.clients.filter((c) => c.state === "open");
  const lines = [
    `Journal ${path}: ${s.bytes} bytes, ${s.records} records`,
    `Clients: ${s.clients.length} (${open.length} open: restored on start)`,
    ...s.clients.map((c) => `  session ${c.session}  ${c.state}  ${c.plans} plan(s)`),
    `Plans: ${s.plans.length} (${live.length} live)`,
    ...s.plans.map(
      (p) => `  session ${p.session}  ids ${p.client_base}..${p.client_base + p.tasks - 1}  ${p.tasks} tasks, ${p.results} results, ${p.checkpoints} checkpoints  ${p.state}`,
    ),
    `Tasks of live plans: ${s.tasks.total} (${s.tasks.finished} results reported finished, ${s.tasks.checkpointed} checkpointed, ${s.tasks.released} released, ${s.tasks.other} others)`,
    "On restore, checkpointed tasks are loaded; whatever else the live plans still need is computed again.",
  ];
  if (s.cut !== null) lines.push(`Warning: ${s.cut}`);
  return lines.join("\n");
}

/** Runs the command; returns the exit status. */
export function journalMain(path: string, opts: { json?: boolean }): number {
  let s: JournalSummary;
  try {
    s = readJournal(path);
  } catch (e) {
    process.stderr.write(`hyperloom journal: ${(e as Error).message}\n`);
    return 1;
  }
  process.stdout.write(`${opts.json ? JSON.stringify(s) : journalText(path, s)}\n`);
  return 0;
}
