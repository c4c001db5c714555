/**
 * The server journal end to end (README, "Durability"): `kill -9` the server in the middle of a
 * 10,000-task plan, restart it on the same journal, and the same client's `gather` completes
 * with the right bytes, recomputing only what was lost; a corrupt tail is cut with a warning;
 * released plans are compacted away; `hyperloom journal` says what a journal holds; a client
 * without `reconnect` gets a clear error; a session the server does not know is refused clearly.
 */
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect as tcpConnect, createServer as createTcpServer } from "node:net";
import { createInterface } from "node:readline";
import { Client, LoomError, tasks, type Future, type Task } from "../index.js";
import type { JournalSummary } from "../cli/journal.js";

const cli = join(__dirname, "..", "cli", "main.js");
const dir = mkdtempSync(join(tmpdir(), "hyperloom-journal-"));
const children: ChildProcess[] = [];
/** The servers' access file: a restarted server writes a new secret there, which re-attaching clients and reconnecting workers read. */
const accessFile = join(dir, "access.json");

function start(args: string[], env: NodeJS.ProcessEnv = process.env): ChildProcess {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ["ignore", "pipe", "pipe"], env });
  child.stdout!.resume();
  if (args[0] !== "server") child.stderr!.resume();
  children.push(child);
  return child;
}

/** A server (on `port`, 0: any) journaling to `journal`; resolves once it listens and wrote the access file, with its log lines so far and to come. */
async function server(port: number, journal?: string, extra: string[] = []): Promise<{ child: ChildProcess; port: number; lines: string[] }> {
  const child = start(["server", "--host", "127.0.0.1", "--port", String(port), "--access-file", accessFile, ...(journal ? ["--journal", journal] : []), ...extra]);
  const lines: string[] = [];
  let listening: number | undefined;
  const p = await new Promise<number>((resolve, reject) => {
    createInterface({ input: child.stderr! }).on("line", (line) => {
      lines.push(line);
      if (process.env.JOURNAL_TEST_LOGS) process.stderr.write(`${line}\n`);
      const m = /listening on [\d.]+:(\d+)/.exec(line);
      if (m) listening = Number(m[1]);
      // Ready once it has written its (new) secret to the access file, after it listens.
      if (listening !== undefined && /Access file .*: clients and workers need it/.test(line)) resolve(listening);
    });
    child.once("exit", (code) => reject(new Error(`server exited with ${code}: ${lines.join("\n")}`)));
  });
  return { child, port: p, lines };
}

function worker(port: number, args: string[] = []): ChildProcess {
  return start(["worker", "127.0.0.1", String(port), "--cpus", "4", "--wdir", join(dir, "w"), "--nopin", "--access-file", accessFile, ...args]);
}

function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((r) => child.once("exit", (code) => r(code)));
}

async function untilWorkers(c: Client, n: number): Promise<void> {
  for (let i = 0; i < 400 && (await c.stats()).nWorkers < n; i++) await new Promise((r) => setTimeout(r, 50));
}

/** A `run` task that appends `name` to `log` when it completes (after `sleepS`, or once file `go` exists) and returns `value`. */
function counted(log: string, name: string, value: string, sleepS: number, go?: string): Task {
  const wait = go === undefined ? `sleep ${sleepS}` : `while [ ! -e '${go}' ]; do sleep 0.05; done`;
  return tasks.run(["/bin/sh", "-c", `${wait}; echo ${name} >> '${log}'; printf '%s' '${value}'`]);
}

/** How many times each name was logged. */
function runs(log: string): Map<string, number> {
  const m = new Map<string, number>();
  if (!existsSync(log)) return m;
  for (const n of readFileSync(log, "utf8").split("\n").filter(Boolean)) m.set(n, (m.get(n) ?? 0) + 1);
  return m;
}

function journalCli(path: string, json = true): { status: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [cli, "journal", path, ...(json ? ["--json"] : [])], { encoding: "utf8" });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

function summary(path: string): JournalSummary {
  const r = journalCli(path);
  assert.is(r.status, 0, r.err);
  return JSON.parse(r.out) as JournalSummary;
}

const t = suite("journal");
t.after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

