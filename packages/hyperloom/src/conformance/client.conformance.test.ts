/**
 * Our TypeScript client against the original's transcripts: each scenario is written with our
 * client API; the harness plays the recorded server. It sends the recorded DICTIONARY, checks
 * every request our client sends against the recorded client's (same message; plans
 * byte-identical once our run labels are removed), and answers with the recorded responses once
 * their cause has arrived (TASK_FINISHED/TASK_FAILED after the PLAN holding the id, DATA after the
 * FETCH of the id, STATS after the matching STATS request). The API-level results must equal the
 * recorded ones.
 */
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { Client, TaskFailed, tasks } from "../index.js";
import { Conn, Differences, Listener, quiet, until } from "./wire.js";
import { SCENARIOS, decode, decodeMessage, encode, encodeMessage, loadScenario, Pool, type Scenario, type Unit, units } from "./vectors.js";
import { comm } from "../protocol/messages.js";

const test = suite("conformance: our client replays the original's transcripts");
const diffs = new Differences("client");
const OPEN_CONTENT = Buffer.from("file-content\n");

const u64 = (n: number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
};
const text = (v: unknown): unknown => (Buffer.isBuffer(v) ? v.toString("latin1") : Array.isArray(v) ? v.map(text) : v);

/** The scenarios written with our API; each returns what the program got. */
const scripts: Record<Scenario, (c: Client) => Promise<unknown>> = {
  hello: (c) => c.submitOne(tasks.merge([tasks.const("Hello "), tasks.const("world!")])).gather(),
  collective: (c) => c.gather(c.submit([tasks.const("A1"), tasks.const("B22"), tasks.const("C333")])),
  gradual: async (c) => {
    const first = c.submitOne(tasks.const("first"));
    await first.wait();
    const both = c.submitOne(tasks.merge([first, tasks.const("+second")]));
    const r = await c.gather([first, both]);
    c.release([first, both]); // already released: nothing is sent
    return r;
  },
  merge_delim: (c) => c.submitOne(tasks.merge([tasks.const("a"), tasks.const("bb"), tasks.const("ccc")], "--")).gather(),
  split_get_slice: (c) => {
    const s = tasks.split(tasks.const("l1\nl2\nl3\n"));
    return c.gather(c.submit([tasks.size(s), tasks.length(s), tasks.get(s, 1), tasks.slice(s, 1, 3)]));
  },
  array_make: (c) => c.submitOne(tasks.arrayMake([tasks.const("abc"), tasks.const("12345")])).gather(),
  open_save: async (c) => {
    const [opened] = c.submit([tasks.open("/srv/hl/vectordat/open_save/input.txt"), tasks.save(tasks.const("to-be-saved"), "/srv/hl/vectordat/open_save/saved.txt")]);
    return opened!.fetch();
  },
  open_save2: (c) =>
    c.gather(c.submit([tasks.merge([tasks.open("/srv/hl/vectordat/open_save2/input.txt")]), tasks.save(tasks.const("to-be-saved"), "/srv/hl/vectordat/open_save2/saved.txt")])),
  run_stdin: (c) => c.submitOne(tasks.run("/bin/grep Loom", [], { stdin: tasks.const("Hello\nLoom world\nBye\nLoom2\n") })).gather(),
  run_files: (c) =>
    c.submitOne(tasks.run("/bin/cat file1 file2", [[tasks.const("ONE\n"), "file1"], [tasks.const("TWO\n"), "file2"]])).gather(),
  run_outputs: (c) => c.submitOne(tasks.run(["/bin/sh", "-c", "echo FILEDATA > myout; echo STDOUT"], [], { outputs: ["myout", null] })).gather(),
  run_var: (c) => c.submitOne(tasks.run("/bin/echo $X and $X", [[tasks.const("VALUE"), "$X"]])).gather(),
  run_fail: (c) => c.submitOne(tasks.run("ls /non-existent-path")).gather().then(
    () => "no error",
    (e: unknown) => e,
  ),
  stats: async (c) => {
    const before = await c.stats();
    const f = c.submitOne(tasks.const("x"));
    await f.wait();
    const after = await c.stats();
    f.release();
    return [before, after];
  },
  release: async (c) => {
    const f = c.submitOne(tasks.const("to-release"));
    const r = await f.fetch();
    f.release();
    return [r, await c.stats()];
  },
};

const RUN_FAIL_MSG = "Program terminated with status 2\nStderr:\nls: cannot access '/non-existent-path': No such file or directory\n";

