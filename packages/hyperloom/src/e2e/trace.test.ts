import { suite } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LocalCluster } from "../cluster/local-cluster.js";
import { tasks } from "../index.js";

const cli = join(__dirname, "..", "cli", "main.js");
/** Where the report and its screenshot are kept for a person to look at. */
const outDir = join(__dirname, "..", "..", "test-output", "trace");

const t = suite<{ dir: string }>("traces and reports");

t.before(async (ctx) => {
  ctx.dir = mkdtempSync(join(tmpdir(), "hyperloom-trace-"));
  mkdirSync(outDir, { recursive: true });
  // Two 1-cpu workers: the two `run`s land on different workers, so `size` of both needs a transfer.
  const cluster = await LocalCluster.start({ workers: 2, cpus: 1 });
  const client = await cluster.connect();
  try {
    client.setTrace(join(ctx.dir, "trace"));
    const consts = Array.from({ length: 20 }, (_, i) => {
      const c = tasks.const(`c${i}`);
      c.label = `Init: ${i}`;
      return c;
    });
    const merges = consts.slice(1).map((c, i) => {
      const m = tasks.merge([consts[i]!, c]);
      m.label = `Merge: ${i}`;
      return m;
    });
    const runs = [0, 1].map((i) => {
      const r = tasks.run(["/bin/sh", "-c", `sleep 0.3; head -c 200000 /dev/zero`]);
      r.label = `Run: ${i}`;
      return r;
    });
    const sum = tasks.size(runs);
    sum.label = "Sum";
    const all = tasks.merge(merges);
    all.label = "Final";
    const [f1, f2] = client.submit([all, sum]);
    await f1!.gather();
    const size = (await f2!.gather()) as Buffer;
    assert.is(Number(size.readBigUInt64LE(0)), 400000);
  } finally {
    await client.close();
    await cluster.stop(); // SIGTERM: the server and the workers flush their traces
  }
});
t.after((ctx) => {
  rmSync(ctx.dir, { recursive: true, force: true });
});

function records(file: string, tag: string): string[][] {
  return readFileSync(file, "latin1")
    .split("\n")
    .filter((l) => l.startsWith(tag + " "))
    .map((l) => l.split(" "));
}

t("a traced run writes server.trace and one file per worker with the expected events", ({ dir }) => {
  const trace = join(dir, "trace");
  const server = join(trace, "server.trace");
  assert.ok(existsSync(server));
  assert.match(readFileSync(server, "latin1"), /^HYPERLOOM-TRACE 1 server \d+\n/);
  assert.is(records(server, "W").length, 2);
  assert.is(records(server, "P").length, 1);
  const planned = records(server, "T");
  assert.is(planned.length, 20 + 19 + 2 + 1 + 1);
  assert.ok(planned.some((r) => r.slice(4).join(" ") === "Merge: 3"));
  assert.is(records(server, "S").length, planned.length, "every task scheduled");
  assert.is(records(server, "F").length, planned.length, "every task finished");
  assert.ok(records(server, "R").length > 0, "scheduler rounds");
  let started = 0;
  let finished = 0;
  const received: Array<{ by: number; from: string; via: string | undefined }> = [];
  const dataPorts = [0, 1].map((w) => readFileSync(join(trace, `worker-${w}.trace`), "latin1").split("\n")[0]!.split(" ")[6]);
  for (const w of [0, 1]) {
    const f = join(trace, `worker-${w}.trace`);
    assert.ok(existsSync(f), `worker-${w}.trace`);
    assert.match(readFileSync(f, "latin1"), new RegExp(`^HYPERLOOM-TRACE 1 worker \\d+ ${w} 1 \\d+\\n`));
    started += records(f, "S").length;
    finished += records(f, "F").length;
    for (const r of records(f, "R").filter((r) => Number(r[3]) >= 200000)) received.push({ by: w, from: r[4]!, via: r[6] });
    // Run tasks hold cpu slot 0; built-ins run on the main thread (-1).
    for (const r of records(f, "S")) assert.ok(r[3] === "0" || r[3] === "-1");
  }
  assert.is(started, planned.length);
  assert.is(finished, planned.length);
  assert.is(received.length, 1, "one run result moved to the other worker");
  // Both workers on this host: the run's output file crossed as a hard link (peer-link), and
  // the receiver's record names the sender by its data port.
  const [moved] = received;
  assert.equal(moved, { by: moved!.by, from: dataPorts[1 - moved!.by], via: "link" });
});

