#!/usr/bin/env node
// The dashboard's overhead (issue 25): W1 (N merges of two consts -> one arrayMake, 3N+1 tasks)
// with the dashboard off, and on with its page open in headless Chromium, interleaved in ONE run
// (off, on, off, on, ...), fresh cluster per repetition.
//   node --expose-gc bench/e2e/dashboard.mjs [--n 1000000] [--reps 3] [--workers 2x1] [--json]
// Reports wall times (median, min, max), the ratio of tasks/s on/off (target >= 0.9), the page's
// redraw time (longest), and /metrics response times while the plan runs (responsiveness).
// Then, per repetition, /metrics while the server ingests the 3N+1-task plan in one core call (a
// server without workers: only the ingest), polled every 20 ms: the answers that overlap the
// call, and the slowest of them (the HTTP side runs in its own thread; it used to stall for the
// whole call).
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { get } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LocalCluster } from "hyperloom";
import puppeteer from "puppeteer-core";
import { w1Tasks } from "./plans.mjs";
import { collectGarbage } from "./heap.mjs";

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const n = Number(String(opt("--n", "1000000")).replace(/_/g, ""));
const reps = Number(opt("--reps", "3"));
const [nw, nc] = opt("--workers", "2x1").split("x").map(Number);
const json = args.includes("--json");
const chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => existsSync(p));
if (!chromium) throw new Error("needs /usr/bin/chromium (apt-get install chromium)");
const now = () => Number(process.hrtime.bigint()) / 1e6;
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const log = (s) => process.stderr.write(s + "\n");

function timedGet(url, token) {
  const t0 = now();
  return new Promise((resolve, reject) => {
    get(url, { headers: token ? { Authorization: `Bearer ${token}` } : {} }, (res) => {
      res.resume();
      res.on("end", () => resolve(now() - t0));
    }).on("error", reject);
  });
}

