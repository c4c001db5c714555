// The workloads on a real cluster (server + worker processes, sockets), through the public client.
// Each `run(client, n)` times one repetition: from the first task built to the last result
// gathered; it checks the result and returns the figures.
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { Task, tasks } from "hyperloom";
import { w1Merges } from "./plans.mjs";

const now = () => Number(process.hrtime.bigint()) / 1e6;
const W6_BYTES = 256 * 1024 * 1024;

/** Resolves with the time at which the client's socket has handed every queued byte to the kernel. */
function whenSent(client) {
  return new Promise((resolve) => {
    // The client flushes in a setImmediate queued by submit(); this one runs right after it.
    setImmediate(() => {
      const s = client.socket; // internal, read only: when the plan has left the process
      if (!s || s.writableLength === 0) resolve(now());
      else s.once("drain", () => resolve(now()));
    });
  });
}

/** Submits `roots`, gathers them; returns the timing of one repetition. */
async function submitGather(client, t0, tBuilt, roots, nTasks) {
  const futures = client.submit(roots);
  const tSubmitted = now();
  const sent = whenSent(client);
  const values = await client.gather(futures);
  const tEnd = now();
  const tSent = await sent;
  return {
    values,
    tasks: nTasks,
    wallMs: tEnd - t0,
    buildMs: tBuilt - t0,
    encodeMs: tSubmitted - tBuilt,
    sendMs: tSent - tSubmitted,
    planMs: tSent - t0,
  };
}

/**
 * The machine's spawn rate for W4's `program` (`true` or `cat`), measured right after our
 * repetition: N programs by `spawn-rate` (bench/core/src/bin: the bare mechanism, posix_spawn of
 * the resolved path + waitpid loops, one per cluster cpu, each loop on a CPU of its own: the
 * machine's ceiling whether our workers pin or not, since unpinned loops leave the CPUs idle while
 * they wait on wake-ups from the other CPU; built on first use). Undefined when it cannot run.
 */
function spawnRate(program, n, loops, pin) {
  const root = new URL("../../", import.meta.url).pathname;
  try {
    execFileSync("cargo", ["build", "--release", "-q", "-p", "loom-bench-core", "--bin", "spawn-rate"], { cwd: root, stdio: "ignore", timeout: 600_000 });
    const out = execFileSync(join(root, "target/release/spawn-rate"), ["--program", program, "--n", String(n), "--threads", String(loops), ...(pin ? ["--pin"] : [])], {
      encoding: "utf8",
      timeout: 120_000,
    });
    return JSON.parse(out.trim().split("\n").pop()).per_s;
  } catch {
    return undefined;
  }
}

/** The pickles of W5-py, made by python3's cloudpickle (once per N). */
const pickles = new Map();
function pythonPickles(n) {
  if (!pickles.has(n)) {
    const script = [
      "import base64, json, sys, cloudpickle",
      "n = int(sys.argv[1])",
      "fn = cloudpickle.dumps(((lambda i: str(i + 1)), False))",
      "args = [base64.b64encode(cloudpickle.dumps((i,))).decode() for i in range(n)]",
      "print(json.dumps({'fn': base64.b64encode(fn).decode(), 'args': args}))",
    ].join("\n");
    const out = JSON.parse(execFileSync("python3", ["-c", script, String(n)], { encoding: "utf8", maxBuffer: 1 << 28 }));
    pickles.set(n, { fn: Buffer.from(out.fn, "base64"), args: out.args.map((a) => Buffer.from(a, "base64")) });
  }
  return pickles.get(n);
}

let jsFunctionUs;
let pyFunctionUs;
/** The own time (µs) of W5's function, `i => String(i + 1)`, called in a loop here. */
function timeJsFunction() {
  const f = (i) => String(i + 1);
  let best = Infinity;
  for (let r = 0; r < 5; r++) {
    let x = 0;
    const t0 = now();
    for (let i = 0; i < 1e6; i++) x += f(i).length;
    best = Math.min(best, (now() - t0) * 1e3 / 1e6);
    if (x === 0) throw new Error("unreachable");
  }
  return best;
}
/** The own time (µs) of W5-py's function, `lambda i: str(i + 1)`, by Python's timeit (0 without python3). */
function timePyFunction() {
  try {
    const out = execFileSync("python3", ["-c", "import timeit; f = lambda i: str(i + 1); print(min(timeit.repeat('f(12345)', globals=globals(), number=100000, repeat=5)) / 100000 * 1e6)"], { encoding: "utf8" });
    return Number(out.trim());
  } catch {
    return 0;
  }
}

