/**
 * Objects crossing between two workers on one host by their data files (`peer-link`, #26): the
 * receiver hard-links the sender's file (no byte copied) and its task sees the right bytes; a
 * refused link and a worker that does not offer the extension stream as before; nothing is left
 * in either work directory after release; a worker killed mid-transfer leaves the plan settled.
 */
import * as assert from "uvu/assert";
import { suite } from "uvu";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { LocalCluster, ResourceRequest, tasks, type Client } from "../index.js";
import { settles } from "./settles.js";

const MiB = 1024 * 1024;
const SIZE = 32 * MiB;

const t = suite("peer-link (#26)");

/** SIZE bytes of `byte`, made by a program (a spilled data file on its worker). */
const produce = (byte: string): ReturnType<typeof tasks.run> =>
  tasks.run(["/bin/sh", "-c", `head -c ${SIZE} /dev/zero | tr '\\0' '${byte}'`]);

/** Checks `data` is SIZE bytes of `a` then SIZE bytes of `b` (every 4 KiB page looked at). */
function assertMerged(data: Buffer): void {
  assert.is(data.length, 2 * SIZE);
  for (let i = 0; i < 2 * SIZE; i += 4096) {
    const want = i < SIZE ? 0x61 : 0x62;
    if (data[i] !== want) assert.unreachable(`byte ${i} is ${data[i]}, not ${want}`);
  }
  assert.is(data[2 * SIZE - 1], 0x62);
}

/** Files in the workers' data directories (`<dir>/<n>/worker-<host>-<port>/data/`). */
function dataFiles(cluster: LocalCluster): string[] {
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
      else if (inData) out.push(path);
    }
  };
  walk(cluster.workDir, false);
  return out;
}

