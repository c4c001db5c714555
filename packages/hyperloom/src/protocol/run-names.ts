/**
 * Names a `loom/run/run` config maps inputs and outputs to (spec 7): `+in`/`+out` for the
 * standard streams, `$NAME` for variables, anything else a file inside the run directory. One
 * check, used where a task is built (client) and again where it runs (worker).
 */
import { isAbsolute, normalize } from "node:path";

/** Why `name` is not a file name that stays inside the run directory, or undefined if it is. */
export function runFileNameError(name: string): string | undefined {
  if (name.startsWith("$") || name === "+in" || name === "+out") return undefined;
  if (name === "" || isAbsolute(name) || normalize(name).split("/").includes("..") || name.includes("\0")) {
    return `Invalid file name '${name}' for run: it must be a relative path inside the run directory`;
  }
  return undefined;
}
