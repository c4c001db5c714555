/**
 * Our server against the original's transcripts: the harness plays the recorded client
 * (connection 1) and the recorded worker (connection 0 and its data connection), as a reactive
 * worker that answers each command our server sends with the recorded response for that id.
 * Every frame our server sends must be equivalent to a recorded one on the same connection
 * (see vectors.ts), nothing may be missing and nothing extra.
 */
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { comm } from "../protocol/messages.js";
import { Conn, Differences, OUR_EXTRA_SYMBOLS, Listener, Proc, quiet, startServerProcess, until } from "./wire.js";
import { OUR_SERVER_FEATURES, SCENARIOS, decode, decodeMessage, encode, encodeMessage, loadScenario, Pool, rawCount, type Scenario, type Unit, units } from "./vectors.js";

const test = suite("conformance: our server replays the original's transcripts");
const diffs = new Differences("server");
const OPEN_CONTENT = Buffer.from("file-content\n");

/** Types the conformance check needs from the transcript, indexed by id. */
function recordedWorkerSide(name: Scenario) {
  const rec = loadScenario(name);
  const responses = new Map<number, Buffer>();
  for (const f of rec) {
    if (f.conn === 0 && f.dir === "to_server" && f.msg === "WorkerResponse") responses.set(decode("WorkerResponse", f.payload).id as number, f.payload);
  }
  const streams = new Map<number, Unit>();
  for (const u of units(rec.filter((f) => f.conn === 2 && f.msg !== "Announce"))) streams.set(decode("DataHeader", u.payload).id as number, u);
  return { rec, responses, streams };
}

/**
 * A client response with our extensions removed (README #21, #22): TASK_FAILED's
 * `ClientResponse.id` and `Error.label`, ERROR's `error.id`. Notes what it removed.
 */
function withoutExtensions(payload: Buffer, where: string): Buffer {
  const m = decodeMessage("ClientResponse", payload) as { type?: number; id?: number; error?: Record<string, unknown> };
  const has = (o: object | undefined, k: string): boolean => o !== undefined && Object.prototype.hasOwnProperty.call(o, k);
  if (m.type === comm.ClientResponse.Type.TASK_FAILED && (has(m, "id") || has(m.error, "label"))) {
    delete m.id;
    if (m.error) delete m.error.label;
    diffs.note("task-failed-held-id", where);
    return encodeMessage("ClientResponse", m as Record<string, unknown>);
  }
  if (m.type === comm.ClientResponse.Type.ERROR && has(m.error, "id")) {
    delete m.error!.id;
    diffs.note("error-task-id", where);
    return encodeMessage("ClientResponse", m as Record<string, unknown>);
  }
  return payload;
}

