import * as assert from "uvu/assert";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { clusterSuite } from "./cluster-suite.js";
import { LocalCluster } from "../cluster/local-cluster.js";
import { Client, TaskFailed, tasks } from "../index.js";

const t = clusterSuite("run", { workers: 2, cpus: 2 });

const str = (b: unknown): string => (b as Buffer).toString();

t("stdin, file inputs, variables and several outputs", async ({ client }) => {
  const text = tasks.const("Line 1\nLoom is here\nLine 3\nLoom again\n");
  const fs = client.submit([
    tasks.run("/bin/grep Loom", [], { stdin: text }),
    tasks.run("/bin/cat file1 file2", [[tasks.const("ONE\n"), "file1"], [tasks.const("TWO\n"), "file2"]]),
    tasks.run("/bin/echo $X and $X", [[tasks.const("VALUE"), "$X"]]),
    tasks.run(["/bin/sh", "-c", "echo FILEDATA > myout; echo STDOUT"], [], { outputs: ["myout", null] }),
  ]);
  const [grep, cat, echo, outs] = await client.gather<unknown>(fs);
  assert.is(str(grep), "Loom is here\nLoom again\n");
  assert.is(str(cat), "ONE\nTWO\n");
  assert.is(str(echo), "VALUE and VALUE\n");
  assert.equal((outs as Buffer[]).map(str), ["FILEDATA\n", "STDOUT\n"]);
});

t("a failing program fails its task with status and stderr, and its dependants", async ({ client }) => {
  const ls = tasks.run("ls /non-existent-path");
  const dependant = tasks.merge([ls, tasks.const("x")]);
  const [f, d] = client.submit([ls, dependant]);
  for (const fut of [f!, d!]) {
    try {
      await fut.gather();
      assert.unreachable("should fail");
    } catch (e) {
      assert.instance(e, TaskFailed);
      assert.match((e as Error).message, "Program terminated with status 2");
      assert.match((e as Error).message, "No such file or directory");
    }
  }
  // Independent work of the same client keeps working.
  assert.is(str(await client.submitOne(tasks.const("ok")).gather()), "ok");
});

t("a program that cannot be started and a missing output file fail clearly", async ({ client }) => {
  const [a, b] = client.submit([tasks.run("/usr/bin/non-existing-program"), tasks.run("/bin/true", [], { outputs: ["xxx"] })]);
  await a!.gather().then(
    () => assert.unreachable("should fail"),
    (e: Error) => assert.match(e.message, /non-existing-program/),
  );
  await b!.gather().then(
    () => assert.unreachable("should fail"),
    (e: Error) => assert.match(e.message, "Output 'xxx'"),
  );
});

t("a file name escaping the run directory is refused when the task is built", () => {
  assert.throws(() => tasks.run("/bin/cat x", [[tasks.const("a"), "../x"]]), /inside the run directory/);
  assert.throws(() => tasks.run("/bin/cat x", [[tasks.const("a"), "/etc/passwd"]]), /inside the run directory/);
});

t("three parallel runs with the same file name do not clash", async ({ client }) => {
  const fs = ["A", "B", "C"].map((v) => tasks.run("/bin/cat data.txt", [[tasks.const(v), "data.txt"]]));
  assert.equal((await client.gather(client.submit(fs))).map(str), ["A", "B", "C"]);
});

t("a task reachable twice in one submission runs once", async ({ client }) => {
  const dir = (await import("node:fs")).mkdtempSync("/tmp/hyperloom-once-");
  const counted = tasks.run(["/bin/sh", "-c", `echo run >> ${dir}/count; echo value`]);
  const fs = client.submit([tasks.merge([counted, counted]), tasks.merge([counted])]);
  assert.equal((await client.gather(fs)).map(str), ["value\nvalue\n", "value\n"]);
  const { readFileSync, rmSync } = await import("node:fs");
  assert.is(readFileSync(`${dir}/count`, "utf8"), "run\n");
  rmSync(dir, { recursive: true, force: true });
});

