import { suite } from "uvu";
import * as assert from "uvu/assert";
import { LocalCluster } from "../cluster/local-cluster.js";
import { tasks } from "../index.js";

const t = suite("worker loss");

t("a killed worker's running task is rescheduled and the gather succeeds", async () => {
  const cluster = await LocalCluster.start({ workers: 2, cpus: 1 });
  try {
    const client = await cluster.connect();
    // Two 1-cpu tasks on two 1-cpu workers: one runs on each.
    const slow = (v: string): ReturnType<typeof tasks.run> => tasks.run(["/bin/sh", "-c", `sleep 0.6; echo ${v}`]);
    const fs = client.submit([slow("first"), slow("second")]);
    await new Promise((r) => setTimeout(r, 250));
    cluster.workerProcesses[0]!.kill("SIGKILL");
    const results = (await client.gather(fs)).map((b) => String(b));
    assert.equal(results, ["first\n", "second\n"]);
    const stats = await client.stats();
    assert.is(stats.nWorkers, 1);
    assert.is(stats.nDataObjects, 0);
    await client.close();
  } finally {
    await cluster.stop();
  }
});

t("a client that vanishes mid-plan loses nothing for other clients", async () => {
  const cluster = await LocalCluster.start({ workers: 1, cpus: 1 });
  try {
    const a = await cluster.connect();
    const b = await cluster.connect();
    a.submit([tasks.run(["/bin/sh", "-c", "sleep 0.3; echo a"])]);
    const fb = b.submitOne(tasks.merge([tasks.const("b"), tasks.const("!")]));
    await a.close();
    assert.is(String(await fb.gather()), "b!");
    // Both clients number their tasks from 0; a new one does too, without clashing.
    const c = await cluster.connect();
    assert.is(String(await c.submitOne(tasks.const("c")).gather()), "c");
    assert.is((await b.stats()).nDataObjects, 0);
    await b.close();
    await c.close();
  } finally {
    await cluster.stop();
  }
});

t.run();
