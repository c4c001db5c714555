import { test } from "uvu";
import * as assert from "uvu/assert";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PythonRunner } from "./python.js";
import type { TaskToRun } from "../native.js";

const ids = () => ({ data: 19, array: 18, index: 17, jsobj: 20, pyobj: 16 });
const call = (id: number): TaskToRun => ({
  id,
  taskType: "loom/py/call",
  config: Buffer.alloc(0),
  inputs: [{ typeName: "loom/pyobj", size: 1, length: 0, bytes: Buffer.from("x") }],
  nCpus: 1,
  cpuSlots: [0],
  pooled: false,
});

test("started on the first task: a missing interpreter fails every task with one clear error", async () => {
  const dir = mkdtempSync(join(tmpdir(), "hyperloom-pyrunner-"));
  const runner = new PythonRunner({ python: "/no/such/python3", processes: 2, spillDir: join(dir, "spill"), typeIds: ids });
  try {
    const errors = await Promise.all([1, 2, 3].map((i) => runner.call(call(i)).then(() => undefined, (e: Error) => e.message)));
    for (const e of errors) {
      assert.match(e!, "'/no/such/python3' was not found");
      assert.match(e!, "pip install cloudpickle");
    }
    // Later tasks too, without trying again.
    await runner.value({ ...call(4), taskType: "loom/py/value" }).then(
      () => assert.unreachable(),
      (e: Error) => assert.is(e.message, errors[0]),
    );
  } finally {
    runner.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("input 0 that is not a pyobj fails with the original's text, before any process starts", async () => {
  const runner = new PythonRunner({ python: "/no/such/python3", processes: 1, spillDir: "/nonexistent", typeIds: ids });
  const t = call(1);
  t.inputs[0]!.typeName = "loom/data";
  await runner.call(t).then(
    () => assert.unreachable(),
    (e: Error) => assert.is(e.message, "The first argument is not PyObj"),
  );
  runner.close();
});

const hasPython = spawnSync("python3", ["-c", "import cloudpickle"]).status === 0;
const pickle = (expr: string): Buffer =>
  execFileSync("python3", ["-c", `import sys, time, cloudpickle; sys.stdout.buffer.write(cloudpickle.dumps(${expr}))`]);

test("calls never wait for a busy process: one more starts (a never-ending call blocks nothing)", async () => {
  if (!hasPython) {
    if (process.env.CI === "true") assert.unreachable("python3 with cloudpickle is missing (.ci/run installs it)");
    console.log("  (skipped: no python3 with cloudpickle)");
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), "hyperloom-pyrunner-"));
  const runner = new PythonRunner({ python: "python3", processes: 1, spillDir: join(dir, "spill"), typeIds: ids });
  const task = (id: number, fn: Buffer, data: string): TaskToRun => ({
    id,
    taskType: "loom/py/call",
    config: pickle("()"),
    inputs: [
      { typeName: "loom/pyobj", size: fn.length, length: 0, bytes: fn },
      { typeName: "loom/data", size: data.length, length: 0, bytes: Buffer.from(data) },
    ],
    nCpus: 0,
    cpuSlots: [],
    pooled: false,
  });
  try {
    const forever = runner.call(task(1, pickle("((lambda a: time.sleep(3600)), False)"), "x"));
    forever.catch(() => undefined);
    const upper = pickle("((lambda a: a.read().upper()), False)");
    for (const i of [2, 3]) {
      const r = await runner.call(task(i, upper, `call ${i}`));
      assert.equal(r, { result: { kind: "plain", data: Buffer.from(`CALL ${i}`) } });
    }
  } finally {
    runner.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
