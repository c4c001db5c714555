// The plans of the workloads, built with the public client API (`hyperloom`'s `tasks`).
import { tasks } from "hyperloom";

/** W1 merges: N `merge`s, each of two small `const`s of its own. */
export function w1Merges(n) {
  const merges = new Array(n);
  for (let i = 0; i < n; i++) merges[i] = tasks.merge([tasks.const("ab"), tasks.const("cd")]);
  return merges;
}

/** W1: the N merges gathered through one `arrayMake` (3N + 1 tasks). */
export function w1Tasks(n) {
  return tasks.arrayMake(w1Merges(n));
}
