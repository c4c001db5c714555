/**
 * Our worker against the original's transcripts: the harness plays the recorded server. It
 * accepts our worker's Register, sends the recorded DICTIONARY, then the recorded TASK, SEND and
 * REMOVE commands (each once the worker's responses recorded before it have arrived), with SEND
 * pointed at a data port of the harness. Our worker's responses must equal the recorded ones
 * (FINISHED with the recorded size and length, FAILED with the recorded text), and each SEND must
 * produce, on one data connection, the recorded Announce, DataHeader and raw frames.
 */
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Conn, Differences, Listener, quiet, startWorkerProcess, until, type Proc } from "./wire.js";
import { RECORDED_SYMBOLS, SCENARIOS, decode, decodeMessage, encode, encodeMessage, loadScenario, Pool, rawCount, type Scenario, type Unit, units } from "./vectors.js";

const test = suite("conformance: our worker replays the original's transcripts");
const diffs = new Differences("worker");
const OPEN_CONTENT = "file-content\n";
const RECORDED_PATH = "/srv/hl/vectordat/";

/** Starts our worker against a harness server; returns the harness side once it has registered. */
async function startAgainstHarness(wdir: string) {
  const dataConns: Conn[] = [];
  const data = await Listener.start((c) => dataConns.push(c));
  const main = await Listener.start();
  const proc = startWorkerProcess(main.port, wdir);
  try {
    const conn = await main.nth(1, "our worker to connect", 10000);
    const register = decode("Register", await conn.next("our worker's Register", 10000));
    return { main, data, dataConns, proc, conn, register };
  } catch (e) {
    await proc.stop();
    main.close();
    data.close();
    throw e;
  }
}

test("Register: protocol 2, a worker, the recorded task and data types in order (ours add the js types)", async () => {
  const wdir = mkdtempSync(join(tmpdir(), "hl-conformance-"));
  const h = await startAgainstHarness(wdir);
  try {
    const rec = decode("Register", loadScenario("hello")[0]!.payload);
    const r = h.register;
    assert.is(r.protocolVersion, 2);
    assert.is(r.type, "REGISTER_WORKER");
    assert.is(r.cpus, 2);
    assert.ok(typeof r.port === "number" && r.port > 0, "a data port");
    const tasks = rec.taskTypes as string[];
    const data = rec.dataTypes as string[];
    assert.equal((r.taskTypes as string[]).slice(0, tasks.length), tasks, "the recorded task types are a prefix of ours, in order");
    assert.equal((r.dataTypes as string[]).slice(0, data.length), data, "the recorded data types are a prefix of ours, in order");
    assert.equal((r.taskTypes as string[]).slice(tasks.length), ["loom/js/call", "loom/js/value"]);
    assert.equal((r.dataTypes as string[]).slice(data.length), ["loom/js/obj"]);
    diffs.note("worker-register-js-types", "Register");
    assert.equal(r.features, ["cancel", "keep-data"], "our worker announces CANCEL support and keeping its data across reconnects (README #18, #19)");
    diffs.note("register-features", "Register");
    // Every symbol we register is one our server's dictionary has; the recorded ones keep their ids.
    for (const s of tasks) assert.ok(RECORDED_SYMBOLS.includes(s));
    // Once registered (the dictionary received), the server connection closing ends the worker
    // cleanly (spec 5.1 step 4).
    h.conn.send(loadScenario("hello").find((f) => f.conn === 0 && f.dir === "from_server")!.payload);
    h.conn.close();
    await h.proc.exited;
    assert.equal(h.proc.exit, { code: 0, signal: null });
  } finally {
    await h.proc.stop();
    h.main.close();
    h.data.close();
    rmSync(wdir, { recursive: true, force: true });
  }
});