async function replay(name: Scenario): Promise<void> {
  const { rec, responses, streams } = recordedWorkerSide(name);
  const server = await startServerProcess();
  const workerData = await Listener.start(); // the recorded worker's data port (nobody connects: one worker)
  const conns: Conn[] = [];
  const problems: string[] = [];
  try {
    const clientExpected = units(rec.filter((f) => f.conn === 1 && f.dir === "from_server"));
    if (name === "open_save") {
      // The original worker aborted on SEND of the opened file (its transcript ends there); ours
      // sends the content as loom/data, which the server relays as any object.
      const id = 0;
      const header = encode("DataHeader", { id, nMessages: 1, typeId: 19 });
      streams.set(id, { name: "DataHeader", payload: header, raws: [OPEN_CONTENT], seq: -1 });
      clientExpected.push({
        name: "ClientResponse",
        payload: encode("ClientResponse", { type: comm.ClientResponse.Type.DATA, data: { id, nMessages: 1, typeId: 19 } }),
        raws: [OPEN_CONTENT],
        seq: 1e9,
        note: "open-fetch-content",
      });
      diffs.note("open-fetch-content", name);
    }
    const workerPool = new Pool("worker connection (conn 0)", units(rec.filter((f) => f.conn === 0 && f.dir === "from_server")));
    const clientPool = new Pool("client connection (conn 1)", clientExpected);
    const failed = (): boolean => problems.length > 0 || workerPool.errors.length > 0 || clientPool.errors.length > 0;

    // The recorded worker: its Register, with its data port replaced by ours.
    const worker = await Conn.open(server.port);
    conns.push(worker);
    const reg = decodeMessage("Register", rec.find((f) => f.conn === 0 && f.msg === "Register")!.payload);
    reg.port = workerData.port;
    worker.send(encodeMessage("Register", reg));

    let dataConn: Promise<Conn> | undefined;
    let dataChain = Promise.resolve();
    const announce = decodeMessage("Announce", rec.find((f) => f.msg === "Announce")?.payload ?? encode("Announce", { port: 1 }));
    announce.port = workerData.port;
    worker.onFrame = (f) => {
      workerPool.take({ name: "WorkerCommand", payload: f, raws: [], seq: -1 });
      let cmd;
      try {
        cmd = decode("WorkerCommand", f);
      } catch {
        return;
      }
      if (cmd.type === "TASK") {
        const r = responses.get(cmd.id as number);
        if (r === undefined) problems.push(`no recorded response for TASK ${cmd.id}`);
        else worker.send(r);
      } else if (cmd.type === "SEND") {
        const m = /^!:(\d+)$/.exec(cmd.address as string);
        if (!m || Number(m[1]) !== server.dataPort) {
          problems.push(`SEND address ${cmd.address}: expected "!:${server.dataPort}" (the server's data port)`);
          return;
        }
        const stream = streams.get(cmd.id as number);
        if (stream === undefined) {
          problems.push(`no recorded data stream for SEND ${cmd.id}`);
          return;
        }
        // One data connection, reused (as recorded): Announce once, then header + frames per object.
        dataChain = dataChain.then(async () => {
          if (dataConn === undefined) {
            dataConn = Conn.open(server.dataPort);
            const c = await dataConn;
            conns.push(c);
            c.send(encodeMessage("Announce", announce));
          }
          (await dataConn).sendFrames([stream.payload, ...stream.raws]);
        });
      }
    };
    await until(() => workerPool.doneBefore(2) || failed(), "the worker's dictionary");

    // The recorded client.
    const client = await Conn.open(server.port);
    conns.push(client);
    client.send(rec.find((f) => f.conn === 1 && f.msg === "Register")!.payload);
    let cur: Unit | undefined;
    let need = 0;
    client.onFrame = (f) => {
      if (cur !== undefined) {
        cur.raws.push(f);
        if (--need === 0) {
          clientPool.take(cur);
          cur = undefined;
        }
        return;
      }
      const u: Unit = { name: "ClientResponse", payload: withoutExtensions(f, name), raws: [], seq: -1 };
      try {
        const msg = decode("ClientResponse", f);
        if (msg.type === "TASK_FAILED") {
          // Stronger than "some port": the failure names the worker's registered data port.
          const w = (msg.error as { worker: string }).worker;
          if (w !== `127.0.0.1:${workerData.port}`) problems.push(`TASK_FAILED worker "${w}", expected "127.0.0.1:${workerData.port}"`);
        }
        need = rawCount("ClientResponse", f);
      } catch {
        need = 0;
      }
      if (need > 0) cur = u;
      else clientPool.take(u);
    };
    const requests = rec.filter((f) => f.conn === 1 && f.dir === "to_server" && f.msg !== "Register");
    for (const f of requests) {
      // Cause and effect: the recorded client sent this after what it had received before it.
      await until(() => clientPool.doneBefore(f.seq) || failed(), `the client frames recorded before seq ${f.seq}`);
      if (failed()) break;
      client.send(f.payload);
    }
    await until(() => (workerPool.pending.length === 0 && clientPool.pending.length === 0) || failed(), "every recorded frame").catch(() => undefined);
    await quiet(); // anything extra our server sends shows up now
    const all = [...problems, ...workerPool.problems(), ...clientPool.problems()];
    assert.ok(all.length === 0, `${name}: our server differs from the recording:\n  ${all.join("\n  ")}\n  server log:\n${server.proc.log()}`);
    assert.ok(server.proc.alive, "the server is still running");
    const allExtras = [...workerPool.dictionaryExtras, ...clientPool.dictionaryExtras];
    const features = [...new Set(allExtras.filter((x) => x.startsWith("feature:")))];
    const extras = allExtras.filter((x) => !x.startsWith("feature:"));
    if (extras.length > 0) {
      assert.equal([...new Set(extras)], OUR_EXTRA_SYMBOLS, "the only symbols beyond the recorded dictionary");
      diffs.note("dictionary-js-symbols", "worker and client DICTIONARY");
    }
    if (features.length > 0) {
      assert.equal(features, OUR_SERVER_FEATURES.map((f) => `feature:${f}`), "the server features a worker's DICTIONARY lists");
      diffs.note("worker-dictionary-features", "worker DICTIONARY");
    }
  } finally {
    for (const c of conns) c.close();
    workerData.close();
    await server.proc.stop();
  }
}

