/**
 * Startup (issue #26): `hyperloom server` and `loom-server` bind their main port before loading
 * the rest, so the port accepts within milliseconds of `exec`. A connection the kernel accepted
 * while the server was still getting ready must be served exactly as a later one: its first
 * bytes answered once the server is up, and with authentication on, TLS and the handshake done as
 * always (a wrong secret refused). `HYPERLOOM_FAULT_SLOW_START_MS` holds the server back after
 * the bind, so these connections surely arrive before it is ready.
 */
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readAccessFile, Secret } from "../security/access-file.js";
import { connectHandshake } from "../security/handshake.js";
import { freePort } from "./sandbox.js";

const CLI = join(__dirname, "..", "cli", "main.js");
const LOOM_SERVER = join(__dirname, "..", "cli", "loom-server.js");
const LOOM_WORKER = join(__dirname, "..", "cli", "loom-worker.js");
/** How long the server waits after binding its port (long against the 1 ms polling below). */
const SLOW_START_MS = 1500;
/** The Register frame of a client (what the original's client sends first). */
const REGISTER = Buffer.from([4, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x02, 0x10, 0x02]);
/** ClientResponse.Type DICTIONARY. */
const DICTIONARY = 10;

interface Server {
  child: ChildProcess;
  lines: string[];
  /** Resolves with the time (ms, performance.now) of the first stderr line matching `re`. */
  line(re: RegExp): Promise<number>;
}

/** Starts `node ARGS` (a server, held back `slowStartMs` after binding its port, or a worker). */
function start(args: string[], slowStartMs = SLOW_START_MS): Server {
  const child = spawn(process.execPath, args, {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, HYPERLOOM_FAULT_SLOW_START_MS: String(slowStartMs), HYPERLOOM_ACCESS_FILE: "" },
  });
  const lines: string[] = [];
  const waiters: Array<{ re: RegExp; resolve: (t: number) => void }> = [];
  let buf = "";
  child.stderr!.on("data", (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const l = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      lines.push(l);
      for (const w of waiters.filter((w) => w.re.test(l))) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(performance.now());
      }
    }
  });
  return {
    child,
    lines,
    line: (re) =>
      new Promise((resolve, reject) => {
        if (lines.some((l) => re.test(l))) return resolve(performance.now());
        const timer = setTimeout(() => reject(new Error(`no line matching ${re} within 20 s:\n${lines.join("\n")}`)), 20_000);
        waiters.push({ re, resolve: (t) => (clearTimeout(timer), resolve(t)) });
      }),
  };
}

async function stop(s: Server): Promise<void> {
  if (s.child.exitCode !== null || s.child.signalCode !== null) return;
  const exited = new Promise((r) => s.child.once("exit", r));
  s.child.kill("SIGTERM");
  await within(exited, "the server's exit on SIGTERM");
}

