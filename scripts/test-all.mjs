// Runs every test: `cargo test` for the crates, then uvu for the TypeScript packages, and ends
// with one `N passed, N failed` line summed over both. Exits non-zero on any failure.
// `--ts-only`: the TypeScript tests alone, on the Node that runs this script (CI runs them once per
// supported Node line: the Rust tests do not depend on Node). Needs a prior `npm run build`.
import { spawn } from "node:child_process";

function run(cmd, args) {
  return new Promise((resolve) => {
    // npm is npm.cmd on Windows, which only a shell runs.
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, FORCE_COLOR: "0" }, shell: process.platform === "win32" });
    let out = "";
    child.stdout.on("data", (d) => { out += d; process.stdout.write(d); });
    child.stderr.on("data", (d) => { out += d; process.stderr.write(d); });
    child.on("exit", (code) => resolve({ code: code ?? 1, out }));
  });
}

let passed = 0;
let failed = 0;
const tsOnly = process.argv.includes("--ts-only");
if (!tsOnly) {
  const rust = await run("cargo", ["test", "--workspace"]);
  for (const m of rust.out.matchAll(/test result: \w+\. (\d+) passed; (\d+) failed/g)) {
    passed += Number(m[1]);
    failed += Number(m[2]);
  }
  if (rust.code !== 0 && failed === 0) failed += 1; // did not build, or a test binary crashed
}
console.log(`TypeScript tests on Node ${process.version}`);
const ts = await run("npm", ["run", "test", "--workspace", "hyperloom"]);
const text = ts.out.replace(/\x1b\[[0-9;]*m/g, "");
const total = /Total:\s+(\d+)/.exec(text);
const ok = /Passed:\s+(\d+)/.exec(text);
if (total && ok) {
  passed += Number(ok[1]);
  failed += Number(total[1]) - Number(ok[1]);
}
if (ts.code !== 0 && !(total && ok && Number(total[1]) > Number(ok[1]))) failed += 1;
// A test that cannot run here (no Chromium, Slurm, cloudpickle) prints `(skipped: why)` and returns,
// which uvu counts as passed: it is reported as skipped instead (under CI=true it fails).
const skipped = [...text.matchAll(/^\s*\(skipped: (.*)\)\s*$/gm)].map((m) => m[1]);
if (skipped.length) {
  passed -= skipped.length;
  console.log(`${skipped.length} skipped: ${skipped.join("; ")}`);
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
