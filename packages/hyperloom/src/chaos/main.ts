#!/usr/bin/env node
/**
 * `npm run chaos -- --minutes N --seed S [--json]`: the fault-injection suite (see harness.ts).
 * Prints a line per round (progress, on stderr), then the table (or one JSON object with
 * `--json`) and a last line `N passed, N failed` (4 checks: rounds ran, no wrong, no hung, no
 * leaked). Exits non-zero on any wrong, hung or leaked future, or when no round ran, printing
 * the seed and the failed rounds to replay (`--seed S --round R`).
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
  .option("--from-round <n>", "number of the first round (a round depends only on the seed and its number)", num("round"))
  .option("--round <n>", "replay round N of the seed: the same as --from-round N --rounds 1, unless --rounds is given (then N is repeated that many times)", num("round"))
  .option("--no-native", "no native tasks (do not build the example library)")
  .option("--tls", "encrypt every connection of the cluster (it always authenticates)")
  .option("--json", "print one JSON object instead of the table")
  .option("--verbose", "show every log line of the server and the workers (stderr)")
  .action(async (opts: { minutes: number; seed: number; rounds?: number; fromRound?: number; round?: number; native: boolean; tls?: boolean; json?: boolean; verbose?: boolean }) => {
    const lib = opts.native ? nativeLibrary() : undefined;
    if (opts.native && lib === undefined) {
      // Native tasks are part of the suite: CI never runs it silently without them.
      if (process.env.CI === "true") throw new Error("the native example library (my/count) could not be built; native tasks cannot run (use --no-native to leave them out)");
      process.stderr.write("chaos: the native example library could not be built: no native tasks in this run\n");
    }
    const replay = opts.round !== undefined;
    const rounds = replay ? (opts.rounds ?? 1) : opts.rounds;
    // A replay runs its rounds whatever they take, unless --minutes is given.
    const timed = !replay || program.getOptionValueSource("minutes") !== "default";
    const totals = await runChaos({
      durationMs: timed ? opts.minutes * 60_000 : Infinity,
      seed: Math.floor(opts.seed),
      ...(rounds !== undefined ? { maxRounds: rounds } : {}),
      ...(replay ? { firstRound: Math.floor(opts.round!), repeat: true } : {}),
      ...(opts.fromRound !== undefined && !replay ? { firstRound: Math.floor(opts.fromRound) } : {}),
      ...(lib !== undefined ? { nativeLibrary: lib } : {}),
      ...(opts.verbose ? { verbose: true } : {}),
      ...(opts.tls ? { tls: true } : {}),
      onRound: (t, r) =>
        process.stderr.write(
          `round ${r.round}: ${r.futures} futures, ${r.workerKills} worker / ${r.clientKills} client kills` +
            ` | total ok ${t.ok}, failed-as-expected ${t.failedAsExpected}, wrong ${t.wrong}, hung ${t.hung}, leaked ${t.leaked}\n` +
            r.problems.map((p) => `  ! ${p}\n`).join(""),
        ),
    });
    // One check per promise, and one that rounds ran at all (a run that did nothing never passes).
    const checks: Array<[string, boolean]> = [
      [`rounds ran (${totals.rounds} rounds, ${totals.futures} futures)`, totals.rounds > 0 && totals.futures > 0],
      [`no wrong data (${totals.wrong} wrong)`, totals.wrong === 0],
      [`no hang (${totals.hung} hung)`, totals.hung === 0],
      [`no leak (${totals.leaked} leaked rounds)`, totals.leaked === 0],
    ];
    const failed = checks.filter(([, ok]) => !ok).length;
    const bad = failed > 0;
    if (opts.json) process.stdout.write(JSON.stringify({ ...totals, native: lib !== undefined, tls: !!opts.tls, passed: !bad }) + "\n");
    else process.stdout.write(table(totals) + "\n");
    if (bad) {
      process.stdout.write(
        `chaos FAILED with seed ${totals.seed}: rerun with npm run chaos -- --minutes ${opts.minutes} --seed ${totals.seed}\n` +
          (totals.failedRounds.length > 0
            ? `failed rounds: ${totals.failedRounds.join(", ")} (replay one: npm run chaos -- --seed ${totals.seed} --round R [--rounds K])\n`
            : "") +
          totals.problems.map((p) => `  ${p}\n`).join(""),
      );
    }
    if (!opts.json) for (const [name, ok] of checks) process.stdout.write(`${ok ? "ok  " : "FAIL"} ${name}\n`);
    process.stdout.write(`${checks.length - failed} passed, ${failed} failed\n`);
    process.exit(bad ? 1 : 0);
  });

program.parseAsync(process.argv).catch((e: unknown) => {
  process.stderr.write(`chaos: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.stdout.write("0 passed, 1 failed\n");
  process.exit(1);
});
