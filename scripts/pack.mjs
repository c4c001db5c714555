// `npm run pack`: builds the release addon and the compiled package, then packs the npm tarballs the
// way the napi CLI lays them out:
//   hyperloom-<version>.tgz                      compiled JS + .d.ts, the CLIs, the napi loader
//                                                (native/index.js), the C header (include/), the workers' Python
//                                                helper (python/hyperloom_py.py); no .node
//   hyperloom-binding-<platform>-<version>.tgz   @hyperloom/binding-<platform>: the stripped .node only
// The main package lists the platform package built here in `optionalDependencies` (same version);
// the other targets stay declared in the `napi` config for a release pipeline to build.
//
// Everything is assembled in a staging directory: the working tree (dist/, native/) is not touched,
// apart from the protobufjs code that `scripts/gen-proto.mjs` regenerates as `npm run build` does.
// Honours CARGO_TARGET_DIR (default: the workspace's target/, so it reuses `npm run build`'s release build).
//
// Usage: node scripts/pack.mjs [--out-dir DIR]   (default DIR: <repo>/pack)
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const pkgDir = join(root, "packages", "hyperloom");
const args = process.argv.slice(2);
const outIdx = args.indexOf("--out-dir");
const outDir = resolve(outIdx >= 0 && args[outIdx + 1] ? args[outIdx + 1] : join(root, "pack"));

const log = (s) => process.stderr.write(`pack: ${s}\n`);
const run = (cmd, argv, opts = {}) => execFileSync(cmd, argv, { stdio: ["ignore", "inherit", "inherit"], ...opts });
const quiet = (cmd, argv) => {
  try {
    execFileSync(cmd, argv, { stdio: "pipe", encoding: "utf8" });
  } catch (e) {
    process.stderr.write(`${e.stdout ?? ""}${e.stderr ?? ""}`);
    throw e;
  }
};
const bin = (name) => join(root, "node_modules", ".bin", process.platform === "win32" ? `${name}.cmd` : name);

const pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8"));
const stage = mkdtempSync(join(tmpdir(), "hyperloom-pack-"));
const mainDir = stage; // the main package's root; npm/ and native-build/ inside it are outside its `files`
const nativeBuild = join(stage, "native-build");
let failed = false;

