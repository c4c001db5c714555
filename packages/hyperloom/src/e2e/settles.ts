/**
 * Rejects when `p` has not settled after `ms` milliseconds, naming `what`: an end-to-end test
 * turns a hang into a failure instead of a stuck suite (every future settles: the quality bar).
 */
export function settles<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: did not settle within ${ms} ms (hang)`)), ms);
    }),
  ]);
}
