/**
 * The live dashboard of a server: one self-contained page (no external resources), its updates
 * pushed as server-sent events, `/metrics` (Prometheus text) and `/status.json`, served by
 * Node's `http` on their own port (127.0.0.1 unless told otherwise).
 *
 * Once a second (never per task) the server core's counters are read as one snapshot
 * (`ServerCore.snapshot`, O(workers + clients + plans)); the same text goes to every open page
 * with a short history of finished/failed counts for the throughput chart. A page that reads
 * slowly skips updates instead of buffering them.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { dashboardPage } from "./dashboard-page.js";
import { metricsText, METRICS_CONTENT_TYPE } from "./metrics.js";
import { parseStatus } from "../protocol/status.js";
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
}

/** A running dashboard. */
export interface RunningDashboard {
  /** `http://host:port/`. */
  url: string;
  port: number;
  close(): Promise<void>;
}

/** One history sample: time (ms), tasks finished, tasks failed (cumulative). */
type Sample = [number, number, number];

/** History kept for the throughput chart: 10 minutes of 1 s samples. */
const HISTORY = 600;

/** Parses `[HOST:]PORT` (HOST defaults to 127.0.0.1). */
export function parseListenAddress(v: string): { host: string; port: number } {
  const m = /^(?:(.*):)?(\d+)$/.exec(v.trim());
  const port = m ? Number(m[2]) : NaN;
  if (!m || !Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`invalid address '${v}' (expected [HOST:]PORT)`);
  let host = m[1] ?? "127.0.0.1";
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  return { host: host || "127.0.0.1", port };
}

/** Starts the dashboard; resolves once it listens. */
export async function startDashboard(o: DashboardOptions): Promise<RunningDashboard> {
  const host = o.host ?? "127.0.0.1";
  const page = dashboardPage();
  const history: Sample[] = [];
  const streams = new Set<ServerResponse>();
  const busy = new WeakSet<ServerResponse>();
  let last = "";

  const tick = (): void => {
    let json: string;
    try {
      json = o.snapshot();
    } catch (e) {
      log("error", `dashboard: snapshot failed: ${(e as Error).message}`);
      return;
    }
    last = json;
    const s = parseStatus(json);
    history.push([s.time_ms, s.tasks.finished, s.tasks.failed]);
    if (history.length > HISTORY) history.shift();
    if (streams.size === 0) return;
    const event = `data: {"status":${json},"history":${JSON.stringify(history)}}\n\n`;
    for (const res of streams) {
      if (busy.has(res)) continue; // still writing the previous update: skip this one
      if (!res.write(event)) {
        busy.add(res);
        res.once("drain", () => busy.delete(res));
      }
    }
  };

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { Allow: "GET, HEAD" }).end();
      return;
    }
    switch (path) {
      case "/":
      case "/index.html":
        res.writeHead(200, { "Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store" }).end(page);
        return;
      case "/events": {
        res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-store", Connection: "keep-alive" });
        res.write("retry: 2000\n\n");
        streams.add(res);
        req.socket.setNoDelay(true);
        // A fresh snapshot, not the last tick's (up to a second old): a page opened just after a
        // worker registered must already list it. One snapshot per page opened, not per task.
        let cur = last;
        try {
          cur = o.snapshot();
        } catch (e) {
          log("error", `dashboard: snapshot failed: ${(e as Error).message}`);
        }
        if (cur) res.write(`data: {"status":${cur},"history":${JSON.stringify(history)}}\n\n`);
        req.on("close", () => streams.delete(res));
        return;
      }
      case "/metrics":
        res.writeHead(200, { "Content-Type": METRICS_CONTENT_TYPE }).end(metricsText(parseStatus(o.snapshot())));
        return;
      case "/status.json":
        res.writeHead(200, { "Content-Type": "application/json", "Cache-Control": "no-store" }).end(o.snapshot());
        return;
      default:
        res.writeHead(404, { "Content-Type": "text/plain" }).end("not found\n");
    }
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ port: o.port, host }, () => {
      const a = server.address();
      resolve(typeof a === "object" && a ? a.port : o.port);
    });
  });
  tick();
  const timer = setInterval(tick, o.intervalMs ?? 1000).unref();
  const shown = host.includes(":") ? `[${host}]` : host;
  return {
    url: `http://${shown === "0.0.0.0" ? "127.0.0.1" : shown}:${port}/`,
    port,
    close: async () => {
      clearInterval(timer);
      for (const r of streams) r.destroy();
      streams.clear();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
