/**
 * Access to the dashboard (`/`, `/events`, `/metrics`, `/status.json`) of a server that requires
 * authentication. HTTP clients cannot run our HMAC handshake, so they show a token instead: a
 * key derived from the server's secret (HMAC-SHA256 of a fixed label), so the secret itself never
 * crosses the wire and whoever holds the access file can compute it. A browser brings it once as
 * `?token=` (the server answers with an HttpOnly cookie the page's event stream then carries);
 * Prometheus and scripts send `Authorization: Bearer <token>`.
 */
import type { IncomingMessage } from "node:http";
import type { Secret } from "./access-file.js";

/** Name of the cookie that carries the token after the first page load. */
export const DASHBOARD_COOKIE = "hyperloom_dashboard";

/** The dashboard token of the server whose secret is `secret` (64 hex digits). */
export function dashboardToken(secret: Secret): string {
  return (require("node:crypto") as typeof import("node:crypto")).createHmac("sha256", secret.key()).update("hyperloom dashboard token v1").digest("hex");
}

/** Where a request carried a token, if it did: the header, the cookie, or the query. */
function presented(req: IncomingMessage): { token: string; via: "bearer" | "cookie" | "query" } | undefined {
  const auth = req.headers.authorization;
  if (auth !== undefined) {
    const m = /^Bearer\s+(\S+)$/i.exec(auth);
    if (m) return { token: m[1]!, via: "bearer" };
  }
  for (const part of (req.headers.cookie ?? "").split(";")) {
    const [k, v] = part.trim().split("=", 2);
    if (k === DASHBOARD_COOKIE && v) return { token: v, via: "cookie" };
  }
  const q = new URL(req.url ?? "/", "http://x").searchParams.get("token");
  if (q) return { token: q, via: "query" };
  return undefined;
}

/**
 * Whether `req` shows `token` (compared in constant time). `fromQuery`: it came as `?token=`
 * (the caller then sets the cookie, so the URL need not keep it).
 */
export function checkDashboardToken(req: IncomingMessage, token: string): { ok: boolean; fromQuery: boolean } {
  const p = presented(req);
  if (p === undefined) return { ok: false, fromQuery: false };
  const a = Buffer.from(p.token);
  const b = Buffer.from(token);
  const ok = a.length === b.length && (require("node:crypto") as typeof import("node:crypto")).timingSafeEqual(a, b);
  return { ok, fromQuery: ok && p.via === "query" };
}
