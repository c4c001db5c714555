/**
 * Authentication, TLS and per-peer limits over real processes: a default cluster refuses every
 * kind of connection that does not hold its access file (one clear line on each side, nothing
 * reaching the core, the cluster unaffected), a TLS cluster moves large objects encrypted, frame
 * limits close the offending connection only, and no log or trace of a full run holds the secret.
 */
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { chmodSync, copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { connect as netConnect, createServer as netServer, type Socket } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { get as httpsGet } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LocalCluster } from "../cluster/local-cluster.js";
import { Client, tasks } from "../index.js";
import { readAccessFile, Secret, writeAccessFile } from "../security/access-file.js";
import { connectSecure } from "../security/transport.js";

const CLI = join(__dirname, "..", "cli", "main.js");
const MiB = 1 << 20;

interface Ctx {
  cluster: LocalCluster;
  serverLines: string[];
  workerLines: string[];
  dataPort: number;
  workerDataPort: number;
  dir: string;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Waits until `lines` has a line matching `re` (appearing after index `from`); returns it. */
async function lineMatching(lines: string[], re: RegExp, from = 0, ms = 5000): Promise<string> {
  const deadline = Date.now() + ms;
  for (;;) {
    const l = lines.slice(from).find((x) => re.test(x));
    if (l !== undefined) return l;
    if (Date.now() > deadline) throw new Error(`no line matching ${re} in:\n${lines.slice(from).join("\n")}`);
    await sleep(20);
  }
}

/** A raw connection: sends `bytes`, resolves with all it received once the peer closes (or 5 s). */
function raw(port: number, bytes: Buffer | ((s: Socket, got: () => Buffer) => void)): Promise<{ got: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const got: Buffer[] = [];
    const s = netConnect({ host: "127.0.0.1", port }, () => (typeof bytes === "function" ? bytes(s, () => Buffer.concat(got)) : s.write(bytes)));
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ got: Buffer.concat(got), closed: false });
    }, 5000);
    s.on("data", (d: Buffer) => got.push(d));
    s.on("error", () => undefined);
    s.on("close", () => {
      clearTimeout(timer);
      resolve({ got: Buffer.concat(got), closed: true });
    });
  });
}

/** The Register frame of an unauthenticated client (what the original's client sends first). */
const REGISTER = Buffer.from([4, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x02, 0x10, 0x02]);

