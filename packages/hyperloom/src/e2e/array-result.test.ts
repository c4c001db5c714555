/**
 * A large array of plain data fetched by the client (W1's result shape, #26): from its worker's
 * data port and through the server's relay, every item's bytes in order, a plain array (it
 * structured-clones); a mixed array and one after it on the same connection are decoded right.
 */
import * as assert from "uvu/assert";
import { suite } from "uvu";
import { LocalCluster, tasks } from "../index.js";
import { settles } from "./settles.js";

const t = suite("array results (#26)");

/** 3,000 items of ~400 bytes: 1.2 MB, so fetched from the worker when the client may. */
const N = 3000;
const itemText = (i: number): string => `${i}:${"x".repeat(390)}`;

for (const directFetch of [true, false]) {
  t(`an array of ${N} plain items ${directFetch ? "from its worker" : "relayed"}: every item right, an array to the user`, async () => {
    const cluster = await LocalCluster.start({ workers: 2, cpus: 1 });
    try {
      const client = await cluster.connect({ directFetch });
      try {
        const items = Array.from({ length: N }, (_, i) => tasks.merge([tasks.const(`${i}:`), tasks.const("x".repeat(390))]));
        const mixed = tasks.arrayMake<Buffer | Buffer[]>([tasks.const("a"), tasks.arrayMake([tasks.const("b")]) as never]);
        const [fa, fm, fb] = client.submit([tasks.arrayMake(items), mixed, tasks.arrayMake(items.slice(0, 1500))]);
        const [a, m, b] = (await settles(client.gather([fa!, fm!, fb!] as never[]), 60_000, "gather")) as [Buffer[], unknown[], Buffer[]];
        assert.ok(Array.isArray(a));
        assert.is(a.length, N);
        for (let i = 0; i < N; i++) if (a[i]!.toString() !== itemText(i)) assert.unreachable(`item ${i} is ${a[i]!.toString().slice(0, 20)}`);
        assert.equal(a.slice(-2).map(String), [itemText(N - 2), itemText(N - 1)]);
        let k = 0;
        for (const x of a) assert.is(x.toString(), itemText(k++));
        assert.is(k, N);
        assert.is(structuredClone(a).length, N);
        assert.is(String(m[0]), "a");
        assert.equal((m[1] as Buffer[]).map(String), ["b"]);
        assert.is(b.length, 1500);
        assert.is(b[1499]!.toString(), itemText(1499));
        const paths = client.fetchPaths();
        // The 1,500 items (0.6 MB) and the mixed array come through the relay either way.
        assert.equal(paths, { relayed: directFetch ? 2 : 3, streamed: directFetch ? 1 : 0, mapped: 0, fellBack: 0 });
      } finally {
        await client.close();
      }
    } finally {
      await cluster.stop();
    }
  });
}

t.run();