/** What the recorded Python client got (README of the vectors). */
const expected: Record<Scenario, unknown> = {
  hello: "Hello world!",
  collective: ["A1", "B22", "C333"],
  gradual: ["first", "first+second"],
  merge_delim: "a--bb--ccc",
  split_get_slice: [u64(41), u64(3), "l2\n", "l2\nl3\n"].map(text),
  array_make: ["abc", "12345"],
  open_save: OPEN_CONTENT.toString(), // ours; the original worker aborted
  open_save2: ["file-content\n", ""],
  run_stdin: "Loom world\nLoom2\n",
  run_files: "ONE\nTWO\n",
  run_outputs: ["FILEDATA\n", "STDOUT\n"],
  run_var: "VALUE and VALUE\n",
  run_fail: "<TaskFailed>",
  stats: [
    { nWorkers: 1, nDataObjects: 0 },
    { nWorkers: 1, nDataObjects: 1 },
  ],
  release: ["to-release", { nWorkers: 1, nDataObjects: 0 }],
};

/** Our request with run labels removed (a documented difference), re-encoded. */
function withoutLabels(payload: Buffer, where: string): Buffer {
  const m = decodeMessage("ClientRequest", payload) as { plan?: { tasks?: Array<{ label?: string | null }> } };
  let had = false;
  for (const t of m.plan?.tasks ?? []) {
    if (t.label !== undefined && t.label !== null && Object.prototype.hasOwnProperty.call(t, "label")) {
      delete t.label;
      had = true;
    }
  }
  if (!had) return payload;
  diffs.note("client-run-label", where);
  // Our fast encoder must agree with protobufjs on the labelled plan, so removing the field there is exact.
  const again = encodeMessage("ClientRequest", decodeMessage("ClientRequest", payload));
  if (!again.equals(payload)) throw new Error(`${where}: our plan encoding differs from protobufjs's`);
  return encodeMessage("ClientRequest", m as Record<string, unknown>);
}

