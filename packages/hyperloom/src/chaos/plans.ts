/**
 * Random plans for the fault-injection suite, each task paired with the bytes it must produce,
 * computed here independently of the cluster. Deterministic from the random source.
 */
import { Task } from "../client/task.js";
import * as tasks from "../client/tasks.js";

/** A deterministic random source (mulberry32). */
export class Random {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [a, b]. */
  int(a: number, b: number): number {
    return a + Math.floor(this.next() * (b - a + 1));
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  /** One of `items`. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)]!;
  }
}

/** A task and the bytes it must produce. */
export interface Expected {
  task: Task;
  bytes: Buffer;
}

/** Kinds of task a plan may contain. */
export type Kind = "const" | "merge" | "run" | "shell" | "function" | "native" | "array-get";

/** Reverses its input's bytes (a function task; travels as source text). */
const reverse = tasks.jsTask(function reverse(a: { read(): Buffer }) {
  return Buffer.from(a.read()).reverse();
});

const LETTERS = "abcdefghij\n";

function randomBytes(rng: Random, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  // Runs of one letter keep generation cheap for large objects.
  let i = 0;
  while (i < n) {
    const c = LETTERS.charCodeAt(rng.int(0, LETTERS.length - 1));
    const run = Math.min(n - i, rng.int(1, 4096));
    b.fill(c, i, i + run);
    i += run;
  }
  return b;
}

/** Options of {@link randomExpected}. */
export interface PlanOptions {
  /** Whether the workers have the native `my/count` task. */
  native: boolean;
}

/**
 * A random task of depth at most `depth` with its expected bytes. Leaves are consts, some
 * above the 64 KiB spill limit (up to 1.5 MB) so they live in data files and cross workers.
 */
export function randomExpected(rng: Random, depth: number, opts: PlanOptions): Expected {
  if (depth <= 0 || rng.chance(0.25)) {
    const big = rng.chance(0.2);
    const bytes = randomBytes(rng, big ? rng.int(70_000, 1_500_000) : rng.int(0, 200));
    return { task: tasks.const(bytes), bytes };
  }
  const kinds: Kind[] = ["merge", "merge", "run", "shell", "function", "array-get"];
  if (opts.native) kinds.push("native");
  const kind = rng.pick(kinds);
  const child = (): Expected => randomExpected(rng, depth - 1, opts);
  switch (kind) {
    case "merge": {
      const parts = Array.from({ length: rng.int(2, 3) }, child);
      const delim = rng.chance(0.5) ? "" : "|";
      return {
        task: tasks.merge(parts.map((p) => p.task), delim),
        bytes: Buffer.concat(parts.flatMap((p, i) => (i > 0 && delim ? [Buffer.from(delim), p.bytes] : [p.bytes]))),
      };
    }
    case "run": {
      const x = child();
      return { task: tasks.run(["/bin/cat", "in put/x"], [[x.task, "in put/x"]]), bytes: x.bytes };
    }
    case "shell": {
      const a = child();
      const b = child();
      // A program that takes a moment, so worker kills and client kills meet running programs.
      const task = tasks.run(["/bin/sh", "-c", `sleep 0.${rng.int(0, 3)}; cat a b`], [
        [a.task, "a"],
        [b.task, "b"],
      ]);
      return { task, bytes: Buffer.concat([a.bytes, b.bytes]) };
    }
    case "function": {
      const x = child();
      return { task: reverse(x.task), bytes: Buffer.from(x.bytes).reverse() };
    }
    case "native": {
      const x = child();
      const letter = rng.pick(["a", "b", "\n"]);
      let n = 0;
      for (const c of x.bytes) if (c === letter.charCodeAt(0)) n++;
      const out = Buffer.alloc(8);
      out.writeBigUInt64LE(BigInt(n));
      return { task: new Task("my/count", { inputs: [x.task], config: letter }), bytes: out };
    }
    case "array-get": {
      const items = Array.from({ length: rng.int(1, 3) }, child);
      const i = rng.int(0, items.length - 1);
      return { task: tasks.get(tasks.arrayMake(items.map((p) => p.task)), i), bytes: items[i]!.bytes };
    }
    default:
      throw new Error(`unknown kind ${kind as string}`);
  }
}
