/**
 * The published types (dist/*.d.ts, with @internal members stripped) seen by a strict consumer:
 * `test-data/types/compiles.mts` must compile (its `@ts-expect-error` lines must be errors), and
 * `test-data/types/fails.mts` must fail on exactly its lines marked `// error`.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";

const dir = join(__dirname, "..", "..", "test-data", "types");
const tsc = require.resolve("typescript/bin/tsc");
const options = ["--noEmit", "--strict", "--module", "nodenext", "--moduleResolution", "nodenext", "--target", "es2022", "--types", "node", "--skipLibCheck"];

function check(file: string): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, [tsc, ...options, join(dir, file)], { encoding: "utf8", cwd: dir });
  return { status: r.status, out: r.stdout + r.stderr };
}

test("a consumer using jsTask, futures and the exported types compiles, and each misuse marked @ts-expect-error is an error", () => {
  const r = check("compiles.mts");
  assert.is(r.out.trim(), "");
  assert.is(r.status, 0);
});

test("a consumer with type errors fails exactly on the marked lines", () => {
  const r = check("fails.mts");
  assert.is.not(r.status, 0);
  const expected = readFileSync(join(dir, "fails.mts"), "utf8")
    .split("\n")
    .flatMap((line, i) => (/\/\/ error/.test(line) ? [i + 1] : []));
  const reported = [...new Set([...r.out.matchAll(/fails\.mts\((\d+),\d+\): error/g)].map((m) => Number(m[1])))];
  assert.equal(reported, expected, r.out);
});

test.run();