function report(traceDir: string, out: string): { status: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [cli, "report", traceDir, "-o", out], { encoding: "utf8" });
  return { status: r.status, stderr: r.stderr };
}

t("hyperloom report writes one self-contained HTML file", ({ dir }) => {
  const out = join(outDir, "report.html");
  const r = report(join(dir, "trace"), out);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stderr, /Report written to .*\(43 tasks planned, 43 runs, 0 failed, 5 label groups/);
  assert.not.match(r.stderr, /warning/);
  const html = readFileSync(out, "utf8");
  assert.not.match(html, /<(script|link|img)[^>]+(src|href)=/i, "no external resources");
  assert.not.match(html, /https?:\/\//);
  assert.match(html, /<canvas id="timeline">/);
  assert.is((html.match(/<tr><td><i style/g) ?? []).length, 5, "5 label groups in the summary");
});

t("a truncated trace and a missing worker file still give a report, with warnings", ({ dir }) => {
  const src = join(dir, "trace");
  const cut = join(dir, "cut");
  mkdirSync(cut);
  copyFileSync(join(src, "server.trace"), join(cut, "server.trace"));
  const w0 = readFileSync(join(src, "worker-0.trace"));
  writeFileSync(join(cut, "worker-0.trace"), w0.subarray(0, Math.floor(w0.length * 0.6)));
  const out = join(dir, "cut.html");
  const r = report(cut, out);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stderr, /warning: worker-1\.trace is missing/);
  assert.not.match(r.stderr, /\n\s+at /, "no stack trace");
  assert.ok(statSync(out).size > 1000);
  assert.match(readFileSync(out, "utf8"), /id="warnings"/);
  const bad = report(join(dir, "no-such-dir"), join(dir, "x.html"));
  assert.is(bad.status, 1);
  assert.match(bad.stderr, /^hyperloom report: .*no-such-dir is not a directory\n$/);
});

const chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => existsSync(p));

t("the report renders in headless Chromium without script errors", ({ dir }) => {
  if (chromium === undefined) {
    if (process.env.CI === "true") assert.unreachable("no /usr/bin/chromium (.ci/run installs Debian's chromium package)");
    console.log("  (skipped: no /usr/bin/chromium; .ci/run installs Debian's chromium package)");
    return;
  }
  const out = join(outDir, "report.html");
  if (!existsSync(out)) assert.is(report(join(dir, "trace"), out).status, 0);
  const profile = mkdtempSync(join(tmpdir(), "hyperloom-chromium-"));
  const args = ["--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars", `--user-data-dir=${profile}`, "--virtual-time-budget=5000"];
  try {
    const dom = spawnSync(chromium, [...args, "--enable-logging=stderr", "--v=0", "--dump-dom", `file://${out}`], { encoding: "utf8", timeout: 60_000 });
    assert.is(dom.status, 0, dom.stderr);
    const html = /<html[^>]*>/.exec(dom.stdout)?.[0] ?? "";
    const attr = (k: string): string | undefined => new RegExp(`${k}="([^"]*)"`).exec(html)?.[1];
    assert.is(attr("data-report-status"), "ok", `page error: ${attr("data-report-error")}`);
    assert.is(attr("data-timeline-tasks"), "43");
    assert.is(attr("data-graph-nodes"), "43");
    assert.is(attr("data-colors")!.split(" ").length, 5, "one colour per label group drawn");
    assert.is((dom.stdout.match(/<tr><td><i style/g) ?? []).length, 5);
    assert.not.match(dom.stderr, /Uncaught|CONSOLE\(\d+\).*(Error|error)/, "console errors");
    const png = join(outDir, "report.png");
    rmSync(png, { force: true });
    const shot = spawnSync(chromium, [...args, `--screenshot=${png}`, "--window-size=1400,900", `file://${out}`], { encoding: "utf8", timeout: 60_000 });
    assert.is(shot.status, 0, shot.stderr);
    assert.ok(statSync(png).size > 20_000, "a screenshot with content");
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
});

t.run();
