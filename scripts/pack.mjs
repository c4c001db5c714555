// `npm run pack`: builds the release addon and the compiled package, then packs the npm tarballs the
// way the napi CLI lays them out:
//   hyperloom-<version>.tgz                      compiled JS + .d.ts, the CLIs, the napi loader
//                                                (native/index.js), the C header (include/), the workers' Python
//                                                helper (python/hyperloom_py.py); no .node
//   hyperloom-binding-<platform>-<version>.tgz   @hyperloom/binding-<platform>: the stripped .node only,
//                                                one per target
// The main package lists the platform packages built here in `optionalDependencies` (same version);
// npm installs the one whose os/cpu/libc match. Targets other than the host's are cross-compiled with
// `napi build --cross-compile` (cargo-zigbuild and zig: `eval "$(bash scripts/cross-toolchain.sh)"`).
//
// Everything is assembled in a staging directory: the working tree (dist/, native/) is not touched,
// apart from the protobufjs code that `scripts/gen-proto.mjs` regenerates as `npm run build` does.
// Honours CARGO_TARGET_DIR (default: the workspace's target/, so it reuses `npm run build`'s release build).
//
// Usage: node scripts/pack.mjs [--out-dir DIR] [--target TRIPLE]... [--linux]
//   DIR defaults to <repo>/pack; the targets to the host's; --linux = the four Linux targets
//   (x86_64/aarch64 × gnu/musl), each of which must be among the napi targets in packages/hyperloom.
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const pkgDir = join(root, "packages", "hyperloom");
const args = process.argv.slice(2);
const outIdx = args.indexOf("--out-dir");
const outDir = resolve(outIdx >= 0 && args[outIdx + 1] ? args[outIdx + 1] : join(root, "pack"));
const LINUX = ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu", "x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"];
const requested = [...args.flatMap((a, i) => (a === "--target" && args[i + 1] ? [args[i + 1]] : [])), ...(args.includes("--linux") ? LINUX : [])];

const log = (s) => process.stderr.write(`pack: ${s}\n`);
// On Windows npm and its bins are .cmd files, which only a shell runs (the repository's path must
// then have no spaces).
const shell = process.platform === "win32";
const run = (cmd, argv, opts = {}) => execFileSync(cmd, argv, { stdio: ["ignore", "inherit", "inherit"], shell: cmd.endsWith(".cmd"), ...opts });
const quiet = (cmd, argv) => {
  try {
    return execFileSync(cmd, argv, { stdio: "pipe", encoding: "utf8", shell: cmd.endsWith(".cmd") });
  } catch (e) {
    process.stderr.write(`${e.stdout ?? ""}${e.stderr ?? ""}`);
    throw e;
  }
};
const bin = (name) => join(root, "node_modules", ".bin", process.platform === "win32" ? `${name}.cmd` : name);

const pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8"));
const hostTarget = /^host: (\S+)$/m.exec(quiet("rustc", ["-vV"]))?.[1];
const targets = [...new Set(requested.length > 0 ? requested : [hostTarget])];
const stage = mkdtempSync(join(tmpdir(), "hyperloom-pack-"));
const mainDir = stage; // the main package's root; npm/ and native-build/ inside it are outside its `files`
let failed = false;

