/** `hyperloom report TRACE_DIR`: a trace directory -> one self-contained HTML report. */
import { writeFileSync } from "node:fs";
import { readTrace } from "./parse.js";
import { buildModel, type ReportData } from "./model.js";
import { renderHtml } from "./html.js";

export { readTrace, type Trace } from "./parse.js";
export { buildModel, groupOf, type ReportData } from "./model.js";
export { renderHtml } from "./html.js";

/** What {@link writeReport} produced. */
export interface ReportResult {
  out: string;
  warnings: string[];
  stats: ReportData["stats"];
  bytes: number;
}

/**
 * Reads the trace in `dir` and writes the report to `out`. Throws when `dir` is not a directory,
 * holds no trace file at all (nothing would be reported), or `out` cannot be written; a partial
 * trace gives a report with warnings.
 */
export function writeReport(dir: string, out: string): ReportResult {
  const trace = readTrace(dir);
  if (trace.files.length === 0) {
    throw new Error(`${dir} holds no trace files (server.trace, worker-<id>.trace): give the directory passed to client.setTrace, after the run`);
  }
  const data = buildModel(trace);
  const html = renderHtml(data);
  writeFileSync(out, html);
  return { out, warnings: data.warnings, stats: data.stats, bytes: Buffer.byteLength(html) };
}
