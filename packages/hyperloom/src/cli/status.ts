/**
 * `hyperloom status`: the server's workers, clients, plans (tasks by state) and recent
 * failures, as a table or as JSON, once or refreshed (`--watch`). Asks with our STATUS request
 * (docs/protocol-extensions.md).
 */
import { Client } from "../client/client.js";
import { accessFor, defaultAccessFilePath } from "../security/access-file.js";
import type { StatusSnapshot, TaskCounts } from "../protocol/status.js";

/** Options of {@link statusMain}. */
export interface StatusOptions {
  /** `HOST:PORT` of the server's main port; undefined: the access file's (else 127.0.0.1:9010). */
  server?: string;
  /** The server's access file (default: `HYPERLOOM_ACCESS_FILE`, else `~/.hyperloom/access.json`). */
  accessFile?: string;
  json?: boolean;
  /** Refresh every this many seconds until interrupted. */
  watch?: number;
}

/** Splits `HOST:PORT` (port required). */
export function parseServerAddress(v: string): { host: string; port: number } {
  const m = /^(.+):(\d+)$/.exec(v.trim());
  const port = m ? Number(m[2]) : NaN;
  if (!m || port < 1 || port > 65535) throw new Error(`invalid server address '${v}' (expected HOST:PORT)`);
  return { host: m[1]!.replace(/^\[(.*)\]$/, "$1"), port };
}

const STATES = ["waiting", "ready", "running", "finished", "failed"] as const;

function n(v: number): string {
  return v.toLocaleString("en-US");
}

function bytes(b: number): string {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) {
    b /= 1024;
    i++;
  }
  return `${i ? b.toFixed(1) : b} ${u[i]}`;
}

/** Left-aligns the first column, right-aligns numbers; two spaces between columns. */
function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const numeric = head.map((_, i) => rows.length > 0 && rows.every((r) => /^[-\d,. ]+(B|KiB|MiB|GiB|TiB| ms)?$/.test(r[i]!)));
  const line = (r: string[]): string => r.map((c, i) => (numeric[i] ? c.padStart(w[i]!) : c.padEnd(w[i]!))).join("  ").trimEnd();
  return [line(head), ...rows.map(line)].join("\n");
}

function counts(t: TaskCounts): string[] {
  return STATES.map((s) => n(t[s]));
}

/** The snapshot as the table `hyperloom status` prints. */
export function statusTable(s: StatusSnapshot, server: string): string {
  const alive = s.workers.filter((w) => w.alive);
  const cpus = alive.reduce((a, w) => a + w.cpus, 0);
  const gone = (st: "departed" | "lost"): string => {
    const k = s.workers.filter((w) => w.state === st).length;
    return k ? `, ${k} ${st}` : "";
  };
  const out: string[] = [];
  out.push(
    `HyperLoom server ${server}: ${alive.length} worker(s) (${cpus} cpus${gone("departed")}${gone("lost")}), ` +
      `${s.clients.filter((c) => c.alive).length} client(s), ${s.plans.filter((p) => p.state === "running").length} plan(s) running`,
  );
  out.push(`Tasks: ${STATES.map((st) => `${st} ${n(s.tasks[st])}`).join(", ")}`);
  out.push(
    `Transfers: ${n(s.transfers.in_flight)} in flight, ${n(s.transfers.total)} done (${bytes(s.transfers.bytes)}); fetched ${n(s.transfers.fetches)} (${bytes(s.transfers.fetch_bytes)})`,
  );
  out.push("");
  out.push(
    table(
      ["WORKER", "ADDRESS", "CPUS", "BUSY", "RUNNING", "OBJECTS", "BYTES", "STATE"],
      s.workers.map((w) => [String(w.id), w.address, String(w.cpus), String(w.busy_cpus), n(w.running), n(w.objects), bytes(w.bytes), w.state]),
    ),
  );
  out.push("");
  out.push(
    table(
      ["CLIENT", "ADDRESS", "PLANS", "OBJECTS", "STATE"],
      s.clients.map((c) => [String(c.id), c.address, String(c.plans), n(c.objects), c.alive ? "connected" : "gone"]),
    ),
  );
  if (s.plans.length > 0) {
    out.push("");
    out.push(
      table(
        ["PLAN", "CLIENT", "STATE", "TASKS", ...STATES.map((x) => x.toUpperCase()), "INGEST"],
        s.plans.map((p) => [String(p.id), String(p.client), p.state, n(p.size), ...counts(p.tasks), `${p.ingest_ms.toFixed(1)} ms`]),
      ),
    );
  }
  if (s.failures.length > 0) {
    out.push("", "Recent failures (newest last):");
    for (const f of s.failures.slice(-5)) {
      // One line each: the message's lines joined, cut at 200 characters.
      const text = f.message.trim().split(/\s*\n\s*/).join(" | ");
      const cut = text.length > 200 ? `${text.slice(0, 199)}…` : text;
      out.push(`  plan ${f.plan} task ${f.task}${f.label ? ` (${f.label})` : ""} on ${f.worker}: ${cut}`);
    }
  }
  return out.join("\n");
}

/** Runs `hyperloom status`; resolves to the exit status. */
export async function statusMain(o: StatusOptions): Promise<number> {
  let client: Client;
  let server = o.server ?? "";
  try {
    let host: string;
    let port: number;
    if (o.server !== undefined) ({ host, port } = parseServerAddress(o.server));
    else {
      const access = accessFor(undefined, undefined, o.accessFile);
      host = access?.host ?? "127.0.0.1";
      port = access?.port ?? 9010;
    }
    server = `${host.includes(":") ? `[${host}]` : host}:${port}`;
    client = await Client.connect(host, port, o.accessFile !== undefined ? { accessFile: o.accessFile } : {});
  } catch (e) {
    process.stderr.write(`hyperloom status: cannot connect to ${server || `the server of ${o.accessFile ?? defaultAccessFilePath()}`}: ${(e as Error).message}\n`);
    return 1;
  }
  try {
    for (;;) {
      const s = await client.status();
      if (o.json) process.stdout.write(JSON.stringify(s) + "\n");
      else {
        if (o.watch !== undefined && process.stdout.isTTY) process.stdout.write("\x1b[H\x1b[2J");
        process.stdout.write(statusTable(s, server) + "\n");
      }
      if (o.watch === undefined) return 0;
      await new Promise((r) => setTimeout(r, o.watch! * 1000));
    }
  } catch (e) {
    process.stderr.write(`hyperloom status: ${(e as Error).message}\n`);
    return 1;
  } finally {
    await client.close();
  }
}