t("kill -9 mid-plan of 10,000 tasks: the restarted server resumes it; the same client's gather is right; results the reconnected workers kept (one reconnecting late) are not recomputed", async () => {
  const journal = join(dir, "crash.journal");
  const log = join(dir, "crash.log");
  const cps = join(dir, "checkpoints");
  mkdirSync(cps);
  const first = await server(0, journal);
  // Two workers: they keep their objects across the restart and report them when they
  // re-register; the second one comes back a second late (the reconnect grace waits for it).
  const workers = [worker(first.port, ["--reconnect", "60"]), worker(first.port, ["--reconnect", "60"])];
  const c = await Client.connect("127.0.0.1", first.port, { reconnect: true, accessFile });
  await untilWorkers(c, 2);
  // 9,900 constants merged by 99 merges (results), and 12 counted tasks: A (checkpointed, done
  // before the crash), B (running at the crash), C (done before the crash, no checkpoint).
  const merges: Task[] = [];
  const expected: string[] = [];
  for (let g = 0; g < 99; g++) {
    const parts: Task[] = [];
    let s = "";
    for (let i = 0; i < 100; i++) {
      parts.push(tasks.const(`${g}.${i};`));
      s += `${g}.${i};`;
    }
    merges.push(tasks.merge(parts));
    expected.push(s);
  }
  const a = [0, 1, 2, 3].map((i) => {
    const task = counted(log, `A${i}`, `a${i}`, 0);
    task.checkpointPath = join(cps, `a${i}`);
    return task;
  });
  const go = join(dir, "go");
  const b = [0, 1, 2, 3].map((i) => counted(log, `B${i}`, `b${i}`, 0, go));
  const cc = [0, 1, 2, 3].map((i) => counted(log, `C${i}`, `c${i}`, 0));
  // One result uses the A results: it is computed from their checkpoints after the restart.
  const overA = tasks.merge(a, "+");
  const all = [...merges, ...a, ...b, ...cc, overA];
  const futures = c.submit(all);
  const n = all.length;
  assert.ok(n + 99 * 100 >= 10_000, `plan of ${n + 9900} tasks`);
  const fa = futures.slice(99, 103) as Future<Buffer>[];
  const fc = futures.slice(107, 111) as Future<Buffer>[];
  await c.wait([...futures.slice(0, 99), ...fa, ...fc]);
  await new Promise((r) => setTimeout(r, 300)); // B runs (until `go` exists); the journal commits
  const before = runs(log);
  for (const k of ["A0", "A1", "A2", "A3", "C0", "C1", "C2", "C3"]) assert.is(before.get(k), 1, k);
  for (const k of ["B0", "B1", "B2", "B3"]) assert.is(before.get(k), undefined, k);
  // The second worker is frozen through the crash: it notices the lost server only once thawed.
  workers[1]!.kill("SIGSTOP");
  first.child.kill("SIGKILL");
  await exited(first.child);
  const second = await server(first.port, journal);
  assert.ok(second.lines.some((l) => /journal: restored 1 plans of 1 client sessions/.test(l)), second.lines.join("\n"));
  assert.ok(second.lines.some((l) => /results reported before the restart wait up to 5 s/.test(l)), second.lines.join("\n"));
  await new Promise((r) => setTimeout(r, 1000));
  workers[1]!.kill("SIGCONT");
  const registered = (): RegExpExecArray[] => second.lines.map((l) => /re-registered holding (\d+) objects: (\d+) adopted/.exec(l)).filter((m) => m !== null);
  for (let i = 0; i < 200 && registered().length < 2; i++) await new Promise((r) => setTimeout(r, 50));
  // B runs only now: the frozen worker's B processes were stopped when it noticed the crash.
  appendFileSync(go, "");
  const results = await c.gather(futures as Future<Buffer>[]);
  const got = results.map(String);
  assert.equal(got.slice(0, 99), expected);
  assert.equal(got.slice(99), ["a0", "a1", "a2", "a3", "b0", "b1", "b2", "b3", "c0", "c1", "c2", "c3", "a0+a1+a2+a3"]);
  const after = runs(log);
  // A: loaded from their checkpoints, never computed again; B: computed once (killed with the
  // crash before finishing); C: held by the reconnected worker, adopted: never computed again.
  for (const k of ["A0", "A1", "A2", "A3", "B0", "B1", "B2", "B3", "C0", "C1", "C2", "C3"]) assert.is(after.get(k), 1, k);
  // The 99 merges and the 4 C results were adopted from the two workers, not recomputed: the
  // late one's too (without the grace the first would have computed them again).
  const adopted = registered();
  assert.is(adopted.length, 2, second.lines.join("\n"));
  assert.ok(adopted.every((m) => Number(m[2]) > 0), second.lines.join("\n"));
  assert.ok(Number(adopted[0]![2]) + Number(adopted[1]![2]) >= 99 + 4, second.lines.join("\n"));
  assert.ok(!second.lines.some((l) => /reconnect grace over/.test(l)), second.lines.join("\n"));
  await c.close();
  for (const w of workers) w.kill("SIGTERM");
  second.child.kill("SIGTERM");
  await exited(second.child);
});

