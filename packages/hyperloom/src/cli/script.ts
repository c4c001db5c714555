/**
 * Client scripts of `hyperloom local`: checked before any process starts, then run as a child
 * process with `HYPERLOOM_SERVER` (and `HYPERLOOM_ACCESS_FILE`) set. TypeScript is transpiled in memory by a module hook
 * (`ts-hooks.mts`) with inline source maps, so the script runs from where it is (its imports
 * resolve as usual), errors point at the user's file and line, and nothing is written anywhere.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join, relative, resolve } from "node:path";
import { pathToFileURL } from "node:url";

/** A script that cannot run: the message is what the user reads (one line, or one per syntax error). */
export class ScriptError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ScriptError";
  }
}

/** A checked script, ready to run. */
export interface CheckedScript {
  /** Absolute path. */
  path: string;
  /** The `typescript` module's entry file, for a TypeScript script. */
  typescript?: string;
}

const TS = /\.(ts|mts)$/;
const JS = /\.(js|mjs|cjs)$/;

/**
 * Checks `script` before anything starts: that it exists, that its kind is supported, that
 * TypeScript is installed for a `.ts` script, and that it parses. Throws {@link ScriptError}.
 */
export function checkScript(script: string): CheckedScript {
  const path = resolve(script);
  const shown = relative(process.cwd(), path) || path;
  let source: string;
  try {
    source = readFileSync(path, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ScriptError(code === "ENOENT" ? `${shown}: no such file` : `${shown}: cannot read it (${(e as Error).message})`);
  }
  if (TS.test(path)) {
    const typescript = findTypeScript(path);
    if (typescript === undefined) {
      throw new ScriptError(`${shown}: running a TypeScript script needs the 'typescript' package (npm install --save-dev typescript), or compile it to .js first`);
    }
    const ts = require(typescript) as typeof import("typescript");
    const out = ts.transpileModule(source, { fileName: path, reportDiagnostics: true, compilerOptions: transpileOptions(ts) });
    const errors = (out.diagnostics ?? []).filter((d) => d.category === ts.DiagnosticCategory.Error);
    if (errors.length > 0) {
      throw new ScriptError(
        errors
          .map((d) => {
            const text = ts.flattenDiagnosticMessageText(d.messageText, " ");
            if (d.file === undefined || d.start === undefined) return `${shown}: error TS${d.code}: ${text}`;
            const { line, character } = d.file.getLineAndCharacterOfPosition(d.start);
            return `${shown}:${line + 1}:${character + 1} - error TS${d.code}: ${text}`;
          })
          .join("\n"),
      );
    }
    return { path, typescript };
  }
  if (JS.test(path)) {
    // `node --check` parses without running; its first line is `file:line`, then the code and the error.
    const check = spawnSync(process.execPath, ["--check", path], { encoding: "utf8" });
    if (check.status !== 0) {
      const lines = check.stderr
        .replace(/\x1b\[[0-9;]*m/g, "")
        .split("\n")
        .filter((l) => l.trim() !== "" && !l.startsWith("Node.js v") && !/^\s+at /.test(l));
      let message = lines.join("\n").replace(path, shown);
      if (/await is only valid|Cannot use import statement outside a module/.test(message)) {
        message += `\n(${shown} is a CommonJS file: for import and top-level await, name it .mjs or add "type": "module" to its package.json)`;
      }
      throw new ScriptError(message);
    }
    return { path };
  }
  throw new ScriptError(`${shown}: not a script (give a .js, .mjs, .cjs, .ts or .mts file)`);
}

/** Compiler options of the in-memory transpilation (the same as the module hook's in `ts-hooks.mts`). */
function transpileOptions(ts: typeof import("typescript")): import("typescript").CompilerOptions {
  return { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, inlineSourceMap: true, inlineSources: true };
}

/** The `typescript` package, as the script's project sees it, else as this package does. */
function findTypeScript(path: string): string | undefined {
  for (const from of [path, __filename]) {
    try {
      return createRequire(from).resolve("typescript");
    } catch {
      // not installed there
    }
  }
  return undefined;
}

/**
 * Starts a checked script against the server at `address` (authenticated by `accessFile`). The child runs `script-runner.js`
 * (which imports the script, reports its errors in one line, and closes clients a finished
 * script left open); for TypeScript, with the module hook registered.
 */
export function startScript(script: CheckedScript, address: string, accessFile?: string): ChildProcess {
  const args = ["--enable-source-maps"];
  const env: NodeJS.ProcessEnv = { ...process.env, HYPERLOOM_SERVER: address };
  if (accessFile !== undefined) env.HYPERLOOM_ACCESS_FILE = accessFile;
  if (script.typescript !== undefined) {
    args.push("--import", pathToFileURL(join(__dirname, "ts-register.mjs")).href);
    env.HYPERLOOM_TYPESCRIPT = script.typescript;
  }
  args.push(join(__dirname, "script-runner.js"), script.path);
  return spawn(process.execPath, args, { stdio: "inherit", env });
}
