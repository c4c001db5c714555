// The benchmark process's heap between repetitions.

/**
 * A full collection of this process's heap before a repetition, so that none runs into the
 * garbage of the one before. A major GC, not V8's last-resort one (`gc()` without arguments):
 * that one also throws away compiled code, and every repetition would then run the client cold
 * (W5: the client's CPU per call 4.5 -> 0.7 µs with the code kept; issue #26). Without
 * `--expose-gc`, nothing.
 */
export function collectGarbage() {
  globalThis.gc?.({ type: "major" });
}
