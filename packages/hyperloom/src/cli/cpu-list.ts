/**
 * `--cpu-list` of `hyperloom worker` and `loom-worker`: the CPUs a pinning worker's slots run their
 * programs on, written as `taskset -c` and `/proc/<pid>/status`'s `Cpus_allowed_list` write them.
 */
import { InvalidArgumentError } from "commander";

/**
 * Parses `0-3,6` into `[0, 1, 2, 3, 6]`: CPUs and inclusive ranges, in the order given (slot 0
 * takes the first), none twice, each at most 2^20.
 * @throws InvalidArgumentError naming the list (and the repeated CPU), which commander prints
 * before the worker connects.
 */
export function cpuListArg(v: string): number[] {
  const cpus: number[] = [];
  for (const part of v.split(",")) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    const from = Number(m?.[1]);
    const to = m?.[2] !== undefined ? Number(m[2]) : from;
    if (m === null || to < from || to > 1 << 20) throw new InvalidArgumentError(`Invalid CPU list '${v}' (CPUs and ranges, e.g. 0-3,6)`);
    for (let c = from; c <= to; c++) {
      if (cpus.includes(c)) throw new InvalidArgumentError(`CPU ${c} is listed twice in '${v}'`);
      cpus.push(c);
    }
  }
  return cpus;
}