/** Waits until the workers' data directories are empty (REMOVE reaches them after the release). */
async function noDataFilesLeft(cluster: LocalCluster): Promise<void> {
  for (let i = 0; i < 100 && dataFiles(cluster).length > 0; i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal(dataFiles(cluster), [], "data files left after release");
}

/**
 * Runs `merge(a, b)` of two SIZE-byte objects made on the two workers (one crosses to the
 * other), checks the merged bytes, releases everything and checks both data directories are
 * empty. Returns the workers' log lines.
 */
async function crossAndCheck(env: Record<string, string>, tls = false): Promise<string[]> {
  const lines: string[] = [];
  for (const [k, v] of Object.entries(env)) process.env[k] = v;
  let cluster: LocalCluster;
  try {
    cluster = await LocalCluster.start({ workers: 2, cpus: 1, tls, logArgs: ["--debug"], onWorkerLine: (_i, line) => void lines.push(line) });
  } finally {
    for (const k of Object.keys(env)) delete process.env[k];
  }
  let client: Client | undefined;
  try {
    client = await cluster.connect();
    const a = produce("a");
    const b = produce("b");
    const [fa, fb] = client.submit([a, b]);
    await client.wait([fa!, fb!]);
    const [fm] = client.submit([tasks.merge([a, b])]);
    const [m] = await settles(client.gather([fm!]), 90_000, "gather");
    assertMerged(m!);
    client.release([fa!, fb!, fm!]);
    await noDataFilesLeft(cluster);
    assert.is((await client.stats()).nDataObjects, 0);
  } finally {
    await client?.close();
    await cluster.stop();
  }
  return lines;
}

for (const tls of [false, true]) {
  t(`same host and user${tls ? ", TLS" : ""}: the object crosses as a hard link of the sender's file; right bytes; nothing left after release`, async () => {
    const lines = await crossAndCheck({}, tls);
    assert.ok(lines.some((l) => /peer-link accepted/.test(l)), "the receiver accepted peer-link");
    assert.ok(lines.some((l) => /peer-link: data id=\d+ taken from .*\/data\/\S+ \(hard link, no copy\)/.test(l)), lines.filter((l) => /peer-link/.test(l)).join("\n"));
    assert.not.ok(lines.some((l) => /streaming it|streaming \d+ object/.test(l)), "nothing fell back to the stream");
  });
}

t("several objects sent at once to a worker on the same host: those in data files cross as hard links, the small one streamed; right bytes", async () => {
  const lines: string[] = [];
  const cluster = await LocalCluster.start({ workers: 1, cpus: 1, logArgs: ["--debug"], onWorkerLine: (_i, line) => void lines.push(line) });
  let client: Client | undefined;
  try {
    client = await cluster.connect();
    const MB = 1 << 20;
    const part = (byte: string): ReturnType<typeof tasks.run> => tasks.run(["/bin/sh", "-c", `head -c ${MB} /dev/zero | tr '\\0' '${byte}'`]);
    // On the first worker: two objects in data files and a small one.
    const b1 = part("b");
    const b2 = part("c");
    const small = tasks.const("small");
    const first = client.submit([b1, b2, small]);
    await client.wait(first);
    // On a second worker (the only one with 3 cpus): three more, so the merge runs there and the
    // first worker is asked for its three objects in one go.
    await cluster.addWorker(["--cpus", "3"], 2);
    const others = ["d", "e", "f"].map((byte) => {
      const t = part(byte);
      t.resourceRequest = new ResourceRequest(3);
      return t;
    });
    const second = client.submit(others);
    await client.wait(second);
    const [fm] = client.submit([tasks.merge([...others, b1, b2, small])]);
    const [m] = await settles(client.gather([fm!]), 60_000, "gather");
    const want = Buffer.concat([..."def"].map((c) => Buffer.alloc(MB, c)).concat([Buffer.alloc(MB, "b"), Buffer.alloc(MB, "c"), Buffer.from("small")]));
    assert.ok(m!.equals(want), "the merged bytes");
    const taken = lines.filter((l) => /peer-link: data id=\d+ taken from .*\/data\/\S+ \(hard link, no copy\)/.test(l));
    assert.is(taken.length, 2, lines.filter((l) => /peer-link|data connection/.test(l)).join("\n"));
    assert.not.ok(lines.some((l) => /streaming it|streaming \d+ object/.test(l)), "nothing fell back to the stream");
    client.release([...first, ...second, fm!]);
    await noDataFilesLeft(cluster);
  } finally {
    await client?.close();
    await cluster.stop();
  }
});

t("a receiver that refuses the link (as another filesystem would): the sender streams the object; right bytes", async () => {
  const lines = await crossAndCheck({ HYPERLOOM_FAULT_REFUSE_PEER_LINK: "1" });
  assert.ok(lines.some((l) => /peer-link of data id=\d+ .* refused: .*HYPERLOOM_FAULT_REFUSE_PEER_LINK.*; streaming it/.test(l)), lines.filter((l) => /peer-link/.test(l)).join("\n"));
  assert.not.ok(lines.some((l) => /taken from/.test(l)));
});

t("workers that do not offer peer-link (as the original): the original stream, no hello, right bytes", async () => {
  const lines = await crossAndCheck({ HYPERLOOM_PEER_LINK: "0" });
  assert.not.ok(lines.some((l) => /peer-link/.test(l)), lines.filter((l) => /peer-link/.test(l)).join("\n"));
});

for (const victim of ["sender", "receiver"] as const) {
  t(`the ${victim} is killed as the link is made: the plan settles (right bytes, recomputed, or an error naming the task) and the survivor keeps nothing`, async () => {
    let killed = -1;
    const cluster: LocalCluster = await LocalCluster.start({
      workers: 2,
      cpus: 1,
      logArgs: ["--debug"],
      onWorkerLine: (i, line) => {
        if (killed >= 0) return;
        // The sender logs the receiver's acceptance; the receiver logs the link connection.
        const hit = victim === "sender" ? /peer-link accepted/.test(line) : /a peer's link connection/.test(line);
        if (hit) {
          killed = i;
          cluster.workerProcesses[i]!.kill("SIGKILL");
        }
      },
    });
    const client = await cluster.connect();
    try {
      const a = produce("a");
      const b = produce("b");
      const [fa, fb] = client.submit([a, b]);
      await client.wait([fa!, fb!]);
      const [fm] = client.submit([tasks.merge([a, b])]);
      try {
        const [m] = await settles(client.gather([fm!]), 90_000, "gather");
        assertMerged(m!);
      } catch (e) {
        assert.match((e as Error).message, /id=2\b|Worker lost|lost/);
      }
      assert.ok(killed >= 0, "no worker was killed");
      client.release([fa!, fb!, fm!]);
      // The survivor's data directory empties (the killed worker's is left as any killed
      // worker's is, for the next worker's start to find; LocalCluster.stop removes it).
      const killedDir = join(cluster.workDir, String(killed)) + "/";
      const survivorFiles = (): string[] => dataFiles(cluster).filter((f) => !f.startsWith(killedDir));
      for (let i = 0; i < 100 && survivorFiles().length > 0; i++) await new Promise((r) => setTimeout(r, 50));
      assert.equal(survivorFiles(), [], "files left on the surviving worker");
    } finally {
      await client.close();
      await cluster.stop();
    }
  });
}

t.run();
