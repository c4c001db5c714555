/**
 * Large results fetched from the worker that holds them (`fetch-direct`, #26): mapped from the
 * worker's data file on this host, streamed from its data port otherwise (TLS too), the relay as
 * the fallback; right bytes in every case, files gone once released, and every fetch settles
 * when a worker dies under it or the result is released meanwhile.
 */
import * as assert from "uvu/assert";
import { suite } from "uvu";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { LocalCluster, tasks, type Client } from "../index.js";
import { settles } from "./settles.js";

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;

const t = suite("direct fetch (#26)");

/** A result of SIZE bytes of `byte`, made by a program (a spilled data file on its worker). */
const produce = (byte: string): ReturnType<typeof tasks.run> =>
  tasks.run(["/bin/sh", "-c", `head -c ${SIZE} /dev/zero | tr '\\0' '${byte}'`]);

/** Checks `data` is SIZE bytes of `byte` (every 4 KiB page looked at). */
function assertBytes(data: Buffer, byte: string): void {
  assert.is(data.length, SIZE);
  const c = byte.charCodeAt(0);
  for (let i = 0; i < SIZE; i += 4096) if (data[i] !== c) assert.unreachable(`byte ${i} is ${data[i]}, not ${c}`);
  assert.is(data[SIZE - 1], c);
}

/** Files of at least 1 MiB in the workers' data directories (`<dir>/<n>/worker-<host>-<port>/data/`): results still held. */
function largeDataFiles(cluster: LocalCluster): string[] {
  const out: string[] = [];
  const walk = (dir: string, inData: boolean): void => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return; // Removed meanwhile.
    }
    for (const e of entries) {
      const path = join(dir, e.name);
      if (e.isDirectory()) walk(path, e.name === "data");
      else if (inData) {
        try {
          if (statSync(path).size >= MiB) out.push(path);
        } catch {
          // Removed meanwhile.
        }
      }
    }
  };
  walk(cluster.workDir, false);
  return out;
}

