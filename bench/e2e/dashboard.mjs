#!/usr/bin/env node
// The dashboard's overhead (issue 25): W1 (N merges of two consts -> one arrayMake, 3N+1 tasks)
// with the dashboard off, and on with its page open in headless Chromium, interleaved in ONE run
// (off, on, off, on, ...), fresh cluster per repetition.
//   node --expose-gc bench/e2e/dashboard.mjs [--n 1000000] [--reps 3] [--workers 2x1] [--json]
// Reports wall times (median, min, max), the ratio of tasks/s on/off (target >= 0.9), the page's
// redraw time (longest), and /metrics response times while the plan runs (responsiveness).
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { get } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LocalCluster } from "hyperloom";
import puppeteer from "puppeteer-core";
import { w1Tasks } from "./plans.mjs";

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

function timedGet(url) {
  const t0 = now();
  return new Promise((resolve, reject) => {
    get(url, (res) => {
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
      await page.goto(cluster.dashboardUrl);
      await page.waitForFunction(() => Number(document.body.dataset.updates) >= 1);
    }
    globalThis.gc?.();
    const t0 = now();
    const [root] = client.submit([w1Tasks(n)]);
    let done = false;
    const scraper = dashboard
      ? (async () => {
          while (!done) {
            metricsMs.push(await timedGet(`${cluster.dashboardUrl}metrics`));
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

const runs = [];
for (let r = 0; r < reps; r++) {
  runs.push(await rep(false));
  runs.push(await rep(true));
}
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
  pageRedrawMaxMs: Math.max(...on.map((x) => x.renderMaxMs)),
  metricsMs: stat(on.flatMap((x) => [x.metricsMedianMs, x.metricsMaxMs])),
  runs,
};
if (json) process.stdout.write(JSON.stringify(result) + "\n");
else {
  const f = (s) => `${s.median.toFixed(0)} ms (min ${s.min.toFixed(0)}, max ${s.max.toFixed(0)})`;
  process.stdout.write(
    `W1 N=${n} on ${nw}x${nc}, ${reps} reps each, interleaved:\n` +
      `  dashboard off: ${f(result.offWallMs)}\n  dashboard on (page open): ${f(result.onWallMs)}\n` +
      `  ratio of tasks/s on/off (medians): ${result.ratio.toFixed(3)} (target >= 0.9)\n` +
      `  page redraw, longest: ${result.pageRedrawMaxMs} ms; /metrics while running: ${f(result.metricsMs)}\n`,
  );
}