async function rep(dashboard) {
  const cluster = await LocalCluster.start({ workers: nw, cpus: nc, ...(dashboard ? { dashboard: { host: "127.0.0.1", port: 0 } } : {}) });
  const client = await cluster.connect();
  let browser;
  let profile;
  let page;
  const metricsMs = [];
  try {
    if (dashboard) {
      profile = mkdtempSync(join(tmpdir(), "hyperloom-bench-chromium-"));
      browser = await puppeteer.launch({ executablePath: chromium, headless: true, userDataDir: profile, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
      page = await browser.newPage();
      await page.goto(cluster.dashboardLink);
      await page.waitForFunction(() => Number(document.body.dataset.updates) >= 1);
    }
    collectGarbage();
    const t0 = now();
    const [root] = client.submit([w1Tasks(n)]);
    let done = false;
    const scraper = dashboard
      ? (async () => {
          while (!done) {
            metricsMs.push(await timedGet(`${cluster.dashboardUrl}metrics`, cluster.dashboardToken));
            await new Promise((r) => setTimeout(r, 250));
          }
        })()
      : Promise.resolve();
    const [arr] = await client.gather([root]);
    const wallMs = now() - t0;
    done = true;
    await scraper;
    if (arr.length !== n) throw new Error(`W1: ${arr.length} results, expected ${n}`);
    const out = { dashboard, wallMs, tasksPerS: (3 * n + 1) / (wallMs / 1e3) };
    if (page) {
      // Let the page show the end, then read its counters.
      await new Promise((r) => setTimeout(r, 1500));
      Object.assign(
        out,
        await page.evaluate(() => ({
          updates: Number(document.body.dataset.updates),
          renderMaxMs: Number(document.body.dataset.renderMaxMs),
          finishedShown: Number(document.getElementById("tasks-finished").textContent.replace(/,/g, "")),
        })),
      );
      out.metricsMaxMs = Math.max(...metricsMs);
      out.metricsMedianMs = median(metricsMs);
      out.metricsScrapes = metricsMs.length;
    }
    log(`  W1 N=${n} ${nw}x${nc} dashboard ${dashboard ? "on " : "off"}: ${wallMs.toFixed(0)} ms${page ? `, page redraw max ${out.renderMaxMs} ms, /metrics max ${out.metricsMaxMs.toFixed(0)} ms` : ""}`);
    return out;
  } finally {
    await browser?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
    await client.close().catch(() => undefined);
    await cluster.stop();
  }
}

/** /metrics polled while a server without workers ingests W1(n). */
async function ingestRep() {
  const cluster = await LocalCluster.start({ workers: 0, dashboard: { host: "127.0.0.1", port: 0 } });
  const client = await cluster.connect();
  try {
    const url = `${cluster.dashboardUrl}metrics`;
    const answers = [];
    let stop = false;
    const plan = w1Tasks(n);
    const scraper = (async () => {
      while (!stop) {
        const sent = Date.now();
        const body = await new Promise((resolve, reject) => {
          get(url, (res) => {
            let b = "";
            res.setEncoding("utf8");
            res.on("data", (d) => (b += d));
            res.on("end", () => resolve(b));
          }).on("error", reject);
        });
        answers.push({ sent, answered: Date.now() });
        const m = /^hyperloom_tasks_submitted_total (\d+)$/m.exec(body);
        if (m && Number(m[1]) >= 3 * n + 1) stop = true;
        else await new Promise((r) => setTimeout(r, 20));
      }
    })();
    client.submit([plan]);
    await scraper;
    const status = await new Promise((resolve, reject) => {
      get(`${cluster.dashboardUrl}status.json`, (res) => {
        let b = "";
        res.on("data", (d) => (b += d));
        res.on("end", () => resolve(JSON.parse(b)));
      }).on("error", reject);
    });
    const p = status.plans.find((x) => x.size === 3 * n + 1);
    const from = p.submitted_ms;
    const to = from + p.ingest_ms;
    const overlapping = answers.filter((a) => a.answered >= from && a.sent <= to);
    const out = {
      ingestMs: p.ingest_ms,
      answersDuring: answers.filter((a) => a.sent >= from && a.answered <= to).length,
      slowestMs: overlapping.length ? Math.max(...overlapping.map((a) => a.answered - a.sent)) : NaN,
    };
    log(`  ingest of ${3 * n + 1} tasks: ${out.ingestMs.toFixed(0)} ms, ${out.answersDuring} /metrics answers during it, slowest overlapping ${out.slowestMs} ms`);
    return out;
  } finally {
    await client.close().catch(() => undefined);
    await cluster.stop();
  }
}

const runs = [];
for (let r = 0; r < reps; r++) {
  runs.push(await rep(false));
  runs.push(await rep(true));
}
const ingest = [];
for (let r = 0; r < reps; r++) ingest.push(await ingestRep());
const stat = (xs) => ({ min: Math.min(...xs), median: median(xs), max: Math.max(...xs) });
const off = runs.filter((x) => !x.dashboard);
const on = runs.filter((x) => x.dashboard);
const result = {
  workload: "W1",
  n,
  tasks: 3 * n + 1,
  workers: `${nw}x${nc}`,
  reps,
  offWallMs: stat(off.map((x) => x.wallMs)),
  onWallMs: stat(on.map((x) => x.wallMs)),
  ratio: median(on.map((x) => x.tasksPerS)) / median(off.map((x) => x.tasksPerS)),
  // Per interleaved pair (off then on, same conditions): on/off tasks/s.
  pairRatios: stat(on.map((x, i) => x.tasksPerS / off[i].tasksPerS)),
  pageRedrawMaxMs: Math.max(...on.map((x) => x.renderMaxMs)),
  metricsMs: stat(on.flatMap((x) => [x.metricsMedianMs, x.metricsMaxMs])),
  ingest: {
    ingestMs: stat(ingest.map((x) => x.ingestMs)),
    answersDuring: stat(ingest.map((x) => x.answersDuring)),
    slowestAnswerMs: stat(ingest.map((x) => x.slowestMs)),
  },
  runs,
  ingestRuns: ingest,
};
if (json) process.stdout.write(JSON.stringify(result) + "\n");
else {
  const f = (s) => `${s.median.toFixed(0)} ms (min ${s.min.toFixed(0)}, max ${s.max.toFixed(0)})`;
  process.stdout.write(
    `W1 N=${n} on ${nw}x${nc}, ${reps} reps each, interleaved:\n` +
      `  dashboard off: ${f(result.offWallMs)}\n  dashboard on (page open): ${f(result.onWallMs)}\n` +
      `  ratio of tasks/s on/off (medians): ${result.ratio.toFixed(3)} (target >= 0.9); per pair ${result.pairRatios.median.toFixed(3)} (min ${result.pairRatios.min.toFixed(3)}, max ${result.pairRatios.max.toFixed(3)})\n` +
      `  page redraw, longest: ${result.pageRedrawMaxMs} ms; /metrics while running: ${f(result.metricsMs)}\n` +
      `  during the ingest of ${3 * n + 1} tasks (${f(result.ingest.ingestMs)}): /metrics answers ${f(result.ingest.answersDuring).replace(/ ms/g, "")}, slowest ${f(result.ingest.slowestAnswerMs)}\n`,
  );
}
