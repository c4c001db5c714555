/**
 * `hyperloom worker` (reconnecting by default, `--reconnect SECONDS`): a worker survives its server
 * being killed and restarted on the same port (it registers again); with `--no-reconnect` it
 * exits; a server that lets it go (`client.terminate()`, SIGTERM) tells it STOP and it exits.
 * `--connect-retry SECONDS`: a worker started before its server waits for it.
 */
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { Client, tasks } from "../index.js";

const cli = join(__dirname, "..", "cli", "main.js");
const wdir = mkdtempSync(join(tmpdir(), "hyperloom-reconnect-"));
const children: ChildProcess[] = [];
/** The servers' access file: a restarted server writes a new secret there, which reconnecting workers read. */
const accessFile = join(wdir, "access.json");

function start(args: string[]): ChildProcess {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  child.stdout!.resume();
  // A server's log lines are read by `server` below; a worker's are drained.
  if (args[0] !== "server") child.stderr!.resume();
  children.push(child);
  return child;
}

/** Starts a server on `port` (0: any) and resolves its port once it listens. */
async function server(port: number): Promise<{ child: ChildProcess; port: number }> {
  const child = start(["server", "--host", "127.0.0.1", "--port", String(port), "--access-file", accessFile]);
  let listening: number | undefined;
  const p = await new Promise<number>((resolve, reject) => {
    // Logs go to stderr.
    createInterface({ input: child.stderr! }).on("line", (line) => {
      const m = /listening on [\d.]+:(\d+)/.exec(line);
      if (m) listening = Number(m[1]);
      if (listening !== undefined && line.includes("Access file")) resolve(listening);
    });
    child.once("exit", (code) => reject(new Error(`server exited with ${code}`)));
  });
  return { child, port: p };
}

function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((r) => child.once("exit", (code) => r(code)));
}

async function workersOf(port: number, n: number): Promise<Client> {
  for (let i = 0; i < 300; i++) {
    try {
      const c = await Client.connect("127.0.0.1", port, { accessFile });
      if ((await c.stats()).nWorkers === n) return c;
      await c.close();
    } catch {
      // the server is not up yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no ${n} worker(s) on port ${port}`);
}

const t = suite("worker --reconnect");
t.after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  rmSync(wdir, { recursive: true, force: true });
});

t("a worker with --reconnect serves a server restarted on the same port", async () => {
  const first = await server(0);
  const worker = start(["worker", "127.0.0.1", String(first.port), "--cpus", "1", "--wdir", wdir, "--nopin", "--access-file", accessFile, "--reconnect", "30"]);
  const plain = start(["worker", "127.0.0.1", String(first.port), "--cpus", "1", "--wdir", wdir, "--nopin", "--access-file", accessFile, "--no-reconnect"]);
  let c = await workersOf(first.port, 2);
  assert.is(String(await c.submitOne(tasks.const("before")).gather()), "before");
  const lost = c.submitOne(tasks.run(["/bin/sleep", "5"])).wait().catch((e: unknown) => e);
  first.child.kill("SIGKILL");
  assert.instance(await lost, Error);
  await c.close();
  // With --no-reconnect the worker ends with its server, as the original does.
  assert.is(await exited(plain), 0);
  await new Promise((r) => setTimeout(r, 300)); // the worker retries meanwhile
  const second = await server(first.port);
  c = await workersOf(second.port, 1);
  const r = await c.submitOne(tasks.merge([tasks.const("after "), tasks.run("/bin/echo restart")])).gather();
  assert.is(String(r), "after restart\n");
  await c.close();
  worker.kill("SIGTERM");
  assert.is(await exited(worker), 0);
  second.child.kill("SIGTERM");
  await exited(second.child);
});

/** Resolves with the exit code, or "still running" after `ms`. */
function exitedWithin(child: ChildProcess, ms: number): Promise<number | null | "still running"> {
  return Promise.race([exited(child), new Promise<"still running">((r) => setTimeout(() => r("still running"), ms))]);
}

t("a server that lets its workers go tells them STOP: client.terminate() and SIGTERM end workers that would reconnect", async () => {
  const s1 = await server(0);
  // Reconnecting by default (300 s): without STOP they would wait for a server that is gone.
  const args = ["--cpus", "1", "--wdir", wdir, "--nopin", "--access-file", accessFile];
  const w1 = [start(["worker", "127.0.0.1", String(s1.port), ...args]), start(["worker", "127.0.0.1", String(s1.port), ...args])];
  const c = await workersOf(s1.port, 2);
  assert.is(String(await c.submitOne(tasks.const("x")).gather()), "x");
  await c.terminate();
  assert.is(await exitedWithin(s1.child, 10_000), 0);
  for (const w of w1) assert.is(await exitedWithin(w, 10_000), 0);
  const s2 = await server(0);
  const w2 = start(["worker", "127.0.0.1", String(s2.port), ...args]);
  await (await workersOf(s2.port, 1)).close();
  s2.child.kill("SIGTERM");
  assert.is(await exitedWithin(s2.child, 10_000), 0);
  assert.is(await exitedWithin(w2, 10_000), 0);
});

t("a worker that cannot reconnect in time exits with status 1", async () => {
  const s = await server(0);
  const worker = start(["worker", "127.0.0.1", String(s.port), "--cpus", "1", "--wdir", wdir, "--nopin", "--access-file", accessFile, "--reconnect", "1"]);
  const c = await workersOf(s.port, 1);
  await c.close();
  s.child.kill("SIGKILL");
  assert.is(await exited(worker), 1);
});

t("a worker started before its server retries the refused connection and serves it (--connect-retry)", async () => {
  // A free port: a server that listened there and stopped.
  const probe = await server(0);
  probe.child.kill("SIGKILL");
  await exited(probe.child);
  const worker = start(["worker", "127.0.0.1", String(probe.port), "--cpus", "1", "--wdir", wdir, "--nopin", "--access-file", accessFile, "--connect-retry", "30"]);
  await new Promise((r) => setTimeout(r, 700)); // refused meanwhile: it retries
  assert.is(worker.exitCode, null);
  const s = await server(probe.port);
  const c = await workersOf(s.port, 1);
  assert.is(String(await c.submitOne(tasks.const("late server")).gather()), "late server");
  await c.close();
  s.child.kill("SIGTERM");
  await exited(s.child);
  assert.is(await exited(worker), 0);
});

t("with --connect-retry 0 a refused first connection ends the worker at once", async () => {
  const probe = await server(0);
  probe.child.kill("SIGKILL");
  await exited(probe.child);
  const worker = start(["worker", "127.0.0.1", String(probe.port), "--cpus", "1", "--wdir", wdir, "--nopin", "--access-file", accessFile, "--connect-retry", "0"]);
  assert.is(await exited(worker), 1);
});

t.run();
