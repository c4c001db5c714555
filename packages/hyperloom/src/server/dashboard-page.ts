/**
 * The dashboard page: HTML, CSS and script in one document (no external resources). The
 * script subscribes to `/events` and redraws a few small tables per update (their size is
 * bounded by workers, clients, kept plans and failures, never by tasks); it records how long
 * each redraw took in `data-render-ms` on `<body>` (the page's update cost; the longest in
 * `data-render-max-ms`).
 */

/** The page's HTML. */
export function dashboardPage(): string {
  return PAGE;
}

const PAGE = String.raw`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>HyperLoom dashboard</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<style>
:root{--bg:#f6f7f9;--fg:#1d2430;--mute:#6b7485;--card:#fff;--line:#e2e5ea;--waiting:#b8c0cc;--ready:#f2c14e;--running:#3d8bfd;--finished:#2fb36d;--failed:#e5484d}
*{box-sizing:border-box}body{margin:0;font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;background:var(--bg);color:var(--fg)}
header{display:flex;gap:16px;align-items:baseline;padding:12px 20px;background:#1d2430;color:#fff}
header h1{font-size:18px;margin:0}header .mute{color:#aab3c2}
main{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:14px;padding:14px 20px}
section{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 14px;min-width:0}
section.wide{grid-column:1/-1}h2{font-size:13px;text-transform:uppercase;letter-spacing:.05em;color:var(--mute);margin:0 0 8px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:3px 8px 3px 0;border-bottom:1px solid var(--line);white-space:nowrap}
th{font-weight:600;color:var(--mute);font-size:12px}td.n,th.n{text-align:right}tr.lost td,tr.departed td,tr.gone td{color:var(--mute)}tr.lost td{text-decoration:line-through}
.bar{display:flex;height:14px;border-radius:3px;overflow:hidden;background:var(--line);min-width:120px}.bar i{display:block;height:100%}
.legend span{margin-right:12px;font-size:12px}.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px;vertical-align:-1px}
.big{display:flex;gap:22px;flex-wrap:wrap;margin:6px 0 10px}.big div{font-size:12px;color:var(--mute)}.big b{display:block;font-size:22px;color:var(--fg)}
.failure{border-left:3px solid var(--failed);padding:4px 8px;margin:6px 0;background:#fff5f5}.failure pre{margin:4px 0 0;white-space:pre-wrap;word-break:break-word;font-size:12px;max-height:8em;overflow:auto}
.mute{color:var(--mute)}svg{width:100%;height:120px;display:block}.group td:first-child{padding-left:18px;color:var(--mute)}
#conn.off{color:#ffb4b4}
</style></head>
<body data-updates="0">
<header><h1>HyperLoom</h1><span class="mute" id="conn">connecting...</span><span class="mute" id="clock"></span></header>
<main>
<section class="wide"><h2>Tasks</h2>
<div class="big" id="totals"></div>
<div class="bar" id="tasks-bar"></div>
<div class="legend" id="legend"></div></section>
<section><h2>Throughput (tasks finished per second, last minutes)</h2><svg id="throughput" viewBox="0 0 600 120" preserveAspectRatio="none"></svg><div class="mute" id="rate"></div></section>
<section><h2>Transfers and scheduler</h2><table id="transfers"><tbody></tbody></table></section>
<section class="wide"><h2>Workers</h2><table id="workers"><thead><tr><th>#</th><th>address</th><th class="n">cpus</th><th class="n">busy cpus</th><th class="n">running</th><th class="n">objects</th><th class="n">bytes</th><th>state</th></tr></thead><tbody></tbody></table></section>
<section class="wide"><h2>Plans</h2><table id="plans"><thead><tr><th>plan</th><th>client</th><th>state</th><th class="n">tasks</th><th class="n">waiting</th><th class="n">ready</th><th class="n">running</th><th class="n">finished</th><th class="n">failed</th><th>progress</th><th class="n">ingest</th></tr></thead><tbody></tbody></table></section>
<section><h2>Clients</h2><table id="clients"><thead><tr><th>#</th><th>address</th><th class="n">plans</th><th class="n">objects</th><th>state</th></tr></thead><tbody></tbody></table></section>
<section><h2>Recent failures</h2><div id="failures"><span class="mute">none</span></div></section>
</main>
<script>
"use strict";
var STATES = ["waiting", "ready", "running", "finished", "failed"];
function esc(s) { return String(s).replace(/[&<>"]/g, function (c) { return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]; }); }
function num(n) { return Number(n).toLocaleString("en-US"); }
function bytes(b) { var u = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0; while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; } return (i ? b.toFixed(1) : b) + " " + u[i]; }
function bar(t) {
  var total = STATES.reduce(function (a, k) { return a + t[k]; }, 0) || 1;
  return STATES.map(function (k) { return t[k] ? '<i title="' + k + " " + t[k] + '" style="width:' + (100 * t[k] / total) + "%;background:var(--" + k + ')"></i>' : ""; }).join("");
}
function counts(t) { return STATES.map(function (k) { return '<td class="n" data-state="' + k + '">' + num(t[k]) + "</td>"; }).join(""); }
function setRows(id, html) { document.querySelector("#" + id + " tbody").innerHTML = html; }
document.getElementById("legend").innerHTML = STATES.map(function (k) { return '<span><i style="background:var(--' + k + ')"></i>' + k + "</span>"; }).join("");

function render(m) {
  var s = m.status, t = s.tasks;
  document.getElementById("clock").textContent = "updated " + new Date(s.time_ms).toLocaleTimeString();
  document.getElementById("totals").innerHTML = STATES.map(function (k) {
    return '<div>' + k + '<b id="tasks-' + k + '">' + num(t[k]) + "</b></div>";
  }).join("") + ["connected", "departed", "lost"].map(function (st) {
    return "<div>workers " + st + '<b id="workers-' + st + '">' + s.workers.filter(function (w) { return w.state === st; }).length + "</b></div>";
  }).join("");
  document.getElementById("tasks-bar").innerHTML = bar(t);
  setRows("workers", s.workers.map(function (w) {
    return '<tr class="worker ' + w.state + '"><td>' + w.id + "</td><td>" + esc(w.address) + '</td><td class="n">' + w.cpus +
      '</td><td class="n">' + w.busy_cpus + '</td><td class="n">' + num(w.running) + '</td><td class="n">' + num(w.objects) + '</td><td class="n">' + bytes(w.bytes) +
      "</td><td>" + w.state + "</td></tr>";
  }).join(""));
  setRows("clients", s.clients.map(function (c) {
    return "<tr" + (c.alive ? "" : ' class="gone"') + "><td>" + c.id + "</td><td>" + esc(c.address) + '</td><td class="n">' + c.plans + '</td><td class="n">' + num(c.objects) +
      "</td><td>" + (c.alive ? "connected" : "gone") + "</td></tr>";
  }).join(""));
  var plans = s.plans.slice().reverse();
  setRows("plans", plans.map(function (p) {
    var total = STATES.reduce(function (a, k) { return a + p.tasks[k]; }, 0);
    var rows = '<tr class="plan" data-plan="' + p.id + '"><td>' + p.id + "</td><td>" + p.client + "</td><td>" + p.state + '</td><td class="n">' + num(total) + "</td>" + counts(p.tasks) +
      '<td><div class="bar">' + bar(p.tasks) + '</div></td><td class="n">' + (p.ingest_ms < 10 ? p.ingest_ms.toFixed(2) : p.ingest_ms.toFixed(0)) + " ms</td></tr>";
    p.groups.forEach(function (g) {
      var gt = STATES.reduce(function (a, k) { return a + g.tasks[k]; }, 0);
      rows += '<tr class="group"><td colspan="3">' + esc(g.name) + '</td><td class="n">' + num(gt) + "</td>" + counts(g.tasks) + '<td><div class="bar">' + bar(g.tasks) + "</div></td><td></td></tr>";
    });
    return rows;
  }).join("") || '<tr><td colspan="11" class="mute">no plan yet</td></tr>');
  var x = s.transfers;
  setRows("transfers", [
    ["transfers in flight", num(x.in_flight)], ["transfers (worker to worker)", num(x.total)], ["bytes between workers", bytes(x.bytes)],
    ["fetches by clients", num(x.fetches)], ["bytes to clients", bytes(x.fetch_bytes)], ["scheduler rounds", num(s.scheduler_rounds)],
    ["tasks assigned", num(s.tasks_assigned)], ["plans accepted / rejected", num(s.plans_accepted) + " / " + num(s.plans_rejected)],
    ["plan ingest time", (s.ingest_seconds * 1000).toFixed(1) + " ms"]
  ].map(function (r) { return "<tr><td>" + r[0] + '</td><td class="n">' + r[1] + "</td></tr>"; }).join(""));
  var f = s.failures.slice().reverse();
  document.getElementById("failures").innerHTML = f.length ? f.map(function (e) {
    return '<div class="failure"><b>task ' + e.task + (e.label ? " (" + esc(e.label) + ")" : "") + "</b> of plan " + e.plan + ' <span class="mute">on ' + esc(e.worker) + ", " +
      new Date(e.time_ms).toLocaleTimeString() + "</span><pre>" + esc(e.message) + "</pre></div>";
  }).join("") : '<span class="mute">none</span>';
  chart(m.history);
}

function chart(h) {
  var svg = document.getElementById("throughput"), pts = [], max = 1, rates = [];
  var from = h.length > 300 ? h.length - 300 : 0;
  for (var i = from + 1; i < h.length; i++) {
    var dt = (h[i][0] - h[i - 1][0]) / 1000, r = dt > 0 ? Math.max(0, h[i][1] - h[i - 1][1]) / dt : 0;
    rates.push(r); if (r > max) max = r;
  }
  for (var j = 0; j < rates.length; j++) pts.push((600 * j / Math.max(1, rates.length - 1)).toFixed(1) + "," + (118 - 112 * rates[j] / max).toFixed(1));
  svg.innerHTML = '<polyline fill="none" stroke="#2fb36d" stroke-width="2" vector-effect="non-scaling-stroke" points="' + pts.join(" ") + '"/>';
  var now = rates.length ? rates[rates.length - 1] : 0;
  document.getElementById("rate").textContent = num(Math.round(now)) + " tasks/s now, peak " + num(Math.round(max === 1 && !rates.some(function (r) { return r > 0; }) ? 0 : max)) + " tasks/s";
}

var es = new EventSource("events");
es.onopen = function () { var c = document.getElementById("conn"); c.textContent = "live"; c.className = "mute"; };
es.onerror = function () { var c = document.getElementById("conn"); c.textContent = "disconnected (retrying)"; c.className = "off"; };
es.addEventListener("busy", function (ev) {
  var c = document.getElementById("conn");
  c.textContent = "server busy: figures " + (JSON.parse(ev.data).snapshot_age_ms / 1000).toFixed(1) + " s old";
  c.className = "off";
});
es.onmessage = function (ev) {
  var c = document.getElementById("conn");
  if (c.className === "off") { c.textContent = "live"; c.className = "mute"; }
  var t0 = performance.now();
  render(JSON.parse(ev.data));
  var b = document.body;
  var ms = performance.now() - t0;
  b.dataset.renderMs = ms.toFixed(2);
  b.dataset.renderMaxMs = Math.max(ms, Number(b.dataset.renderMaxMs || 0)).toFixed(2);
  b.dataset.updates = String(Number(b.dataset.updates) + 1);
};
</script></body></html>
`;
