import { suite } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { get } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import puppeteer from "puppeteer-core";
import { LocalCluster } from "../cluster/local-cluster.js";
import { Client } from "../client/client.js";
import { tasks, type Future, type Task } from "../index.js";
import type { StatusSnapshot } from "../protocol/status.js";

// Watching a run: the dashboard page in headless Chromium, /metrics, `hyperloom status --json`
// and client.progress, against a real server process and its workers.
const t = suite<{ cluster: LocalCluster; client: Client }>("dashboard, metrics, status, progress");
const outDir = join(__dirname, "..", "..", "test-output", "dashboard");
const cli = join(__dirname, "..", "cli", "main.js");
const chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => existsSync(p));

t.before(async (ctx) => {
  mkdirSync(outDir, { recursive: true });
  ctx.cluster = await LocalCluster.start({ workers: 2, cpus: 1, dashboard: { host: "127.0.0.1", port: 0 } });
  ctx.client = await ctx.cluster.connect();
  currentToken = ctx.cluster.dashboardToken!;
});
t.after(async (ctx) => {
  await ctx.client.close();
  await ctx.cluster.stop();
});

const SLEEPS = 8;
const sleeper = (i: number) => tasks.run(["/bin/sh", "-c", `sleep 0.7; echo ${i}`], [], { label: `sleep: ${i}` });
const failing = () => tasks.run(["/bin/sh", "-c", "echo 'disk on fire' >&2; exit 3"], [], { label: "boom: 1" });

function labelled(task: Task, label: string): Task {
  task.label = label;
  return task;
}

/** The cluster's dashboard token (it requires authentication, as every default server does). */
let currentToken: string | null = null;

function settle(fs: readonly Future[]): Promise<unknown> {
  return Promise.allSettled(fs.map((f) => f.wait()));
}

/** GET `url`, with the dashboard's token as a bearer token unless `token` is null. */
function httpGet(url: string, token: string | null = currentToken): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    get(url, { headers: token !== null ? { Authorization: `Bearer ${token}` } : {} }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, type: String(res.headers["content-type"]), body }));
    }).on("error", reject);
  });
}

t("the page shows workers, task counts and a failure message, updated while a plan runs", async ({ cluster, client }) => {
  if (chromium === undefined) {
    if (process.env.CI === "true") assert.unreachable("no /usr/bin/chromium (.ci/run installs Debian's chromium package)");
    console.log("  (skipped: no /usr/bin/chromium)");
    return;
  }
  assert.ok(cluster.dashboardUrl, "the cluster reports its dashboard URL");
  assert.match(cluster.dashboardUrl!, /^http:\/\/127\.0\.0\.1:\d+\/$/);
  const profile = mkdtempSync(join(tmpdir(), "hyperloom-chromium-"));
  const browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    userDataDir: profile,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  try {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.setViewport({ width: 1400, height: 1000 });
    // Without the token: refused. The link with it: the page, and its event stream, via the cookie.
    const refused = await page.goto(cluster.dashboardUrl!);
    assert.is(refused!.status(), 401);
    assert.match(await page.content(), "requires its token");
    await page.goto(cluster.dashboardLink!);
    assert.is(page.url(), cluster.dashboardUrl, "the token left the address bar");
    await page.waitForFunction(() => Number(document.body.dataset.updates) >= 1, { timeout: 20_000 });
    const workers = await page.$$eval("#workers tbody tr.worker", (rows) => rows.map((r) => r.textContent ?? ""));
    assert.is(workers.length, 2, "both workers listed");
    assert.ok(workers.every((w) => /127\.0\.0\.1:\d+/.test(w) && /connected/.test(w)));

    const fs = client.submit([...Array.from({ length: SLEEPS }, (_, i) => sleeper(i)), failing()]);
    const finished = (): Promise<number> => page.$eval("#tasks-finished", (e) => Number((e.textContent ?? "").replace(/,/g, "")));
    // While it runs: some finished, not all, and the count goes up.
    await page.waitForFunction(
      (n: number) => {
        const v = Number(document.getElementById("tasks-finished")?.textContent?.replace(/,/g, ""));
        return v > 0 && v < n;
      },
      { timeout: 30_000, polling: 50 },
      SLEEPS,
    );
    const mid = await finished();
    const running = await page.$eval("#tasks-running", (e) => Number(e.textContent));
    assert.ok(running >= 0);
    await settle(fs);
    await page.waitForFunction(
      (n: number) => Number(document.getElementById("tasks-finished")?.textContent) === n && Number(document.getElementById("tasks-failed")?.textContent) === 1,
      { timeout: 20_000, polling: 100 },
      SLEEPS,
    );
    assert.ok((await finished()) > mid, "the finished count went up while the page was open");
    const failure = await page.$eval("#failures", (e) => e.textContent ?? "");
    assert.match(failure, "disk on fire", "the failure message is shown");
    assert.match(failure, "boom: 1", "with the task's label");
    const groups = await page.$$eval("#plans tr.group", (rows) => rows.map((r) => r.textContent ?? ""));
    assert.ok(groups.some((g) => g.startsWith("sleep")), `label group rows: ${groups.join(" | ")}`);
    const renderMs = await page.evaluate(() => Number(document.body.dataset.renderMs));
    console.log(`  dashboard page update: ${renderMs.toFixed(2)} ms to redraw`);
    assert.equal(errors, [], "no script errors");
    await page.screenshot({ path: join(outDir, "dashboard.png") });
    client.release(fs.filter((f) => f.finished()));
  } finally {
    await browser.close();
    rmSync(profile, { recursive: true, force: true });
  }
});

