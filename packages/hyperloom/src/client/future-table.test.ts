import { test } from "uvu";
import * as assert from "uvu/assert";
import { FutureTable } from "./future-table.js";

test("future table: behaves as a Map of ids, across pages, and drops emptied pages", () => {
  const t = new FutureTable<string>();
  const m = new Map<number, string>();
  // Ids spread over several pages, some set twice, some deleted, in a fixed pseudo-random order.
  let x = 7;
  for (let k = 0; k < 20_000; k++) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    const id = x % 20_000;
    if (k % 3 === 2) assert.is(t.delete(id), m.delete(id));
    else {
      t.set(id, `v${k}`);
      m.set(id, `v${k}`);
    }
  }
  assert.is(t.size, m.size);
  for (let id = 0; id < 20_000; id++) assert.is(t.get(id), m.get(id));
  assert.equal([...t.entries()], [...m.entries()].sort((a, b) => a[0] - b[0]));
  assert.equal([...t.keys()], [...m.keys()].sort((a, b) => a - b));
  for (const id of [...m.keys()]) t.delete(id);
  assert.is(t.size, 0);
  assert.is((t as unknown as { pages: unknown[] }).pages.every((p) => p === undefined), true);
  t.set(2 ** 31 - 1, "last");
  assert.is(t.get(2 ** 31 - 1), "last");
  assert.is(t.has(2 ** 31 - 2), false);
  t.clear();
  assert.is(t.size, 0);
  assert.is(t.get(2 ** 31 - 1), undefined);
});

test.run();
