import * as assert from "uvu/assert";
import { clusterSuite } from "./cluster-suite.js";
import { readFileSync } from "node:fs";
import { tasks } from "../index.js";

const MiB = 1024 * 1024;
const SIZE = 256 * MiB;

const t = clusterSuite("transfers", { workers: 2, cpus: 1 });

/** Peak resident memory of a process, in bytes (Linux). */
function peakRss(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) * 1024 : 0;
}

t("large objects move worker -> worker and worker -> client, with bounded worker memory", async ({ cluster, client }) => {
  // Two 1-cpu producers on two 1-cpu workers run on different workers; `size` of both needs one
  // of them transferred to the other worker.
  const produce = (byte: string): ReturnType<typeof tasks.run> =>
    tasks.run(["/bin/sh", "-c", `head -c ${SIZE} /dev/zero | tr '\\0' '${byte}'`]);
  const a = produce("a");
  const b = produce("b");
  const [fa, fsize] = client.submit([a, tasks.size([a, b])]);
  const size = (await fsize!.gather()) as Buffer;
  assert.is(Number(size.readBigUInt64LE(0)), 2 * SIZE);
  const data = (await fa!.gather()) as Buffer;
  assert.is(data.length, SIZE);
  assert.is(data[0], "a".charCodeAt(0));
  assert.is(data[SIZE - 1], "a".charCodeAt(0));
  for (const w of cluster.workerProcesses) {
    const peak = peakRss(w.pid!);
    assert.ok(peak < 2.5 * SIZE, `worker peak RSS ${Math.round(peak / MiB)} MiB for a ${SIZE / MiB} MiB object`);
  }
  assert.is((await client.stats()).nDataObjects, 0);
});

t.run();
