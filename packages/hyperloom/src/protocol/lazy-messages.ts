/**
 * The wire messages (`messages.ts`), loaded at their first use. The generated code and
 * protobufjs take 10-20 ms to load: a worker reads its own frames with the core and needs them
 * only for a few side paths (a direct fetch, a peer link, an unusual first frame), so it loads
 * them there and registers that much sooner (issue #26, bench/startup).
 */
import type * as Messages from "./messages.js";

let loaded: typeof Messages | undefined;

/** `messages.ts`'s exports, loading it the first time. */
export function messages(): typeof Messages {
  return (loaded ??= require("./messages.js") as typeof Messages);
}
