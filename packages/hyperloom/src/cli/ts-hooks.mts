/**
 * Module hooks for TypeScript scripts run by `hyperloom local`: `.ts`/`.mts` modules are
 * transpiled in memory (as ES modules, so top-level `await` works) with an inline source map, so
 * stack traces name the user's file and line; `./x.js` imported from TypeScript finds `./x.ts`.
 * Nothing is written to disk. Syntax was checked before the cluster started (`script.ts`).
 */
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

type TypeScript = typeof import("typescript");

let ts: TypeScript | undefined;

/** Receives the path of the `typescript` package found by `checkScript`. */
export function initialize(data: { typescript?: string }): void {
  if (data.typescript) ts = createRequire(import.meta.url)(data.typescript) as TypeScript;
}

const TS_URL = /^file:.*\.(m?ts)$/;

interface ResolveContext {
  parentURL?: string;
}
type NextResolve = (specifier: string, context: ResolveContext) => Promise<{ url: string; format?: string | null }>;

/** `./x.js` from a TypeScript module resolves to `./x.ts` when only that exists (the usual TS convention). */
export async function resolve(specifier: string, context: ResolveContext, next: NextResolve): Promise<{ url: string; format?: string | null }> {
  try {
    return await next(specifier, context);
  } catch (e) {
    const parent = context.parentURL;
    if (parent && TS_URL.test(parent) && /^\.\.?\/.*\.(m?js)$/.test(specifier) && (e as NodeJS.ErrnoException).code === "ERR_MODULE_NOT_FOUND") {
      return next(specifier.replace(/js$/, "ts"), context);
    }
    throw e;
  }
}

interface LoadContext {
  format?: string | null;
}
type NextLoad = (url: string, context: LoadContext) => Promise<{ format: string; source?: string | ArrayBuffer | Uint8Array | null }>;

/** Transpiles TypeScript modules; everything else loads as usual. */
export async function load(url: string, context: LoadContext, next: NextLoad): Promise<{ format: string; source?: string | ArrayBuffer | Uint8Array | null; shortCircuit?: boolean }> {
  if (ts === undefined || !TS_URL.test(url)) return next(url, context);
  const path = fileURLToPath(url);
  const source = await readFile(path, "utf8");
  const out = ts.transpileModule(source, {
    fileName: path,
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, inlineSourceMap: true, inlineSources: true },
  });
  return { format: "module", source: out.outputText, shortCircuit: true };
}
