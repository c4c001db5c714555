/**
 * Runs a client script as a child process with `HYPERLOOM_SERVER` set. TypeScript scripts are
 * transpiled with the `typescript` package (ESM output, so top-level await works).
 */
import { spawn } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { createRequire } from "node:module";

/** Runs `script` against the server at `address`; resolves to its exit status. */
export async function runScript(script: string, address: string): Promise<number> {
  let path = resolve(script);
  let temp: string | undefined;
  if (path.endsWith(".ts") || path.endsWith(".mts")) {
    temp = join(dirname(path), `.${basename(path).replace(/\.m?ts$/, "")}.hyperloom.mjs`);
    writeFileSync(temp, transpile(readFileSync(path, "utf8"), path));
    path = temp;
  }
  try {
    return await new Promise<number>((res) => {
      const child = spawn(process.execPath, [path], {
        stdio: "inherit",
        env: { ...process.env, HYPERLOOM_SERVER: address },
      });
      child.once("exit", (code, signal) => res(code ?? (signal ? 1 : 0)));
    });
  } finally {
    if (temp) rmSync(temp, { force: true });
  }
}

function transpile(source: string, path: string): string {
  let ts: typeof import("typescript");
  try {
    ts = createRequire(path)("typescript") as typeof import("typescript");
  } catch {
    try {
      ts = require("typescript") as typeof import("typescript");
    } catch {
      throw new Error(`running ${path} needs the 'typescript' package (npm install typescript), or compile it to .js first`);
    }
  }
  return ts.transpileModule(source, {
    fileName: path,
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  }).outputText;
}
