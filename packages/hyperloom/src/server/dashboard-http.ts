/**
 * The dashboard's HTTP side, run in a worker thread of the server process (started by
 * {@link ../server/dashboard.js startDashboard}): the page, its server-sent events, `/metrics`
 * and `/status.json` answer even while the server's main thread is busy in one long core call
 * (a plan of millions of tasks is validated and inserted in one call, seconds long).
 *
 * The main thread posts the core's status snapshot (JSON text) once per interval and on request.
 * A request here asks for a fresh one and waits for it at most {@link FRESH_WAIT_MS}; when the
 * main thread is busy, it answers with the last one it has (its age in the `X-Hyperloom-Snapshot-Age-Ms`
 * header), and open pages hear that the server is busy.
 *
 * With a token (a server that requires authentication), every request must show it
 * (security/dashboard-access.ts) before anything else is answered; with TLS, it is all HTTPS.
 */
import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { checkDashboardToken, DASHBOARD_COOKIE } from "../security/dashboard-access.js";
import { parentPort, workerData } from "node:worker_threads";
import { dashboardPage } from "./dashboard-page.js";
import { metricsText, METRICS_CONTENT_TYPE } from "./metrics.js";
import { parseStatus } from "../protocol/status.js";
import type { DashboardFromMain, DashboardToMain, DashboardThreadData } from "./dashboard.js";

/** How long a request waits for a fresh snapshot from a busy main thread, ms. */
const FRESH_WAIT_MS = 200;

/** One history sample: time (ms), tasks finished, tasks failed (cumulative). */
type Sample = [number, number, number];

/** History kept for the throughput chart: 10 minutes of 1 s samples. */
const HISTORY = 600;

const port = parentPort!;
const { host, port: listenPort, intervalMs, token, tls } = workerData as DashboardThreadData;
const post = (m: DashboardToMain): void => port.postMessage(m);
const page = dashboardPage();
const history: Sample[] = [];
const streams = new Set<ServerResponse>();
const busy = new WeakSet<ServerResponse>();
/** The newest snapshot and when it arrived (ms, monotonic). */
let last = "";
let lastAt = 0;
let nextWant = 1;
/** Requests waiting for the snapshot asked for with `want` id. */
const waiting = new Map<number, ((json: string) => void)[]>();
let pending: number | undefined;
/** When `pending` was asked for (ms, monotonic). */
let pendingSince = 0;

const now = (): number => performance.now();

/**
 * A fresh snapshot, or after {@link FRESH_WAIT_MS} the last one (the main thread is busy). Once
 * a request has waited that long for an answer still missing, the next ones do not wait again.
 */
function fresh(): Promise<string> {
  if (pending !== undefined && now() - pendingSince >= FRESH_WAIT_MS) return Promise.resolve(last);
  return new Promise((resolve) => {
    let done = false;
    const finish = (json: string): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(json);
    };
    const timer = setTimeout(() => finish(last), FRESH_WAIT_MS);
    if (pending === undefined) {
      pending = nextWant++;
      pendingSince = now();
      waiting.set(pending, []);
      post({ type: "want", id: pending });
    }
    waiting.get(pending)!.push(finish);
  });
}

function send(res: ServerResponse, event: string): void {
  if (busy.has(res)) return; // still writing the previous update: skip this one
  if (!res.write(event)) {
    busy.add(res);
    res.once("drain", () => busy.delete(res));
  }
}

function update(json: string): string {
  return `data: {"status":${json},"history":${JSON.stringify(history)}}\n\n`;
}

port.on("message", (m: DashboardFromMain) => {
  if (m.type === "close") {
    for (const r of streams) r.destroy();
    streams.clear();
    server.closeAllConnections();
    server.close(() => process.exit(0));
    return;
  }
  // An empty snapshot: the core failed to take one (the main thread logged why).
  if (m.json !== "") {
    last = m.json;
    lastAt = now();
  }
  if (m.id !== undefined) {
    const list = waiting.get(m.id) ?? [];
    waiting.delete(m.id);
    if (pending === m.id) pending = undefined;
    for (const f of list) f(last);
    return;
  }
  if (m.json === "") return;
  // A tick: one history sample and one update to every open page.
  const s = parseStatus(m.json);
  history.push([s.time_ms, s.tasks.finished, s.tasks.failed]);
  if (history.length > HISTORY) history.shift();
  if (streams.size === 0) return;
  const event = update(m.json);
  for (const res of streams) send(res, event);
});