try {
  mkdirSync(outDir, { recursive: true });
  for (const t of targets) {
    if (!pkg.napi.targets.includes(t)) throw new Error(`target ${t} is not among the napi targets in packages/hyperloom/package.json`);
  }
  // Linux targets build with zig whenever it is there, the host's too: glibc targets then link
  // against glibc 2.17 symbols (the host's gcc would tie them to the host's glibc, 2.34+ on
  // Debian 12, which rules out RHEL 8 and Ubuntu 20.04). Without zig, only the host's target
  // builds, natively, for the host's glibc and newer.
  const zig = onPath("zig");
  if (targets.some((t) => t !== hostTarget) && !zig) {
    throw new Error(`cross-compiling (${targets.filter((t) => t !== hostTarget).join(", ")}) needs zig and cargo-zigbuild on PATH: eval "$(bash scripts/cross-toolchain.sh)"`);
  }

  // 1. The release addon of each target (and the generated loader, the same for every target).
  /** @type {Array<{ target: string, platform: string, nodeFile: string, dir: string }>} */
  const builds = [];
  for (const target of targets) {
    const dir = join(stage, "native-build", target);
    const cross = target !== hostTarget || (zig && target.includes("-linux-"));
    const cargoTarget = target.endsWith("-linux-gnu") ? `${target}.2.17` : target; // zig's glibc version
    log(`building the release addon for ${cross ? cargoTarget : target} (napi build --release${cross ? " --cross-compile" : ""})`);
    // Cross builds strip at link time through Cargo's profile: napi's own --strip would set
    // RUSTFLAGS, which replaces the per-target rustflags of .cargo/config.toml (-z nodelete).
    run(bin("napi"), ["build", "--platform", "--release", "--manifest-path", join(root, "crates", "loom-node", "Cargo.toml"),
      "--output-dir", dir, "--js", "index.js", "--dts", "index.d.ts", ...(cross ? ["--target", cargoTarget, "--cross-compile"] : [])],
    { cwd: pkgDir, env: cross ? { ...process.env, CARGO_PROFILE_RELEASE_STRIP: "symbols" } : process.env });
    const nodeFiles = readdirSync(dir).filter((f) => f.startsWith(`${pkg.napi.binaryName}.`) && f.endsWith(".node"));
    if (nodeFiles.length !== 1) throw new Error(`expected one .node file in the napi output, found: ${nodeFiles.join(", ") || "none"}`);
    const nodeFile = nodeFiles[0];
    const platform = nodeFile.slice(pkg.napi.binaryName.length + 1, -".node".length); // e.g. linux-x64-gnu
    const unstripped = statSync(join(dir, nodeFile)).size;
    let glibc = "";
    if (!cross) strip(join(dir, nodeFile));
    const left = unstrippedSections(join(dir, nodeFile));
    if (left.length > 0) throw new Error(`${nodeFile} is not stripped: it still has ${left.join(", ")}`);
    if (target.endsWith("-linux-gnu")) {
      const dynamic = quiet("readelf", ["-d", "-W", "--dyn-syms", join(dir, nodeFile)]);
      if (!/\bNODELETE\b/.test(dynamic)) throw new Error(`${nodeFile} lacks -z nodelete (.cargo/config.toml): glibc would unload it when a worker thread exits`);
      glibc = newestGlibc(dynamic);
      if (cross && glibc !== "" && glibc.split(".").map(Number).some((n, i) => n > [2, 17][i])) {
        throw new Error(`${nodeFile} needs glibc ${glibc}; built with zig it must need no more than 2.17`);
      }
    }
    log(`${nodeFile}: ${kb(unstripped)} -> ${kb(statSync(join(dir, nodeFile)).size)} stripped${glibc ? `, needs glibc >= ${glibc}` : ""}`);
    builds.push({ target, platform, nodeFile, dir });
  }

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
  cpSync(join(builds[0].dir, "index.js"), join(mainDir, "native", "index.js"));
  cpSync(join(builds[0].dir, "index.d.ts"), join(mainDir, "native", "index.d.ts"));
  cpSync(join(root, "crates", "loom-task", "include"), join(mainDir, "include"), { recursive: true });
  cpSync(join(pkgDir, "python", "hyperloom_py.py"), join(mainDir, "python", "hyperloom_py.py"));
  cpSync(join(pkgDir, "bin"), join(mainDir, "bin"), { recursive: true }); // the commands (they load dist/cli)
  cpSync(join(root, "README.md"), join(mainDir, "README.md"));
  const platformPkgName = (platform) => `${pkg.napi.packageName}-${platform}`;
  const manifest = { ...pkg };
  delete manifest.scripts;
  delete manifest.devDependencies;
  manifest.optionalDependencies = { ...(pkg.optionalDependencies ?? {}) };
  for (const b of builds) manifest.optionalDependencies[platformPkgName(b.platform)] = pkg.version;
  writeFileSync(join(mainDir, "package.json"), JSON.stringify(manifest, null, 2) + "\n");

  // 4. The platform packages, laid out by the napi CLI (npm/<platform>/package.json with os/cpu/libc/main).
  quiet(bin("napi"), ["create-npm-dirs", "--cwd", stage, "--npm-dir", "npm"]);
  const platDirs = builds.map(({ platform, nodeFile, dir }) => {
    const platDir = join(stage, "npm", platform);
    if (!existsSync(join(platDir, "package.json"))) throw new Error(`napi create-npm-dirs made no package for ${platform}`);
    const platManifest = JSON.parse(readFileSync(join(platDir, "package.json"), "utf8"));
    if (platManifest.name !== platformPkgName(platform) || platManifest.main !== nodeFile) throw new Error(`unexpected napi platform package: ${JSON.stringify(platManifest)}`);
    if (pkg.publishConfig && !platManifest.publishConfig) platManifest.publishConfig = pkg.publishConfig;
    writeFileSync(join(platDir, "package.json"), JSON.stringify(platManifest, null, 2) + "\n");
    rmSync(join(platDir, "README.md"), { force: true }); // the package holds the binary and its manifest only
    cpSync(join(dir, nodeFile), join(platDir, nodeFile));
    return { platDir, nodeFile };
  });

  // 5. Pack them all, check what went in, report sizes.
  const mainInfo = npmPack(mainDir);
  const platInfos = platDirs.map(({ platDir }) => npmPack(platDir));
  const problems = [
    ...checkFiles(mainInfo, {
      required: ["package.json", "README.md", "dist/index.js", "dist/index.d.ts", "native/index.js", "native/index.d.ts",
        "include/hyperloom_task.h", "python/hyperloom_py.py", "dist/protocol/generated/messages.js", ...Object.values(pkg.bin)],
      forbidden: [/(?<!\.d)\.[cm]?ts$/, /\.rs$/, /\.node$/, /\.map$/, /\.test\./, /(^|\/)(e2e|conformance|test-data|src)\//, /Cargo\.toml$/],
    }),
    ...platInfos.flatMap((info, i) => checkFiles(info, { required: ["package.json", platDirs[i].nodeFile], only: true })),
  ];
  console.log("");
  for (const info of [mainInfo, ...platInfos]) {
    console.log(`${info.filename.padEnd(48)} ${kb(info.size).padStart(10)}  (${info.entryCount} files, ${kb(info.unpackedSize)} unpacked)`);
  }
  console.log(`in ${outDir}`);
  if (problems.length > 0) {
    for (const p of problems) console.error(`pack: ${p}`);
    for (const info of [mainInfo, ...platInfos]) rmSync(join(outDir, info.filename), { force: true });
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

/** Symbol and debug sections left in an ELF file (readelf reads every architecture); none elsewhere. */
function unstrippedSections(file) {
  if (process.platform !== "linux") return [];
  const sections = quiet("readelf", ["-S", "-W", file]);
  return [...new Set([...sections.matchAll(/\s(\.symtab|\.debug_\w+)\s/g)].map((m) => m[1]))];
}

/** The newest glibc symbol version a library needs (weak references, which may be missing, aside). */
function newestGlibc(readelfDynamic) {
  const versions = [...readelfDynamic.matchAll(/^\s*\d+:.*\bUND\b.*@GLIBC_(\d+)\.(\d+)(?:\.(\d+))?/gm)]
    .filter((m) => !/\bWEAK\b/.test(m[0]))
    .map((m) => [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)]);
  versions.sort((a, b) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2]);
  const v = versions.at(-1);
  return v ? v.slice(0, v[2] ? 3 : 2).join(".") : "";
}

function npmPack(dir) {
  const out = execFileSync(shell ? "npm.cmd" : "npm", ["pack", "--json", "--pack-destination", outDir],
    { cwd: dir, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], shell });
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

function onPath(name) {
  return (process.env.PATH ?? "").split(delimiter).some((d) => d !== "" && existsSync(join(d, name)));
}

function walk(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)],
  );
}

function kb(n) {
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)} MB` : `${(n / 1e3).toFixed(1)} kB`;
}