async function replay(name: Scenario): Promise<void> {
  const rec = loadScenario(name);
  const wdir = mkdtempSync(join(tmpdir(), "hl-conformance-"));
  // Files of the open_save* scenarios: the recorded paths, moved under our temp dir.
  const files = join(wdir, "vectordat");
  for (const s of ["open_save", "open_save2"]) {
    mkdirSync(join(files, s), { recursive: true });
    writeFileSync(join(files, s, "input.txt"), OPEN_CONTENT);
  }
  const h = await startAgainstHarness(wdir);
  const problems: string[] = [];
  try {
    const responses = new Pool("worker -> server (conn 0)", units(rec.filter((f) => f.conn === 0 && f.dir === "to_server" && f.msg !== "Register")));
    const expectedData = units(rec.filter((f) => f.conn === 2 && f.msg !== "Announce"));
    if (name === "open_save") {
      // The original worker aborted here (its transcript ends at SEND); ours sends the file's content as loom/data.
      expectedData.push({ name: "DataHeader", payload: encode("DataHeader", { id: 0, nMessages: 1, typeId: 19 }), raws: [Buffer.from(OPEN_CONTENT)], seq: 1e9, note: "open-fetch-content" });
      diffs.note("open-fetch-content", name);
    }
    const streams = new Pool("worker data connection", expectedData);
    const failed = (): boolean => problems.length > 0 || responses.errors.length > 0 || streams.errors.length > 0;

    h.conn.onFrame = (f) => void responses.take({ name: "WorkerResponse", payload: f, raws: [], seq: -1 });
    const announces: number[] = [];
    const watch = (c: Conn): void => {
      let announced = false;
      let cur: Unit | undefined;
      let need = 0;
      c.onFrame = (f) => {
        if (!announced) {
          announced = true;
          try {
            announces.push(decode("Announce", f).port as number);
          } catch (e) {
            problems.push(`data connection: first frame is not an Announce (${(e as Error).message})`);
          }
          return;
        }
        if (cur !== undefined) {
          cur.raws.push(f);
          if (--need === 0) {
            streams.take(cur);
            cur = undefined;
          }
          return;
        }
        const u: Unit = { name: "DataHeader", payload: f, raws: [], seq: -1 };
        try {
          need = rawCount("DataHeader", f);
        } catch {
          need = 0;
        }
        if (need > 0) cur = u;
        else streams.take(u);
      };
    };
    let watched = 0;
    const watchNew = (): void => {
      while (watched < h.dataConns.length) watch(h.dataConns[watched++]!);
    };

    const commands = rec.filter((f) => f.conn === 0 && f.dir === "from_server");
    for (const f of commands) {
      await until(() => (watchNew(), (responses.doneBefore(f.seq) && streams.doneBefore(f.seq)) || failed()), `our worker's frames recorded before seq ${f.seq}`);
      if (failed()) break;
      const cmd = decodeMessage("WorkerCommand", f.payload);
      let payload = f.payload;
      if (cmd.address !== undefined && cmd.address !== null && cmd.address !== "") {
        cmd.address = `!:${h.data.port}`;
        payload = encodeMessage("WorkerCommand", cmd);
      } else if (cmd.taskConfig instanceof Uint8Array && Buffer.from(cmd.taskConfig).includes(RECORDED_PATH)) {
        cmd.taskConfig = Buffer.from(Buffer.from(cmd.taskConfig).toString("latin1").replace(RECORDED_PATH, files + "/"), "latin1");
        payload = encodeMessage("WorkerCommand", cmd);
      }
      h.conn.send(payload);
    }
    await until(() => (watchNew(), (responses.pending.length === 0 && streams.pending.length === 0) || failed()), "every recorded frame").catch(() => undefined);
    await quiet();
    watchNew();
    const all = [...problems, ...responses.problems(), ...streams.problems()];
    assert.ok(all.length === 0, `${name}: our worker differs from the recording:\n  ${all.join("\n  ")}\n  worker log:\n${h.proc.log()}`);
    // One data connection to the server's data port, reused for every SEND, announcing our data port.
    if (expectedData.length > 0) {
      assert.equal(announces, [h.register.port], "one data connection, whose Announce carries the worker's data port");
    }
    if (name.startsWith("open_save")) assert.is(readFileSync(join(files, name, "saved.txt"), "utf8"), "to-be-saved");
    assert.ok(h.proc.alive, "the worker is still running");
  } finally {
    await h.proc.stop();
    h.main.close();
    h.data.close();
    rmSync(wdir, { recursive: true, force: true });
  }
}

for (const name of SCENARIOS) {
  const title = name === "open_save" ? `${name} (deliberate difference: fetching an opened file returns its content)` : name;
  test(title, () => replay(name));
}

