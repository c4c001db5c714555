import { test } from "uvu";
import * as assert from "uvu/assert";
import { execFileSync } from "node:child_process";
import { FunctionRunner, type CallSink } from "./functions.js";
import { jsFunction } from "../client/functions.js";
import { encodeDirectArgs } from "../client/direct-args.js";

/** A call record in the binding's layout (`function-call.ts`): one pooled call of `fn` on `args`. */
function callRecord(taskId: number, fn: Buffer, args: unknown[], pooled = true): Buffer {
  const config = encodeDirectArgs(args);
  const name = Buffer.from("loom/js/obj", "latin1");
  const input = Buffer.alloc(1 + name.length + 21);
  input[0] = name.length;
  name.copy(input, 1);
  input.writeDoubleLE(fn.length, 1 + name.length);
  input.writeDoubleLE(0, 9 + name.length);
  input[17 + name.length] = 1; // bytes
  input.writeUInt32LE(fn.length, 18 + name.length);
  const head = Buffer.alloc(13);
  head.writeInt32LE(taskId, 4);
  head[8] = pooled ? 1 : 0;
  head.writeUInt32LE(config.length, 9);
  const count = Buffer.alloc(4);
  count.writeUInt32LE(1);
  const record = Buffer.concat([head, config, count, input, fn]);
  record.writeUInt32LE(record.length - 4, 0);
  return record;
}

/** Answer records (`function-call.ts`) as id -> text. */
function answersOf(records: Uint8Array): Map<number, string> {
  const b = Buffer.from(records.buffer, records.byteOffset, records.byteLength);
  const out = new Map<number, string>();
  for (let at = 0; at < b.length; ) {
    const len = b.readUInt32LE(at + 5);
    out.set(b.readInt32LE(at), b.toString("utf8", at + 9, at + 9 + len));
    at += 9 + len;
  }
  return out;
}

/**
 * A sink that collects plain answers (id -> text) and settles `all` once `expected` have come;
 * any failure or non-plain outcome fails the test.
 */
function collectingSink(expected: number): { sink: CallSink; answers: Map<number, string>; all: Promise<void> } {
  const answers = new Map<number, string>();
  let done!: () => void;
  const all = new Promise<void>((r) => (done = r));
  const sink: CallSink = {
    answers: (records) => {
      for (const [id, text] of answersOf(records)) answers.set(id, text);
      if (answers.size === expected) done();
    },
    outcome: () => assert.unreachable("only plain answers expected"),
    fail: (id, message) => assert.unreachable(`call ${id} failed: ${message}`),
  };
  return { sink, answers, all };
}

test("start() starts the threads before the first call; calls then run on them", async () => {
  const { sink, answers, all } = collectingSink(3);
  const runner = new FunctionRunner(2, sink);
  try {
    assert.is(runner.threadsStarted, 0);
    runner.start();
    for (let i = 0; i < 500 && runner.threadsStarted < 2; i++) await new Promise((r) => setTimeout(r, 10));
    assert.is(runner.threadsStarted, 2, "both threads started with no call made");
    runner.setPoolCpus(2);
    const fn = jsFunction((i: number) => String(i * 2)).config as Buffer;
    runner.run(Buffer.concat([callRecord(1, fn, [1]), callRecord(2, fn, [20]), callRecord(3, fn, [300])]));
    await all;
    assert.equal([...answers].sort((a, b) => a[0] - b[0]), [
      [1, "2"],
      [2, "40"],
      [3, "600"],
    ]);
  } finally {
    await runner.close();
  }
});

test("text results: short ASCII, short non-ASCII and long texts come back as their UTF-8", async () => {
  const texts = ["", "7", "héllo ✓", "naïve", "x".repeat(31) + "é", "long ".repeat(40), "日本語のテキスト"];
  const { sink, answers, all } = collectingSink(texts.length);
  const runner = new FunctionRunner(1, sink);
  try {
    runner.setPoolCpus(1);
    const fn = jsFunction((s: string) => s).config as Buffer;
    runner.run(Buffer.concat(texts.map((t, i) => callRecord(i, fn, [t]))));
    await all;
    texts.forEach((t, i) => assert.is(answers.get(i), t));
  } finally {
    await runner.close();
  }
});

