// The benchmark process's heap between repetitions.

/**
 * A full collection of this process's heap before a repetition, so that none runs into the
 * garbage of the one before. A major GC, not V8's last-resort one (`gc()` without arguments):
 * that one also throws away compiled code, and every repetition would then run the client cold
 * (W5: the client's CPU per call 4.5 -> 0.7 µs with the code kept; issue #26). Without
 * `--expose-gc`, nothing. On Node 20 (V8 11.3) this option makes only a scavenge (`--trace-gc`
 * shows it): the old generation's garbage of a repetition is then collected during a later one
 * (W5 on a fresh cluster: a 30-60 ms mark-compact in the client's second repetition).
 */
export function collectGarbage() {
  globalThis.gc?.({ type: "major" });
}