t("after a restart with a new secret, reconnected workers' data ports take the new one: a transfer between them and a fetch relayed from each", async () => {
  const journal = join(dir, "secret.journal");
  const log = join(dir, "secret.log");
  const first = await server(0, journal);
  const oldSecret = JSON.parse(readFileSync(accessFile, "utf8")).secret as string;
  const workers = [worker(first.port, ["--cpus", "2"]), worker(first.port, ["--cpus", "2"])];
  const c = await Client.connect("127.0.0.1", first.port, { reconnect: true, accessFile });
  await untilWorkers(c, 2);
  // Eight results of 1-cpu tasks on two 2-cpu workers: both hold some.
  const parts = Array.from({ length: 8 }, (_, i) => counted(log, `P${i}`, `p${i};`, 0.3));
  const futures = c.submit(parts) as Future<Buffer>[];
  await c.wait(futures);
  await new Promise((r) => setTimeout(r, 100)); // the journal commits
  first.child.kill("SIGKILL");
  await exited(first.child);
  const second = await server(first.port, journal);
  assert.is.not(JSON.parse(readFileSync(accessFile, "utf8")).secret, oldSecret);
  // Fetched through the server's data port from both workers (each proves the new secret).
  assert.equal((await Promise.all(futures.map((f) => f.fetch()))).map(String), parts.map((_, i) => `p${i};`));
  // A merge of all eight runs on one worker and takes the others' objects from the other
  // worker's data port, which now checks the new secret.
  const merged = await c.submitOne(tasks.merge(futures)).gather();
  assert.is(String(merged), parts.map((_, i) => `p${i};`).join(""));
  const held = second.lines.map((l) => /re-registered holding (\d+) objects: (\d+) adopted/.exec(l)).filter((m) => m !== null);
  assert.is(held.length, 2, second.lines.join("\n"));
  assert.ok(held.every((m) => Number(m[2]) > 0), second.lines.join("\n")); // both held some
  for (const [k, n] of runs(log)) assert.is(n, 1, k); // adopted, not recomputed
  // (The main port may refuse reconnect attempts made with the previous secret: it listens from
  // the restarted server's first milliseconds, before the access file is rewritten, and such a
  // worker tries again once it is. The data port, which the fetches used, refuses nothing.)
  assert.ok(!second.lines.some((l) => /data port: refused a connection/.test(l)), second.lines.join("\n"));
  await c.close();
  second.child.kill("SIGTERM");
  await exited(second.child);
  for (const w of workers) assert.is(await exited(w), 0); // told STOP: no reconnecting
});

