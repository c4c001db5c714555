#!/usr/bin/env node
/**
 * `npm run chaos -- --minutes N --seed S [--json]`: the fault-injection suite (see harness.ts).
 * Prints a line per round (progress, on stderr), then the table (or one JSON object with
 * `--json`) and a last line `N passed, N failed` (1 check: no wrong, hung or leaked). Exits
 * non-zero on any wrong, hung or leaked future, printing the seed to reproduce it.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { Command, InvalidArgumentError } from "commander";
import { runChaos, type ChaosTotals } from "./harness.js";

function num(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`Invalid ${name}`);
    return n;
  };
}

/** Builds the example native library (`my/count`) when this is a source checkout with cargo. */
function nativeLibrary(): string | undefined {
  const root = resolve(__dirname, "..", "..", "..", "..");
  if (!existsSync(join(root, "crates", "example-count"))) return undefined;
  try {
    execFileSync("cargo", ["build", "-q", "-p", "hyperloom-example-count"], { cwd: root, stdio: ["ignore", "ignore", "inherit"] });
  } catch {
    return undefined;
  }
  const lib = join(process.env.CARGO_TARGET_DIR ?? join(root, "target"), "debug", "libhyperloom_example_count.so");
  return existsSync(lib) ? lib : undefined;
}

function table(t: ChaosTotals): string {
  const rows: Array<[string, number | string]> = [
    ["seed", t.seed],
    ["rounds", t.rounds],
    ["worker kills", t.workerKills],
    ["client kills", t.clientKills],
    ["futures", t.futures],
    ["ok", t.ok],
    ["failed as expected", t.failedAsExpected],
    ["wrong", t.wrong],
    ["hung", t.hung],
    ["leaked (rounds)", t.leaked],
    ["seconds", (t.elapsedMs / 1000).toFixed(1)],
  ];
  return rows.map(([k, v]) => `${k.padEnd(20)} ${v}`).join("\n");
}

const program = new Command("chaos")
  .description("fault-injection suite: random plans on a local cluster while workers and clients are killed")
  .option("--minutes <n>", "run rounds for this long", num("minutes"), 1)
  .option("--seed <n>", "seed of the random choices", num("seed"), Date.now() % 1_000_000)
  .option("--rounds <n>", "at most this many rounds", num("rounds"))
  .option("--no-native", "no native tasks (do not build the example library)")
  .option("--json", "print one JSON object instead of the table")
  .action(async (opts: { minutes: number; seed: number; rounds?: number; native: boolean; json?: boolean }) => {
    const lib = opts.native ? nativeLibrary() : undefined;
    const totals = await runChaos({
      durationMs: opts.minutes * 60_000,
      seed: Math.floor(opts.seed),
      ...(opts.rounds !== undefined ? { maxRounds: opts.rounds } : {}),
      ...(lib !== undefined ? { nativeLibrary: lib } : {}),
      onRound: (t, r) =>
        process.stderr.write(
          `round ${r.round}: ${r.futures} futures, ${r.workerKills} worker / ${r.clientKills} client kills` +
            ` | total ok ${t.ok}, failed-as-expected ${t.failedAsExpected}, wrong ${t.wrong}, hung ${t.hung}, leaked ${t.leaked}\n` +
            r.problems.map((p) => `  ! ${p}\n`).join(""),
        ),
    });
    const bad = totals.wrong + totals.hung + totals.leaked > 0;
    if (opts.json) process.stdout.write(JSON.stringify({ ...totals, native: lib !== undefined, passed: !bad }) + "\n");
    else process.stdout.write(table(totals) + "\n");
    if (bad) {
      process.stdout.write(
        `chaos FAILED with seed ${totals.seed}: rerun with npm run chaos -- --minutes ${opts.minutes} --seed ${totals.seed}\n` +
          totals.problems.map((p) => `  ${p}\n`).join(""),
      );
    }
    process.stdout.write(bad ? "0 passed, 1 failed\n" : "1 passed, 0 failed\n");
    process.exit(bad ? 1 : 0);
  });

program.parseAsync(process.argv).catch((e: unknown) => {
  process.stderr.write(`chaos: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.stdout.write("0 passed, 1 failed\n");
  process.exit(1);
});