/** Runs the CLI; resolves with its status and output. */
function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, HYPERLOOM_ACCESS_FILE: "", ...env } });
    let out = "";
    p.stdout.on("data", (d: Buffer) => (out += d.toString()));
    p.stderr.on("data", (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => p.kill("SIGKILL"), 20_000);
    p.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

async function startCluster(ctx: Ctx, options: { tls?: boolean; serverArgs?: string[]; dashboard?: { host: string; port: number } }): Promise<void> {
  ctx.serverLines = [];
  ctx.workerLines = [];
  ctx.dir = mkdtempSync(join(tmpdir(), "hyperloom-security-"));
  ctx.cluster = await LocalCluster.start({
    workers: 2,
    cpus: 1,
    ...options,
    onServerLine: (l) => ctx.serverLines.push(l),
    onWorkerLine: (_, l) => ctx.workerLines.push(l),
  });
  ctx.dataPort = Number(/\(data port (\d+)\)/.exec(await lineMatching(ctx.serverLines, /data port/))![1]);
  ctx.workerDataPort = Number(/data port (\d+),/.exec(await lineMatching(ctx.workerLines, /registered at/))![1]);
}

async function stopCluster(ctx: Ctx): Promise<void> {
  await ctx.cluster.stop();
  rmSync(ctx.dir, { recursive: true, force: true });
}

/** A plan across both workers: still computes the right bytes. */
async function stillServes(cluster: LocalCluster): Promise<void> {
  const c = await cluster.connect();
  try {
    const r = await c.submitOne(tasks.merge([tasks.const("still "), tasks.run(["/bin/echo", "-n", "alive"])])).gather();
    assert.is(String(r), "still alive");
    assert.is((await c.stats()).nWorkers, 2);
  } finally {
    await c.close();
  }
}

// ---------------------------------------------------------------------------------------------
const auth = suite<Ctx>("authentication of every connection");
auth.before((ctx) => startCluster(ctx, { serverArgs: ["--max-plan", String(MiB), "--frame-timeout", "2"] }));
auth.after(stopCluster);

auth("the access file is written with mode 0600 and names the server", ({ cluster }) => {
  assert.is(statSync(cluster.accessFile!).mode & 0o777, 0o600);
  const a = readAccessFile(cluster.accessFile!);
  assert.is(a.port, cluster.port);
  assert.is(a.host, "127.0.0.1");
  assert.is(a.tlsFingerprint, undefined);
});

auth("a client without the access file: refused, one line on each side, nothing leaked", async (ctx) => {
  const from = ctx.serverLines.length;
  const err = await Client.connect("127.0.0.1", ctx.cluster.port).then(
    () => undefined,
    (e: Error) => e,
  );
  assert.instance(err, Error);
  assert.match(err!.message, `127.0.0.1:${ctx.cluster.port} requires authentication and no access file was given`);
  assert.match(await lineMatching(ctx.serverLines, /main port: refused/, from), "it did not authenticate");
  // The original's first frame, raw: the only answer is the refusal (no dictionary, no data).
  const { got, closed } = await raw(ctx.cluster.port, REGISTER);
  assert.ok(closed);
  assert.is(got.toString(), "HLAUTHNO");
  await stillServes(ctx.cluster);
});

auth("a client with another server's secret: refused, both sides say so", async (ctx) => {
  const other = join(ctx.dir, "other.json");
  writeAccessFile(other, { host: "127.0.0.1", port: ctx.cluster.port, secret: Secret.generate() });
  const from = ctx.serverLines.length;
  const err = await Client.connect(undefined, undefined, { accessFile: other }).then(
    () => undefined,
    (e: Error) => e,
  );
  assert.match(err!.message, `127.0.0.1:${ctx.cluster.port} did not prove it holds our secret`);
  assert.match(await lineMatching(ctx.serverLines, /main port: refused/, from), "it holds a different secret");
  await stillServes(ctx.cluster);
});

auth("a replayed client handshake: refused", async (ctx) => {
  const secret = readAccessFile(ctx.cluster.accessFile!).secret;
  const hello = Buffer.concat([Buffer.from("HLAUTH1\n"), Buffer.alloc(32, 3)]);
  let proof: Buffer = Buffer.alloc(0);
  // A genuine handshake, recorded; the server then answers the Register frame with its dictionary.
  const first = await raw(ctx.cluster.port, (s, got) => {
    s.write(hello);
    s.on("data", () => {
      const g = got();
      if (g.length >= 72 && proof.length === 0) {
        proof = createHmac("sha256", secret.key()).update("C").update(hello.subarray(8)).update(g.subarray(8, 40)).digest();
        s.write(proof);
      } else if (g.length === 80) s.write(REGISTER);
      else if (g.length > 80) s.end();
    });
  });
  assert.is(first.got.subarray(72, 80).toString(), "HLAUTHOK");
  assert.ok(first.got.length > 200, "the authenticated connection got the dictionary");
  const from = ctx.serverLines.length;
  const second = await raw(ctx.cluster.port, (s, got) => {
    s.write(hello);
    s.on("data", () => {
      if (got().length === 72) s.write(Buffer.concat([proof]));
    });
  });
  assert.is(second.got.length, 80);
  assert.is(second.got.subarray(72).toString(), "HLAUTHNO");
  assert.match(await lineMatching(ctx.serverLines, /main port: refused/, from), "a replayed handshake");
});

auth("a worker without the access file, or with a wrong or world-readable one: refused with one clear line", async (ctx) => {
  const port = String(ctx.cluster.port);
  const wdir = join(ctx.dir, "w");
  let from = ctx.serverLines.length;
  const none = await cli(["worker", "127.0.0.1", port, "--insecure", "--wdir", wdir, "--nopin"]);
  assert.is(none.code, 1);
  assert.match(none.out, `hyperloom: 127.0.0.1:${port} requires authentication and no access file was given`);
  assert.match(await lineMatching(ctx.serverLines, /main port: refused/, from), "it did not authenticate");

  const other = join(ctx.dir, "wrong.json");
  writeAccessFile(other, { host: "127.0.0.1", port: ctx.cluster.port, secret: Secret.generate() });
  from = ctx.serverLines.length;
  const wrong = await cli(["worker", "--access-file", other, "--wdir", wdir, "--nopin"]);
  assert.is(wrong.code, 1);
  assert.match(wrong.out, `hyperloom: 127.0.0.1:${port} did not prove it holds our secret`);
  assert.match(await lineMatching(ctx.serverLines, /main port: refused/, from), "it holds a different secret");

  const open = join(ctx.dir, "open.json");
  copyFileSync(ctx.cluster.accessFile!, open);
  chmodSync(open, 0o644);
  const world = await cli(["worker", "--wdir", wdir, "--nopin"], { HYPERLOOM_ACCESS_FILE: open });
  assert.is(world.code, 1);
  assert.match(world.out, `has mode 0644: other users could read its secret; it must be readable by its owner only (chmod 600 ${open})`);
  assert.not.ok(world.out.includes(readAccessFile(ctx.cluster.accessFile!).secret.toHex()));
  assert.is((readdirSync(wdir, { withFileTypes: true }) ?? []).length, 0, "no work directory left");
  await stillServes(ctx.cluster);
});

auth("a peer without the secret at a worker's or the server's data port: refused, nothing reaches the core", async (ctx) => {
  const announce = Buffer.from([2, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x01]);
  for (const [port, lines, what] of [
    [ctx.workerDataPort, ctx.workerLines, "worker"],
    [ctx.dataPort, ctx.serverLines, "server"],
  ] as const) {
    const from = lines.length;
    const { got, closed } = await raw(port, announce);
    assert.ok(closed, what);
    assert.is(got.toString(), "HLAUTHNO", what);
    assert.match(await lineMatching(lines, /data port: refused/, from), "it did not authenticate");
    const wrong = await connectSecure(`${what} data port`, "127.0.0.1", port, { secret: Secret.generate() }).then(
      () => undefined,
      (e: Error) => e,
    );
    assert.match(wrong!.message, `${what} data port did not prove it holds our secret`);
    assert.match(await lineMatching(lines, /it holds a different secret/, from), "data port: refused");
  }
  await stillServes(ctx.cluster);
});

auth("hostile frames after authentication: oversized control frame, oversized plan, slowloris; only that connection closes", async (ctx) => {
  const secret = readAccessFile(ctx.cluster.accessFile!).secret;
  const closedAfter = async (bytes: Buffer): Promise<number> => {
    const s = await connectSecure("server", "127.0.0.1", ctx.cluster.port, { secret });
    const t0 = Date.now();
    return new Promise<number>((resolve) => {
      s.on("error", () => undefined);
      s.on("data", () => undefined);
      s.on("close", () => resolve(Date.now() - t0));
      s.resume();
      s.write(bytes);
    });
  };
  // 100 MiB announced: above --max-frame (64 MiB) and --max-plan (1 MiB here), refused on the prefix.
  let from = ctx.serverLines.length;
  const big = Buffer.alloc(16);
  big.writeUInt32LE(100 * MiB, 0);
  big[8] = 0x08;
  big[9] = 0x02;
  await closedAfter(big);
  assert.match(await lineMatching(ctx.serverLines, /exceeds/, from), `a frame of ${100 * MiB} bytes exceeds every limit (${64 * MiB} bytes for control frames, --max-frame; ${MiB} bytes for plans, --max-plan)`);
  // 4 GiB announced: refused on the prefix alone.
  from = ctx.serverLines.length;
  await closedAfter(Buffer.from([0, 0, 0, 0, 1, 0, 0, 0]));
  assert.match(await lineMatching(ctx.serverLines, /exceeds/, from), "a frame of 4294967296 bytes exceeds every limit");
  // Slowloris: a frame announced and trickled; closed at --frame-timeout (2 s here).
  from = ctx.serverLines.length;
  const slow = Buffer.alloc(12);
  slow.writeUInt32LE(1000, 0);
  const took = await closedAfter(slow);
  assert.ok(took >= 1500 && took < 6000, `closed after ${took} ms`);
  assert.match(await lineMatching(ctx.serverLines, /did not arrive/, from), "a frame did not arrive within 2 s of its first byte (996 bytes still missing; the limit is --frame-timeout)");
  // A real client with a plan above --max-plan (1 MiB here): the client learns the connection closed.
  from = ctx.serverLines.length;
  const c = await ctx.cluster.connect();
  const huge = tasks.const(Buffer.alloc(2 * MiB, 1));
  const err = await c.submitOne(huge).gather().then(
    () => undefined,
    (e: Error) => e,
  );
  assert.instance(err, Error);
  assert.match(await lineMatching(ctx.serverLines, /exceeds/, from), "exceeds the plan limit of 1048576 bytes (raise it with --max-plan)");
  await c.close();
  await stillServes(ctx.cluster);
});

auth.run();

// ---------------------------------------------------------------------------------------------
const tls = suite<Ctx>("TLS on every connection");
tls.before((ctx) => startCluster(ctx, { tls: true, dashboard: { host: "127.0.0.1", port: 0 } }));
tls.after(stopCluster);

tls("every port speaks TLS with the pinned certificate; large objects move worker -> worker and to the client; no secret in any log, trace, report or dashboard", async (ctx) => {
  const access = readAccessFile(ctx.cluster.accessFile!);
  const dashboardTexts: string[] = [];
  /** What clients were told (errors): searched for the secret too. */
  const clientSaw: string[] = [];
  assert.ok(access.tlsFingerprint !== undefined);
  // Every port: a TLS handshake succeeds (the server's ports with the pinned certificate), plain bytes get nothing.
  for (const [port, pinned] of [
    [ctx.cluster.port, true],
    [ctx.dataPort, true],
    [ctx.workerDataPort, false],
  ] as const) {
    const fp = await new Promise<string>((resolve, reject) => {
      const s = tlsConnect({ host: "127.0.0.1", port, rejectUnauthorized: false }, () => {
        resolve(s.getPeerCertificate().fingerprint256);
        s.destroy();
      });
      s.on("error", reject);
    });
    if (pinned) assert.is(fp, access.tlsFingerprint);
    const plain = await raw(port, REGISTER);
    assert.not.ok(plain.got.includes(Buffer.from("HLAUTH")), "a plain connection never reaches the handshake");
  }
  assert.match(await lineMatching(ctx.serverLines, /main port: refused a connection from 127\.0\.0\.1:\d+: it does not speak TLS/), "(this port requires it");
  // A client whose access file lacks the fingerprint (plain to a TLS port): refused, one line each side.
  const noTls = join(ctx.dir, "no-tls.json");
  writeAccessFile(noTls, { host: access.host, port: access.port, secret: access.secret });
  const from = ctx.serverLines.length;
  const err = await Client.connect(undefined, undefined, { accessFile: noTls, timeoutMs: 5000 }).then(
    () => undefined,
    (e: Error) => e,
  );
  assert.instance(err, Error);
  assert.not.ok(err!.message.includes("\n"), err!.message);
  assert.match(err!.message, `cannot connect to 127.0.0.1:${ctx.cluster.port}: the connection closed during authentication (a --tls server whose certificate this access file does not name`);
  clientSaw.push(err!.message);
  assert.match(await lineMatching(ctx.serverLines, /main port: refused .*it does not speak TLS/, from), "not a HyperLoom peer");
  // The dashboard speaks HTTPS with the same certificate, and asks for its token.
  const dash = new URL(ctx.cluster.dashboardUrl!);
  assert.is(dash.protocol, "https:");
  const https = (path: string, token?: string): Promise<{ status: number; body: string; fingerprint: string }> =>
    new Promise((resolve, reject) => {
      httpsGet(
        { host: dash.hostname, port: dash.port, path, rejectUnauthorized: false, headers: token !== undefined ? { Authorization: `Bearer ${token}` } : {} },
        (res) => {
          let body = "";
          const fingerprint = (res.socket as TLSSocket).getPeerCertificate().fingerprint256;
          res.setEncoding("utf8");
          res.on("data", (d: string) => (body += d));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body, fingerprint }));
        },
      ).on("error", reject);
    });
  const noToken = await https("/status.json");
  assert.is(noToken.status, 401);
  assert.is(noToken.fingerprint, access.tlsFingerprint);
  const plainHttp = await raw(Number(dash.port), Buffer.from("GET /status.json HTTP/1.1\r\nHost: x\r\n\r\n"));
  assert.not.match(plainHttp.got.toString("latin1"), "workers", "plain HTTP gets no status");
  const client = await ctx.cluster.connect();
  const trace = join(ctx.dir, "trace");
  client.setTrace(trace);
  try {
    const SIZE = 48 * MiB;
    const produce = (byte: string): ReturnType<typeof tasks.run> => tasks.run(["/bin/sh", "-c", `head -c ${SIZE} /dev/zero | tr '\\0' '${byte}'`]);
    const a = produce("a");
    const b = produce("b");
    // Two 1-cpu producers on two 1-cpu workers: `merge` needs one object moved to the other worker.
    const [fa, fm] = client.submit([a, tasks.merge([a, b])]);
    const merged = (await fm!.gather()) as Buffer;
    assert.is(merged.length, 2 * SIZE);
    assert.is(merged[0], 0x61);
    assert.is(merged[2 * SIZE - 1], 0x62);
    const data = (await fa!.gather()) as Buffer;
    assert.is(data.length, SIZE);
    assert.ok(data.every((x) => x === 0x61));
    await stillServes(ctx.cluster);
    // What the dashboard shows while the client is still there.
    const status = await https("/status.json", ctx.cluster.dashboardToken);
    assert.is(status.status, 200);
    assert.match(status.body, '"workers"');
    dashboardTexts.push(status.body, (await https("/metrics", ctx.cluster.dashboardToken)).body, (await https("/", ctx.cluster.dashboardToken)).body);
    // Tracing stops: the server closes its trace file, and each worker its own on the update that follows.
    client.setTrace(null);
    assert.is(String(await client.submitOne(tasks.const("after")).gather()), "after");
  } finally {
    await client.close();
  }
  // Every trace written out (server + both workers), however loaded the machine: waited for, not slept.
  const traceFiles = (): string[] => readdirSync(trace).filter((f) => f.endsWith(".trace") && statSync(join(trace, f)).size > 0);
  for (let i = 0; i < 300 && traceFiles().length < 3; i++) await sleep(100);
  assert.ok(traceFiles().length >= 3, `server and worker traces written: ${traceFiles().join(", ")}`);
  // The HTML report of the run.
  const report = join(ctx.dir, "report.html");
  const r = await cli(["report", trace, "-o", report]);
  assert.is(r.code, 0, r.out);
  const secretHex = access.secret.toHex();
  const haystack = [ctx.serverLines.join("\n"), ctx.workerLines.join("\n"), r.out, readFileSync(report, "latin1"), ...dashboardTexts, ...clientSaw];
  for (const f of readdirSync(trace)) haystack.push(readFileSync(join(trace, f)).toString("latin1"));
  assert.ok(haystack.length >= 10, "logs, traces, the report and the dashboard searched");
  for (const text of haystack) {
    assert.not.ok(text.includes(secretHex), "the secret (hex) appears");
    assert.not.ok(text.includes(access.secret.key().toString("latin1")), "the secret (bytes) appears");
    assert.not.ok(text.includes("PRIVATE KEY"), "a private key appears");
  }
});

