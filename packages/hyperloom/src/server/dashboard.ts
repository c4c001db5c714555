/**
 * The live dashboard of a server: one self-contained page (no external resources), its updates
 * pushed as server-sent events, `/metrics` (Prometheus text) and `/status.json`, served by
 * Node's `http` on their own port (127.0.0.1 unless told otherwise), in a worker thread
 * (`dashboard-http.ts`) so that they answer while the server's thread ingests a large plan. A
 * server that requires authentication has the thread ask every request for its dashboard token
 * (security/dashboard-access.ts); one with TLS serves it all over HTTPS with the same certificate.
 *
 * Once a second (never per task) the server core's counters are read as one snapshot
 * (`ServerCore.snapshot`, O(workers + clients + plans)); the same text goes to every open page
 * with a short history of finished/failed counts for the throughput chart. A page that reads
 * slowly skips updates instead of buffering them.
 */
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import type { TlsIdentity } from "../security/tls.js";
import { log } from "../log.js";

/** Options of {@link startDashboard}. */
export interface DashboardOptions {
  /** Listen address (default 127.0.0.1). */
  host?: string;
  /** Port (0: any free one). */
  port: number;
  /** The server core's status snapshot as JSON. */
  snapshot: () => string;
  /** How often pages are updated, ms (default 1000). */
  intervalMs?: number;
  /** Every request must show this token (see security/dashboard-access.ts); absent: open. */
  token?: string;
  /** Serve HTTPS with this certificate. */
  tls?: TlsIdentity;
}

/** A running dashboard. */
export interface RunningDashboard {
  /** `http://host:port/` (`https://` with TLS). */
  url: string;
  port: number;
  close(): Promise<void>;
}

/** What the HTTP thread is started with. */
export interface DashboardThreadData {
  host: string;
  port: number;
  intervalMs: number;
  /** Every request must show this token; absent: open. */
  token?: string;
  /** Serve HTTPS with this certificate and key (PEM). */
  tls?: { cert: string | Buffer; key: string | Buffer };
}

/** Main thread to HTTP thread: a snapshot (a tick, or the answer to `want` `id`), or stop. */
export type DashboardFromMain = { type: "snapshot"; json: string; id?: number } | { type: "close" };

/** HTTP thread to main thread. */
export type DashboardToMain = { type: "listening"; port: number } | { type: "error"; message: string } | { type: "want"; id: number };

/** Parses `[HOST:]PORT` (HOST defaults to 127.0.0.1). */
export function parseListenAddress(v: string): { host: string; port: number } {
  const m = /^(?:(.*):)?(\d+)$/.exec(v.trim());
  const port = m ? Number(m[2]) : NaN;
  if (!m || !Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`invalid address '${v}' (expected [HOST:]PORT)`);
  let host = m[1] ?? "127.0.0.1";
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  return { host: host || "127.0.0.1", port };
}

/**
 * Starts the dashboard; resolves once it listens. HTTP is served by a worker thread
 * (`dashboard-http.ts`) so that it answers while this thread is in a long core call; this thread
 * only takes snapshots (one per interval, and one per request the thread asks for).
 */
export async function startDashboard(o: DashboardOptions): Promise<RunningDashboard> {
  const host = o.host ?? "127.0.0.1";
  const intervalMs = o.intervalMs ?? 1000;
  const data: DashboardThreadData = {
    host,
    port: o.port,
    intervalMs,
    ...(o.token !== undefined ? { token: o.token } : {}),
    ...(o.tls !== undefined ? { tls: { cert: o.tls.cert, key: o.tls.key() } } : {}),
  };
  const thread = new Worker(join(__dirname, "dashboard-http.js"), { workerData: data });
  const post = (m: DashboardFromMain): void => thread.postMessage(m);
  const snapshot = (): string | undefined => {
    try {
      return o.snapshot();
    } catch (e) {
      log("error", `dashboard: snapshot failed: ${(e as Error).message}`);
      return undefined;
    }
  };
  const exited = new Promise<void>((resolve) => thread.once("exit", () => resolve()));
  const port = await new Promise<number>((resolve, reject) => {
    thread.once("error", reject);
    thread.once("exit", (code) => reject(new Error(`dashboard thread exited (${code})`)));
    thread.on("message", (m: DashboardToMain) => {
      if (m.type === "listening") resolve(m.port);
      else if (m.type === "error") reject(new Error(m.message));
      else {
        const json = snapshot();
        post({ type: "snapshot", json: json ?? "", id: m.id });
      }
    });
  }).catch(async (e: unknown) => {
    await thread.terminate();
    throw e;
  });
  thread.on("error", (e) => log("error", `dashboard: ${e.message}`));
  thread.unref();
  const tick = (): void => {
    const json = snapshot();
    if (json !== undefined) post({ type: "snapshot", json });
  };
  tick();
  const timer = setInterval(tick, intervalMs).unref();
  const shown = host.includes(":") ? `[${host}]` : host;
  return {
    url: `${o.tls ? "https" : "http"}://${shown === "0.0.0.0" ? "127.0.0.1" : shown}:${port}/`,
    port,
    close: async () => {
      clearInterval(timer);
      post({ type: "close" });
      const t = setTimeout(() => void thread.terminate(), 2000);
      await exited;
      clearTimeout(t);
    },
  };
}