async function replay(name: Scenario): Promise<void> {
  const rec = loadScenario(name);
  const server = await Listener.start();
  const problems: string[] = [];
  let client: Client | undefined;
  try {
    const clientP = Client.connect("127.0.0.1", server.port);
    const conn: Conn = await server.nth(1, "our client to connect");
    const ours = await conn.next("our client's Register");
    const decoded = decodeMessage("Register", ours) as Record<string, unknown>;
    assert.equal(decoded.features, ["dictionary-updates", "fetch-many", "session", "data-batch", "release-many", "fetch-direct"], "our client announces its features");
    delete decoded.features;
    diffs.note("register-features", name);
    const register = encodeMessage("Register", decoded);
    const recRegister = rec.find((f) => f.conn === 1 && f.msg === "Register")!.payload;
    assert.ok(register.equals(recRegister), `Register without features is byte-identical: ours ${register.toString("hex")}, recorded ${recRegister.toString("hex")}`);
    const fromServer = units(rec.filter((f) => f.conn === 1 && f.dir === "from_server"));
    conn.send(fromServer.shift()!.payload); // the recorded DICTIONARY
    client = await clientP;

    if (name === "open_save") {
      // The original worker aborted (its transcript ends at the FETCH); our server answers with
      // the file's content as loom/data, which is what this harness plays.
      fromServer.push({ name: "ClientResponse", payload: encode("ClientResponse", { type: comm.ClientResponse.Type.DATA, data: { id: 0, nMessages: 1, typeId: 19 } }), raws: [OPEN_CONTENT], seq: 1e9 });
      diffs.note("open-fetch-content", name);
    }
    // Causes of the recorded responses.
    const plans: Array<[number, number]> = [];
    const fetched = new Set<number>();
    let statsAsked = 0;
    const cause = (u: Unit, statsIndex: number): boolean => {
      const m = decode("ClientResponse", u.payload);
      const within = (id: number): boolean => plans.some(([a, b]) => id >= a && id < b);
      switch (m.type) {
        case "TASK_FINISHED":
          return within(m.id as number);
        case "TASK_FAILED":
          return within((m.error as { id: number }).id);
        case "DATA":
          return fetched.has((m.data as { id: number }).id);
        case "STATS":
          return statsIndex < statsAsked;
        default:
          return true;
      }
    };
    const unsent = [...fromServer];
    const release = (): void => {
      let statsIndex = fromServer.filter((u) => !unsent.includes(u) && decode("ClientResponse", u.payload).type === "STATS").length;
      for (let i = 0; i < unsent.length; i++) {
        const u = unsent[i]!;
        const isStats = decode("ClientResponse", u.payload).type === "STATS";
        if (cause(u, statsIndex)) {
          conn.sendFrames([u.payload, ...u.raws]);
          unsent.splice(i--, 1);
          if (isStats) statsIndex++;
        } else if (isStats) {
          break; // STATS answers go in order
        }
      }
    };

    const requests = new Pool("client -> server", units(rec.filter((f) => f.conn === 1 && f.dir === "to_server" && f.msg !== "Register")));
    conn.onFrame = (f) => {
      let ours = f;
      try {
        ours = withoutLabels(f, name);
      } catch (e) {
        problems.push((e as Error).message);
      }
      const matched = requests.take({ name: "ClientRequest", payload: ours, raws: [], seq: -1 });
      if (matched === undefined) return;
      if (!matched.payload.equals(ours)) problems.push(`not byte-identical: recorded ${matched.payload.toString("hex")}, ours ${ours.toString("hex")}`);
      const m = decode("ClientRequest", ours);
      if (m.type === "PLAN") {
        const p = m.plan as { idBase: number; tasks: unknown[] };
        plans.push([p.idBase, p.idBase + p.tasks.length]);
      } else if (m.type === "FETCH") fetched.add(m.id as number);
      else if (m.type === "STATS") statsAsked++;
      release();
    };

    let finished = false;
    const result = await Promise.race([
      scripts[name](client).finally(() => (finished = true)),
      until(() => finished || problems.length > 0 || requests.errors.length > 0, "the scenario", 5000).then(() => "<aborted>"),
    ]);
    await until(() => requests.pending.length === 0 || requests.errors.length > 0, "every recorded request").catch(() => undefined);
    await quiet(); // anything extra our client sends shows up now
    const all = [...problems, ...requests.problems(), ...unsent.map((u) => `recorded response never caused: ${decode("ClientResponse", u.payload).type}`)];
    assert.ok(all.length === 0, `${name}: our client differs from the recording:\n  ${all.join("\n  ")}`);

    if (name === "run_fail") {
      assert.instance(result, TaskFailed);
      const e = result as TaskFailed;
      const recorded = decode("ClientResponse", rec.find((f) => f.conn === 1 && f.text.startsWith("type: TASK_FAILED"))!.payload).error as { worker: string };
      assert.is(e.taskId, 0);
      assert.is(e.worker, recorded.worker);
      assert.is(e.errorMessage, RUN_FAIL_MSG);
      // The recorded Python client's str(TaskFailed). KNOWN DIVERGENCE "client-taskfailed-label":
      // ours puts the task's label in it ("Task id=0 (ls) failed: ...") and run tasks always have
      // a label, so the texts differ; the check is skipped while the divergence is listed.
      const python = `Task id=0 failed: ${RUN_FAIL_MSG}`;
      diffs.check("client-taskfailed-label", e.message === python, name, `TaskFailed text ${JSON.stringify(e.message)}, recorded ${JSON.stringify(python)}`);
    } else {
      assert.equal(text(result), expected[name]);
    }
  } finally {
    await client?.close();
    server.close();
  }
}

for (const name of SCENARIOS) {
  const title = name === "open_save" ? `${name} (deliberate difference: fetching an opened file returns its content)` : name;
  test(title, () => replay(name));
}

test("malformed frames from the server fail the client's calls cleanly (no crash, no hang)", async () => {
  const hello = loadScenario("hello");
  const dictionary = hello.find((f) => f.conn === 1 && f.dir === "from_server")!.payload;
  for (const bad of [dictionary.subarray(0, 7), Buffer.from([0xff, 0xff, 0xff])]) {
    // As the first frame (the dictionary cut short or garbage): connect rejects.
    const server = await Listener.start();
    try {
      const p = Client.connect("127.0.0.1", server.port);
      const conn = await server.nth(1, "our client");
      await conn.next("Register");
      conn.send(bad);
      await p.then(
        () => assert.unreachable("connect should fail"),
        (e: Error) => assert.ok(e instanceof Error),
      );
    } finally {
      server.close();
    }
  }
  // After the dictionary: a truncated TASK_FINISHED fails the pending call with an error.
  const server = await Listener.start();
  try {
    const p = Client.connect("127.0.0.1", server.port);
    const conn = await server.nth(1, "our client");
    await conn.next("Register");
    conn.send(dictionary);
    const client = await p;
    const f = client.submitOne(tasks.const("x"));
    await conn.next("PLAN");
    conn.send(Buffer.from([0x08, 0x02, 0x38])); // TASK_FINISHED with its id cut off
    await f.wait().then(
      () => assert.unreachable("wait should fail"),
      (e: Error) => assert.ok(/closed|invalid|index|wire|truncat|malformed/i.test(e.message), e.message),
    );
    await client.close();
  } finally {
    server.close();
  }
});

test.after(() => diffs.print());
test.run();