test("a batch of calls from several buffers, and with gaps where calls were not pooled, answers each call", async () => {
  const { sink, answers, all } = collectingSink(6);
  const runner = new FunctionRunner(1, sink);
  try {
    runner.setPoolCpus(1);
    const fn = jsFunction((s: string) => `<${s}>`).config as Buffer;
    // One event: pooled, not pooled (a batch of its own), pooled; then another event's two.
    runner.run(Buffer.concat([callRecord(1, fn, ["a"]), callRecord(2, fn, ["b"], false), callRecord(3, fn, ["c"]), callRecord(4, fn, ["d"])]));
    runner.run(Buffer.concat([callRecord(5, fn, ["e"]), callRecord(6, fn, ["f"])]));
    await all;
    assert.equal(
      [...answers].sort((a, b) => a[0] - b[0]),
      ["a", "b", "c", "d", "e", "f"].map((s, i) => [i + 1, `<${s}>`]),
    );
  } finally {
    await runner.close();
  }
});

test("one batch of calls of two functions in turn, a throwing one, an async one and non-simple arguments answers each call", async () => {
  const { sink, answers, all } = collectingSink(8);
  const kinds = new Map<number, number>();
  const runner = new FunctionRunner(1, {
    ...sink,
    answers: (records, ids) => {
      const b = Buffer.from(records.buffer, records.byteOffset, records.byteLength);
      for (let at = 0; at < b.length; at += 9 + b.readUInt32LE(at + 5)) kinds.set(b.readInt32LE(at), b[at + 4]!);
      sink.answers(records, ids);
    },
  });
  try {
    runner.setPoolCpus(1);
    const inc = jsFunction((i: number) => String(i + 1)).config as Buffer;
    const neg = jsFunction((i: number) => String(-i)).config as Buffer;
    const boom = jsFunction((i: number) => {
      throw new Error(`boom ${i}`);
    }).config as Buffer;
    const later = jsFunction(async (s: string) => `later ${s}`).config as Buffer;
    const keys = jsFunction((o: object) => Object.keys(o).join(",")).config as Buffer;
    runner.run(
      Buffer.concat([
        callRecord(1, inc, [1]),
        callRecord(2, inc, [2]),
        callRecord(3, neg, [3]),
        callRecord(4, inc, [4]),
        callRecord(5, boom, [5]),
        callRecord(6, later, ["x"]),
        callRecord(7, keys, [{ a: 1, b: [2] }]),
        callRecord(8, keys, [{ c: 3 }]),
      ]),
    );
    await all;
    const boom5 = answers.get(5) ?? "";
    answers.delete(5);
    assert.equal(
      [...answers].sort((a, b) => a[0] - b[0]),
      [
        [1, "2"],
        [2, "3"],
        [3, "-3"],
        [4, "5"],
        [6, "later x"],
        [7, "a,b"],
        [8, "c"],
      ],
    );
    assert.match(boom5, /^JavaScript exception:\nError: boom 5\n/);
    assert.equal([...kinds].sort((a, b) => a[0] - b[0]).map(([, k]) => k), [1, 1, 1, 1, 3, 1, 1, 1]);
  } finally {
    await runner.close();
  }
});

test("the threads start without a shell command (tinypool's count of physical cores)", () => {
  // A fresh process, where tinypool is not loaded yet: every execSync it makes is recorded.
  const script = `
    const cp = require("node:child_process");
    const ran = [];
    const execSync = cp.execSync;
    cp.execSync = function (c, ...rest) { ran.push(c); return execSync.call(this, c, ...rest); };
    const { FunctionRunner } = require(${JSON.stringify(require.resolve("./functions.js"))});
    const runner = new FunctionRunner(1, { answers() {}, outcome() {}, fail() {} });
    runner.start();
    const poll = setInterval(() => {
      if (runner.threadsStarted === 0) return;
      clearInterval(poll);
      const probe = String(cp.execSync("echo other commands run", { encoding: "utf8" })).trim();
      process.stdout.write(JSON.stringify({ ran, probe }));
      void runner.close().then(() => process.exit(0));
    }, 1);`;
  const out = JSON.parse(execFileSync(process.execPath, ["-e", script], { encoding: "utf8", timeout: 30_000 })) as { ran: string[]; probe: string };
  assert.equal(out.ran, ["echo other commands run"], "no command but the probe's ran");
  assert.is(out.probe, "other commands run");
});

test.run();
