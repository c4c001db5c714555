/**
 * Gathering many futures (issue #26): our client fetches them with `fetch-many` requests (FETCH
 * with ids, our extension, offered by our server) and every future still settles with its own
 * bytes or an error naming its task. The fallback against the original server (a FETCH per
 * future) is checked by the client conformance replay.
 */
import { suite } from "uvu";
import * as assert from "uvu/assert";
import type { Socket } from "node:net";
import { LocalCluster } from "../cluster/local-cluster.js";
import { TaskFailed, tasks } from "../index.js";
import { FrameReader, frame } from "../protocol/frame.js";
import { comm, PROTOCOL_VERSION } from "../protocol/messages.js";
import { readAccessFile } from "../security/access-file.js";
import { connectSecure } from "../security/transport.js";

/** A raw client connection, authenticated with the cluster's access file (paused: attach handlers, then resume). */
function rawConnection(cluster: LocalCluster): Promise<Socket> {
  return connectSecure("server", "127.0.0.1", cluster.port, { secret: readAccessFile(cluster.accessFile!).secret });
}

type Response = ReturnType<typeof comm.ClientResponse.decode>;

const gather = suite<{ cluster: LocalCluster }>("gather");

gather.before(async (ctx) => {
  ctx.cluster = await LocalCluster.start({ workers: 2, cpus: 1 });
});
gather.after(async (ctx) => {
  await ctx.cluster.stop();
});

gather("20,000 separate futures: each gets its own bytes, fetched in batches", async ({ cluster }) => {
  const client = await cluster.connect();
  try {
    const n = 20_000;
    const roots = [];
    for (let i = 0; i < n; i++) roots.push(tasks.merge([tasks.const(`v${i}:`), tasks.const(String(i * 7))]));
    const futures = client.submit(roots);
    await client.wait(futures);
    const socket = (client as unknown as { socket: Socket }).socket;
    const before = socket.bytesWritten;
    const values = await client.gather(futures);
    const sent = socket.bytesWritten - before;
    assert.is(values.length, n);
    for (let i = 0; i < n; i++) if (values[i]!.toString() !== `v${i}:${i * 7}`) assert.unreachable(`future ${i} got ${values[i]}`);
    // A FETCH per future is a 12-15 byte frame; the batch costs ~3-4 bytes an id (plus the RELEASEs,
    // sent after, not counted by the fetch phase alone: so bound the whole gather).
    assert.ok(sent < n * (4 + 12) + 1024, `gather sent ${sent} bytes for ${n} futures`);
    assert.is((await client.stats()).nDataObjects, 0, "gather released them all");
  } finally {
    await client.close();
  }
});

gather("a batch with a failed future rejects with that task's error; the others stay fetchable", async ({ cluster }) => {
  const client = await cluster.connect(); // numbers from 0
  try {
    const ok = [];
    for (let i = 0; i < 500; i++) ok.push(tasks.const(`ok${i}`));
    const failing = tasks.run("ls /nonexistent");
    const futures = client.submit([...ok.slice(0, 250), failing, ...ok.slice(250)]);
    const e = await client.gather(futures).then(
      () => undefined,
      (err: unknown) => err,
    );
    assert.ok(e instanceof TaskFailed, String(e));
    assert.is((e as TaskFailed).taskId, 250);
    assert.is((e as TaskFailed).label, "ls");
    const good = [...futures.slice(0, 250), ...futures.slice(251)];
    const values = await client.fetch(good);
    values.forEach((v, i) => assert.is(v.toString(), `ok${i}`));
    client.release(good);
    // A released future (never fetched) cannot be fetched: the error names it.
    const [other] = client.submit([tasks.const("other")]);
    await client.wait([other!]);
    client.release([other!]);
    await client.fetch([other!]).then(
      () => assert.unreachable("fetched a released future"),
      (err: Error) => assert.match(err.message, /Fetch called on invalid future/),
    );
  } finally {
    await client.close();
  }
});

gather("on the wire: fetch-many is offered to a client that announces it; each bad id gets its own ERROR", async ({ cluster }) => {
  const frames: Response[] = [];
  const reader = new FrameReader();
  const socket = await rawConnection(cluster);
  let wake: (() => void) | undefined;
  socket.on("data", (chunk: Buffer) => {
    for (const f of reader.push(chunk)) frames.push(comm.ClientResponse.decode(f));
    wake?.();
  });
  socket.resume();
  const next = async (): Promise<Response> => {
    const deadline = Date.now() + 10_000;
    while (frames.length === 0) {
      if (Date.now() > deadline) throw new Error("no response in 10 s");
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 100);
      });
    }
    return frames.shift()!;
  };
  try {
    socket.write(frame(comm.Register.encode({ protocolVersion: PROTOCOL_VERSION, type: comm.Register.Type.REGISTER_CLIENT, features: ["fetch-many"] }).finish()));
    const dict = await next();
    assert.is(dict.type, comm.ClientResponse.Type.DICTIONARY);
    assert.equal(dict.features, ["fetch-many"]);
    socket.write(frame(comm.ClientRequest.encode({ type: comm.ClientRequest.Type.FETCH, ids: [7, 1_000_000] }).finish()));
    for (const id of [7, 1_000_000]) {
      const r = await next();
      assert.is(r.type, comm.ClientResponse.Type.ERROR);
      assert.is(r.error?.id, id);
      assert.is(Buffer.from(r.error!.errorMsg!).toString(), `Invalid id: ${id}`);
    }
  } finally {
    socket.destroy();
  }
  // A client announcing nothing (the original) is offered nothing: its DICTIONARY is the original's.
  const plain = await rawConnection(cluster);
  const r2 = new FrameReader();
  const dict2 = await new Promise<Response>((resolve) => {
    plain.on("data", (chunk: Buffer) => {
      for (const f of r2.push(chunk)) resolve(comm.ClientResponse.decode(f));
    });
    plain.resume();
    plain.write(frame(comm.Register.encode({ protocolVersion: PROTOCOL_VERSION, type: comm.Register.Type.REGISTER_CLIENT }).finish()));
  });
  plain.destroy();
  assert.equal(dict2.features, []);
});

gather.run();
