import { test } from "uvu";
import * as assert from "uvu/assert";
import { inspect } from "node:util";
import * as tasks from "./tasks.js";
import { Client } from "./client.js";
import type { Task } from "./task.js";

test("console.log(task) shows the task's fields, not its numbering bookkeeping", () => {
  const a = tasks.const("Hello ");
  const m = tasks.merge([a, tasks.const("world!")], ",");
  m.label = "greeting";
  const shown = inspect(m);
  assert.is(shown, "Task {\n  taskType: 'loom/data/merge',\n  label: 'greeting',\n  inputs: [ <Task 'loom/data/const'>, <Task 'loom/data/const'> ],\n  config: ','\n}");
  assert.not.match(shown, /_epoch|_planId|_resultEpoch/);
  assert.match(inspect(tasks.run("/bin/true")), /taskType: 'loom\/run\/run'.*config: <\d+ bytes>.*resourceRequest: \{ cpus: 1 \}/s);
});

test("calls of one function-task builder share one task shape and their extras until one is changed", () => {
  const inc = tasks.jsTask((i: number) => String(i + 1), { nDirectArgs: 1, label: "inc", request: tasks.cpus(2) });
  const [a, b] = [inc(1), inc(2)];
  assert.is(a._extras, b._extras);
  a.label = "first";
  b.checkpointPath = "/tmp/b";
  assert.is(a.label, "first");
  assert.is(a.checkpointPath, undefined);
  assert.is(b.label, "inc");
  assert.is(b.checkpointPath, "/tmp/b");
  assert.is(inc(3).label, "inc");
  assert.is(inc(3).resourceRequest?.cpus, 2);
  a.resourceRequest = undefined;
  assert.is(a.resourceRequest, undefined);
  assert.is(inc(4).resourceRequest?.cpus, 2);
  // The function value and the calls are made as the builders make tasks: like arrayMake's.
  const v = a.inputs[0] as Task<unknown>;
  assert.is(v.label, "#L:anonymous");
  assert.is(Object.getPrototypeOf(v), Object.getPrototypeOf(tasks.arrayMake([a])));
  assert.equal(Object.keys(a), Object.keys(tasks.arrayMake([a])));
});

test("checkRunFileName is not a task builder", () => {
  assert.not.ok("checkRunFileName" in tasks);
});

test("Client.connect() rejects a malformed HYPERLOOM_SERVER with one line", async () => {
  const saved = process.env.HYPERLOOM_SERVER;
  process.env.HYPERLOOM_SERVER = "localhost";
  try {
    const e = await Client.connect().catch((err: Error) => err);
    assert.is((e as Error).message, "HYPERLOOM_SERVER='localhost' is not host:port (e.g. 127.0.0.1:9010)");
  } finally {
    if (saved === undefined) delete process.env.HYPERLOOM_SERVER;
    else process.env.HYPERLOOM_SERVER = saved;
  }
});

test.run();
