/**
 * Preloaded (`node --import`) into a TypeScript script's process by `hyperloom local`: registers
 * the module hook that transpiles `.ts`/`.mts` files in memory (see `ts-hooks.mts`).
 */
import { register } from "node:module";

const typescript = process.env.HYPERLOOM_TYPESCRIPT;
delete process.env.HYPERLOOM_TYPESCRIPT;
register("./ts-hooks.mjs", import.meta.url, { data: { typescript } });