tls("hyperloom status and hyperloom alloc reach a TLS server through its access file alone; without it they are refused", async (ctx) => {
  const file = ctx.cluster.accessFile!;
  const status = await cli(["status", "--access-file", file, "--json"]);
  assert.is(status.code, 0, status.out);
  const snapshot = JSON.parse(status.out) as { workers: { alive: boolean }[] };
  assert.is(snapshot.workers.filter((w) => w.alive).length, 2);
  const table = await cli(["status"], { HYPERLOOM_ACCESS_FILE: file });
  assert.is(table.code, 0, table.out);
  assert.match(table.out, `HyperLoom server 127.0.0.1:${ctx.cluster.port}: 2 worker(s)`);
  const alloc = await cli(["alloc", "list", "--access-file", file]);
  assert.equal([alloc.code, alloc.out], [0, "no allocation queues\n"]);
  const refused = await cli(["status", "--server", ctx.cluster.address]);
  assert.is(refused.code, 1);
  assert.match(refused.out, `hyperloom status: cannot connect to ${ctx.cluster.address}: ${ctx.cluster.address} is not a HyperLoom server (it closed the connection; a server started with --tls needs its access file)`);
  const allocRefused = await cli(["alloc", "list", "--server", ctx.cluster.address]);
  assert.is(allocRefused.code, 1);
  assert.not.match(allocRefused.out, "allocation queues\n");
});