function expect(cond, what) {
  if (!cond) throw new Error(`wrong result: ${what}`);
}

const u64 = (b) => Number(Buffer.from(b).readBigUInt64LE(0));

export const WORKLOADS = {
  W1: {
    what: "N merges of 2 consts -> one arrayMake (3N+1 tasks)",
    sizes: [10_000, 100_000, 1_000_000],
    quick: [2_000],
    async run(client, n) {
      const t0 = now();
      const root = tasks.arrayMake(w1Merges(n));
      const r = await submitGather(client, t0, now(), [root], 3 * n + 1);
      const [arr] = r.values;
      expect(arr.length === n && arr[n - 1].toString() === "abcd", "W1 array");
      return r;
    },
  },
  "W1-gather": {
    what: "N merges of 2 consts, N futures gathered (3N tasks)",
    sizes: [10_000, 100_000],
    cap: 100_000,
    quick: [1_000],
    async run(client, n) {
      const t0 = now();
      const merges = w1Merges(n);
      const r = await submitGather(client, t0, now(), merges, 3 * n);
      expect(r.values.length === n && r.values[n - 1].toString() === "abcd", "W1-gather values");
      return r;
    },
  },
  // W1-serial and W1-fused run in a child process of their own (limit.mjs): no cluster.
  "W1-serial": {
    what: "W1 in one process and one thread, stage after stage: encode -> ServerCore -> WorkerCore -> decode, no sockets (not a limit: a cluster overlaps the stages)",
    sizes: [10_000, 100_000, 1_000_000],
    quick: [2_000],
    inProcess: true,
  },
  "W1-fused": {
    what: "one thread's ceiling: W1 built with the client API, then evaluated in place (no encoding, scheduler, sockets or serialization between stages)",
    sizes: [10_000, 100_000, 1_000_000],
    quick: [2_000],
    inProcess: true,
    fused: true,
  },
  W2: {
    what: "one const -> N size -> one arrayMake (N+2 tasks)",
    sizes: [10_000, 100_000],
    quick: [1_000],
    async run(client, n) {
      const t0 = now();
      const c = tasks.const("x".repeat(100));
      const sizes = new Array(n);
      for (let i = 0; i < n; i++) sizes[i] = tasks.size(c);
      const r = await submitGather(client, t0, now(), [tasks.arrayMake(sizes)], n + 2);
      const [arr] = r.values;
      expect(arr.length === n && u64(arr[n - 1]) === 100, "W2 sizes");
      return r;
    },
  },
  W3: {
    what: "chain: N merges, each of the previous one (N+1 tasks)",
    sizes: [10_000],
    quick: [500],
    async run(client, n) {
      const t0 = now();
      let t = tasks.const("x");
      for (let i = 0; i < n; i++) t = tasks.merge([t]);
      const r = await submitGather(client, t0, now(), [t], n + 1);
      expect(r.values[0].toString() === "x", "W3 chain");
      return r;
    },
  },
  "W4-true": {
    what: 'N run("/bin/true") -> one arrayMake',
    sizes: [1_000],
    quick: [50],
    async run(client, n, cell) {
      const t0 = now();
      const runs = new Array(n);
      for (let i = 0; i < n; i++) runs[i] = tasks.run("/bin/true");
      const r = await submitGather(client, t0, now(), [tasks.arrayMake(runs)], n + 1);
      expect(r.values[0].length === n, "W4 true");
      r.tasks = n; // programs
      r.spawnRate = spawnRate("true", n, cell?.cpus ?? 2, true);
      r.spawnPinned = true;
      return r;
    },
  },
  "W4-cat": {
    what: 'N run("cat") with a stdin -> one arrayMake',
    sizes: [1_000],
    quick: [50],
    async run(client, n, cell) {
      const t0 = now();
      const runs = new Array(n);
      for (let i = 0; i < n; i++) runs[i] = tasks.run("cat", [], { stdin: tasks.const(`line ${i}\n`) });
      const r = await submitGather(client, t0, now(), [tasks.arrayMake(runs)], 2 * n + 1);
      expect(r.values[0][n - 1].toString() === `line ${n - 1}\n`, "W4 cat");
      r.tasks = n; // programs
      r.spawnRate = spawnRate("cat", n, cell?.cpus ?? 2, true);
      r.spawnPinned = true;
      return r;
    },
  },
  W5: {
    what: "N small function tasks (jsTask) -> one arrayMake (N+2 tasks)",
    sizes: [10_000],
    quick: [200],
    calls: (n) => n,
    functionUs: () => (jsFunctionUs ??= timeJsFunction()),
    async run(client, n) {
      const t0 = now();
      const inc = tasks.jsTask((i) => String(i + 1), { nDirectArgs: 1, label: "inc" });
      const calls = new Array(n);
      for (let i = 0; i < n; i++) calls[i] = inc(i);
      const r = await submitGather(client, t0, now(), [tasks.arrayMake(calls)], n + 2);
      expect(r.values[0][n - 1].toString() === String(n), "W5 values");
      return r;
    },
  },
  "W5-py": {
    what: "N small Python function tasks (loom/py/call of a cloudpickle'd `lambda i: str(i + 1)`, i a direct arg) -> one arrayMake (N+2 tasks); needs python3 with cloudpickle",
    sizes: [10_000],
    quick: [200],
    calls: (n) => n,
    functionUs: () => (pyFunctionUs ??= timePyFunction()),
    async run(client, n) {
      const p = pythonPickles(n);
      const t0 = now();
      // What the original's py_task builds: one py_value of (fn, has_context), a py_call per call.
      const fn = new Task("loom/py/value", { config: p.fn, resourceRequest: tasks.cpus(1), label: "#L:inc" });
      const calls = new Array(n);
      for (let i = 0; i < n; i++) calls[i] = new Task("loom/py/call", { inputs: [fn], config: p.args[i], resourceRequest: tasks.cpus(1), label: "inc" });
      const r = await submitGather(client, t0, now(), [tasks.arrayMake(calls)], n + 2);
      expect(r.values[0][n - 1].toString() === String(n), "W5-py values");
      return r;
    },
  },
  W6: {
    what: "two 256 MiB objects made on the two workers, then size() of both: one crosses to the other worker (2x1 only); MB/s of that phase",
    sizes: [W6_BYTES],
    quick: [16 * 1024 * 1024],
    onlyConfigs: ["2x1"],
    async run(client, n) {
      const t0 = now();
      // Phase 1: two producers needing 1 cpu each, one per 1-cpu worker (the least loaded gets
      // the second); each result stays on its worker.
      const ps = client.submit([tasks.run(`head -c ${n} /dev/zero`), tasks.run(`head -c ${n} /dev/zero`)]);
      await client.wait(ps);
      // Phase 2: one consumer of both: wherever it runs, one object crosses between workers.
      const t1 = now();
      const [size] = await client.gather(client.submit([tasks.size(ps)]));
      const tEnd = now();
      client.release(ps);
      expect(u64(size) === 2 * n, "W6 size");
      return { tasks: 3, wallMs: tEnd - t0, planMs: 0, transferMs: tEnd - t1, mbps: n / 1e6 / ((tEnd - t1) / 1e3) };
    },
  },
  "W6-fetch": {
    what: "256 MiB from run(head -c) fetched by the client and read once; MB/s of that",
    sizes: [W6_BYTES],
    quick: [16 * 1024 * 1024],
    async run(client, n) {
      const t0 = now();
      const [p] = client.submit([tasks.run(`head -c ${n} /dev/zero`)]);
      await p.wait();
      const t1 = now();
      const [v] = await client.gather([p]);
      const tGot = now();
      // A byte of every 4 KiB page read: the object is in this process's memory, as the peers'
      // (whose get materializes it) — a mapped result is only read in on first touch.
      let sum = 0;
      for (let i = 0; i < v.length; i += 4096) sum += v[i];
      const tEnd = now();
      expect(v.length === n && sum === 0, "W6 fetch size and bytes");
      return { tasks: 1, wallMs: tEnd - t0, planMs: 0, transferMs: tEnd - t1, fetchOnlyMs: tGot - t1, mbps: n / 1e6 / ((tEnd - t1) / 1e3) };
    },
  },
};