/** Parses the Prometheus text format strictly enough to catch a malformed exposition. */
function parseMetrics(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  const typed = new Set<string>();
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const meta = /^# (HELP|TYPE) (hyperloom_[a-z_]+) (.+)$/.exec(line);
    if (meta) {
      if (meta[1] === "TYPE") {
        assert.ok(["gauge", "counter"].includes(meta[3]!), line);
        typed.add(meta[2]!);
      }
      continue;
    }
    const m = /^(hyperloom_[a-z_]+)(\{[a-z_]+="(?:[^"\\]|\\.)*"(?:,[a-z_]+="(?:[^"\\]|\\.)*")*\})? (-?[0-9.e+]+)$/.exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    assert.ok(typed.has(m![1]!), `sample before its TYPE: ${line}`);
    samples.set(m![1]! + (m![2] ?? ""), Number(m![3]));
  }
  return samples;
}

t("/metrics is Prometheus text with the right counts", async ({ cluster, client }) => {
  // Whatever ran before, one more plan with a known outcome.
  const before = parseMetrics((await httpGet(`${cluster.dashboardUrl}metrics`)).body);
  const fs = client.submit([tasks.const("a"), tasks.const("b"), failing()]);
  await settle(fs);
  const r = await httpGet(`${cluster.dashboardUrl}metrics`);
  assert.is(r.status, 200);
  assert.match(r.type, /^text\/plain; version=0\.0\.4/);
  const m = parseMetrics(r.body);
  const d = (k: string): number => m.get(k)! - (before.get(k) ?? 0);
  assert.is(d('hyperloom_tasks{state="finished"}'), 2);
  assert.is(d('hyperloom_tasks{state="failed"}'), 1);
  assert.is(m.get('hyperloom_tasks{state="running"}'), 0);
  assert.is(d("hyperloom_task_failures_total"), 1);
  assert.is(d("hyperloom_tasks_submitted_total"), 3);
  assert.is(d('hyperloom_plans_total{result="accepted"}'), 1);
  assert.is(m.get("hyperloom_workers_connected"), 2);
  assert.ok(m.get("hyperloom_scheduler_rounds_total")! > 0);
  assert.ok(m.get("hyperloom_plan_ingest_seconds_total")! > 0);
  assert.ok(m.has('hyperloom_transferred_bytes_total{direction="client"}'));
  assert.is((await httpGet(`${cluster.dashboardUrl}nope`)).status, 404);
  // The token as a query (curl): served.
  const viaQuery = await httpGet(`${cluster.dashboardUrl}metrics?token=${cluster.dashboardToken!}`, null);
  assert.is(viaQuery.status, 200);
  assert.match(viaQuery.body, "hyperloom_workers_connected 2");
  // Without the token, or with a wrong one: 401, no numbers.
  for (const token of [null, "0".repeat(64)]) {
    for (const path of ["metrics", "status.json", "events", ""]) {
      const refused = await httpGet(`${cluster.dashboardUrl}${path}`, token);
      assert.is(refused.status, 401, `/${path} with ${token}`);
      assert.not.match(refused.body, "hyperloom_");
    }
  }
  client.release(fs.filter((f) => f.finished()));
});

