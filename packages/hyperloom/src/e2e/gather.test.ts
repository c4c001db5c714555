/**
 * Gathering many futures (issue #26): our client fetches them with `fetch-many` requests (FETCH
 * with ids, our extension, offered by our server), small results come back several per
 * `DATA_BATCH` (feature `data-batch`), and every future still settles with its own bytes or an
 * error naming its task. The fallback against the original server (a FETCH per future, a DATA
 * per FETCH) is checked by the client conformance replay and below on the wire.
 */
import { suite } from "uvu";
import * as assert from "uvu/assert";
import type { Socket } from "node:net";
import { LocalCluster } from "../cluster/local-cluster.js";
import { TaskFailed, tasks } from "../index.js";
import { FrameReader, frame } from "../protocol/frame.js";
import { comm, PROTOCOL_VERSION } from "../protocol/messages.js";
import { readAccessFile } from "../security/access-file.js";
import { encodePlan } from "../client/plan.js";
import { Symbol } from "../protocol/symbols.js";
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
    // The RELEASEs left as one `release-many` request (a RELEASE per future is 12-15 bytes).
    const all = socket.bytesWritten - before;
    assert.ok(all - sent < n * 4 + 1024, `gather released ${n} futures with ${all - sent} bytes`);
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

/**
 * On a raw connection announcing `features`: submits `n` consts, waits for them, FETCHes them
 * all in one request and reads the answers; returns each id's bytes and the responses by type.
 */
async function fetchRaw(cluster: LocalCluster, features: string[], n: number): Promise<{ offered: string[]; values: Map<number, string>; types: Map<number, number> }> {
  const socket = await rawConnection(cluster);
  const reader = new FrameReader();
  const T = comm.ClientResponse.Type;
  let dictionary: Response | undefined;
  let finished = 0;
  const values = new Map<number, string>();
  const types = new Map<number, number>();
  // The objects whose frames come next: [id, frames still to come] (DATA: one; DATA_BATCH: its table).
  const expect: Array<[number, number]> = [];
  let wake: (() => void) | undefined;
  socket.on("data", (chunk: Buffer) => {
    for (const f of reader.push(chunk)) {
      if (expect.length > 0) {
        const [id, left] = expect[0]!;
        values.set(id, (values.get(id) ?? "") + f.toString());
        if (left === 1) expect.shift();
        else expect[0] = [id, left - 1];
        continue;
      }
      const r = comm.ClientResponse.decode(f);
      types.set(r.type, (types.get(r.type) ?? 0) + 1);
      if (r.type === T.DICTIONARY) dictionary = r;
      else if (r.type === T.TASK_FINISHED) finished++;
      else if (r.type === T.DATA) expect.push([r.data!.id, Number(r.data!.nMessages)]);
      else if (r.type === T.DATA_BATCH) {
        const t = Buffer.from(r.dataBatch!);
        for (let e = 0; e < t.length; e += 12) expect.push([t.readInt32LE(e), t.readUInt32LE(e + 8)]);
      } else throw new Error(`unexpected response ${JSON.stringify(r)}`);
    }
    wake?.();
  });
  socket.resume();
  const until = async (done: () => boolean, what: string): Promise<void> => {
    const deadline = Date.now() + 20_000;
    while (!done()) {
      if (Date.now() > deadline) throw new Error(`${what}: not in 20 s`);
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 100);
      });
    }
  };
  try {
    socket.write(frame(comm.Register.encode({ protocolVersion: PROTOCOL_VERSION, type: comm.Register.Type.REGISTER_CLIENT, features }).finish()));
    await until(() => dictionary !== undefined, "DICTIONARY");
    const ids = new Map(dictionary!.symbols.map((s, i) => [s, i]));
    const roots = [];
    for (let i = 0; i < n; i++) roots.push(tasks.const(`value ${i}`));
    socket.write(encodePlan(roots, 0, { symbol: (s) => ids.get(s)!, cpusSymbol: ids.get(Symbol.RESOURCE_CPUS)!, labels: false, loadCheckpoints: false }).buf);
    await until(() => finished === n, "TASK_FINISHED");
    socket.write(frame(comm.ClientRequest.encode({ type: comm.ClientRequest.Type.FETCH, ids: roots.map((t) => t._planId) }).finish()));
    await until(() => values.size === n && expect.length === 0, "the data");
    return { offered: dictionary!.features, values, types };
  } finally {
    socket.destroy();
  }
}

gather("on the wire: data-batch sends small results several per DATA_BATCH; a client that does not announce it gets a DATA per FETCH", async ({ cluster }) => {
  const n = 3000;
  const T = comm.ClientResponse.Type;
  const batched = await fetchRaw(cluster, ["fetch-many", "data-batch"], n);
  assert.equal(batched.offered, ["fetch-many", "data-batch"]);
  for (let i = 0; i < n; i++) assert.is(batched.values.get(i), `value ${i}`);
  const nBatches = batched.types.get(T.DATA_BATCH) ?? 0;
  assert.ok(nBatches >= 1 && nBatches + (batched.types.get(T.DATA) ?? 0) < n / 2, `${nBatches} DATA_BATCH and ${batched.types.get(T.DATA) ?? 0} DATA for ${n} results`);
  const plain = await fetchRaw(cluster, ["fetch-many"], n);
  assert.equal(plain.offered, ["fetch-many"]);
  for (let i = 0; i < n; i++) assert.is(plain.values.get(i), `value ${i}`);
  assert.is(plain.types.get(T.DATA), n);
  assert.is(plain.types.get(T.DATA_BATCH), undefined);
});

gather("releasing running futures that a gather waits for fails the gather naming the task; the rest of the client works", async ({ cluster }) => {
  const client = await cluster.connect();
  try {
    const slow = tasks.run("sleep 1");
    slow.label = "slow";
    const futures = client.submit([tasks.const("quick"), slow]);
    const gathering = client.gather(futures);
    const waiting = client.wait([futures[1]!]);
    client.release([futures[1]!]);
    const [e1, e2] = await Promise.all([gathering.then(() => undefined, (e: Error) => e), waiting.then(() => undefined, (e: Error) => e)]);
    for (const e of [e1, e2]) {
      assert.ok(e instanceof Error, "the call rejected");
      assert.match(e.message, new RegExp(`Task id=${futures[1]!.taskId} \\(slow\\): released while running`));
    }
    assert.equal((await client.gather([futures[0]!]))[0]!.toString(), "quick");
    const deadline = Date.now() + 10_000;
    while ((await client.stats()).nDataObjects !== 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.is((await client.stats()).nDataObjects, 0, "the canceled task's result was released when it finished");
  } finally {
    await client.close();
  }
});

gather.run();