// ---- malformed and truncated transcript frames ----------------------------------------------

function lengthPrefixed(payload: Buffer, announced = payload.length): Buffer {
  const h = Buffer.alloc(8);
  h.writeBigUInt64LE(BigInt(announced));
  return Buffer.concat([h, payload]);
}

/** Sends the recorded hello dictionary and const TASK; expects the recorded FINISHED. */
async function stillComputes(conn: Conn, proc: Proc): Promise<void> {
  const hello = loadScenario("hello");
  const finished = hello.find((f) => f.msg === "WorkerResponse")!.payload;
  conn.send(hello.find((f) => f.msg === "WorkerCommand" && f.conn === 0 && f.seq === 5)!.payload);
  const r = await conn.next("FINISHED of a TASK sent after the malformed frame");
  assert.ok(r.equals(finished), `FINISHED equals the recording\n${proc.log()}`);
}

test("malformed frames: on the data port a clean close with a logged reason (the worker keeps working); on the server connection a clean exit", async () => {
  const wdir = mkdtempSync(join(tmpdir(), "hl-conformance-"));
  const hello = loadScenario("hello");
  const dictionary = hello.find((f) => f.conn === 0 && f.dir === "from_server")!.payload;
  const announce = hello.find((f) => f.msg === "Announce")!.payload;
  const header = hello.find((f) => f.msg === "DataHeader")!.payload;
  let h = await startAgainstHarness(wdir);
  try {
    h.conn.send(dictionary);
    const port = h.register.port as number;
    // Data port: the recorded Announce, then the recorded DataHeader cut short.
    for (const [what, bytes] of [
      ["a truncated DataHeader", Buffer.concat([lengthPrefixed(announce), lengthPrefixed(header.subarray(0, 3))])],
      ["a truncated Announce", lengthPrefixed(announce.subarray(0, 1))],
      ["an oversized frame", Buffer.concat([lengthPrefixed(announce), lengthPrefixed(Buffer.alloc(0), 2 ** 40)])],
    ] as const) {
      const from = h.proc.lines.length;
      const c = await Conn.open(port);
      c.socket.write(bytes);
      await until(() => c.closed, `our worker to close the data connection after ${what}`, 3000);
      await until(() => h.proc.lines.length > from, `a log line about ${what}`, 3000);
      assert.ok(h.proc.alive, `the worker survives ${what}`);
    }
    // A frame cut by the peer going away.
    const c = await Conn.open(port);
    c.socket.end(lengthPrefixed(announce.subarray(0, 1), 100));
    await c.closedP;
    await stillComputes(h.conn, h.proc);

    // Server connection: the recorded TASK cut short. The worker cannot continue without its
    // server: it logs why and exits with status 0 (never a crash).
    const from = h.proc.lines.length;
    const task = hello.find((f) => f.msg === "WorkerCommand" && f.seq === 6)!.payload;
    h.conn.socket.write(lengthPrefixed(task.subarray(0, 5)));
    await h.proc.exited;
    assert.equal(h.proc.exit, { code: 0, signal: null }, `a clean exit\n${h.proc.log()}`);
    const log = h.proc.lines.slice(from).join(" | ");
    assert.ok(/malformed|invalid|decode|WorkerCommand/i.test(log), `the reason is logged: ${log}`);
    h.main.close();
    h.data.close();

    // Server connection: garbage right after the Register, in place of the dictionary. The peer is
    // not a HyperLoom server: the worker says so in one line and exits with status 1 (a failed start).
    h = await startAgainstHarness(wdir);
    h.conn.socket.write(lengthPrefixed(Buffer.from([0xff, 0xff, 0xff, 0xff])));
    await h.proc.exited;
    assert.equal(h.proc.exit, { code: 1, signal: null }, `a failed start\n${h.proc.log()}`);
    assert.match(h.proc.log(), `127.0.0.1:${h.main.port} is not a HyperLoom server — is 'hyperloom server' running there?`);
  } finally {
    await h.proc.stop();
    h.main.close();
    h.data.close();
    rmSync(wdir, { recursive: true, force: true });
  }
});

test.after(() => diffs.print());
test.run();