t("hyperloom status --json has workers, clients and plans with the right numbers; the table too", async ({ cluster, client }) => {
  const fs = client.submit([labelled(tasks.const("x"), "c: 1"), labelled(tasks.const("y"), "c: 2"), failing()]);
  await settle(fs);
  const r = spawnSync(process.execPath, [cli, "status", "--json"], { encoding: "utf8", env: { ...process.env, HYPERLOOM_SERVER: cluster.address, HYPERLOOM_ACCESS_FILE: cluster.accessFile! }, timeout: 30_000 });
  assert.is(r.status, 0, r.stderr);
  const s = JSON.parse(r.stdout) as StatusSnapshot;
  assert.is(s.workers.filter((w) => w.alive).length, 2);
  assert.ok(s.workers.every((w) => w.cpus === 1 && /^127\.0\.0\.1:\d+$/.test(w.address)));
  // Two results held by our client (x, y); nothing runs.
  assert.is(s.workers.reduce((a, w) => a + w.objects, 0), 2);
  assert.is(s.workers.reduce((a, w) => a + w.running, 0), 0);
  assert.ok(s.clients.filter((c) => c.alive).length >= 2, "our client and the status command");
  const plan = s.plans[s.plans.length - 1]!;
  assert.is(plan.state, "running", "results still held");
  assert.equal(plan.tasks, { waiting: 0, ready: 0, running: 0, finished: 2, failed: 1 });
  assert.equal(plan.groups.find((g) => g.name === "c")?.tasks.finished, 2);
  assert.equal(plan.groups.find((g) => g.name === "boom")?.tasks.failed, 1);
  assert.match(s.failures[s.failures.length - 1]!.message, "disk on fire");
  // The access file alone says where the server is.
  const table = spawnSync(process.execPath, [cli, "status", "--access-file", cluster.accessFile!], { encoding: "utf8", timeout: 30_000 });
  assert.is(table.status, 0, table.stderr);
  assert.match(table.stdout, /^HyperLoom server 127\.0\.0\.1:\d+: 2 worker\(s\) \(2 cpus\)/);
  assert.match(table.stdout, /WORKER\s+ADDRESS\s+CPUS/);
  assert.match(table.stdout, /disk on fire/);
  // Without the access file: refused, saying why.
  const refused = spawnSync(process.execPath, [cli, "status", "--server", cluster.address], { encoding: "utf8", env: { ...process.env, HYPERLOOM_ACCESS_FILE: "" }, timeout: 30_000 });
  assert.is(refused.status, 1);
  assert.match(refused.stderr, `hyperloom status: cannot connect to ${cluster.address}: ${cluster.address} requires authentication and no access file was given`);
  const bad = spawnSync(process.execPath, [cli, "status", "--server", "127.0.0.1:1"], { encoding: "utf8", timeout: 30_000 });
  assert.is(bad.status, 1);
  assert.match(bad.stderr, /^hyperloom status: cannot connect to 127\.0\.0\.1:1/);
  client.release(fs.filter((f) => f.finished()));
});

t("client.progress yields monotone counts ending at the total", async ({ client }) => {
  const fs = client.submit([
    ...Array.from({ length: 12 }, (_, i) => tasks.run(["/bin/sh", "-c", `sleep 0.0${i % 3}; echo ${i}`])),
    failing(),
    failing(),
  ]);
  const seen: { finished: number; failed: number; total: number }[] = [];
  for await (const p of client.progress(fs)) seen.push(p);
  assert.ok(seen.length >= 2, "a first count, then changes");
  for (let i = 1; i < seen.length; i++) {
    assert.ok(seen[i]!.finished >= seen[i - 1]!.finished && seen[i]!.failed >= seen[i - 1]!.failed, "monotone");
    assert.ok(seen[i]!.finished + seen[i]!.failed > seen[i - 1]!.finished + seen[i - 1]!.failed, "each yield is a change");
  }
  assert.equal(seen[seen.length - 1], { finished: 12, failed: 2, total: 14 });
  // Already settled futures: one yield.
  const again: unknown[] = [];
  for await (const p of client.progress(fs)) again.push(p);
  assert.equal(again, [{ finished: 12, failed: 2, total: 14 }]);
  client.release(fs);
});