/** A TCP connection to `port`, retried every millisecond until the port accepts (10 s). */
async function connectWhenAccepting(port: number): Promise<{ socket: Socket; at: number }> {
  const deadline = performance.now() + 10_000;
  for (;;) {
    const got = await new Promise<Socket | undefined>((resolve) => {
      const s = netConnect({ host: "127.0.0.1", port });
      s.once("connect", () => {
        s.removeAllListeners("error");
        // A reset after a failed check must not end the test run.
        s.on("error", () => undefined);
        resolve(s);
      });
      s.once("error", () => {
        s.destroy();
        resolve(undefined);
      });
    });
    if (got !== undefined) return { socket: got, at: performance.now() };
    if (performance.now() > deadline) throw new Error(`port ${port} did not accept within 10 s`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

/** Resolves with the first length-prefixed frame `socket` receives (the bytes after the prefix). */
function firstFrame(socket: Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let got = Buffer.alloc(0);
    const timer = setTimeout(() => reject(new Error("no frame within 10 s")), 10_000);
    const onData = (d: Buffer): void => {
      got = Buffer.concat([got, d]);
      if (got.length < 8) return;
      const len = Number(got.readBigUInt64LE(0));
      if (got.length < 8 + len) return;
      clearTimeout(timer);
      socket.off("data", onData);
      resolve(got.subarray(8, 8 + len));
    };
    socket.on("data", onData);
    socket.on("error", (e) => reject(e));
    socket.resume();
  });
}

/** `p`, or a rejection naming `what` after 10 s (no step of these tests may hang). */
function within<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within 10 s`)), 10_000)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

const t = suite("startup: connections accepted before the server is ready (#26)");

t("loom-server: a client that connects and registers while the server is still starting is answered once it is up", async () => {
  const port = await freePort();
  const s = start([LOOM_SERVER, "--port", String(port)]);
  try {
    const { socket, at } = await connectWhenAccepting(port);
    socket.write(REGISTER);
    const frame = firstFrame(socket);
    const ready = await s.line(/Authentication is off/);
    // Accepted while the server was held back: well before it said it was up.
    assert.ok(ready - at > SLOW_START_MS / 2, `accepted ${(ready - at).toFixed(0)} ms before the server was ready`);
    const f = await frame;
    assert.is(f[0], 0x08);
    assert.is(f[1], DICTIONARY);
    socket.destroy();
  } finally {
    await stop(s);
  }
});

t("hyperloom server --tls: connections accepted while it starts get TLS and the handshake as any (a wrong secret is refused)", async () => {
  const dir = mkdtempSync(join(tmpdir(), "hyperloom-startup-"));
  const file = join(dir, "access.json");
  const port = await freePort();
  const s = start([CLI, "server", "--port", String(port), "--tls", "--access-file", file]);
  try {
    const good = await connectWhenAccepting(port);
    const bad = await connectWhenAccepting(port);
    // Not even the access file exists yet: nobody could have authenticated.
    assert.not.ok(existsSync(file), "the access file was written before the early connections");
    // TLS starts at once (the ClientHello waits in the server's queue until it is ready).
    const secure = (raw: Socket): Promise<TLSSocket> =>
      new Promise((resolve, reject) => {
        const tls = tlsConnect({ socket: raw, rejectUnauthorized: false, minVersion: "TLSv1.3" });
        tls.once("secureConnect", () => resolve(tls));
        tls.once("error", reject);
      });
    const [goodTls, badTls] = [secure(good.socket), secure(bad.socket)];
    const ready = await s.line(/Access file /);
    // Accepted while the server was held back: well before it was ready.
    assert.ok(ready - good.at > SLOW_START_MS / 2, `accepted ${(ready - good.at).toFixed(0)} ms before the server was ready`);
    const access = readAccessFile(file);
    const g = await within(goodTls, "TLS of the first connection");
    assert.is(g.getPeerCertificate().fingerprint256, access.tlsFingerprint, "not the certificate the access file pins");
    // The wrong secret: refused, and said on the server's side.
    const b = await within(badTls, "TLS of the second connection");
    let refused: Error | undefined;
    await within(connectHandshake(b, Secret.generate(), "server"), "the refusal").catch((e: Error) => (refused = e));
    assert.match(String(refused), /did not prove it holds our secret/, "a wrong secret was accepted");
    await s.line(/main port: refused a connection/);
    b.destroy();
    // The right secret: authenticated, then served as a client.
    await within(connectHandshake(g, access.secret, "server"), "the handshake");
    g.write(REGISTER);
    const f = await firstFrame(g);
    assert.is(f[0], 0x08);
    assert.is(f[1], DICTIONARY);
    g.destroy();
  } finally {
    await stop(s);
    rmSync(dir, { recursive: true, force: true });
  }
});

t("hyperloom server: a port already in use is reported as before (the early bind stays silent)", async () => {
  const dir = mkdtempSync(join(tmpdir(), "hyperloom-startup-"));
  const port = await freePort();
  const first = start([CLI, "server", "--port", String(port), "--insecure"]);
  try {
    await first.line(/Authentication is off/);
    const second = start([CLI, "server", "--port", String(port), "--insecure"]);
    const code = await within(new Promise<number | null>((r) => second.child.once("close", r)), "the second server's exit");
    assert.is(code, 1);
    assert.match(second.lines.join("\n"), /EADDRINUSE/);
    // The first one still serves.
    const { socket } = await connectWhenAccepting(port);
    socket.write(REGISTER);
    const f = await firstFrame(socket);
    assert.is(f[1], DICTIONARY);
    socket.destroy();
  } finally {
    await stop(first);
    rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * The modules a worker started with `args` had loaded when the server logged its registration:
 * Node's built-in modules (`process.moduleLoadList`) and the files (`require.cache`), written by
 * a preloaded script on SIGUSR2 (the worker is idle then: its server sends it nothing more).
 */
async function loadedAtRegistration(server: Server, args: string[], dir: string): Promise<{ builtins: string[]; files: string[] }> {
  const out = join(dir, "loaded.json");
  const preload = join(dir, "preload.js");
  writeFileSync(
    preload,
    `process.on("SIGUSR2", () => require("fs").writeFileSync(${JSON.stringify(out)}, JSON.stringify({ builtins: process.moduleLoadList, files: Object.keys(require.cache) })));\n`,
  );
  rmSync(out, { force: true });
  const registered = server.line(/worker \d+ registered/);
  const worker = start(["-r", preload, ...args, "--cpus", "1", "--wdir", dir, "--nopin"], 0);
  try {
    await within(registered, "the worker's registration");
    worker.child.kill("SIGUSR2");
    for (let i = 0; i < 200 && !existsSync(out); i++) await new Promise((r) => setTimeout(r, 50));
    return JSON.parse(readFileSync(out, "utf8")) as { builtins: string[]; files: string[] };
  } finally {
    await stop(worker);
  }
}

t("a worker registers before loading what only later work needs: protobufjs, TLS (and for loom-worker, without a secret, node:crypto)", async () => {
  const dir = mkdtempSync(join(tmpdir(), "hyperloom-startup-"));
  const file = join(dir, "access.json");
  const open = start([LOOM_SERVER, "--port", String(await freePort())], 0);
  const port = await freePort();
  const secured = start([CLI, "server", "--port", String(port), "--access-file", file], 0);
  try {
    await open.line(/Authentication is off/);
    const openPort = /anyone who can reach [^:]+:(\d+)/.exec(open.lines.join("\n"))![1]!;
    await secured.line(/Access file /);
    const protobuf = (files: string[]): string[] => files.filter((f) => /[\\/](protobufjs|generated)[\\/]/.test(f));
    const loom = await loadedAtRegistration(open, [LOOM_WORKER, "127.0.0.1", openPort], dir);
    assert.equal(protobuf(loom.files), [], "loom-worker loaded protobufjs before registering");
    assert.equal(loom.builtins.filter((m) => /^NativeModule (tls|crypto)$/.test(m)), [], "loom-worker loaded TLS or node:crypto before registering");
    const ours = await loadedAtRegistration(secured, [CLI, "worker", "127.0.0.1", String(port), "--access-file", file], dir);
    assert.equal(protobuf(ours.files), [], "hyperloom worker loaded protobufjs before registering");
    assert.equal(ours.builtins.filter((m) => m === "NativeModule tls"), [], "hyperloom worker loaded TLS before registering");
    assert.ok(ours.builtins.includes("NativeModule crypto"), "the authenticated worker's handshake needs node:crypto");
  } finally {
    await stop(open);
    await stop(secured);
    rmSync(dir, { recursive: true, force: true });
  }
});

t.run();
