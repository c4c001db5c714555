/**
 * Sandboxes for end-to-end tests of the commands as a user runs them: a project folder whose
 * `node_modules/hyperloom` is this package, a private TMPDIR, and checks that a run left no
 * process and no folder behind.
 */
import * as assert from "uvu/assert";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

/** The package directory (packages/hyperloom). */
export const pkgDir = resolve(__dirname, "..", "..");
/** The `hyperloom` command's entry point. */
export const cli = join(pkgDir, "dist", "cli", "main.js");
/** The `loom-worker` command's entry point. */
export const loomWorker = join(pkgDir, "dist", "cli", "loom-worker.js");

/** A fresh root for one run: `proj/` holds the user's scripts, `tmp/` is the run's TMPDIR. */
export interface Sandbox {
  root: string;
  proj: string;
  tmp: string;
}

const roots: string[] = [];

/** Removes every sandbox made so far (a suite's `after`). */
export function removeSandboxes(): void {
  for (const r of roots.splice(0)) rmSync(r, { recursive: true, force: true });
}

export function sandbox(): Sandbox {
  const root = mkdtempSync(join(tmpdir(), "hyperloom-firstday-"));
  roots.push(root);
  const proj = join(root, "proj");
  const tmp = join(root, "tmp");
  mkdirSync(join(proj, "node_modules"), { recursive: true });
  mkdirSync(tmp);
  // The project depends on hyperloom (as after `npm install hyperloom`).
  symlinkSync(pkgDir, join(proj, "node_modules", "hyperloom"));
  return { root, proj, tmp };
}

export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

export interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `hyperloom local` in the sandbox; `onStderr` may act on what it prints (e.g. send a signal). */
export function local(sb: Sandbox, args: string[], onStderr?: (text: string, child: ChildProcess) => void, env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((res) => {
    const child = spawn(process.execPath, [cli, "local", ...args], { cwd: sb.proj, env: { ...process.env, TMPDIR: sb.tmp, ...env } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d));
    child.stderr.on("data", (d: Buffer) => {
      stderr += d;
      onStderr?.(stderr, child);
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      res({ code, signal, stdout, stderr });
    });
  });
}

/** Runs `node ARGS` to its end. */
export function runNode(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Run> {
  return new Promise((res) => {
    const child = spawn(process.execPath, args, { cwd: options.cwd, env: { ...process.env, ...options.env } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d));
    child.stderr.on("data", (d: Buffer) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      res({ code, signal, stdout, stderr });
    });
  });
}

/** Processes whose command line contains `marker` (pgrep -f), other than this one. */
export function processesWith(marker: string): string[] {
  const r = spawnSync("pgrep", ["-af", "--", marker], { encoding: "utf8" });
  // Status 1 is "none found"; anything else (or no pgrep at all) must not pass as "none left".
  if (r.error || (r.status !== 0 && r.status !== 1)) throw new Error(`pgrep is needed to check for leftover processes (apt-get install procps): ${r.error?.message ?? r.stderr}`);
  return r.stdout.split("\n").filter((l) => l.trim() !== "" && !l.includes("pgrep"));
}

/** Nothing of the run is left: no process naming the sandbox or the port, nothing in TMPDIR, only the scripts in the project. */
export async function assertNothingLeft(sb: Sandbox, scripts: string[], port?: number): Promise<void> {
  // Processes are reaped asynchronously after `local` exits; give them a moment.
  for (let i = 0; i < 20 && processesWith(sb.root).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
  assert.equal(processesWith(sb.root), [], "no script or worker process is left");
  if (port !== undefined) assert.equal(processesWith(`--port ${port}`), [], "no server process is left");
  assert.equal(readdirSync(sb.tmp), [], "no temporary folder is left");
  assert.equal(readdirSync(sb.proj).sort(), ["node_modules", ...scripts].sort(), "nothing was written next to the scripts");
}