t("hyperloom local draws a progress bar on a terminal, and none otherwise", async () => {
  const dir = mkdtempSync(join(tmpdir(), "hyperloom-bar-"));
  try {
    const script = join(dir, "steps.mjs");
    const index = JSON.stringify(join(__dirname, "..", "index.js"));
    writeFileSync(
      script,
      `import { Client, tasks } from ${index};\n` +
        "const client = await Client.connect();\n" +
        'const fs = client.submit(Array.from({ length: 6 }, (_, i) => tasks.run(["/bin/sh", "-c", "sleep 0.4; echo " + i])));\n' +
        "await client.wait(fs);\nclient.release(fs);\nawait client.close();\n",
    );
    // `script` gives the command a pseudo-terminal (util-linux).
    const cmd = `${JSON.stringify(process.execPath)} ${JSON.stringify(cli)} local --workers 1 --cpus 2 ${JSON.stringify(script)}`;
    const tty = spawnSync("script", ["-qec", cmd, "/dev/null"], { encoding: "utf8", timeout: 60_000 });
    assert.is(tty.status, 0, tty.stdout + tty.stderr);
    assert.match(tty.stdout, /\d+\/6 tasks \| 0 failed/, tty.stdout);
    assert.match(tty.stdout, /100% \| 6\/6 tasks/, "the bar ends full");
    const plain = spawnSync(process.execPath, [cli, "local", "--workers", "1", "--cpus", "2", script], { encoding: "utf8", timeout: 60_000 });
    assert.is(plain.status, 0, plain.stderr);
    assert.not.match(plain.stderr, /tasks \|/, "no bar when stderr is not a terminal");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

t("the HTML report lists failed tasks with their messages; tracing (server and workers) covers one client until setTrace(null)", async ({ cluster, client }) => {
  const dir = mkdtempSync(join(tmpdir(), "hyperloom-trace-"));
  try {
    const trace = join(dir, "trace");
    client.setTrace(trace);
    const fs = client.submit([tasks.const("fine"), failing()]);
    await settle(fs);
    client.release(fs.filter((f) => f.finished()));
    // Only this client's plans are traced, until setTrace(null) (which closes every trace file).
    const other = await cluster.connect();
    try {
      await settle(other.submit([labelled(tasks.const("o"), "other client: 1")]));
    } finally {
      await other.close();
    }
    client.setTrace(null);
    await settle(client.submit([labelled(tasks.const("z"), "after stop: 1")]));
    // The files are written out on close (the workers close theirs on the UPDATE that follows).
    const hasFailure = (): boolean =>
      readdirSync(trace)
        .filter((f) => f.endsWith(".trace"))
        .filter((f) => /^X /m.test(readFileSync(join(trace, f), "utf8"))).length >= 2;
    for (let i = 0; i < 150 && !hasFailure(); i++) await new Promise((r) => setTimeout(r, 100));
    const serverTrace = readFileSync(join(trace, "server.trace"), "utf8");
    assert.match(serverTrace, "boom: 1");
    assert.not.match(serverTrace, "other client");
    assert.not.match(serverTrace, "after stop");
    // The workers' files too: every task they recorded is one of this client's planned tasks
    // (the server's `T` records), and they recorded some.
    const planned = new Set(serverTrace.split("\n").filter((l) => l.startsWith("T ")).map((l) => l.split(" ")[1]));
    const recorded = readdirSync(trace)
      .filter((f) => /^worker-\d+\.trace$/.test(f))
      .flatMap((f) => readFileSync(join(trace, f), "utf8").split("\n"))
      .filter((l) => /^[SFX] /.test(l))
      .map((l) => l.split(" ")[2]!);
    assert.ok(recorded.length >= 2, "the workers traced this client's tasks");
    assert.equal(recorded.filter((id) => !planned.has(id)), [], "no other client's task in a worker's trace");
    const out = join(dir, "report.html");
    const r = spawnSync(process.execPath, [cli, "report", trace, "-o", out], { encoding: "utf8", timeout: 60_000 });
    assert.is(r.status, 0, r.stderr);
    assert.match(r.stderr, /1 failed/);
    const html = readFileSync(out, "utf8");
    const table = /<table id="failures">.*?<\/table>/s.exec(html)?.[0] ?? "";
    assert.match(table, "boom: 1", "the failed task's label");
    assert.match(table, "disk on fire", "its message");
    assert.match(table, "Program terminated with status 3");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

t("--version on every command", () => {
  const version = (JSON.parse(readFileSync(join(__dirname, "..", "..", "package.json"), "utf8")) as { version: string }).version;
  for (const args of [["--version"], ["server", "--version"], ["local", "--version"], ["status", "--version"], ["worker", "--version"], ["report", "--version"]]) {
    const r = spawnSync(process.execPath, [cli, ...args], { encoding: "utf8", timeout: 30_000 });
    assert.is(r.status, 0, `${args.join(" ")}: ${r.stderr}`);
    assert.is(r.stdout, `${version}\n`, args.join(" "));
  }
});

t.run();
