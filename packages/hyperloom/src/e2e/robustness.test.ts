import { suite } from "uvu";
import * as assert from "uvu/assert";
import { connect } from "node:net";
import { LocalCluster } from "../cluster/local-cluster.js";
import { tasks } from "../index.js";
import { readAccessFile } from "../security/access-file.js";
import { connectSecure } from "../security/transport.js";

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

/** A small deterministic generator (xorshift32), so a failure can be replayed. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}

/** Random bytes: mostly small frames with random payloads, sometimes raw noise or the handshake's magic. */
function hostile(r: () => number): Buffer {
  const kind = Math.floor(r() * 4);
  const len = Math.floor(r() * 300);
  const body = Buffer.from(Array.from({ length: len }, () => Math.floor(r() * 256)));
  if (kind === 0) return body;
  if (kind === 1) return Buffer.concat([Buffer.from("HLAUTH1\n"), body]);
  const prefix = Buffer.alloc(8);
  prefix.writeUInt32LE(kind === 2 ? len : Math.floor(r() * 2 ** 32), 0);
  return Buffer.concat([prefix, body]);
}

robust("fuzz before authentication: every hostile connection gets at most the refusal; nothing reaches the server", async ({ cluster }) => {
  const r = rng(21);
  for (let i = 0; i < 60; i++) {
    const got = await new Promise<Buffer>((resolve) => {
      const chunks: Buffer[] = [];
      const s = connect({ host: "127.0.0.1", port: cluster.port }, () => s.write(hostile(r)));
      // A connection that stays open is waiting for the rest of the handshake; end it ourselves.
      const timer = setTimeout(() => s.destroy(), 300);
      s.on("data", (d: Buffer) => chunks.push(d));
      s.on("error", () => undefined);
      s.on("close", () => {
        clearTimeout(timer);
        resolve(Buffer.concat(chunks));
      });
    });
    const text = got.toString("latin1");
    // At most the refusal, or the acceptor's challenge (magic + nonce + proof) for a peer that sent the magic.
    assert.ok(text === "" || text === "HLAUTHNO" || (text.startsWith("HLAUTH1\n") && (got.length === 72 || (got.length === 80 && text.endsWith("HLAUTHNO")))), `case ${i}: got ${got.toString("hex")}`);
  }
  const c = await cluster.connect();
  assert.is((await c.stats()).nWorkers, 1);
  await c.close();
});

robust("fuzz after authentication: hostile frames close only that connection; the server keeps serving", async ({ cluster }) => {
  const secret = readAccessFile(cluster.accessFile!).secret;
  const r = rng(2121);
  const client = await cluster.connect();
  try {
    for (let i = 0; i < 40; i++) {
      const s = await connectSecure("server", "127.0.0.1", cluster.port, { secret });
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => s.destroy(), 200);
        s.on("data", () => undefined);
        s.on("error", () => undefined);
        s.on("close", () => {
          clearTimeout(timer);
          resolve();
        });
        s.resume();
        s.write(hostile(r));
      });
    }
    const res = await client.submitOne(tasks.merge([tasks.const("fuzzed "), tasks.const("and alive")])).gather();
    assert.is(String(res), "fuzzed and alive");
  } finally {
    await client.close();
  }
});

robust.run();