/** Waits until the workers hold no large data file (REMOVE reaches them after the release). */
async function noLargeFilesLeft(cluster: LocalCluster): Promise<void> {
  for (let i = 0; i < 100 && largeDataFiles(cluster).length > 0; i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal(largeDataFiles(cluster), [], "data files left after release");
}

async function withCluster(
  options: Parameters<typeof LocalCluster.start>[0],
  body: (cluster: LocalCluster, client: Client) => Promise<void>,
  connect: Parameters<LocalCluster["connect"]>[0] = {},
): Promise<void> {
  const cluster = await LocalCluster.start(options);
  try {
    const client = await cluster.connect(connect);
    try {
      await body(cluster, client);
    } finally {
      await client.close();
    }
  } finally {
    await cluster.stop();
  }
}

t("on the workers' host: the result is the worker's data file mapped (right bytes, writable copy-on-write), and the file goes when released", async () => {
  await withCluster({ workers: 2, cpus: 1 }, async (cluster, client) => {
    const [fa, fsmall] = client.submit([produce("a"), tasks.const(Buffer.from("small"))]);
    const [a, small] = await settles(client.fetch([fa!, fsmall!]), 60_000, "fetch");
    assertBytes(a!, "a");
    assert.is(small!.toString(), "small");
    assert.equal(client.fetchPaths(), { relayed: 1, streamed: 0, mapped: 1, fellBack: 0 });
    // The worker's file is not changed by a write to the Buffer (a private mapping).
    const [file] = largeDataFiles(cluster);
    a![0] = 0x7a;
    assert.is(a![0], 0x7a);
    const { readFileSync } = await import("node:fs");
    assert.is(readFileSync(file!).subarray(0, 1)[0], "a".charCodeAt(0));
    client.release([fa!, fsmall!]);
    await noLargeFilesLeft(cluster);
    // The mapping outlives the file.
    assert.is(a![SIZE - 1], "a".charCodeAt(0));
    assert.is((await client.stats()).nDataObjects, 0);
  });
});

for (const tls of [false, true]) {
  t(`from another host's view (no mapping): the worker streams it from its data port${tls ? " over TLS" : ""}; an array of large objects too`, async () => {
    process.env.HYPERLOOM_FETCH_NO_MAP = "1";
    try {
      await withCluster({ workers: 2, cpus: 1, tls }, async (cluster, client) => {
        const big = Buffer.alloc(3 * MiB, 0x62);
        const [fa, farr] = client.submit([produce("a"), tasks.arrayMake([tasks.const(big), tasks.const(Buffer.from("xyz"))])]);
        const [a, arr] = await settles(client.gather([fa!, farr!] as never[]), 60_000, "gather");
        assertBytes(a as Buffer, "a");
        const items = arr as unknown as Buffer[];
        assert.is(items.length, 2);
        assert.ok(big.equals(items[0]!));
        assert.is(items[1]!.toString(), "xyz");
        assert.equal(client.fetchPaths(), { relayed: 0, streamed: 2, mapped: 0, fellBack: 0 });
        await noLargeFilesLeft(cluster);
      });
    } finally {
      delete process.env.HYPERLOOM_FETCH_NO_MAP;
    }
  });
}

t("a worker that refuses the direct fetch: the client falls back to the relay and gets the right bytes", async () => {
  process.env.HYPERLOOM_FAULT_REFUSE_DIRECT_FETCH = "1";
  let cluster: LocalCluster;
  try {
    cluster = await LocalCluster.start({ workers: 1, cpus: 1 });
  } finally {
    delete process.env.HYPERLOOM_FAULT_REFUSE_DIRECT_FETCH;
  }
  const client = await cluster.connect();
  const warnings: string[] = [];
  const onWarning = (w: Error): void => void warnings.push(w.message);
  process.on("warning", onWarning);
  try {
    const [fa] = client.submit([produce("a")]);
    const [a] = await settles(client.gather([fa!]), 60_000, "gather");
    assertBytes(a!, "a");
    assert.equal(client.fetchPaths(), { relayed: 1, streamed: 0, mapped: 0, fellBack: 1 });
    await new Promise((r) => setImmediate(r));
    assert.ok(warnings.some((w) => /fetching it through the server/.test(w)), warnings.join("\n"));
    await noLargeFilesLeft(cluster);
  } finally {
    process.off("warning", onWarning);
    await client.close();
    await cluster.stop();
  }
});

t("`directFetch: false`: relayed as before", async () => {
  await withCluster(
    { workers: 1, cpus: 1 },
    async (_cluster, client) => {
      const [fa] = client.submit([produce("a")]);
      const [a] = await settles(client.gather([fa!]), 60_000, "gather");
      assertBytes(a!, "a");
      assert.equal(client.fetchPaths(), { relayed: 1, streamed: 0, mapped: 0, fellBack: 0 });
    },
    { directFetch: false },
  );
});

t("released while being fetched directly: the fetch still gets the right bytes, then the file goes", async () => {
  process.env.HYPERLOOM_FETCH_NO_MAP = "1";
  try {
    await withCluster({ workers: 1, cpus: 1 }, async (cluster, client) => {
      const [fa] = client.submit([produce("a")]);
      await fa!.wait();
      const fetching = client.fetch([fa!]);
      // The FETCH leaves at the end of this turn; the release waits until the data has arrived.
      await new Promise((r) => setTimeout(r, 5));
      client.release([fa!]);
      const [a] = await settles(fetching, 60_000, "fetch");
      assertBytes(a!, "a");
      assert.equal(client.fetchPaths().streamed, 1);
      await noLargeFilesLeft(cluster);
      assert.is((await client.stats()).nDataObjects, 0);
    });
  } finally {
    delete process.env.HYPERLOOM_FETCH_NO_MAP;
  }
});

t("the worker streaming a result dies mid-fetch: the fetch settles with the right bytes (recomputed elsewhere) or an error naming the task", async () => {
  process.env.HYPERLOOM_FETCH_NO_MAP = "1";
  let killed = -1;
  let cluster: LocalCluster | undefined;
  try {
    cluster = await LocalCluster.start({
      workers: 2,
      cpus: 1,
      logArgs: ["--debug"],
      onWorkerLine: (i, line) => {
        // The worker serving the direct fetch is killed as soon as the client asks it.
        if (killed < 0 && line.includes("a client's direct fetch")) {
          killed = i;
          cluster!.workerProcesses[i]!.kill("SIGKILL");
        }
      },
    });
    const client = await cluster.connect();
    try {
      const [fa] = client.submit([produce("a")]);
      try {
        const [a] = await settles(client.gather([fa!]), 90_000, "gather");
        assertBytes(a!, "a");
      } catch (e) {
        assert.match((e as Error).message, /id=0\b/);
      }
      assert.ok(killed >= 0, "no worker was killed");
      assert.is(client.fetchPaths().fellBack, 1);
    } finally {
      await client.close();
    }
  } finally {
    delete process.env.HYPERLOOM_FETCH_NO_MAP;
    await cluster?.stop();
  }
});

t.run();
