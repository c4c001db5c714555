import { test } from "uvu";
import * as assert from "uvu/assert";
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

test.run();