for (const name of SCENARIOS) {
  const title = name === "open_save" ? `${name} (deliberate difference: fetching an opened file returns its content)` : name;
  test(title, () => replay(name));
}

// ---- malformed and truncated transcript frames ----------------------------------------------

const hello = loadScenario("hello");
const workerRegister = hello.find((f) => f.msg === "Register" && f.peer === "worker")!.payload;
const clientRegister = hello.find((f) => f.msg === "Register" && f.peer === "client")!.payload;
const plan = hello.find((f) => f.msg === "ClientRequest")!.payload;
const header = hello.find((f) => f.msg === "DataHeader")!.payload;
const announceFrame = hello.find((f) => f.msg === "Announce")!.payload;

/** Sends bytes on a fresh connection after `prelude` frames; expects the server to close it and log why. */
async function expectClose(server: { proc: Proc }, port: number, prelude: Buffer[], bytes: Buffer, what: string): Promise<void> {
  const c = await Conn.open(port);
  try {
    if (prelude.length) c.sendFrames(prelude);
    const logFrom = server.proc.lines.length;
    c.socket.write(bytes);
    await until(() => c.closed, `the server to close the connection after ${what}`, 3000);
    await until(() => server.proc.lines.length > logFrom, `a log line about ${what}`, 3000);
    const reason = server.proc.lines.slice(logFrom).join(" | ");
    assert.ok(/clos|invalid|malformed|decode|error|frame|protocol/i.test(reason), `${what}: the log gives a reason (got: ${reason})`);
  } finally {
    c.close();
  }
}

/** A new client still registers and gets the dictionary. */
async function stillServes(port: number): Promise<void> {
  const c = await Conn.open(port);
  try {
    c.send(clientRegister);
    const d = decode("ClientResponse", await c.next("the dictionary"));
    assert.is(d.type, "DICTIONARY");
  } finally {
    c.close();
  }
}

function lengthPrefixed(payload: Buffer, announced = payload.length): Buffer {
  const h = Buffer.alloc(8);
  h.writeBigUInt64LE(BigInt(announced));
  return Buffer.concat([h, payload]);
}

test("malformed frames on the main and data ports close that connection with a logged reason; the server keeps serving", async () => {
  const server = await startServerProcess();
  try {
    // Main port, first frame: the recorded worker Register cut short (a truncated protobuf).
    await expectClose(server, server.port, [], lengthPrefixed(workerRegister.subarray(0, 20)), "a truncated Register");
    await stillServes(server.port);
    // Main port, first frame: garbage.
    await expectClose(server, server.port, [], lengthPrefixed(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff])), "a garbage Register");
    await stillServes(server.port);
    // Main port, a registered client sends the recorded PLAN cut in half.
    await expectClose(server, server.port, [clientRegister], lengthPrefixed(plan.subarray(0, plan.length >> 1)), "a truncated PLAN");
    await stillServes(server.port);
    // Main port, a registered worker sends a truncated WorkerResponse.
    await expectClose(server, server.port, [workerRegister], lengthPrefixed(Buffer.from([0x08, 0x01, 0x10])), "a truncated FINISHED");
    await stillServes(server.port);
    // Data port: the recorded Announce, then the recorded DataHeader cut short.
    await expectClose(server, server.dataPort, [announceFrame], lengthPrefixed(header.subarray(0, 3)), "a truncated DataHeader");
    // Data port: an absurd length prefix.
    await expectClose(server, server.dataPort, [announceFrame], lengthPrefixed(Buffer.alloc(0), 2 ** 40), "an oversized control frame");
    // Data port: a DataHeader missing its required n_messages and type_id (the recorded header's
    // first field only) is malformed, as the original's protobuf says: the connection closes.
    {
      const c = await Conn.open(server.dataPort);
      c.sendFrames([announceFrame, header.subarray(0, 2)]);
      await until(() => c.closed, "", 2000).catch(() => undefined);
      assert.ok(c.closed, `DataHeader ${header.subarray(0, 2).toString("hex")} (id only) did not close the connection`);
      c.close();
    }
    // A frame that ends early (the peer goes away mid-frame): no crash either.
    const c = await Conn.open(server.port);
    c.socket.end(lengthPrefixed(workerRegister.subarray(0, 10), workerRegister.length));
    await c.closedP;
    await stillServes(server.port);
    // The data port still accepts a connection.
    const d = await Conn.open(server.dataPort);
    d.send(announceFrame);
    d.close();
    await stillServes(server.port);
    assert.ok(server.proc.alive, "the server is still running");
  } finally {
    await server.proc.stop();
  }
});

test.after(() => diffs.print());
test.run();