// Pages hear when the main thread has not sent its tick for a while (busy in a long core call).
setInterval(() => {
  const age = now() - lastAt;
  if (lastAt === 0 || age < 2 * intervalMs || streams.size === 0) return;
  const event = `event: busy\ndata: {"snapshot_age_ms":${Math.round(age)}}\n\n`;
  for (const res of streams) send(res, event);
}, intervalMs).unref();

const handle = (req: IncomingMessage, res: ServerResponse): void => {
  const path = (req.url ?? "/").split("?")[0];
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.writeHead(405, { Allow: "GET, HEAD" }).end();
    return;
  }
  if (token !== undefined) {
    const { ok, fromQuery } = checkDashboardToken(req, token);
    if (!ok) {
      res
        .writeHead(401, { "Content-Type": "text/plain; charset=utf-8", "WWW-Authenticate": 'Bearer realm="hyperloom"', "Cache-Control": "no-store" })
        .end("This HyperLoom dashboard requires its token: open the URL with ?token= that hyperloom local prints, or the 'dashboard' URL in the server's access file; scripts send 'Authorization: Bearer <token>'.\n");
      return;
    }
    if (fromQuery && (path === "/" || path === "/index.html")) {
      // A browser opening the page: the cookie carries the token from now on (the page's
      // event stream sends it); the address bar loses it. Other paths (`/metrics?token=…`
      // for curl) are simply served.
      const cookie = `${DASHBOARD_COOKIE}=${token}; HttpOnly; SameSite=Strict; Path=/${tls ? "; Secure" : ""}`;
      res.writeHead(303, { "Set-Cookie": cookie, Location: path ?? "/", "Cache-Control": "no-store" }).end();
      return;
    }
  }
  const age = (): Record<string, string> => ({ "X-Hyperloom-Snapshot-Age-Ms": String(Math.round(now() - lastAt)) });
  switch (path) {
    case "/":
    case "/index.html":
      res.writeHead(200, { "Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store" }).end(page);
      return;
    case "/events": {
      res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-store", Connection: "keep-alive" });
      res.write("retry: 2000\n\n");
      req.socket.setNoDelay(true);
      req.on("close", () => streams.delete(res));
      // A fresh snapshot, not the last tick's (up to a second old): a page opened just after a
      // worker registered must already list it. One snapshot per page opened, not per task.
      void fresh().then((json) => {
        if (res.destroyed) return;
        if (json) res.write(update(json));
        streams.add(res);
      });
      return;
    }
    case "/metrics":
      void fresh().then((json) => {
        if (!json) return res.writeHead(503, { "Retry-After": "1" }).end("no snapshot yet\n");
        res.writeHead(200, { "Content-Type": METRICS_CONTENT_TYPE, ...age() }).end(metricsText(parseStatus(json)));
      });
      return;
    case "/status.json":
      void fresh().then((json) => {
        if (!json) return res.writeHead(503, { "Retry-After": "1" }).end("no snapshot yet\n");
        res.writeHead(200, { "Content-Type": "application/json", "Cache-Control": "no-store", ...age() }).end(json);
      });
      return;
    default:
      res.writeHead(404, { "Content-Type": "text/plain" }).end("not found\n");
  }
};
const server: HttpServer = tls ? (createHttpsServer({ cert: tls.cert, key: tls.key }, handle) as unknown as HttpServer) : createServer(handle);
server.once("error", (e) => post({ type: "error", message: e.message }));
server.listen({ port: listenPort, host }, () => {
  const a = server.address();
  post({ type: "listening", port: typeof a === "object" && a ? a.port : listenPort });
});
