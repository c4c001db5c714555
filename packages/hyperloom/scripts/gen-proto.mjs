// Generates the protobufjs static code for proto/*.proto: JavaScript into dist/, types into src/
// (both generated, never edited by hand; proto/ is the one source of the wire format).
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const pkg = join(dirname(fileURLToPath(import.meta.url)), "..");
const root = join(pkg, "..", "..");
const require = createRequire(import.meta.url);
const cliDir = dirname(require.resolve("protobufjs-cli/package.json"));
const pbjs = join(cliDir, "bin", "pbjs");
const pbts = join(cliDir, "bin", "pbts");

const jsOut = join(pkg, "dist", "protocol", "generated", "messages.js");
const dtsOut = join(pkg, "src", "protocol", "generated", "messages.d.ts");
mkdirSync(dirname(jsOut), { recursive: true });
mkdirSync(dirname(dtsOut), { recursive: true });
execFileSync(process.execPath, [pbjs, "-t", "static-module", "-w", "commonjs", "--force-number",
  "--no-delimited", "-o", jsOut, join(root, "proto", "comm.proto"), join(root, "proto", "run.proto"), join(root, "proto", "alloc.proto")], { stdio: "inherit" });
execFileSync(process.execPath, [pbts, "-o", dtsOut, jsOut], { stdio: "inherit" });
// A copy next to the .d.ts lets tsc resolve the module from src; dist keeps the real one.
writeFileSync(dtsOut, "// Generated from proto/ by scripts/gen-proto.mjs. Do not edit.\n" + readFileSync(dtsOut, "utf8"));
