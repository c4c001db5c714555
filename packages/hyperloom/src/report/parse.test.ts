import { suite } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readTrace } from "./parse.js";
import { buildModel, groupOf } from "./model.js";
import { renderHtml } from "./html.js";

const t = suite<{ dir: string }>("report parser");

t.before.each((ctx) => {
  ctx.dir = mkdtempSync(join(tmpdir(), "hyperloom-report-"));
});
t.after.each((ctx) => {
  rmSync(ctx.dir, { recursive: true, force: true });
});

const EPOCH = 1_700_000_000_000_000;
const SERVER = [
  `HYPERLOOM-TRACE 1 server ${EPOCH}`,
  "Y 7 loom/data/const",
  "Y 8 loom/data/merge",
  "W 5 0 127.0.0.1:4000 2",
  "W 6 1 127.0.0.1:4001 1",
  "P 10 0 0 3",
  "T 0 7 - Init: a",
  "T 1 7 - Init: b",
  "T 2 8 0,1 Merge \\\\ </script> x",
  "S 20 0 0",
  "S 20 1 1",
  "R 19 12 2",
  "F 40 0 0 1",
  "F 41 1 1 1",
  "S 42 2 0",
  "F 60 2 0 2",
  "",
].join("\n");
const W0 = [`HYPERLOOM-TRACE 1 worker ${EPOCH + 3} 0 2 4000`, "S 25 0 -1", "F 30 0 1", "R 50 1 26 4001 7", "S 52 2 0", "F 57 2 2", "D 58 2 26 !:9000", "M 1000 150 40", ""].join("\n");
const W1 = [`HYPERLOOM-TRACE 1 worker ${EPOCH + 1} 1 1 4001`, "S 22 1 -1", "F 24 1 1", "D 25 1 26 127.0.0.1:4000", "R 40 0 1 4000 3 link", ""].join("\n");

t("a complete trace: tasks, executions, transfers, CPU, no warnings", ({ dir }) => {
  writeFileSync(join(dir, "server.trace"), SERVER);
  writeFileSync(join(dir, "worker-0.trace"), W0);
  writeFileSync(join(dir, "worker-1.trace"), W1);
  const tr = readTrace(dir);
  assert.equal(tr.warnings, []);
  assert.is(tr.tasks.size, 3);
  assert.equal(tr.tasks.get(2)!.inputs, [0, 1]);
  assert.is(tr.tasks.get(2)!.label, "Merge \\ </script> x");
  assert.is(tr.types[8], "loom/data/merge");
  assert.is(tr.executions.length, 3);
  const e2 = tr.executions.find((e) => e.id === 2)!;
  assert.equal([e2.worker, e2.slot, e2.end - e2.start, e2.status, e2.size], [0, 0, 5, 0, 2]);
  // R from data port 4001 = worker 1 (streamed: an R without `via`, as traces before it); D to
  // the server's port = a client fetch; R from data port 4000 = worker 0, as a hard link.
  assert.equal(
    tr.transfers.map((x) => [x.from, x.to, x.bytes, x.via]),
    [
      [1, 0, 26, "stream"],
      [0, -2, 26, "stream"],
      [0, 1, 1, "link"],
    ],
  );
  assert.equal(tr.cpu.get(0), [{ at: EPOCH + 3 + 1000, proc: 150, sys: 40 }]);
  const m = buildModel(tr);
  assert.equal(m.groups.slice().sort(), ["Init", "Merge \\ </script> x"].sort());
  assert.is(m.stats.runs, 3);
  assert.is(m.graph.kind, "tasks");
  assert.is(m.graph.layer.length, 3);
  assert.is(m.graph.edges.length, 4);
  // Worker 0: 2 cpu lanes + main; worker 1: 1 cpu lane + main.
  assert.equal(
    m.lanes.map((l) => `${l.worker}:${l.name}:${l.end - l.start}`),
    ["0:cpu 0:1", "0:cpu 1:0", "0:main:1", "1:cpu 0:0", "1:main:1"],
  );
  assert.equal(
    m.transfers.map((x) => `${x.from} > ${x.to} ${x.via}`).sort(),
    ["worker 0 > client stream", "worker 0 > worker 1 link", "worker 1 > worker 0 stream"],
  );
  const html = renderHtml(m);
  assert.match(html, /worker 0 → worker 1 <span class="muted">\(hard links, no copy\)<\/span>/);
  assert.not.match(html, /<\/script> x/);
  assert.match(html, /Merge \\ &lt;\/script&gt; x/);
});

t("truncated last line, malformed records and a missing worker file give warnings, not errors", ({ dir }) => {
  writeFileSync(join(dir, "server.trace"), SERVER + "S 70 5 1\nF 7");
  writeFileSync(join(dir, "worker-0.trace"), W0.replace("S 52 2 0", "S x 2 0") + "S 900 9 1\nF 9");
  const tr = readTrace(dir);
  const w = tr.warnings.join("\n");
  assert.match(w, /server\.trace: the last line is incomplete/);
  assert.match(w, /worker-0\.trace: the last line is incomplete/);
  assert.match(w, /worker-0\.trace:\d+: malformed record ignored/);
  assert.match(w, /worker-1\.trace is missing/);
  assert.match(w, /worker-0\.trace: 1 task\(s\) started but did not end/);
  const open = tr.executions.find((e) => e.id === 9)!;
  assert.is(open.status, 2);
  const m = buildModel(tr);
  const html = renderHtml(m);
  assert.match(html, /class="warn" id="warnings"/);
  assert.match(html, /the last line is incomplete/);
});

t("no server.trace, an empty worker file, garbage: still a model", ({ dir }) => {
  writeFileSync(join(dir, "worker-3.trace"), W1.replace(" 1 1 4001", " 3 1 4001"));
  writeFileSync(join(dir, "worker-4.trace"), "");
  writeFileSync(join(dir, "worker-5.trace"), "\u0000\u0001garbage");
  const tr = readTrace(dir);
  const w = tr.warnings.join("\n");
  assert.match(w, /server\.trace is missing/);
  assert.match(w, /worker-4\.trace: no HYPERLOOM-TRACE header/);
  assert.is(tr.executions.length, 1);
  const m = buildModel(tr);
  assert.is(m.graph.kind, "none");
  assert.is(m.stats.runs, 1);
  renderHtml(m);
});

t("an empty directory gives a report with a warning; a missing one throws a plain error", ({ dir }) => {
  const m = buildModel(readTrace(dir));
  assert.match(m.warnings.join(), /no trace files/);
  renderHtml(m);
  assert.throws(() => readTrace(join(dir, "nope")), /is not a directory/);
});

t("label groups: the prefix up to the first ':'", () => {
  assert.is(groupOf("Compute: 1"), "Compute");
  assert.is(groupOf("Compute: 2"), "Compute");
  assert.is(groupOf("Init"), "Init");
  assert.is(groupOf("a:b:c"), "a");
  assert.is(groupOf(":x"), ":x");
});

t.run();