t("cpus(2) tasks on a 2-core worker run one at a time while light tasks flow", async () => {
  const cluster = await LocalCluster.start({ workers: 1, cpus: 2 });
  const client = await cluster.connect();
  try {
  const timed = (): ReturnType<typeof tasks.run> => {
    const t = tasks.run(["/bin/sh", "-c", "date +%s%N; sleep 0.6; date +%s%N"], [], { request: tasks.cpus(2) });
    return t;
  };
  const heavy = client.submit([timed(), timed(), timed()]);
  const started = Date.now();
  const light = await client.submitOne(tasks.merge([tasks.const("light "), tasks.const("task")])).gather();
  const lightDone = Date.now();
  assert.is(str(light), "light task");
  // Wall-clock ms (the programs' `date` and Date.now() read the same clock).
  const spans = (await client.gather(heavy)).map((b) => str(b).trim().split("\n").map((x) => Number(BigInt(x) / 1000000n)));
  spans.sort((a, b) => a[0]! - b[0]!);
  for (let i = 1; i < spans.length; i++) {
    assert.ok(spans[i]![0]! >= spans[i - 1]![1]!, `cpus(2) tasks overlapped: ${JSON.stringify(spans)}`);
  }
  // The light task had its result before the second heavy task started: it waited neither for a
  // core nor behind the heavy queue, however slow a loaded machine makes both (a fixed budget of
  // 300 ms measured the machine's load as much: a light task took 318 ms at load 14).
  assert.ok(
    lightDone < spans[1]![0]!,
    `the light task's result came ${lightDone - started} ms after submission, after the second cpus(2) task started (${spans[1]![0]! - started} ms): it waited for the heavy tasks`,
  );
  } finally {
    await client.close();
    await cluster.stop();
  }
});

t("a request larger than every worker's cores is an error at submission", async ({ client }) => {
  const f = client.submitOne(tasks.run("/bin/true", [], { request: tasks.cpus(8) }));
  await f.wait().then(
    () => assert.unreachable("should be rejected"),
    (e: Error) => assert.match(e.message, "no worker can satisfy cpus(8)"),
  );
});

t("a program sees a clean run directory (+err and +out only), though directories are reused", async ({ client }) => {
  for (let wave = 0; wave < 3; wave++) {
    const fs = client.submit(
      Array.from({ length: 6 }, (_, i) => tasks.run(["/bin/sh", "-c", `ls -A; echo left > left-${wave}-${i}; mkdir -p sub/dir; echo err >&2`])),
    );
    for (const listing of await client.gather(fs)) assert.is(str(listing), "+err\n+out\n");
  }
});

t("what a process left running by a program writes to its stdout never reaches a later program's output", async ({ client }) => {
  const first = client.submit(Array.from({ length: 6 }, () => tasks.run(["/bin/sh", "-c", "(sleep 0.4; echo late; echo late >&2) & echo first"])));
  for (const out of await client.gather(first)) assert.is(str(out), "first\n");
  // The run directories just emptied are reused first, while the processes left running write.
  const second = client.submit(Array.from({ length: 6 }, () => tasks.run(["/bin/sh", "-c", "sleep 0.8; echo second"])));
  for (const out of await client.gather(second)) assert.is(str(out), "second\n");
});