t("a worker reconnecting to a restarted server without a journal drops its old objects: no stale bytes under reused ids", async () => {
  const s1 = await server(0);
  const w = worker(s1.port, ["--reconnect", "60", "--cpus", "2"]);
  const c1 = await Client.connect("127.0.0.1", s1.port, { accessFile });
  await untilWorkers(c1, 1);
  const old = c1.submit([tasks.const("old-0"), tasks.const("old-1"), tasks.merge([tasks.const("old-2"), tasks.const("old-3")])]);
  assert.equal((await c1.gather(old as Future<Buffer>[])).map(String), ["old-0", "old-1", "old-2old-3"]);
  s1.child.kill("SIGKILL");
  await exited(s1.child);
  await c1.close().catch(() => undefined);
  const s2 = await server(s1.port);
  const c2 = await Client.connect("127.0.0.1", s2.port, { accessFile });
  await untilWorkers(c2, 1);
  // The same plan shape: the new server numbers its tasks from 0 again.
  const fresh = c2.submit([tasks.const("new-0"), tasks.const("new-1"), tasks.merge([tasks.const("new-2"), tasks.const("new-3")])]);
  assert.equal((await c2.gather(fresh as Future<Buffer>[])).map(String), ["new-0", "new-1", "new-2new-3"]);
  const line = s2.lines.find((l) => /re-registered holding/.test(l));
  assert.match(String(line), /holding 3 objects: 0 adopted as results, 3 removed/, s2.lines.join("\n"));
  await c2.close();
  w.kill("SIGTERM");
  assert.is(await exited(w), 0);
  s2.child.kill("SIGTERM");
  await exited(s2.child);
});

t("a corrupt tail is cut with a warning; the journal's plans are still restored", async () => {
  const journal = join(dir, "corrupt.journal");
  const s1 = await server(0, journal);
  const w = worker(s1.port, ["--reconnect", "60"]);
  const c = await Client.connect("127.0.0.1", s1.port, { reconnect: true, accessFile });
  await untilWorkers(c, 1);
  const f = c.submitOne(counted(join(dir, "corrupt.log"), "X", "x", 1));
  await new Promise((r) => setTimeout(r, 300));
  s1.child.kill("SIGKILL");
  await exited(s1.child);
  appendFileSync(journal, Buffer.from([40, 0, 0, 0, 1, 2, 3, 4, 9, 9, 9])); // a truncated record
  const listed = summary(journal);
  assert.match(String(listed.cut), /truncated record/);
  assert.is(listed.plans.length, 1);
  const s2 = await server(s1.port, journal);
  assert.ok(s2.lines.some((l) => /warn/i.test(l) && /cutting 11 bytes of tail/.test(l)), s2.lines.join("\n"));
  assert.is(String(await f.gather()), "x");
  assert.is(summary(journal).cut, null); // rewritten without it
  await c.close();
  w.kill("SIGTERM");
  s2.child.kill("SIGTERM");
  await exited(s2.child);
});