try {
  mkdirSync(outDir, { recursive: true });

  // 1. The release addon (and the generated loader) into the staging directory.
  log("building the release addon (napi build --release)");
  run(bin("napi"), ["build", "--platform", "--release", "--manifest-path", join(root, "crates", "loom-node", "Cargo.toml"),
    "--output-dir", nativeBuild, "--js", "index.js", "--dts", "index.d.ts"], { cwd: pkgDir });
  const nodeFiles = readdirSync(nativeBuild).filter((f) => f.startsWith(`${pkg.napi.binaryName}.`) && f.endsWith(".node"));
  if (nodeFiles.length !== 1) throw new Error(`expected one .node file in the napi output, found: ${nodeFiles.join(", ") || "none"}`);
  const nodeFile = nodeFiles[0];
  const platform = nodeFile.slice(pkg.napi.binaryName.length + 1, -".node".length); // e.g. linux-x64-gnu
  const unstripped = statSync(join(nativeBuild, nodeFile)).size;
  strip(join(nativeBuild, nodeFile));
  log(`${nodeFile}: ${kb(unstripped)} -> ${kb(statSync(join(nativeBuild, nodeFile)).size)} stripped`);

  // 2. The compiled package: protobufjs code, then tsc into the staging dist (no source maps: no sources ship).
  log("compiling TypeScript");
  run(process.execPath, [join(pkgDir, "scripts", "gen-proto.mjs")]);
  run(process.execPath, [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", pkgDir,
    "--outDir", join(mainDir, "dist"), "--sourceMap", "false", "--declarationMap", "false"]);
  // tsc copies neither hand-written/generated .d.ts files from src nor the generated protobufjs JS.
  for (const f of walk(join(pkgDir, "src")).filter((f) => f.endsWith(".d.ts"))) {
    cpSync(f, join(mainDir, "dist", relative(join(pkgDir, "src"), f)));
  }
  cpSync(join(pkgDir, "dist", "protocol", "generated"), join(mainDir, "dist", "protocol", "generated"), {
    recursive: true,
    filter: (src) => statSync(src).isDirectory() || src.endsWith(".js"),
  });

  // 3. The main package: loader, header, Python helper of the workers, README, manifest.
  mkdirSync(join(mainDir, "native"));
  cpSync(join(nativeBuild, "index.js"), join(mainDir, "native", "index.js"));
  cpSync(join(nativeBuild, "index.d.ts"), join(mainDir, "native", "index.d.ts"));
  cpSync(join(root, "crates", "loom-task", "include"), join(mainDir, "include"), { recursive: true });
  cpSync(join(pkgDir, "python", "hyperloom_py.py"), join(mainDir, "python", "hyperloom_py.py"));
  cpSync(join(pkgDir, "bin"), join(mainDir, "bin"), { recursive: true }); // the commands (they load dist/cli)
  cpSync(join(root, "README.md"), join(mainDir, "README.md"));
  const platformPkgName = `${pkg.napi.packageName}-${platform}`;
  const manifest = { ...pkg };
  delete manifest.scripts;
  delete manifest.devDependencies;
  manifest.optionalDependencies = { ...(pkg.optionalDependencies ?? {}), [platformPkgName]: pkg.version };
  writeFileSync(join(mainDir, "package.json"), JSON.stringify(manifest, null, 2) + "\n");

  // 4. The platform package, laid out by the napi CLI (npm/<platform>/package.json with os/cpu/libc/main).
  quiet(bin("napi"), ["create-npm-dirs", "--cwd", stage, "--npm-dir", "npm"]);
  const platDir = join(stage, "npm", platform);
  if (!existsSync(join(platDir, "package.json"))) throw new Error(`platform ${platform} is not among the napi targets in packages/hyperloom/package.json`);
  const platManifest = JSON.parse(readFileSync(join(platDir, "package.json"), "utf8"));
  if (platManifest.name !== platformPkgName || platManifest.main !== nodeFile) throw new Error(`unexpected napi platform package: ${JSON.stringify(platManifest)}`);
  if (pkg.publishConfig && !platManifest.publishConfig) platManifest.publishConfig = pkg.publishConfig;
  writeFileSync(join(platDir, "package.json"), JSON.stringify(platManifest, null, 2) + "\n");
  rmSync(join(platDir, "README.md"), { force: true }); // the package holds the binary and its manifest only
  cpSync(join(nativeBuild, nodeFile), join(platDir, nodeFile));

  // 5. Pack both, check what went in, report sizes.
  const mainInfo = npmPack(mainDir);
  const platInfo = npmPack(platDir);
  const problems = [
    ...checkFiles(mainInfo, {
      required: ["package.json", "README.md", "dist/index.js", "dist/index.d.ts", "native/index.js", "native/index.d.ts",
        "include/hyperloom_task.h", "python/hyperloom_py.py", "dist/protocol/generated/messages.js", ...Object.values(pkg.bin)],
      forbidden: [/(?<!\.d)\.[cm]?ts$/, /\.rs$/, /\.node$/, /\.map$/, /\.test\./, /(^|\/)(e2e|conformance|test-data|src)\//, /Cargo\.toml$/],
    }),
    ...checkFiles(platInfo, { required: ["package.json", nodeFile], only: true }),
  ];
  console.log("");
  for (const info of [mainInfo, platInfo]) {
    console.log(`${info.filename.padEnd(40)} ${kb(info.size).padStart(10)}  (${info.entryCount} files, ${kb(info.unpackedSize)} unpacked)`);
  }
  console.log(`in ${outDir}`);
  if (problems.length > 0) {
    for (const p of problems) console.error(`pack: ${p}`);
    for (const info of [mainInfo, platInfo]) rmSync(join(outDir, info.filename), { force: true });
    failed = true;
  }
} catch (e) {
  console.error(`pack: ${e instanceof Error ? e.message : String(e)}`);
  failed = true;
} finally {
  rmSync(stage, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);

function strip(file) {
  if (process.platform === "win32") return; // MSVC release builds carry no symbols in the .dll
  run("strip", process.platform === "darwin" ? ["-x", file] : ["--strip-all", file]);
}

function npmPack(dir) {
  const out = execFileSync("npm", ["pack", "--json", "--pack-destination", outDir], { cwd: dir, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
  return JSON.parse(out)[0];
}

function checkFiles(info, { required = [], forbidden = [], only = false }) {
  const paths = info.files.map((f) => f.path);
  const problems = [];
  for (const r of required) if (!paths.includes(r.replace(/^\.\//, ""))) problems.push(`${info.filename}: missing ${r}`);
  for (const p of paths) {
    if (forbidden.some((re) => re.test(p))) problems.push(`${info.filename}: must not contain ${p}`);
    if (only && !required.includes(p)) problems.push(`${info.filename}: unexpected ${p}`);
  }
  return problems;
}

function walk(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)],
  );
}

function kb(n) {
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)} MB` : `${(n / 1e3).toFixed(1)} kB`;
}
