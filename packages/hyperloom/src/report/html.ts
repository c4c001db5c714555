/**
 * Renders {@link ReportData} as one self-contained HTML file: tables are plain HTML, the
 * timeline, CPU chart and plan graph are drawn by the inline script from the embedded JSON.
 */
import { CSS, SCRIPT } from "./page.js";
import { fmtBytes, GRAPH_MAX_TASKS, type ReportData } from "./model.js";

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

function fmtMs(ms: number): string {
  if (ms < 1) return `${(ms * 1000).toFixed(0)} µs`;
  if (ms < 1000) return `${ms.toFixed(ms < 10 ? 2 : 1)} ms`;
  return `${(ms / 1000).toFixed(ms < 10_000 ? 3 : 1)} s`;
}

/** JSON safe inside `<script>`: no `</script>`, no `<!--`, no U+2028/9. */
function scriptJson(v: unknown): string {
  return JSON.stringify(v).replace(/</g, "\\u003c").replace(/\u2028/g, "\\u2028").replace(/\u2029/g, "\\u2029");
}

export function renderHtml(d: ReportData): string {
  const warnings =
    d.warnings.length === 0
      ? ""
      : `<div class="warn" id="warnings"><b>${d.warnings.length} warning${d.warnings.length > 1 ? "s" : ""}:</b> the trace is partial or malformed; the report shows what could be read.<ul>${d.warnings
          .map((w) => `<li>${esc(w)}</li>`)
          .join("")}</ul></div>`;
  const totals = d.totals.map(([k, v]) => `<div class="card"><div class="k">${esc(k)}</div><div class="v">${esc(v)}</div></div>`).join("");
  const summaryRows = d.summary
    .map(
      (r) =>
        `<tr><td><i style="background:${d.colors[r.group]}"></i>${esc(d.groups[r.group]!)}${r.labels > 1 ? ` <span class="muted">(${r.labels} labels)</span>` : ""}</td>` +
        `<td>${r.planned}</td><td>${r.runs}</td><td>${r.failed || ""}</td><td>${fmtMs(r.totalMs)}</td><td>${fmtMs(r.meanMs)}</td><td>${fmtMs(r.maxMs)}</td><td>${fmtBytes(r.bytes)}</td></tr>`,
    )
    .join("");
  const transferRows = d.transfers
    .map((t) => {
      const bps = t.timed > 0 && t.durMs > 0 ? t.bytes / (t.durMs / 1000) : 0;
      const rate = bps === 0 ? "" : bps >= 1e6 ? `${(bps / 1e6).toFixed(1)} MB/s` : `${(bps / 1e3).toFixed(1)} kB/s`;
      return `<tr><td>${esc(t.from)} → ${esc(t.to)}${t.via === "link" ? ` <span class="muted">(hard links, no copy)</span>` : ""}</td><td>${t.count}</td><td>${fmtBytes(t.bytes)}</td><td>${t.timed > 0 ? fmtMs(t.durMs / t.timed) : ""}</td><td>${rate}</td></tr>`;
    })
    .join("");
  const graphNote =
    d.graph.kind === "groups"
      ? `${d.graph.tasks} tasks (more than ${GRAPH_MAX_TASKS}): one node per label group, edges labelled with their number of dependencies`
      : d.graph.kind === "tasks"
        ? `${d.graph.tasks} tasks, layered from the sources (top) down; colour = label group`
        : "";
  const failureRows = d.failures
    .map((f) => `<tr><td>${f.id}</td><td>${esc(f.label)}</td><td>${esc(f.worker)}</td><td>${fmtMs(f.atMs)}</td><td><pre style="white-space:pre-wrap;margin:0">${esc(f.message)}</pre></td></tr>`)
    .join("");
  const failures =
    d.failures.length === 0
      ? ""
      : `<section><h2>Failed tasks <span class="hint">tasks that failed on a worker, with its message (their dependants failed with them)</span></h2>
<table id="failures"><thead><tr><th>task</th><th>label</th><th>worker</th><th>at</th><th>message</th></tr></thead><tbody>${failureRows}</tbody></table></section>`;
  const workersList = d.workers.map((w) => `worker ${w.id} ${w.addr} (${w.cpus} cpus)`).join(", ");
  return `<!doctype html>
<html lang="en" data-report-status="loading" data-tasks="${d.stats.tasks}" data-runs="${d.stats.runs}" data-groups="${d.stats.groups}" data-warnings="${d.warnings.length}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>HyperLoom report — ${esc(d.dir)}</title>
<style>${CSS}</style>
</head>
<body>
<header><h1>HyperLoom report</h1><div class="sub">${esc(d.dir)} · ${esc(d.files.join(", ") || "no trace files")} · generated ${esc(d.generated)}</div></header>
<main>
<div class="warn error" id="script-error" style="display:none"></div>
${warnings}
<section class="cards" id="totals">${totals}</section>
<section><h2>Timeline <span class="hint">per worker and core · wheel: zoom · drag: pan · shift+drag: zoom to range · double-click: reset</span><button id="reset">Reset zoom</button></h2>
<div id="legend"></div>
<div class="canvas-wrap"><canvas id="timeline"></canvas></div>
<h2 style="margin-top:10px">CPU occupancy <span class="hint">each worker's process (children included) as % of its cpus; dashed: the machine</span></h2>
<div class="canvas-wrap"><canvas id="cpu"></canvas></div>
<div class="muted" style="margin-top:4px">${esc(workersList)}</div>
</section>
${failures}
<section><h2>Tasks per label <span class="hint">labels sharing the prefix before the first ':' form one group (one colour); unlabelled tasks are grouped by type</span></h2>
<table id="summary"><thead><tr><th>label</th><th>planned</th><th>runs</th><th>failed</th><th>total</th><th>mean</th><th>max</th><th>data</th></tr></thead><tbody>${summaryRows}</tbody></table>
</section>
<section><h2>Plan <span class="hint">${esc(graphNote)} · wheel: zoom · drag: pan · double-click: reset</span></h2>
<div class="canvas-wrap"><canvas id="graph"></canvas></div>
</section>
<section><h2>Transfers</h2>
${
  d.transfers.length === 0
    ? `<div class="muted">No data moved between workers or to clients.</div>`
    : `<table id="transfers"><thead><tr><th>from → to</th><th>objects</th><th>bytes</th><th>mean duration</th><th>throughput</th></tr></thead><tbody>${transferRows}</tbody></table>`
}
</section>
</main>
<div id="tip" class="tip"></div>
<script id="data" type="application/json">${scriptJson(d)}</script>
<script>${SCRIPT}</script>
</body>
</html>
`;
}