tls.run();

// ---------------------------------------------------------------------------------------------
const defaults = suite("safe defaults");

defaults("loom-server keeps the original's open behaviour and says so in one warning line", async () => {
  // A port free a moment ago (`-p` takes no 0, as the original's; a random one may be taken).
  const probe = netServer();
  await new Promise<void>((r) => probe.listen(0, "0.0.0.0", r));
  const port = (probe.address() as { port: number }).port;
  await new Promise((r) => probe.close(r));
  const p = spawn(process.execPath, [join(__dirname, "..", "cli", "loom-server.js"), "-p", String(port)], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  // Logs are on stderr.
  p.stderr.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise((r) => p.once("close", r));
  const deadline = Date.now() + 10_000;
  while (!/Authentication is off/.test(out) && Date.now() < deadline && p.exitCode === null) await sleep(20);
  p.kill("SIGTERM");
  // Counted once the process is gone and its output complete (not while it may still write).
  await exited;
  assert.ok(out.includes(`listening on 0.0.0.0:${port}`), out);
  assert.is(out.split("\n").filter((l) => l.includes("[warn]")).length, 1, out);
  assert.match(out, "Authentication is off: anyone who can reach");
  assert.not.match(out, "Access file");
});

defaults("loom-worker joins an open server and says once, when connected, that its connections are not authenticated", async () => {
  const server = spawn(process.execPath, [CLI, "server", "--host", "127.0.0.1", "--port", "0", "--insecure"], { stdio: ["ignore", "ignore", "pipe"] });
  const wdir = mkdtempSync(join(tmpdir(), "hyperloom-loom-worker-"));
  let serverLog = "";
  server.stderr.on("data", (d: Buffer) => (serverLog += d.toString()));
  try {
    let deadline = Date.now() + 10_000;
    while (!/listening on/.test(serverLog) && Date.now() < deadline) await sleep(20);
    const port = /listening on 127\.0\.0\.1:(\d+)/.exec(serverLog)![1]!;
    const worker = spawn(process.execPath, [join(__dirname, "..", "cli", "loom-worker.js"), "--cpus=1", `--wdir=${wdir}`, "--nopin", "127.0.0.1", port], { stdio: ["ignore", "ignore", "pipe"] });
    let out = "";
    worker.stderr.on("data", (d: Buffer) => (out += d.toString()));
    const exited = new Promise((r) => worker.once("close", r));
    deadline = Date.now() + 10_000;
    while (!/not authenticated/.test(out) && Date.now() < deadline && worker.exitCode === null) await sleep(20);
    const c = await Client.connect("127.0.0.1", Number(port), { accessFile: "" });
    assert.is((await c.stats()).nWorkers, 1);
    await c.close();
    worker.kill("SIGTERM");
    await exited;
    assert.is(out.split("\n").filter((l) => l.includes("[warn]")).length, 1, out);
    assert.match(out, "[warn] loom-worker: connections are not authenticated (the original's behaviour); `hyperloom worker` with the server's access file is");
    assert.ok(out.indexOf("Worker registered") < out.indexOf("not authenticated"), "said once connected");
  } finally {
    server.kill("SIGKILL");
    rmSync(wdir, { recursive: true, force: true });
  }
});

defaults("hyperloom server listens on 127.0.0.1 by default, writes its access file and removes it when it stops", async () => {
  const dir = mkdtempSync(join(tmpdir(), "hyperloom-defaults-"));
  const file = join(dir, "access.json");
  const p = spawn(process.execPath, [CLI, "server", "--port", "0", "--access-file", file], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  p.stderr.on("data", (d: Buffer) => (out += d.toString()));
  try {
    const deadline = Date.now() + 10_000;
    while (!/Access file/.test(out) && Date.now() < deadline && p.exitCode === null) await sleep(20);
    assert.match(out, /listening on 127\.0\.0\.1:\d+/);
    assert.is(statSync(file).mode & 0o777, 0o600);
    assert.not.ok(out.includes(readAccessFile(file).secret.toHex()));
    const exited = new Promise((r) => p.once("exit", r));
    p.kill("SIGTERM");
    await exited;
    assert.throws(() => statSync(file), /ENOENT/);
  } finally {
    p.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
});

defaults("hyperloom local --tls runs a client script over TLS with the cluster's access file", async () => {
  const dir = mkdtempSync(join(tmpdir(), "hyperloom-local-tls-"));
  try {
    const script = join(dir, "tls.mjs");
    writeFileSync(
      script,
      `import { Client, tasks } from ${JSON.stringify(join(__dirname, "..", "index.js"))};\n` +
        "const client = await Client.connect();\n" +
        'const r = await client.submitOne(tasks.merge([tasks.const("over "), tasks.run(["/bin/echo", "-n", "tls"])])).gather();\n' +
        "console.log(String(r), process.env.HYPERLOOM_ACCESS_FILE ? 'with access file' : 'without');\nawait client.close();\n",
    );
    const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const p = spawn(process.execPath, [CLI, "local", "--tls", "--workers", "2", "--no-dashboard", script], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, HYPERLOOM_ACCESS_FILE: "" } });
      let stdout = "";
      let stderr = "";
      p.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
      p.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      p.on("exit", (code) => resolve({ code, stdout, stderr }));
    });
    assert.is(r.code, 0, r.stderr);
    assert.is(r.stdout, "over tls with access file\n");
    assert.match(r.stderr, /^HyperLoom local cluster: server 127\.0\.0\.1:\d+ \(TLS\), 2 worker\(s\) x 1 cpu\(s\)\n$/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

defaults("hyperloom server --tls --insecure is refused (TLS pins through the access file)", async () => {
  const r = await cli(["server", "--port", "0", "--tls", "--insecure"]);
  assert.is(r.code, 1);
  assert.match(r.out, "--tls needs authentication");
});

defaults.run();