t("an input named +out or +err is the program's file; stdout into +out never writes through it", async ({ client }) => {
  const data = tasks.const("DATA\n");
  const [a, b] = client.submit([
    tasks.run(["/bin/cat", "+out"], [[data, "+out"]], { outputs: [] }),
    tasks.run(["/bin/sh", "-c", "cat +err >&2; cat +err"], [[data, "+err"]], { outputs: [] }),
  ]);
  // stdout is not an output here; the inputs keep their bytes for later consumers.
  assert.equal(await client.gather([a!, b!]), [[], []]);
  assert.is(str(await client.submitOne(tasks.merge([data])).gather()), "DATA\n");
  // A small input is a copy in the run directory: stdout replaces it. A large one is a link to
  // the data file: stdout is refused rather than written through the link.
  assert.is(str(await client.submitOne(tasks.run(["/bin/echo", "x"], [[data, "+out"]])).gather()), "x\n");
  const big = tasks.const(Buffer.alloc(100_000, 120));
  const linked = client.submitOne(tasks.run(["/bin/echo", "x"], [[big, "+out"]]));
  await linked.gather().then(
    () => assert.unreachable("stdout through the input's link must be refused"),
    (e: Error) => assert.match(e.message, "cannot create +out"),
  );
  assert.is(str(await client.submitOne(tasks.merge([data])).gather()), "DATA\n");
  assert.is(Number((await client.submitOne(tasks.size([big])).gather() as Buffer).readBigUInt64LE(0)), 100_000);
});

t("standard input of any size, from memory or from a data file; small outputs and large ones", async ({ client }) => {
  const sizes = [0, 1, 65_535, 65_536, 65_537, 300_000];
  const fs = client.submit(sizes.map((n) => tasks.run("/usr/bin/wc -c", [], { stdin: tasks.const(Buffer.alloc(n, 97)) })));
  assert.equal((await client.gather(fs)).map((b) => Number(str(b).trim())), sizes);
  const echoed = client.submit(sizes.map((n) => tasks.run("/bin/cat", [], { stdin: tasks.const(Buffer.alloc(n, 98)) })));
  const back = (await client.gather(echoed)) as Buffer[];
  assert.equal(back.map((b) => b.length), sizes);
  assert.ok(back.every((b) => b.every((x) => x === 98)), "the bytes come back unchanged");
});

t("large standard output does not deadlock", async ({ client }) => {
  const f = client.submitOne(tasks.run(["/bin/sh", "-c", "head -c 100000000 /dev/zero"]));
  await f.wait();
  const n = client.submitOne(tasks.size([f]));
  assert.is(Number((await n.gather() as Buffer).readBigUInt64LE(0)), 100_000_000);
  f.release();
});

