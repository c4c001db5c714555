/**
 * The allocation control protocol and CLI without a cluster manager: answers, refusals, a queue
 * whose submit command does not exist, and a malformed control connection. (Slurm itself:
 * slurm.test.ts.)
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { readAccessFile } from "../security/access-file.js";
import { connectSecure } from "../security/transport.js";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LocalCluster } from "../cluster/local-cluster.js";
import { frame } from "../protocol/frame.js";
import { alloc as pb, PROTOCOL_VERSION } from "../protocol/messages.js";
import { tasks } from "../index.js";
import type { QueueInfo } from "../allocator/queue.js";

const cli = join(__dirname, "..", "cli", "main.js");

function hyperloom(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { env }, (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr }));
  });
}

test("alloc commands: answers, refusals, a manager that is not installed, and bad control input", async () => {
  const cluster = await LocalCluster.start({ workers: 1 });
  const dir = mkdtempSync(join(tmpdir(), "hyperloom-alloc-e2e-"));
  const server = ["--server", cluster.address, "--access-file", cluster.accessFile!];
  try {
    assert.equal(await hyperloom(["alloc", "list", ...server]), { code: 0, stdout: "no allocation queues\n", stderr: "" });
    assert.equal(JSON.parse((await hyperloom(["alloc", "list", ...server, "--json"])).stdout), { queues: [] });
    // HYPERLOOM_SERVER is the default server.
    const viaEnv = await hyperloom(["alloc", "list"], { ...process.env, HYPERLOOM_SERVER: cluster.address, HYPERLOOM_ACCESS_FILE: cluster.accessFile! });
    assert.is(viaEnv.stdout, "no allocation queues\n");

    // Refused by the CLI: bad values say which.
    const badTime = await hyperloom(["alloc", "add", "slurm", ...server, "--time-limit", "soon"]);
    assert.is(badTime.code, 1);
    assert.match(badTime.stderr, "invalid duration 'soon'");
    const badManager = await hyperloom(["alloc", "add", "lsf", ...server, "--time-limit", "1h"]);
    assert.match(badManager.stderr, "unknown manager 'lsf' (slurm or pbs)");
    // Refused by the server.
    const short = await hyperloom(["alloc", "add", "slurm", ...server, "--time-limit", "30s"]);
    assert.is(short.code, 1);
    assert.match(short.stderr, "hyperloom: timeLimitSecs must be an integer of at least 60 (got 30)");

    // A PBS queue where PBS is not installed (as here): work waits, the submission fails with the reason,
    // and the queue backs off. The waiting task needs more cpus than the cluster's worker has.
    const added = await hyperloom(["alloc", "add", "pbs", ...server, "--name", "p", "--cpus", "4", "--time-limit", "1h", "--dir", dir, "--json", "--", "-q", "workq"]);
    assert.is(added.code, 0, added.stderr);
    const q = JSON.parse(added.stdout) as QueueInfo;
    assert.equal([q.name, q.manager, q.cpus, q.extraArgs, q.dir, q.serverHost, q.state], ["p", "pbs", 4, ["-q", "workq"], dir, "127.0.0.1", "active"]);
    const client = await cluster.connect();
    try {
      client.submitOne(tasks.run(["/bin/echo", "big"], [], { request: tasks.cpus(4) }));
      let info: QueueInfo | undefined;
      for (let i = 0; i < 40 && !(info && info.errors.length > 0); i++) {
        await new Promise((r) => setTimeout(r, 250));
        info = JSON.parse((await hyperloom(["alloc", "info", "p", ...server, "--json"])).stdout) as QueueInfo;
      }
      assert.ok(info && info.errors.length === 1, JSON.stringify(info));
      assert.match(info!.errors[0]!.message, /qsub/);
      assert.is(info!.state, "backing-off");
    } finally {
      await client.close();
    }
    const removed = await hyperloom(["alloc", "remove", "p", ...server, "--json"]);
    assert.is((JSON.parse(removed.stdout) as QueueInfo).state, "removed");
    const gone = await hyperloom(["alloc", "info", "p", ...server]);
    assert.is(gone.code, 1);
    assert.match(gone.stderr, "hyperloom: no allocation queue named 'p'");

    // A malformed control request closes that connection only; the server keeps serving.
    const s = await connectSecure("server", cluster.host, cluster.port, { secret: readAccessFile(cluster.accessFile!).secret });
    await new Promise<void>((resolve, reject) => {
      s.on("close", () => resolve());
      s.on("error", reject);
      s.resume();
      s.write(frame(pb.AllocRegister.encode({ protocolVersion: PROTOCOL_VERSION, type: pb.AllocRegister.Type.REGISTER_ALLOC_CONTROL }).finish()));
      s.write(frame(Buffer.from([0xff, 0xff, 0xff])));
    });
    assert.is((await hyperloom(["alloc", "list", ...server])).code, 0);
    const c2 = await cluster.connect();
    assert.is(String(await c2.submitOne(tasks.const("still serving")).gather()), "still serving");
    await c2.close();
  } finally {
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  // Nobody listening: the CLI says so.
  const none = await hyperloom(["alloc", "list", "--server", cluster.address]);
  assert.is(none.code, 1);
  assert.match(none.stderr, `hyperloom: cannot reach the server at ${cluster.address}`);
});

test.run();
