import { suite } from "uvu";
import * as assert from "uvu/assert";
import { connect } from "node:net";
import { LocalCluster } from "../cluster/local-cluster.js";
import { tasks } from "../index.js";

const robust = suite<{ cluster: LocalCluster }>("robustness");

robust.before(async (ctx) => {
  ctx.cluster = await LocalCluster.start({ workers: 1, cpus: 1 });
});
robust.after(async (ctx) => {
  await ctx.cluster.stop();
});

function sendAndAwaitClose(port: number, bytes: Buffer): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: "127.0.0.1", port }, () => s.write(bytes));
    const timer = setTimeout(() => {
      s.destroy();
      resolve(false);
    }, 5000);
    s.on("data", () => undefined);
    s.on("error", () => undefined);
    s.on("close", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

robust("a garbage frame closes that connection only; the server keeps serving", async ({ cluster }) => {
  const client = await cluster.connect();
  try {
    // A frame whose payload is not a Register message.
    const garbage = Buffer.concat([Buffer.from([5, 0, 0, 0, 0, 0, 0, 0]), Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff])]);
    assert.ok(await sendAndAwaitClose(cluster.port, garbage), "the server closes a garbage connection");
    // A length prefix announcing an absurd frame.
    const huge = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0x7f]);
    assert.ok(await sendAndAwaitClose(cluster.port, huge), "the server closes an oversized frame");
    // The existing client still works, and so does a new one.
    const r = await client.submitOne(tasks.merge([tasks.const("still "), tasks.const("alive")])).gather();
    assert.is(String(r), "still alive");
    const other = await cluster.connect();
    assert.is((await other.stats()).nWorkers, 1);
    await other.close();
  } finally {
    await client.close();
  }
});

robust.run();