t("a program's result is not held back while the next program on its worker runs", async () => {
  // A worker holds a FINISHED back up to 2 ms for those of its next programs (issue #26): never
  // longer, even when the next program runs for long (here: until the gate file exists).
  const cluster = await LocalCluster.start({ workers: 1, cpus: 1 });
  const dir = mkdtempSync(join(tmpdir(), "hyperloom-held-"));
  try {
    const client = await cluster.connect();
    let tested = false;
    for (let attempt = 0; attempt < 8 && !tested; attempt++) {
      const [xStarted, yStarted, gate] = ["x", "y", "go"].map((n) => join(dir, `${n}${attempt}`));
      const [x, y] = client.submit([
        tasks.run(["/bin/sh", "-c", `touch '${xStarted}'; echo x`]),
        tasks.run(["/bin/sh", "-c", `touch '${yStarted}'; while [ ! -e '${gate}' ]; do sleep 0.02; done; echo y`]),
      ]);
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<string>((r) => (timer = setTimeout(() => r("late"), 3_000)));
      const got = await Promise.race([x!.gather().then(str), late]);
      clearTimeout(timer);
      const xFirst = existsSync(xStarted);
      writeFileSync(gate, "");
      assert.is(str(await y!.gather()), "y\n");
      if (got === "late") {
        // The gated program ran first (then x waits for its cpu, as it should): try again.
        assert.not.ok(xFirst, "x ran and ended, but its result waited for the next program");
        continue;
      }
      assert.is(got, "x\n");
      tested = true;
    }
    assert.ok(tested, "the gated program ran first in every attempt");
    await client.close();
  } finally {
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

/** The CPUs this process may run on (`Cpus_allowed_list`), e.g. `0-1`. */
function allowedCpus(): string {
  return /Cpus_allowed_list:\s*(\S+)/.exec(readFileSync("/proc/self/status", "utf8"))![1]!;
}

/** `0-1,4` as [0, 1, 4]. */
function cpuNumbers(list: string): number[] {
  return list.split(",").flatMap((part) => {
    const [from, to = from] = part.split("-").map(Number) as [number, number?];
    return Array.from({ length: to! - from + 1 }, (_, i) => from + i);
  });
}

/** Fails unless `f` fails; its error. */
async function failure(f: { gather(): Promise<unknown> }): Promise<Error> {
  const e = await f.gather().then(
    () => undefined,
    (e: Error) => e,
  );
  if (e === undefined) throw new Error("the program ran");
  assert.instance(e, TaskFailed);
  return e;
}

t("hyperloom worker and loom-worker refuse a malformed --cpu-list, and --cpu-list with --nopin, before connecting", () => {
  const cli = join(__dirname, "..", "cli", "main.js");
  const loomWorker = join(__dirname, "..", "cli", "loom-worker.js");
  const commands = {
    "hyperloom worker": (...args: string[]) => spawnSync(process.execPath, [cli, "worker", "127.0.0.1", "1", "--insecure", "--connect-retry", "0", ...args], { encoding: "utf8", timeout: 30_000 }),
    "loom-worker": (...args: string[]) => spawnSync(process.execPath, [loomWorker, ...args, "127.0.0.1", "1"], { encoding: "utf8", timeout: 30_000 }),
  };
  for (const [name, worker] of Object.entries(commands)) {
    for (const [list, why] of [["1-0", "Invalid CPU list '1-0'"], ["0,x", "Invalid CPU list '0,x'"], ["0-2,1", "CPU 1 is listed twice in '0-2,1'"]] as const) {
      const r = worker("--cpu-list", list);
      assert.is.not(r.status, 0, `${name} ${list}`);
      assert.match(r.stderr, why, name);
    }
    const r = worker("--cpu-list", "0", "--nopin");
    assert.is.not(r.status, 0, name);
    assert.match(r.stderr, "--cpu-list pins programs: it does not go with --nopin", name);
  }
});

t("loom-worker --cpu-list runs its programs on the listed CPU", async () => {
  const last = Math.max(...cpuNumbers(allowedCpus()));
  const cli = join(__dirname, "..", "cli", "main.js");
  const wdir = mkdtempSync(join(tmpdir(), "hyperloom-loom-worker-pin-"));
  const server = spawn(process.execPath, [cli, "server", "--host", "127.0.0.1", "--port", "0", "--insecure"], { stdio: ["ignore", "ignore", "pipe"] });
  let serverLog = "";
  server.stderr.on("data", (d: Buffer) => (serverLog += d.toString()));
  let worker: ReturnType<typeof spawn> | undefined;
  try {
    const deadline = Date.now() + 10_000;
    while (!/listening on/.test(serverLog) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(serverLog)![1]);
    worker = spawn(process.execPath, [join(__dirname, "..", "cli", "loom-worker.js"), `--wdir=${wdir}`, "--cpu-list", String(last), "127.0.0.1", String(port)], { stdio: "ignore" });
    const client = await Client.connect("127.0.0.1", port, { accessFile: "" });
    while ((await client.stats()).nWorkers < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const out = await client.submitOne(tasks.run(["/bin/sh", "-c", "grep Cpus_allowed_list /proc/self/status | cut -f2"])).gather();
    assert.is(str(out).trim(), String(last), "on the listed CPU");
    assert.equal((await client.status()).workers.map((w) => w.cpus), [1], "--cpus defaults to the list's length");
    await client.close();
  } finally {
    worker?.kill("SIGKILL");
    server.kill("SIGKILL");
    rmSync(wdir, { recursive: true, force: true });
  }
});

t("pinned workers of one machine run their programs on CPUs of their own", async () => {
  const allowed = cpuNumbers(allowedCpus());
  const pinned = await LocalCluster.start({ workers: 2, cpus: 1, pin: true });
  try {
    const client = await pinned.connect();
    // Two programs at once on 2 x 1: one on each worker. Each says its worker (its parent) and CPUs.
    const script = "sleep 0.3; echo $PPID; grep Cpus_allowed_list /proc/self/status | cut -f2";
    const outs = await Promise.all([0, 1].map(() => client.submitOne(tasks.run(["/bin/sh", "-c", script])).gather()));
    const seen = outs.map((o) => str(o).trim().split("\n"));
    assert.is.not(seen[0]![0], seen[1]![0], "one program on each worker");
    for (const [, cpus] of seen) {
      assert.is(cpuNumbers(cpus!).length, 1, `pinned to one CPU: ${cpus}`);
      assert.ok(allowed.includes(Number(cpus)), `a CPU the workers may use: ${cpus}`);
    }
    // Both workers on CPU 0 was the old numbering; with one CPU only they must share it.
    if (allowed.length >= 2) assert.is.not(seen[0]![1], seen[1]![1], "distinct CPUs");
    await client.close();
  } finally {
    await pinned.stop();
  }
});

t("--cpu-list chooses the CPUs; a pinned program whose CPU the worker may not use, or whose slot has no CPU, fails its task, naming it", async () => {
  const allowed = allowedCpus();
  const last = Math.max(...cpuNumbers(allowed));
  const chosen = await LocalCluster.start({ workers: 1, cpus: 1, pin: true, workerArgs: ["--cpu-list", String(last)] });
  try {
    const client = await chosen.connect();
    const out = await client.submitOne(tasks.run(["/bin/sh", "-c", "grep Cpus_allowed_list /proc/self/status | cut -f2"])).gather();
    assert.is(str(out).trim(), String(last), "on the listed CPU");
    await client.close();
  } finally {
    await chosen.stop();
  }
  // A CPU listed with --cpu-list that this process may not run on.
  const beyond = last + 1;
  const listed = await LocalCluster.start({ workers: 1, cpus: 1, pin: true, workerArgs: ["--cpu-list", String(beyond)] });
  try {
    const client = await listed.connect();
    const marker = join(mkdtempSync(join(tmpdir(), "hyperloom-pin-")), "ran");
    const e = await failure(client.submitOne(tasks.run(["/bin/sh", "-c", `touch '${marker}'`], [], { label: "pinned-too-far" })));
    assert.match(e.message, "pinned-too-far");
    assert.match(e.message, `cannot pin '/bin/sh' to CPU ${beyond}: Invalid argument`);
    assert.match(e.message, `this worker may run on CPUs ${allowed}`);
    assert.match(e.message, "--nopin");
    assert.not.ok(existsSync(marker), "the program never ran");
    // The worker keeps serving.
    assert.is(str(await client.submitOne(tasks.const("ok")).gather()), "ok");
    await client.close();
    rmSync(join(marker, ".."), { recursive: true, force: true });
  } finally {
    await listed.stop();
  }
  // One --cpus more than the CPUs this process may use: slots are taken from the highest, so
  // the first program gets the slot without a CPU.
  const slots = cpuNumbers(allowed).length + 1;
  const tooMany = await LocalCluster.start({ workers: 1, cpus: slots, pin: true });
  try {
    const client = await tooMany.connect();
    const e = await failure(client.submitOne(tasks.run(["/bin/true"], [], { label: "no-cpu" })));
    assert.match(e.message, "no-cpu");
    assert.match(e.message, `cannot pin '/bin/true': its CPU slot ${slots - 1} has no CPU`);
    assert.match(e.message, "--nopin");
    await client.close();
  } finally {
    await tooMany.stop();
  }
});

t.run();
