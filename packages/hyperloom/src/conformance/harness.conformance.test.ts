/** The conformance comparison itself: it must catch what it claims to check. */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { comm } from "../protocol/messages.js";
import { RECORDED_SYMBOLS, SCENARIOS, difference, encode, loadScenario, Pool, units } from "./vectors.js";

const hello = loadScenario("hello");
const task0 = hello.find((f) => f.msg === "WorkerCommand" && f.seq === 5)!.payload; // TASK id 0, const "Hello "
const send = hello.find((f) => f.msg === "WorkerCommand" && f.text.startsWith("type: SEND"))!.payload;
const dict = hello.find((f) => f.msg === "WorkerCommand" && f.seq === 1)!.payload;
const T = comm.WorkerCommand.Type;
const task = (o: object): Buffer => encode("WorkerCommand", { type: T.TASK, id: 0, taskType: 7, taskConfig: Buffer.from("Hello "), nCpus: 0, checkpointPath: "", ...o });

test("every scenario loads; the recorded dictionary is the 20 symbols of symbols.txt", () => {
  for (const s of SCENARIOS) assert.ok(loadScenario(s).length > 4, s);
  assert.is(RECORDED_SYMBOLS.length, 20);
  assert.is(RECORDED_SYMBOLS[19], "loom/data");
});

test("equivalence: identical re-encoding passes; ids, values, symbols and field presence are compared", () => {
  assert.is(difference("WorkerCommand", task0, task({})), undefined);
  assert.ok(difference("WorkerCommand", task0, task({ id: 1 })));
  assert.ok(difference("WorkerCommand", task0, task({ taskType: 8 })));
  assert.ok(difference("WorkerCommand", task0, task({ nCpus: 1 })));
  // Default-valued fields are on the recorded wire: leaving one out is a difference.
  assert.ok(difference("WorkerCommand", task0, encode("WorkerCommand", { type: T.TASK, id: 0, taskType: 7, taskConfig: Buffer.from("Hello "), nCpus: 0 })));
});

test("equivalence: ports are any port; a dictionary may only extend the recorded one", () => {
  assert.is(difference("WorkerCommand", send, encode("WorkerCommand", { type: T.SEND, id: 2, address: "!:1" })), undefined);
  assert.ok(difference("WorkerCommand", send, encode("WorkerCommand", { type: T.SEND, id: 2, address: "10.0.0.1:1" })));
  const extras: string[] = [];
  assert.is(difference("WorkerCommand", dict, encode("WorkerCommand", { type: T.DICTIONARY, symbols: [...RECORDED_SYMBOLS, "x/y"] }), extras), undefined);
  assert.equal(extras, ["x/y"]);
  const swapped = [...RECORDED_SYMBOLS];
  [swapped[0], swapped[1]] = [swapped[1]!, swapped[0]!];
  assert.ok(difference("WorkerCommand", dict, encode("WorkerCommand", { type: T.DICTIONARY, symbols: swapped })));
  assert.ok(difference("WorkerCommand", dict, encode("WorkerCommand", { type: T.DICTIONARY, symbols: RECORDED_SYMBOLS.slice(0, 19) })));
});

test("pool: any order is accepted; an extra, a changed data frame and a missing frame are reported", () => {
  const expected = units(hello.filter((f) => f.conn === 1 && f.dir === "from_server"));
  const p = new Pool("client", expected);
  for (const u of [...expected].reverse()) assert.ok(p.take({ ...u, seq: -1 }));
  assert.equal(p.problems(), []);
  const q = new Pool("client", expected);
  const data = expected.find((u) => u.raws.length > 0)!;
  assert.not.ok(q.take({ ...data, raws: [Buffer.from("Hello world?")], seq: -1 }));
  assert.not.ok(q.take({ ...expected[1]!, payload: encode("ClientResponse", { type: comm.ClientResponse.Type.TASK_FINISHED, id: 3 }), seq: -1 }));
  assert.is(q.problems().length, 2 + expected.length);
});

test.run();
