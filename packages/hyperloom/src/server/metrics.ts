/**
 * `/metrics`: the server's status in the Prometheus text exposition format (version 0.0.4),
 * every name prefixed `hyperloom_`.
 */
import type { StatusSnapshot } from "../protocol/status.js";

/** The `Content-Type` of the exposition format. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Escapes a label value (backslash, double quote, line feed). */
function label(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** Renders a snapshot as metrics text. */
export function metricsText(s: StatusSnapshot): string {
  const out: string[] = [];
  const metric = (name: string, type: "gauge" | "counter", help: string, samples: [string, number][]): void => {
    out.push(`# HELP hyperloom_${name} ${help}`, `# TYPE hyperloom_${name} ${type}`);
    for (const [labels, v] of samples) out.push(`hyperloom_${name}${labels} ${Number.isFinite(v) ? v : 0}`);
  };
  const states = ["waiting", "ready", "running", "finished", "failed"] as const;
  metric(
    "tasks",
    "gauge",
    "Tasks of every plan the server has seen, by state (finished and failed only grow).",
    states.map((st) => [`{state="${st}"}`, s.tasks[st]]),
  );
  metric("tasks_submitted_total", "counter", "Tasks in accepted plans, as sent.", [["", s.tasks_submitted]]);
  metric("tasks_assigned_total", "counter", "Tasks sent to workers (re-runs after a worker loss included).", [["", s.tasks_assigned]]);
  metric("task_failures_total", "counter", "Task failures reported by workers (dependants not counted).", [["", s.task_failures]]);
  const alive = s.workers.filter((w) => w.alive);
  metric("workers_connected", "gauge", "Workers connected now.", [["", alive.length]]);
  metric("workers_departed_total", "counter", "Workers that left on purpose (stopped, SIGTERM, end of their job, scaled down).", [
    ["", s.workers.filter((w) => w.state === "departed").length],
  ]);
  metric("workers_lost_total", "counter", "Workers whose connection closed unannounced (crashed, killed, cut off).", [
    ["", s.workers.filter((w) => w.state === "lost").length],
  ]);
  metric("worker_cpus", "gauge", "CPUs of each connected worker.", alive.map((w) => [`{worker="${label(w.address)}"}`, w.cpus]));
  metric("worker_running_tasks", "gauge", "Tasks sent to each connected worker and not answered yet.", alive.map((w) => [`{worker="${label(w.address)}"}`, w.running]));
  metric("worker_objects", "gauge", "Data objects held by each connected worker.", alive.map((w) => [`{worker="${label(w.address)}"}`, w.objects]));
  metric("worker_object_bytes", "gauge", "Bytes of the data objects held by each connected worker.", alive.map((w) => [`{worker="${label(w.address)}"}`, w.bytes]));
  metric("clients_connected", "gauge", "Clients connected now.", [["", s.clients.filter((c) => c.alive).length]]);
  metric("plans_total", "counter", "Plans received, by outcome.", [
    ['{result="accepted"}', s.plans_accepted],
    ['{result="rejected"}', s.plans_rejected],
  ]);
  metric("plans_running", "gauge", "Plans with tasks left.", [["", s.plans.filter((p) => p.state === "running").length]]);
  metric("plan_ingest_seconds_total", "counter", "Time spent validating and inserting accepted plans.", [["", s.ingest_seconds]]);
  metric("scheduler_rounds_total", "counter", "Scheduling rounds run with ready tasks and a connected worker.", [["", s.scheduler_rounds]]);
  metric("transfers_total", "counter", "Worker-to-worker transfers started.", [["", s.transfers.total]]);
  metric("transfers_in_flight", "gauge", "Worker-to-worker transfers in flight.", [["", s.transfers.in_flight]]);
  metric("fetches_total", "counter", "Objects fetched by clients through the server.", [["", s.transfers.fetches]]);
  metric("transferred_bytes_total", "counter", "Bytes moved: between workers (arrived transfers) and to clients (fetches).", [
    ['{direction="worker"}', s.transfers.bytes],
    ['{direction="client"}', s.transfers.fetch_bytes],
  ]);
  return out.join("\n") + "\n";
}
