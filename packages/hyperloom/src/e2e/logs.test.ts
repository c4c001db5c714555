import { suite } from "uvu";
import * as assert from "uvu/assert";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { Client } from "../client/client.js";
import { tasks } from "../index.js";

// What the processes say on stderr, as a user reads it: departures vs losses, `--log-format
// json`, `hyperloom local -v` prefixes, `--debug`. Real server and worker processes.

const cli = join(__dirname, "..", "cli", "main.js");
const index = JSON.stringify(join(__dirname, "..", "index.js"));
/** The access files of this file's servers. */
const accessDir = mkdtempSync(join(tmpdir(), "hyperloom-logs-access-"));

/** A child process of the CLI whose stderr lines are collected. */
interface Proc {
  child: ChildProcess;
  lines: string[];
  /** Resolves with the first line matching `re` (already seen or to come); rejects after 20 s. */
  waitFor(re: RegExp): Promise<string>;
  exited: Promise<void>;
}

function run(args: string[]): Proc {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ["ignore", "ignore", "pipe"] });
  const lines: string[] = [];
  const waiters: Array<{ re: RegExp; resolve: (l: string) => void; fail: () => void }> = [];
  createInterface({ input: child.stderr! }).on("line", (l) => {
    lines.push(l);
    for (const w of waiters.splice(0)) {
      if (w.re.test(l)) w.resolve(l);
      else waiters.push(w);
    }
  });
  const exited = new Promise<void>((r) => child.once("close", () => r()));
  // A process that is gone will write nothing more: whatever was awaited did not come.
  void exited.then(() => setTimeout(() => waiters.splice(0).forEach((w) => w.fail()), 100));
  return {
    child,
    lines,
    exited,
    waitFor: (re) =>
      new Promise((resolve, reject) => {
        const seen = lines.find((l) => re.test(l));
        if (seen !== undefined) return resolve(seen);
        const fail = (): void => {
          clearTimeout(timer);
          reject(new Error(`no line matching ${re} in:\n${lines.join("\n")}`));
        };
        const timer = setTimeout(fail, 20_000);
        waiters.push({ re, resolve: (l) => (clearTimeout(timer), resolve(l)), fail });
      }),
  };
}

let clusters = 0;

/**
 * A server (its port read from its log) and `n` workers, every one with `args`; the server's
 * access file (`accessFile`, its own) is in a temporary folder.
 */
async function cluster(n: number, args: string[] = []): Promise<{ server: Proc; workers: Proc[]; port: number; accessFile: string; stop(): Promise<void> }> {
  const accessFile = join(accessDir, `access-${++clusters}.json`);
  const server = run(["server", "--host", "127.0.0.1", "--port", "0", "--access-file", accessFile, ...args]);
  const listening = await server.waitFor(/listening on 127\.0\.0\.1:\d+/);
  const port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(listening)![1]);
  const workers: Proc[] = [];
  const stop = async (): Promise<void> => {
    for (const p of [...workers, server]) {
      if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill("SIGKILL");
      await p.exited;
    }
  };
  try {
    for (let i = 0; i < n; i++) {
      const w = run(["worker", "127.0.0.1", String(port), "--access-file", accessFile, "--cpus", "1", ...args]);
      workers.push(w);
      await w.waitFor(/Worker registered/);
      await server.waitFor(new RegExp(`worker ${i} registered`));
    }
  } catch (e) {
    // A cluster that did not start leaves no process behind (it would keep the runner alive).
    await stop();
    throw e;
  }
  return { server, workers, port, accessFile, stop };
}

const t = suite("logs");

t("a worker stopped with SIGTERM has departed (info); a killed busy one is lost (warn); a terminated server reports neither", async () => {
  const c = await cluster(2);
  try {
    const client = await Client.connect("127.0.0.1", c.port, { accessFile: c.accessFile });
    assert.is(String(await client.submitOne(tasks.const("x")).gather()), "x");
    // An orderly stop: the worker says so (LEAVING), the server calls it a departure.
    c.workers[0]!.child.kill("SIGTERM");
    await c.workers[0]!.exited;
    assert.ok(c.workers[0]!.lines.some((l) => /\[info\] Stopping \(SIGTERM\)/.test(l)), c.workers[0]!.lines.join("\n"));
    const left = await c.server.waitFor(/worker 0 .*(departed|disconnected)/);
    assert.match(left, /\[info\] worker 0 \(127\.0\.0\.1:\d+\) departed$/);
    // A crash while running a task: a loss, with the count of tasks it took along.
    const busy = client.submitOne(tasks.run(["/bin/sh", "-c", "sleep 30"])).wait().catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 700)); // the task starts on worker 1 (the only one)
    c.workers[1]!.child.kill("SIGKILL");
    const lost = await c.server.waitFor(/worker 1 .*lost/);
    assert.match(lost, /\[warn\] worker 1 \(127\.0\.0\.1:\d+\) lost while running 1 task\(s\); they are rescheduled$/);
    // A server told to terminate says nothing about the connections it closes itself.
    const w2 = run(["worker", "127.0.0.1", String(c.port), "--access-file", c.accessFile, "--cpus", "1"]);
    c.workers.push(w2);
    await c.server.waitFor(/worker 2 registered/);
    await client.terminate();
    await Promise.all([c.server.exited, w2.exited]);
    void busy;
    const after = c.server.lines.filter((l) => /worker 2 /.test(l) && !/registered/.test(l));
    assert.equal(after, [], c.server.lines.join("\n"));
    assert.not.ok(c.server.lines.some((l) => /worker 0 .*lost/.test(l)));
    // …and a server stopped with SIGTERM neither.
    const d = await cluster(1);
    d.server.child.kill("SIGTERM");
    await Promise.all([d.server.exited, d.workers[0]!.exited]);
    assert.not.ok(d.server.lines.some((l) => /worker 0 .*(lost|disconnected|departed)/.test(l)), d.server.lines.join("\n"));
    assert.ok(d.workers[0]!.lines.some((l) => /Connection to server is closed/.test(l)));
  } finally {
    await c.stop();
  }
});

