import { test } from "uvu";
import * as assert from "uvu/assert";
import { comm } from "../protocol/messages.js";
import { encodePlan, numberPlan } from "./plan.js";
import * as tasks from "./tasks.js";
import { cpus, Task } from "./task.js";

const names = ["loom/base/slice", "loom/base/get", "loom/scheduler/dslice", "loom/scheduler/dget", "loom/resource/cpus", "loom/base/size", "loom/base/length", "loom/data/const", "loom/data/merge", "loom/data/open", "loom/data/split", "loom/data/save", "loom/array/make", "loom/run/run"];
const symbol = (n: string): number => {
  const i = names.indexOf(n);
  if (i < 0) throw new Error(`unknown ${n}`);
  return i;
};
const opts = { symbol, cpusSymbol: 4, labels: true, loadCheckpoints: false };

test("the hello plan is byte-identical to the original client's recording", () => {
  const m = tasks.merge([tasks.const("Hello "), tasks.const("world!")]);
  const { buf, count } = encodePlan([m], 0, opts);
  assert.is(count, 3);
  // Recorded in spec/vectors/hello.jsonl (ClientRequest PLAN), after the 8-byte length prefix.
  const recorded = "0801122a120c0807120648656c6c6f203000120c08071206776f726c64213000120a0808120018001801300120002000";
  assert.is(buf.subarray(8).toString("hex"), recorded);
  assert.is(Number(buf.readBigUInt64LE(0)), recorded.length / 2);
});

test("the fast encoder matches protobufjs on labels, requests, futures-like ids and large ids", () => {
  const a = tasks.const("x".repeat(300));
  const r = tasks.run("/bin/cat", [[a, "f"]], { label: "cat:1" });
  const g = tasks.get(tasks.split(a), 5);
  const big = tasks.arrayMake([r, g, a, a]);
  big.label = "ünïcode label";
  const { buf } = encodePlan([big, r], 1_000_000, opts);
  const decoded = comm.ClientRequest.decode(buf.subarray(8));
  const again = comm.ClientRequest.encode(decoded).finish();
  assert.is(Buffer.from(again).toString("hex"), buf.subarray(8).toString("hex"));
  assert.is(decoded.plan!.idBase, 1_000_000);
  assert.is(decoded.plan!.tasks!.length, 5);
  assert.is(decoded.plan!.tasks![4]!.label, "ünïcode label");
  assert.equal(decoded.plan!.resourceRequests!.map((x) => x.resources![0]!.value), [1]);
});

test("the one-pass encoder matches protobufjs on long configs and labels, many resource requests, large ids", () => {
  const long = tasks.const("é".repeat(100)); // 200 bytes of UTF-8: a task body above 127 bytes
  const bytes = tasks.const(Buffer.alloc(300, 7));
  const reqs = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 200].map((n) => new Task("loom/run/run", { inputs: [long, bytes], resourceRequest: cpus(n), label: `r${n}` }));
  const root = tasks.arrayMake(reqs);
  root.checkpointPath = "/tmp/x".repeat(40);
  const { buf, count } = encodePlan([root, long], 2 ** 30, opts);
  assert.is(count, 14);
  const decoded = comm.ClientRequest.decode(buf.subarray(8));
  assert.is(Number(buf.readBigUInt64LE(0)), buf.length - 8);
  assert.is(Buffer.from(comm.ClientRequest.encode(decoded).finish()).toString("hex"), buf.subarray(8).toString("hex"));
  const plan = decoded.plan!;
  assert.equal(plan.resourceRequests!.map((x) => x.resources![0]!.value), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 200]);
  assert.equal(plan.tasks!.map((t) => t.result), [true, false, ...Array(11).fill(false), true]);
  assert.is(plan.tasks![0]!.config!.length, 200);
  assert.is(plan.tasks![13]!.checkpointPath, "/tmp/x".repeat(40));
  assert.is(Number(plan.idBase), 2 ** 30);
  assert.equal(plan.tasks![2]!.inputIds!.map(Number), [2 ** 30, 2 ** 30 + 1]);
});

test("a result reached first as another result's input is marked a result; a duplicate root is one task", () => {
  const a = tasks.const("a");
  const b = tasks.merge([a]);
  const { buf, count } = encodePlan([b, a, b], 0, opts);
  assert.is(count, 2);
  const plan = comm.ClientRequest.decode(buf.subarray(8)).plan!;
  assert.equal(plan.tasks!.map((t) => t.result), [true, true]);
  // A later submission numbers them again, from its own base, and only its roots are results.
  const again = comm.ClientRequest.decode(encodePlan([b], 5, opts).buf.subarray(8)).plan!;
  assert.equal(again.tasks!.map((t) => t.result), [false, true]);
  assert.equal(again.tasks![1]!.inputIds!.map(Number), [5]);
});

test("a task reachable twice is numbered once, inputs before consumers", () => {
  const a = tasks.const("a");
  const b = tasks.merge([a, a]);
  const c = tasks.merge([a, b]);
  const plan = numberPlan([c, b], 10);
  assert.equal(plan.tasks.map((t) => t._planId), [10, 11, 12]);
  assert.is(plan.tasks[0], a);
});

test("a cycle is reported on the client, naming the task", () => {
  const a = new Task("loom/data/merge", { label: "loop" });
  const b = tasks.merge([a]);
  a.inputs.push(b);
  assert.throws(() => numberPlan([b], 0), /Cycle in plan/);
});

test("a chain of a million tasks is numbered without overflowing the stack", () => {
  let t = tasks.const("0");
  for (let i = 0; i < 1_000_000; i++) t = tasks.merge([t]);
  const plan = numberPlan([t], 0);
  assert.is(plan.tasks.length, 1_000_001);
});

test.run();