t("released plans are compacted away; hyperloom journal prints what is left", async () => {
  const journal = join(dir, "compact.journal");
  const s1 = await server(0, journal);
  const w = worker(s1.port);
  const c = await Client.connect("127.0.0.1", s1.port, { reconnect: true, accessFile });
  await untilWorkers(c, 1);
  for (let i = 0; i < 20; i++) {
    const parts = Array.from({ length: 200 }, (_, k) => tasks.const(`${i}-${k} `));
    assert.is(String(await c.submitOne(tasks.merge(parts)).gather()).length > 0, true);
  }
  const kept = c.submitOne(tasks.run(["/bin/sleep", "30"]));
  await new Promise((r) => setTimeout(r, 300));
  const big = statSync(journal).size;
  const s = summary(journal);
  assert.is(s.plans.length, 21);
  assert.is(s.plans.filter((p) => p.state === "done").length, 20);
  assert.equal(s.tasks, { total: 1, finished: 0, checkpointed: 0, released: 0, other: 1 });
  s1.child.kill("SIGKILL");
  await exited(s1.child);
  const s2 = await server(s1.port, journal);
  const small = statSync(journal).size;
  assert.ok(small * 10 < big, `compacted ${big} -> ${small} bytes`);
  const after = summary(journal);
  assert.is(after.plans.length, 1);
  assert.equal(after.clients.map((x) => x.state), ["open"]);
  const text = journalCli(journal, false);
  assert.is(text.status, 0);
  assert.match(text.out, /Plans: 1 \(1 live\)/);
  assert.match(text.out, /Clients: 1 \(1 open/);
  void kept;
  await c.close();
  w.kill("SIGTERM");
  s2.child.kill("SIGTERM");
  await exited(s2.child);
});

t("hyperloom journal: a missing file is empty; a file that is not a journal is an error naming it", () => {
  const none = summary(join(dir, "none.journal"));
  assert.equal(none.plans, []);
  const bad = join(dir, "not-a-journal");
  appendFileSync(bad, "hello world, this is text");
  const r = journalCli(bad);
  assert.is(r.status, 1);
  assert.match(r.err, /not-a-journal: not a HyperLoom journal/);
});

t("without reconnect a lost server fails every pending future with a clear error", async () => {
  const s1 = await server(0, join(dir, "plain.journal"));
  const w = worker(s1.port, ["--no-reconnect"]); // exits with its server
  const c = await Client.connect("127.0.0.1", s1.port, { accessFile });
  await untilWorkers(c, 1);
  const f = c.submitOne(tasks.run(["/bin/sleep", "30"]));
  await new Promise((r) => setTimeout(r, 200));
  s1.child.kill("SIGKILL");
  const err = await f.wait().then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.instance(err, LoomError);
  assert.match(String(err), /Task id=0 \(\/bin\/sleep\): connection to server 127\.0\.0\.1:\d+ (closed|failed)/);
  await exited(w);
});

t("a restored session whose client does not come back is discarded after --reattach", async () => {
  const journal = join(dir, "reattach.journal");
  const s1 = await server(0, journal);
  const w = worker(s1.port, ["--no-reconnect"]); // exits with its server
  const c = await Client.connect("127.0.0.1", s1.port, { accessFile });
  await untilWorkers(c, 1);
  const f = c.submitOne(tasks.run(["/bin/sleep", "30"]));
  await new Promise((r) => setTimeout(r, 300));
  s1.child.kill("SIGKILL");
  await f.wait().catch(() => undefined); // no reconnect: it fails
  await exited(w);
  assert.equal(summary(journal).clients.map((x) => x.state), ["open"]);
  const s2 = await server(s1.port, journal, ["--reattach", "1"]);
  for (let i = 0; i < 100 && !s2.lines.some((l) => /did not re-attach; its plans are discarded/.test(l)); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(s2.lines.some((l) => /client session [0-9a-f]+ did not re-attach; its plans are discarded/.test(l)), s2.lines.join("\n"));
  await new Promise((r) => setTimeout(r, 100)); // the journal commits
  assert.equal(summary(journal).clients.map((x) => x.state), ["closed"]);
  s2.child.kill("SIGTERM");
  await exited(s2.child);
});

t("a session the restarted server does not know (no journal) is refused with a clear error", async () => {
  const s1 = await server(0);
  const w = worker(s1.port, ["--reconnect", "60"]);
  const c = await Client.connect("127.0.0.1", s1.port, { reconnect: true, accessFile });
  await untilWorkers(c, 1);
  const f = c.submitOne(tasks.run(["/bin/sleep", "30"]));
  await new Promise((r) => setTimeout(r, 200));
  s1.child.kill("SIGKILL");
  await exited(s1.child);
  const s2 = await server(s1.port);
  const err = await f.wait().then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.instance(err, LoomError);
  assert.match(String(err), /re-attaching failed: Session [0-9a-f]+ is unknown to this server/);
  w.kill("SIGTERM");
  s2.child.kill("SIGTERM");
  await exited(s2.child);
});

t("a restarted server answers nobody before its access file holds its new secret: a client and a worker that read the previous server's file then connect", async () => {
  // A fixed port, as a restarted server is: its early-bound port takes connections at once.
  const port = await new Promise<number>((resolve) => {
    const probe = createTcpServer().listen(0, "127.0.0.1", () => {
      const p = (probe.address() as { port: number }).port;
      probe.close(() => resolve(p));
    });
  });
  const journal = join(dir, "restart-access.journal");
  const s1 = await server(port, journal);
  const previous = readFileSync(accessFile, "utf8");
  s1.child.kill("SIGKILL"); // its access file stays behind, with its secret
  await exited(s1.child);
  // The restarted server takes a while between listening and writing its access file.
  const s2 = start(["server", "--host", "127.0.0.1", "--port", String(port), "--access-file", accessFile, "--journal", journal], {
    ...process.env,
    HYPERLOOM_FAULT_SLOW_ACCESS_FILE_MS: "1500",
  });
  const s2lines: string[] = [];
  createInterface({ input: s2.stderr! }).on("line", (l) => s2lines.push(l));
  for (let up = false; !up; ) {
    up = await new Promise<boolean>((resolve) => {
      const sock = tcpConnect(port, "127.0.0.1", () => {
        sock.destroy();
        resolve(true);
      }).on("error", () => resolve(false));
    });
    if (!up) await new Promise((r) => setTimeout(r, 20));
  }
  // The port takes connections while the file still holds the previous server's secret.
  assert.is(readFileSync(accessFile, "utf8"), previous, "the access file was rewritten before the test could connect");
  const w = worker(port, ["--connect-retry", "20"]);
  const c = await Client.connect("127.0.0.1", port, { accessFile });
  assert.is.not(readFileSync(accessFile, "utf8"), previous);
  await untilWorkers(c, 1);
  const [a, b] = c.submit([tasks.const("restarted"), tasks.run(["/bin/echo", "-n", "and served"])]) as Future<Buffer>[];
  assert.equal((await c.gather([a!, b!])).map((x) => x.toString()), ["restarted", "and served"]);
  c.close();
  assert.ok(s2lines.some((l) => /Access file .*: clients and workers need it/.test(l)), s2lines.join("\n"));
  w.kill("SIGTERM");
  s2.kill("SIGTERM");
  await exited(s2);
});

t("a server restarted on another port (--port 0): a reconnecting client that read the previous access file follows the new one there and its gather is right", async () => {
  const journal = join(dir, "moved.journal");
  const s1 = await server(0, journal);
  const c = await Client.connect("127.0.0.1", s1.port, { reconnect: true, accessFile });
  const w1 = worker(s1.port);
  await untilWorkers(c, 1);
  const go = join(dir, "moved-go");
  // Held until `go` exists: the plan is unfinished when the server dies.
  const held = tasks.run(["/bin/sh", "-c", `while [ ! -e '${go}' ]; do sleep 0.05; done; printf moved`]);
  const [f] = c.submit([held]) as Future<Buffer>[];
  await new Promise((r) => setTimeout(r, 300)); // the journal commits the plan
  w1.kill("SIGKILL");
  s1.child.kill("SIGKILL");
  await exited(s1.child);
  const s2 = await server(0, journal);
  assert.is.not(s2.port, s1.port, "the restarted server got the same port by chance");
  assert.ok(s2.lines.some((l) => /journal: restored 1 plans of 1 client sessions/.test(l)), s2.lines.join("\n"));
  // Without following the file the client knocks at the old port until its reconnect time is up.
  const w2 = worker(s2.port);
  appendFileSync(go, "");
  assert.is(String(await c.gather([f!])), "moved");
  assert.is((await c.stats()).nWorkers, 1);
  await c.close();
  w2.kill("SIGTERM");
  s2.child.kill("SIGTERM");
  await exited(s2.child);
});

t("Client.connect to the address its access file named, refused there: the file read again names the server's new address, which is tried once", async () => {
  const journal = join(dir, "moved-connect.journal");
  const s2 = await server(0, journal);
  const now = readFileSync(accessFile, "utf8");
  // The previous server's address, as the file named it when the client read it: a listener
  // there that, as the client arrives, puts the restarted server's file back and hangs up (the
  // file rewritten between the client's read and its connection).
  const stale = createTcpServer((sock) => {
    writeFileSync(accessFile, now, { mode: 0o600 });
    sock.destroy();
  });
  const stalePort = await new Promise<number>((resolve) => stale.listen(0, "127.0.0.1", () => resolve((stale.address() as { port: number }).port)));
  const previous = JSON.parse(now) as { port: number };
  previous.port = stalePort;
  writeFileSync(accessFile, JSON.stringify(previous), { mode: 0o600 });
  try {
    const c = await Client.connect("127.0.0.1", stalePort, { accessFile });
    assert.is((await c.stats()).nWorkers, 0);
    await c.close();
    // An address the file did not name is not redirected: the refusal is the answer.
    const err = await Client.connect("127.0.0.1", stalePort, { accessFile }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.instance(err, LoomError);
  } finally {
    stale.close();
    s2.child.kill("SIGTERM");
    await exited(s2.child);
  }
});

t.run();
