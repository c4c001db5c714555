// The worker's function-call pool (issue #26): one-cpu calls go to the threads in batches; a
// call that never ends holds up only itself, and canceling it frees its cpu.
import * as assert from "uvu/assert";
import { clusterSuite } from "./cluster-suite.js";
import { tasks } from "../index.js";
import { settles } from "./settles.js";

const t = clusterSuite("function-call pool", { workers: 1, cpus: 2 });

const str = (b: unknown): string => (b as Buffer).toString();

const forever = tasks.jsTask(function forever() {
  for (;;) {
    // busy forever: holds one cpu of the worker
  }
});
const inc = tasks.jsTask((n: number) => String(n + 1), { nDirectArgs: 1, label: "inc" });

t("calls submitted with a call that never ends all run on the other cpu", async ({ cluster }) => {
  const other = await cluster.connect();
  try {
    const [, ...calls] = other.submit([forever(), ...Array.from({ length: 300 }, (_, i) => inc(i))]);
    const values = await settles(other.gather(calls), 60_000, "the calls beside a hung one");
    assert.equal(values.map(str), Array.from({ length: 300 }, (_, i) => String(i + 1)));
  } finally {
    await other.close(); // its hung call is canceled
  }
});

t("canceled calls that never end free their cpus: their threads are terminated", async ({ cluster, client }) => {
  const other = await cluster.connect();
  other.submit([forever(), forever()]);
  // Both cpus of the only worker are now held by calls that never end ...
  await new Promise((r) => setTimeout(r, 1000));
  // ... until their client leaves: the server cancels them, the worker terminates their threads.
  await other.close();
  const values = await settles(client.gather(client.submit(Array.from({ length: 500 }, (_, i) => inc(i)))), 60_000, "calls after the cancel");
  assert.equal(values.map(str), Array.from({ length: 500 }, (_, i) => String(i + 1)));
});

t("a failing call names its task; the calls batched with it are not affected", async ({ client }) => {
  const maybe = tasks.jsTask(
    (n: number) => {
      if (n === 37) throw new Error("no 37");
      return String(n);
    },
    { nDirectArgs: 1, label: "maybe" },
  );
  const futures = client.submit(Array.from({ length: 100 }, (_, i) => maybe(i)));
  const settled = await Promise.allSettled(futures.map((f) => f.gather()));
  settled.forEach((s, i) => {
    if (i === 37) {
      assert.is(s.status, "rejected");
      const e = (s as PromiseRejectedResult).reason as Error;
      assert.match(e.message, "no 37");
      assert.match(e.message, "maybe");
    } else {
      assert.is(s.status, "fulfilled");
      assert.is(str((s as PromiseFulfilledResult<unknown>).value), String(i));
    }
  });
});

t("calls of every outcome share batches and each gets its own", async ({ client }) => {
  // Plain outcomes travel as answer records; arrays, passed-through inputs and calls that log
  // travel one by one: all of them in the same batches here.
  const kinds = tasks.jsTask(
    async (
      ctx: { wrap(v: unknown): unknown; logInfo(m: unknown): void },
      n: number,
      d: { read(): Buffer },
    ): Promise<unknown> => {
      switch (n % 7) {
        case 0:
          return `s${n}`;
        case 1:
          return new Uint8Array([n % 256, 1]);
        case 2:
          return ctx.wrap({ n });
        case 3:
          return d; // the input itself
        case 4:
          return [`a${n}`, d];
        case 5:
          ctx.logInfo(`call ${n} logs`);
          return `logged${n}`;
        default:
          await new Promise((r) => setTimeout(r, 1));
          throw new Error(`no ${n}`);
      }
    },
    { context: true, nDirectArgs: 1, label: "kinds" },
  );
  const input = tasks.const("in");
  const futures = client.submit(Array.from({ length: 140 }, (_, n) => kinds(n, input)));
  const settled = await settles(
    Promise.allSettled(futures.map((f) => f.gather())),
    60_000,
    "the calls of every kind",
  );
  settled.forEach((s, n) => {
    const v = s.status === "fulfilled" ? (s.value as unknown) : undefined;
    switch (n % 7) {
      case 0:
        return assert.is(str(v), `s${n}`);
      case 1:
        return assert.equal([...(v as Buffer)], [n % 256, 1]);
      case 2:
        return assert.equal(v, { n });
      case 3:
        return assert.is(str(v), "in");
      case 4:
        return assert.equal((v as Buffer[]).map(str), [`a${n}`, "in"]);
      case 5:
        return assert.is(str(v), `logged${n}`);
      default: {
        assert.is(s.status, "rejected", `call ${n}`);
        const e = (s as PromiseRejectedResult).reason as Error;
        assert.match(e.message, `no ${n}`);
        assert.match(e.message, "kinds");
      }
    }
  });
});

t.run();
