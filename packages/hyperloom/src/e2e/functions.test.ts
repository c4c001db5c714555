import * as assert from "uvu/assert";
import { clusterSuite } from "./cluster-suite.js";
import { TaskFailed, tasks } from "../index.js";

const t = clusterSuite("function tasks", { workers: 2, cpus: 2 });

const str = (b: unknown): string => (b as Buffer).toString();
type D = { read(): Buffer; size(): number; unwrap(): unknown };

t("hello: a function over a constant", async ({ client }) => {
  const hello = tasks.jsTask(function hello(a: D) {
    return "Hello " + a.read().toString();
  });
  assert.is(str(await client.submitOne(hello(tasks.const("world"))).gather()), "Hello world");
});

t("direct arguments: repeat", async ({ client }) => {
  const repeat = tasks.jsTask((n: number, d: D) => d.read().toString().repeat(n), { nDirectArgs: 1 });
  const c = tasks.const("ABC");
  const [a, b] = client.submit([repeat(2, c), repeat(3, c)]);
  assert.is(str(await a!.gather()), "ABCABC");
  assert.is(str(await b!.gather()), "ABCABCABC");
});

t("value objects round trip and are immutable on the worker", async ({ client }) => {
  const v = tasks.jsValue({ name: "loom", list: [1, 2, 3] });
  const roundTrip = tasks.jsTask((ctx: { wrap(x: unknown): unknown }, d: D) => ctx.wrap(d.unwrap()), { context: true });
  const mutate = tasks.jsTask((d: D) => {
    (d.unwrap() as { list: number[] }).list.push(4);
    return "mutated";
  });
  const [r, m] = client.submit([roundTrip(v), mutate(v)]);
  assert.equal(await r!.gather(), { name: "loom", list: [1, 2, 3] });
  await m!.gather().then(
    () => assert.unreachable("mutation must fail"),
    (e: Error) => assert.instance(e, TaskFailed),
  );
});

t("a throwing function fails with its message and stack", async ({ client }) => {
  const bad = tasks.jsTask(function explode() {
    throw new Error("kaboom");
  });
  await client.submitOne(bad()).gather().then(
    () => assert.unreachable("should fail"),
    (e: Error) => {
      assert.match(e.message, "kaboom");
      assert.match(e.message, "explode");
    },
  );
});

t("a closure over a client variable is a clear error", async ({ client }) => {
  const secret = "client-side";
  const f = tasks.jsTask(() => secret);
  await client.submitOne(f()).gather().then(
    () => assert.unreachable("should fail"),
    (e: Error) => assert.match(e.message, "cannot use variables of the client program"),
  );
});

t("task redirection picks the bigger input", async ({ client }) => {
  const choose = tasks.jsTask(function choose(a: D, b: D) {
    const t = (globalThis as unknown as { tasks: { merge(i: unknown[]): unknown } }).tasks;
    return a.size() >= b.size() ? t.merge([a, b]) : t.merge([b, a]);
  });
  assert.is(str(await client.submitOne(choose(tasks.const("ab"), tasks.const("xyz"))).gather()), "xyzab");
});

t("a function that never ends does not block others; a crashing thread fails only its task", async ({ client }) => {
  const forever = tasks.jsTask(function forever() {
    for (;;) {
      // busy forever: occupies one thread of one worker
    }
  });
  const crash = tasks.jsTask(function crash() {
    return new Promise(() => {
      setTimeout(() => {
        throw new Error("uncaught in a timer");
      }, 0);
    });
  });
  const quick = tasks.jsTask((d: D) => d.read().toString() + "!");
  client.submit([forever()]);
  const crashed = client.submitOne(crash());
  await crashed.gather().then(
    () => assert.unreachable("should fail"),
    (e: Error) => assert.match(e.message, "uncaught in a timer"),
  );
  const results = await client.gather(client.submit([quick(tasks.const("a")), quick(tasks.const("b")), quick(tasks.const("c"))]));
  assert.equal(results.map(str), ["a!", "b!", "c!"]);
});

t("10,000 small function tasks complete", async ({ client }) => {
  const inc = tasks.jsTask((n: number) => String(n + 1), { nDirectArgs: 1 });
  const all = client.submit(Array.from({ length: 10_000 }, (_, i) => inc(i)));
  const results = await client.gather(all);
  assert.is(results.length, 10_000);
  assert.is(str(results[9_999]), "10000");
});

t.run();
