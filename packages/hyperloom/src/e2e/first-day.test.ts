/**
 * A new user's first day (issue #20), through the real commands: `hyperloom local` with good and
 * bad scripts, signals, a script that forgets `close()`; clients and workers pointed at the wrong
 * port or at something that is not a HyperLoom server; a server with no (suitable) worker. Each
 * error is asserted as the one line the user reads, and every run as leaving no process and no
 * folder behind.
 */
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { cpSync, mkdirSync, readdirSync, readFileSync, realpathSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { createServer, type AddressInfo } from "node:net";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { assertNothingLeft, cli, freePort, local, loomWorker, pkgDir, processesWith, removeSandboxes, runNode, sandbox } from "./sandbox.js";
import { Client } from "../client/client.js";
import { LoomError } from "../client/errors.js";
import { tasks } from "../index.js";

const HELLO = `import { Client, tasks } from "hyperloom";

const client = await Client.connect();
const result = await client.submitOne(tasks.merge([tasks.const("Hello "), tasks.const("world!")])).gather();
console.log(result.toString());
await client.close();
`;

const t = suite("first day");

t.after(removeSandboxes);

t("local runs a TypeScript script that calls Client.connect() with no arguments, then leaves nothing behind", async () => {
  const sb = sandbox();
  writeFileSync(join(sb.proj, "hello.ts"), HELLO);
  const port = await freePort();
  const r = await local(sb, ["--port", String(port), "hello.ts"]);
  assert.is(r.stdout, "Hello world!\n");
  assert.is(r.code, 0, r.stderr);
  await assertNothingLeft(sb, ["hello.ts"], port);
});

t("a TypeScript script imports a sibling TypeScript module the usual way (./lib.js finds lib.ts)", async () => {
  const sb = sandbox();
  writeFileSync(join(sb.proj, "lib.ts"), `export const greeting = (name: string): string => "Hello " + name + "!";\n`);
  writeFileSync(join(sb.proj, "main.ts"), `import { greeting } from "./lib.js";\nconsole.log(greeting("world"));\n`);
  const r = await local(sb, ["main.ts"]);
  assert.is(r.stdout, "Hello world!\n", r.stderr);
  assert.is(r.code, 0);
  await assertNothingLeft(sb, ["lib.ts", "main.ts"]);
});

t("a missing script: one line, and no cluster is started", async () => {
  const sb = sandbox();
  const r = await local(sb, ["nope.ts"]);
  assert.is(r.code, 1);
  assert.is(r.stderr, "hyperloom local: nope.ts: no such file\n");
  await assertNothingLeft(sb, []);
});

t("a syntax error: the user's file, line and column, before any cluster starts", async () => {
  const sb = sandbox();
  writeFileSync(join(sb.proj, "bad.ts"), `import { Client } from "hyperloom";\nconst x = {;\n`);
  const r = await local(sb, ["bad.ts"]);
  assert.is(r.code, 1);
  assert.is(r.stderr, "hyperloom local: bad.ts:2:12 - error TS1136: Property assignment expected.\n");
  await assertNothingLeft(sb, ["bad.ts"]);
});

t("a JavaScript syntax error names the file and line, before any cluster starts", async () => {
  const sb = sandbox();
  writeFileSync(join(sb.proj, "bad.mjs"), `const x = 1;\nconst y = {;\n`);
  const r = await local(sb, ["bad.mjs"]);
  assert.is(r.code, 1);
  assert.match(r.stderr, /^hyperloom local: bad\.mjs:2\n/, r.stderr);
  assert.match(r.stderr, /SyntaxError: Unexpected token ';'\n$/, r.stderr);
  assert.not.match(r.stderr, /HyperLoom local cluster/);
  await assertNothingLeft(sb, ["bad.mjs"]);
});

t("an error thrown by a TypeScript script points at the user's file and line (source maps)", async () => {
  const sb = sandbox();
  writeFileSync(join(sb.proj, "throws.ts"), `const n: number = 1;\n\nfunction boom(): never {\n  throw new Error("boom " + n);\n}\nboom();\n`);
  const port = await freePort();
  const r = await local(sb, ["--port", String(port), "throws.ts"]);
  assert.is(r.code, 1);
  assert.match(r.stderr, "Error: boom 1\n");
  assert.match(r.stderr, `${join(sb.proj, "throws.ts")}:4:9`);
  await assertNothingLeft(sb, ["throws.ts"], port);
});

t("a TypeScript script without the typescript package: one line, no cluster", async () => {
  // A copy of the package that cannot see this workspace's typescript (nor can the script).
  const sb = sandbox();
  const pkg = join(sb.root, "pkg");
  mkdirSync(join(pkg, "node_modules"), { recursive: true });
  cpSync(join(pkgDir, "dist"), join(pkg, "dist"), { recursive: true });
  cpSync(join(pkgDir, "package.json"), join(pkg, "package.json"));
  const deps = Object.keys((JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8")) as { dependencies: Record<string, string> }).dependencies);
  for (const dep of deps) {
    symlinkSync(join(pkgDir, "..", "..", "node_modules", dep), join(pkg, "node_modules", dep));
  }
  writeFileSync(join(sb.proj, "hello.ts"), HELLO);
  const r = await runNode([join(pkg, "dist", "cli", "main.js"), "local", "hello.ts"], { cwd: sb.proj, env: { TMPDIR: sb.tmp } });
  assert.is(r.code, 1);
  assert.is(
    r.stderr,
    "hyperloom local: hello.ts: running a TypeScript script needs the 'typescript' package (npm install --save-dev typescript), or compile it to .js first\n",
  );
  await assertNothingLeft(sb, ["hello.ts"]);
});

t("a script that finishes without closing its client gets a warning and is closed", async () => {
  const sb = sandbox();
  writeFileSync(
    join(sb.proj, "open.mjs"),
    `import { Client, tasks } from "hyperloom";\nconst client = await Client.connect();\nconsole.log(String(await client.submitOne(tasks.const("done")).gather()));\n`,
  );
  const port = await freePort();
  const r = await local(sb, ["--port", String(port), "open.mjs"]);
  assert.is(r.stdout, "done\n");
  assert.is(r.code, 0);
  assert.match(r.stderr, "hyperloom local: open.mjs finished but left a client connected; closing (end the script with 'await client.close()')\n");
  await assertNothingLeft(sb, ["open.mjs"], port);
});

t("a script still working with an open client is not closed", async () => {
  const sb = sandbox();
  writeFileSync(
    join(sb.proj, "slow.mjs"),
    `import { Client, tasks } from "hyperloom";
const client = await Client.connect();
// No top-level await: the work goes on after the module's body has run.
setTimeout(async () => {
  console.log(String(await client.submitOne(tasks.const("late")).gather()));
  await client.close();
}, 1500);
`,
  );
  const r = await local(sb, ["slow.mjs"]);
  assert.is(r.stdout, "late\n");
  assert.is(r.code, 0);
  assert.not.match(r.stderr, /finished but left/);
  await assertNothingLeft(sb, ["slow.mjs"]);
});

for (const [signal, code] of [
  ["SIGTERM", 143],
  ["SIGINT", 130],
] as const) {
  t(`${signal} while a script runs stops the script, the server and the workers, and removes every folder`, async () => {
    const sb = sandbox();
    writeFileSync(
      join(sb.proj, "forever.ts"),
      `import { Client } from "hyperloom";\nconst client = await Client.connect();\nconsole.error("script started");\nsetInterval(() => client.stats(), 200);\n`,
    );
    const port = await freePort();
    let sent = false;
    const r = await local(sb, ["--port", String(port), "forever.ts"], (text, child) => {
      if (!sent && text.includes("script started")) {
        sent = true;
        child.kill(signal);
      }
    });
    assert.ok(sent, r.stderr);
    assert.is(r.code, code, r.stderr);
    assert.match(r.stderr, `hyperloom local: ${signal}: stopping the script and the cluster\n`);
    await assertNothingLeft(sb, ["forever.ts"], port);
  });
}

t("local killed with SIGKILL: the server and workers see their parent gone and stop, removing their folders", async () => {
  const sb = sandbox();
  writeFileSync(
    join(sb.proj, "forever.mjs"),
    `import { Client } from "hyperloom";\nconst client = await Client.connect();\nconsole.error("script started");\nsetInterval(() => client.stats().catch(() => process.exit(3)), 200);\n`,
  );
  const port = await freePort();
  let sent = false;
  const r = await local(sb, ["--port", String(port), "forever.mjs"], (text, child) => {
    if (!sent && text.includes("script started")) {
      sent = true;
      child.kill("SIGKILL");
    }
  });
  assert.ok(sent, r.stderr);
  assert.is(r.signal, "SIGKILL");
  for (let i = 0; i < 50 && (processesWith(sb.root).length > 0 || processesWith(`--port ${port}`).length > 0); i++) {
    await new Promise((res) => setTimeout(res, 100));
  }
  assert.equal(processesWith(`--port ${port}`), [], "the server stopped");
  assert.equal(processesWith(sb.root), [], "the workers and the script stopped");
  // Each worker removed its folder; only the cluster's (now empty) root can remain.
  for (const d of readdirSync(sb.tmp)) assert.equal(readdirSync(join(sb.tmp, d)), []);
});

t("a client pointed at a closed port: one line, at once", async () => {
  const port = await freePort();
  const started = Date.now();
  const e = await Client.connect("127.0.0.1", port).then(
    () => undefined,
    (err: unknown) => err,
  );
  assert.instance(e, LoomError);
  assert.is((e as Error).message, `cannot connect to 127.0.0.1:${port}: connection refused — is 'hyperloom server' running there?`);
  assert.ok(Date.now() - started < 5000);
});

t("a script under local that connects to a closed port: one line, no stack trace", async () => {
  const sb = sandbox();
  const wrong = await freePort();
  writeFileSync(join(sb.proj, "wrong.mjs"), `import { Client } from "hyperloom";\nawait Client.connect("127.0.0.1", ${wrong});\n`);
  const port = await freePort();
  const r = await local(sb, ["--port", String(port), "wrong.mjs"]);
  assert.is(r.code, 1);
  const lines = r.stderr.trim().split("\n");
  assert.is(lines.length, 2, r.stderr); // the cluster line, then the error
  assert.is(lines[1], `wrong.mjs: cannot connect to 127.0.0.1:${wrong}: connection refused — is 'hyperloom server' running there?`);
  await assertNothingLeft(sb, ["wrong.mjs"], port);
});

t("a client or worker pointed at a web server, or at a silent port: one line naming it, no hang", async () => {
  const web = createHttpServer((_q, s) => s.end("hello"));
  await new Promise<void>((r) => web.listen(0, "127.0.0.1", r));
  const silent = createServer(() => undefined);
  await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
  const webPort = (web.address() as AddressInfo).port;
  const silentPort = (silent.address() as AddressInfo).port;
  try {
    const e1 = await Client.connect("127.0.0.1", webPort).catch((e: Error) => e);
    assert.is((e1 as Error).message, `127.0.0.1:${webPort} is not a HyperLoom server — is 'hyperloom server' running there?`);
    const started = Date.now();
    const e2 = await Client.connect("127.0.0.1", silentPort, { timeoutMs: 1000 }).catch((e: Error) => e);
    assert.is(
      (e2 as Error).message,
      `127.0.0.1:${silentPort} is not a HyperLoom server (no answer to the handshake within 1 s) — is 'hyperloom server' running there?`,
    );
    assert.ok(Date.now() - started < 5000);
    // The worker command: one line, exit status 1, its work directory removed.
    const sb = sandbox();
    // (Asynchronously: the web server answers from this process.)
    const w = await runNode([cli, "worker", "127.0.0.1", String(webPort), "--cpus", "1", "--wdir", sb.tmp]);
    assert.is(w.code, 1);
    assert.is(w.stdout, "");
    assert.is(w.stderr, `hyperloom: 127.0.0.1:${webPort} is not a HyperLoom server — is 'hyperloom server' running there?\n`);
    assert.equal(readdirSync(sb.tmp), []);
    const w2 = await runNode([loomWorker, "--cpus=1", `--wdir=${sb.tmp}`, "127.0.0.1", String(await freePort())]);
    assert.is(w2.code, 1);
    assert.match(w2.stderr, /^loom-worker: cannot connect to 127\.0\.0\.1:\d+: connection refused — is 'hyperloom server' running there\?\n$/);
    assert.equal(readdirSync(sb.tmp), []);
  } finally {
    web.close();
    silent.close();
  }
});

/**
 * A server process; resolves its port and a function collecting its log lines. `--insecure`: these
 * tests drive it with `loom-worker` and look at its data port with the open protocol.
 */
async function startServer(): Promise<{ child: ChildProcess; port: number; lines: string[] }> {
  // The server logs on stderr.
  const child = spawn(process.execPath, [cli, "server", "--host", "127.0.0.1", "--port", "0", "--insecure"], { stdio: ["ignore", "inherit", "pipe"] });
  const lines: string[] = [];
  const port = await new Promise<number>((res, rej) => {
    createInterface({ input: child.stderr! }).on("line", (l) => {
      lines.push(l);
      const m = /listening on [\d.]+:(\d+)/.exec(l);
      if (m) res(Number(m[1]));
    });
    child.once("exit", () => rej(new Error("server exited")));
  });
  return { child, port, lines };
}

async function waitForLine(lines: string[], re: RegExp, ms: number): Promise<string | undefined> {
  const deadline = Date.now() + ms;
  for (;;) {
    const hit = lines.find((l) => re.test(l));
    if (hit !== undefined || Date.now() > deadline) return hit;
    await new Promise((r) => setTimeout(r, 100));
  }
}

function stop(child: ChildProcess): Promise<void> {
  return new Promise((r) => {
    if (child.exitCode !== null || child.signalCode !== null) return r();
    child.once("exit", () => r());
    child.kill("SIGTERM");
  });
}

t("the server's data port is not taken for a server; the server warns when a plan waits because no worker is connected, then when no worker can run a task", async () => {
  const { child, port, lines } = await startServer();
  const sb = sandbox();
  let worker: ChildProcess | undefined;
  try {
    // The server's data port is not where clients go: one line, after the handshake limit.
    const dataPort = Number(/data port (\d+)/.exec(lines.join("\n"))![1]);
    const wrong = await Client.connect("127.0.0.1", dataPort, { timeoutMs: 1000 }).catch((e: Error) => e);
    assert.is(
      (wrong as Error).message,
      `127.0.0.1:${dataPort} is not a HyperLoom server (no answer to the handshake within 1 s) — is 'hyperloom server' running there?`,
    );
    const client = await Client.connect("127.0.0.1", port);
    const waiting = client.submitOne(tasks.merge([tasks.const("a"), tasks.const("b")]));
    // Accepted while no worker is connected (a big worker may come); no worker that comes has the cores.
    const tooBig = client.submitOne(tasks.run("/bin/true", [], { request: tasks.cpus(1000) }));
    // (The first warning of this --insecure server is that authentication is off.)
    const line = await waitForLine(lines, /\[warn\] \d+ ready task/, 10_000);
    assert.match(line ?? "", /\[warn\] 3 ready tasks are waiting: no worker is connected — start one with 'hyperloom worker 127\.0\.0\.1 \d+'$/);
    // `loom-worker --cpus=0` autodetects the cores (its help says so); the plan then runs.
    worker = spawn(process.execPath, [loomWorker, "--cpus=0", `--wdir=${sb.tmp}`, "--nopin", "127.0.0.1", String(port)], { stdio: "ignore" });
    assert.is(String(await waiting.gather()), "ab");
    const line2 = await waitForLine(lines, /can run them/, 10_000);
    assert.match(line2 ?? "", /\[warn\] 1 ready task is waiting: none of the 1 connected worker\(s\) can run them/);
    tooBig.release();
    await client.close();
  } finally {
    if (worker) await stop(worker);
    await stop(child);
  }
  assert.equal(readdirSync(sb.tmp), []);
});

t("hyperloom report of a directory without traces is an error, and writes nothing", () => {
  const sb = sandbox();
  const out = join(sb.tmp, "report.html");
  const r = spawnSync(process.execPath, [cli, "report", sb.proj, "-o", out], { encoding: "utf8" });
  assert.is(r.status, 1);
  assert.is(r.stderr.trim().split("\n").length, 1, r.stderr);
  assert.match(r.stderr, `hyperloom report: ${sb.proj} holds no trace files`);
  assert.equal(readdirSync(sb.tmp), []);
});

t("npx hyperloom resolves in this workspace: the bins are linked to committed files, present before any build", () => {
  const bin = resolve(pkgDir, "..", "..", "node_modules", ".bin");
  for (const name of ["hyperloom", "loom-server", "loom-worker"]) {
    assert.is(realpathSync(join(bin, name)), join(realpathSync(pkgDir), "bin", `${name}.js`));
  }
  const r = spawnSync(join(bin, "hyperloom"), ["--help"], { encoding: "utf8" });
  assert.is(r.status, 0);
  assert.match(r.stdout, /local \[options\] \[script\]/);
});

t.run();