t("--log-format json: every stderr line of the server and the workers is an object with time, level, process, message", async () => {
  const c = await cluster(1, ["--log-format", "json", "--debug"]);
  try {
    const client = await Client.connect("127.0.0.1", c.port, { accessFile: c.accessFile });
    assert.is(String(await client.submitOne(tasks.merge([tasks.const("a"), tasks.const("b")])).gather()), "ab");
    client.close();
    c.workers[0]!.child.kill("SIGTERM");
    await c.workers[0]!.exited;
    await c.server.waitFor(/departed/);
    for (const [who, p] of [["server", c.server], ["worker", c.workers[0]!]] as const) {
      assert.ok(p.lines.length >= 3, `${who}: ${p.lines.join("\n")}`);
      for (const line of p.lines) {
        const o = JSON.parse(line) as Record<string, unknown>;
        assert.ok(["debug", "info", "warn", "error"].includes(o.level as string), line);
        assert.ok(!Number.isNaN(Date.parse(o.time as string)) && /^\d{4}-\d\d-\d\dT/.test(o.time as string), line);
        assert.is(o.process, who, line);
        assert.is(o.pid, p.child.pid, line);
        assert.type(o.message, "string", line);
      }
    }
  } finally {
    await c.stop();
  }
});

t("--debug: connection lines and the once-a-second scheduling summary; without it, neither", async () => {
  for (const debug of [true, false]) {
    const c = await cluster(1, debug ? ["--debug"] : []);
    try {
      const client = await Client.connect("127.0.0.1", c.port, { accessFile: c.accessFile });
      // The summary compares snapshots a second apart: the work comes after the first one.
      await new Promise((r) => setTimeout(r, 1200));
      const plan = Array.from({ length: 20 }, (_, i) => tasks.const(String(i)));
      await Promise.all(plan.map((p) => client.submitOne(p).gather()));
      if (debug) {
        await c.server.waitFor(/\[debug\] connection \d+ from 127\.0\.0\.1:\d+/);
        const summary = await c.server.waitFor(/\[debug\] last \d+\.\d s: \d+ scheduling rounds, \d+ tasks assigned, \d+ finished/);
        assert.match(summary, /transfers \(\d+ bytes arrived, \d+ in flight\)/);
      } else {
        await new Promise((r) => setTimeout(r, 2500)); // two summary periods
        assert.not.ok(
          [...c.server.lines, ...c.workers[0]!.lines].some((l) => /\[debug\]/.test(l)),
          c.server.lines.join("\n"),
        );
      }
      client.close();
    } finally {
      await c.stop();
    }
  }
});

t("hyperloom local -v: every line of the server and the workers carries its [server] / [worker N] prefix", () => {
  const dir = mkdtempSync(join(tmpdir(), "hyperloom-logs-"));
  try {
    const script = join(dir, "plan.mjs");
    writeFileSync(
      script,
      `import { Client, tasks } from ${index};\n` +
        "const c = await Client.connect();\n" +
        "const r = await c.submitOne(tasks.merge([tasks.const('a'), tasks.const('b')])).gather();\n" +
        "process.stderr.write('script says ' + String(r) + '\\n');\n" +
        "c.close();\n",
    );
    const r = spawnSync(process.execPath, [cli, "local", "-v", "--workers", "2", script], { encoding: "utf8", timeout: 60_000 });
    assert.is(r.status, 0, r.stderr);
    const lines = r.stderr.split("\n").filter((l) => l !== "");
    const logLines = lines.filter((l) => /\d\d:\d\d:\d\d \[(debug|info|warn|error)\]/.test(l));
    assert.ok(logLines.length >= 5, r.stderr);
    for (const l of logLines) assert.match(l, /^\[(server|worker [01])\] \d\d:\d\d:\d\d \[/, l);
    for (const who of ["[server]", "[worker 0]", "[worker 1]"]) assert.ok(lines.some((l) => l.startsWith(who)), `${who} in:\n${r.stderr}`);
    assert.ok(lines.includes("script says ab"), r.stderr);
    // The cluster's own stop is no loss.
    assert.not.ok(lines.some((l) => / lost/.test(l)), r.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

t.after(() => rmSync(accessDir, { recursive: true, force: true }));

t.run();
