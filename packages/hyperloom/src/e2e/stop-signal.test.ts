/**
 * The job's stop signal (SIGUSR1, Slurm's `--signal` before the time limit) reaches `hyperloom
 * worker` at any moment, also while it is still connecting: it must not be lost (to Node, a
 * process without a SIGUSR1 handler is asking for its inspector). The Slurm end-to-end story is
 * in slurm.test.ts; here the worker is held in its start-up by a proxy to the server.
 */
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { connect, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { Client } from "../index.js";

const cli = join(__dirname, "..", "cli", "main.js");
const wdir = mkdtempSync(join(tmpdir(), "hyperloom-stop-signal-"));
const children: ChildProcess[] = [];

const t = suite("worker stop signal");
t.after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  rmSync(wdir, { recursive: true, force: true });
});

t("a worker warned while it is still connecting stops once it is up, with the warning in its log", async () => {
  const accessFile = join(wdir, "access.json");
  const server = spawn(process.execPath, [cli, "server", "--host", "127.0.0.1", "--port", "0", "--access-file", accessFile], { stdio: ["ignore", "inherit", "pipe"] });
  children.push(server);
  const port = await new Promise<number>((resolve, reject) => {
    createInterface({ input: server.stderr! }).on("line", (line) => {
      const m = /listening on [\d.]+:(\d+)/.exec(line);
      if (m) resolve(Number(m[1]));
    });
    server.once("exit", (code) => reject(new Error(`server exited with ${code}`)));
  });
  // A proxy that holds the worker's connections until `release`.
  let released = false;
  const held: Socket[] = [];
  const forward = (s: Socket): void => {
    const up = connect(port, "127.0.0.1");
    s.pipe(up).pipe(s);
    s.on("error", () => up.destroy());
    up.on("error", () => s.destroy());
    s.resume();
  };
  let firstConnection: () => void;
  const connected = new Promise<void>((r) => (firstConnection = r));
  const proxy = createServer((s) => {
    s.pause();
    if (released) forward(s);
    else held.push(s);
    firstConnection();
  });
  const proxyPort = await new Promise<number>((r) => proxy.listen(0, "127.0.0.1", () => r((proxy.address() as { port: number }).port)));
  const worker = spawn(process.execPath, [cli, "worker", "127.0.0.1", String(proxyPort), "--access-file", accessFile, "--cpus", "1", "--wdir", wdir, "--nopin"], { stdio: ["ignore", "pipe", "pipe"] });
  children.push(worker);
  let stdout = "";
  let stderr = "";
  worker.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
  worker.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const exit = new Promise<number | null>((r) => worker.once("exit", (code) => r(code)));
  const client = await Client.connect("127.0.0.1", port, { accessFile });
  try {
    await connected;
    // The worker is connecting (its handshake is held): the warning comes now.
    worker.kill("SIGUSR1");
    await new Promise((r) => setTimeout(r, 300));
    released = true;
    for (const s of held.splice(0)) forward(s);
    const code = await Promise.race([exit, new Promise<string>((r) => setTimeout(() => r("still running after 20 s"), 20_000))]);
    assert.is(code, 0, `worker exit; stdout:\n${stdout}\nstderr:\n${stderr}`);
    // Logs go to stderr.
    assert.match(stderr, "The job's time limit is near: handing the tasks back to the server and stopping");
    assert.not.match(stderr, "Debugger listening");
    assert.is((await client.stats()).nWorkers, 0);
  } finally {
    await client.close();
    proxy.close();
    server.kill("SIGTERM");
  }
});

t.run();
