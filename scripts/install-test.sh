#!/usr/bin/env bash
# Install test: a new user on a machine without Rust installs the packed tarballs from npm.
#
#   bash scripts/install-test.sh                                  the host's platform: packs
#       hyperloom-<version>.tgz and the platform package (scripts/pack.mjs, which needs cargo)
#   bash scripts/install-test.sh --target PLATFORM --pack-dir DIR  the tarballs in DIR (from
#       `node scripts/pack.mjs --linux --out-dir DIR`), on PLATFORM's Node (scripts/target-runtime.sh:
#       arm64 under qemu-user, musl through the musl loader)
#
# With cargo and rustc NOT on PATH, an empty project depends on the main tarball, with npm
# `overrides` pointing every platform package it lists at its tarball, so that npm itself picks
# the one for the platform (os/cpu/libc). Then: the guide's first example, a `run` task, the
# guide's native `my/count` built for the platform (in C against the installed header, and in Rust
# with the loom-task SDK), and the loader's one message when the platform package is missing. On
# the host also: the commands, CommonJS/ESM loading, the types, and that the SDK crate passes
# `cargo package`. Ends with `N passed, N failed` (checks, not tests); exits non-zero on a failure.
# Nothing is left running and the temporary project is removed.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
target=""
pack_dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --target) target="${2:-}"; shift 2 ;;
    --pack-dir) pack_dir="$(cd "${2:-.}" && pwd)"; shift 2 ;;
    *) echo "usage: install-test.sh [--target PLATFORM --pack-dir DIR]" >&2; exit 2 ;;
  esac
done
if [ -n "$target" ] && [ -z "$pack_dir" ]; then echo "install-test.sh: --target needs --pack-dir" >&2; exit 2; fi
# A Node's platform as the package names spell it: linux-x64-gnu, linux-arm64-musl, ...
node_platform='process.platform + "-" + process.arch + (process.platform === "linux" ? (process.report.getReport().header.glibcVersionRuntime ? "-gnu" : "-musl") : "")'
host_platform="$(node -p "$node_platform")"
target="${target:-$host_platform}"
on_host=0
[ "$target" = "$host_platform" ] && on_host=1

work="$(mktemp -d "${TMPDIR:-/tmp}/hyperloom-install-XXXXXX")"
app="$work/app"
log="$work/check.log"
passed=0
failed=0

cleanup() {
  local pids
  pids="$(pgrep -f "$work" || true)"
  if [ -n "$pids" ]; then kill -9 $pids 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# check NAME CMD...: runs CMD with output to $log; a failure shows the log's tail.
check() {
  local name="$1"
  shift
  if "$@" >"$log" 2>&1; then
    passed=$((passed + 1))
    echo "ok   $name"
  else
    failed=$((failed + 1))
    echo "FAIL $name"
    tail -n 25 "$log" | sed 's/^/     | /'
  fi
}
finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit $?
}

# --- 1. tarballs, my/count in Rust, the platform's Node (cargo is needed up to here only) ---
echo "install test for $target$([ "$on_host" -eq 1 ] && echo " (the host)")"
if [ -z "$pack_dir" ]; then
  pack_dir="$work/pack"
  check "npm run pack: main and platform tarballs" node "$root/scripts/pack.mjs" --out-dir "$pack_dir"
  grep -E '\.tgz|^in ' "$log" | sed 's/^/     /'
fi
main_tgz="$(ls "$pack_dir"/hyperloom-[0-9]*.tgz 2>/dev/null | head -n 1)"
plat_tgz="$(ls "$pack_dir"/hyperloom-binding-"$target"-[0-9]*.tgz 2>/dev/null | head -n 1)"
if [ -z "$main_tgz" ] || [ -z "$plat_tgz" ]; then
  check "the main and the $target tarballs are in $pack_dir" false
  finish
fi
plat_name="@hyperloom/binding-$target"

if [ "$on_host" -eq 1 ]; then
  # The Rust SDK crate for native task extensions is publishable as it is (packaged and verified).
  check "cargo package -p loom-task (the SDK crate for extensions)" \
    cargo package -p loom-task --allow-dirty --manifest-path "$root/Cargo.toml"
fi

# The guide's my/count as an extension author builds it for the platform: in Rust with the
# loom-task SDK (cargo; cargo zigbuild for another target, against glibc 2.17 for gnu), in C below.
case "$target" in
  linux-x64-gnu) triple=x86_64-unknown-linux-gnu zig_target=x86_64-linux-gnu.2.17 ;;
  linux-arm64-gnu) triple=aarch64-unknown-linux-gnu zig_target=aarch64-linux-gnu.2.17 ;;
  linux-x64-musl) triple=x86_64-unknown-linux-musl zig_target=x86_64-linux-musl ;;
  linux-arm64-musl) triple=aarch64-unknown-linux-musl zig_target=aarch64-linux-musl ;;
  *) triple="" zig_target="" ;;
esac
ext="$work/ext"
mkdir -p "$ext"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
if [ "$on_host" -eq 1 ]; then
  check "cargo build --release -p hyperloom-example-count (my/count in Rust)" bash -c "
    cargo build --release -q -p hyperloom-example-count --manifest-path '$root/Cargo.toml' &&
    cp '$target_dir/release/libhyperloom_example_count.so' '$ext/libcount_rust.so'"
else
  zig_triple="$triple"
  case "$triple" in *-gnu) zig_triple="$triple.2.17" ;; esac
  check "cargo zigbuild --release --target $zig_triple -p hyperloom-example-count (my/count in Rust)" bash -c "
    cargo zigbuild --release -q -p hyperloom-example-count --target '$zig_triple' --manifest-path '$root/Cargo.toml' &&
    cp '$target_dir/$triple/release/libhyperloom_example_count.so' '$ext/libcount_rust.so'"
fi
runtime_bin=""
if [ "$on_host" -eq 0 ]; then
  check "a Node for $target (scripts/target-runtime.sh)" bash -c "bash '$root/scripts/target-runtime.sh' '$target' >'$work/runtime'"
  runtime_bin="$(tail -n 1 "$work/runtime" 2>/dev/null)"
  [ -n "$runtime_bin" ] || finish
fi

# --- 2. a PATH without cargo and rustc (and, for another target, with its Node first) ---
# rustup's directories (~/.cargo/bin) are dropped; any other directory holding cargo or rustc is
# replaced by a directory of links to its other programs.
shim="$work/bin"
mkdir -p "$shim"
new_path=""
shim_added=0
IFS=: read -r -a path_dirs <<<"$PATH"
for d in "${path_dirs[@]}"; do
  [ -n "$d" ] && [ -d "$d" ] || continue
  if [ -e "$d/cargo" ] || [ -e "$d/rustc" ]; then
    case "$d" in */.cargo/bin | */.cargo/bin/) continue ;; esac
    for f in "$d"/*; do
      b="$(basename "$f")"
      case "$b" in cargo | cargo-* | rustc | rustdoc | rustup | rust-* | rustfmt | clippy-driver) continue ;; esac
      [ -x "$f" ] && [ ! -e "$shim/$b" ] && ln -s "$f" "$shim/$b"
    done
    if [ "$shim_added" -eq 0 ]; then new_path="$new_path:$shim"; shim_added=1; fi
  else
    new_path="$new_path:$d"
  fi
done
export PATH="${runtime_bin:+$runtime_bin:}${new_path#:}"
unset CARGO_TARGET_DIR CARGO_HOME RUSTUP_HOME
check "cargo and rustc are not on PATH" bash -c '! command -v cargo && ! command -v rustc && command -v node && command -v npm'
check "node on PATH is a $target Node ($(node -v 2>/dev/null))" bash -c "[ \"\$(node -p '$node_platform')\" = '$target' ]"

# --- 3. an empty project installing the tarballs ---
mkdir -p "$app"
cd "$app" || finish
# The project depends on the main tarball; `overrides` send each platform package to its tarball
# (nothing is published), and npm installs only the one matching this Node's os, cpu and libc.
node -e '
  const [mainTgz, packDir] = process.argv.slice(1);
  const fs = require("fs");
  const overrides = {};
  for (const f of fs.readdirSync(packDir)) {
    const m = /^hyperloom-binding-(.+)-\d+\.\d+\.\d+.*\.tgz$/.exec(f);
    if (m) overrides[`@hyperloom/binding-${m[1]}`] = `file:${packDir}/${f}`;
  }
  const pkg = { name: "hyperloom-install-test", version: "1.0.0", private: true, type: "module",
    dependencies: { hyperloom: `file:${mainTgz}` }, overrides };
  fs.writeFileSync("package.json", JSON.stringify(pkg, null, 2) + "\n");
' "$main_tgz" "$pack_dir"
extra_deps=()
[ "$on_host" -eq 1 ] && extra_deps=(typescript@5.9.3 @types/node@22)
check "npm install $(basename "$main_tgz") (platform packages: $(cd "$pack_dir" && ls hyperloom-binding-*.tgz | sed 's/hyperloom-binding-//; s/-[0-9].*//' | paste -sd, -))${extra_deps[*]:+ + ${extra_deps[*]}}" \
  npm install --no-audit --no-fund "${extra_deps[@]}"
check "npm picked $plat_name alone; it holds the stripped .node; the main package holds none, and no sources" bash -c "
  [ \"\$(ls node_modules/@hyperloom)\" = 'binding-$target' ] &&
  test -f node_modules/$plat_name/hyperloom.$target.node &&
  ! readelf -S -W node_modules/$plat_name/hyperloom.$target.node | grep -E ' \.(symtab|debug_)' &&
  test -z \"\$(find node_modules/hyperloom -name '*.node' -o -name '*.rs' -o -name '*.ts' ! -name '*.d.ts' -o -name '*.test.js')\" &&
  test -f node_modules/hyperloom/include/hyperloom_task.h"

cat >hello.mjs <<'EOF'
// The guide's first example: two constants merged on the cluster.
import { Client, tasks } from "hyperloom";

const [host, port] = (process.env.HYPERLOOM_SERVER ?? "127.0.0.1:9010").split(":");
const client = await Client.connect(host, Number(port));
const task3 = tasks.merge([tasks.const("Hello "), tasks.const("world!")]);
const result = await client.submitOne(task3).gather();
console.log(result.toString());
await client.close();
EOF
check "npx hyperloom local --workers 2 hello.mjs prints Hello world!" \
  bash -c 'timeout -k 5 120 npx hyperloom local --workers 2 hello.mjs | tee /dev/stderr | grep -qx "Hello world!"'

cat >run.mjs <<'EOF'
// A `run` task: a program on a worker, its stdin from a task, its stdout the result.
import { Client, tasks } from "hyperloom";

const [host, port] = process.env.HYPERLOOM_SERVER.split(":");
const client = await Client.connect(host, Number(port));
const text = tasks.const("Hello\nLoom\nworld\nLoom again\n");
const grep = tasks.run("/bin/grep Loom", [], { stdin: text });
console.log(JSON.stringify((await client.submitOne(grep).gather()).toString()));
await client.close();
EOF
check "npx hyperloom local --workers 2 run.mjs: a run task's stdout (grep)" \
  bash -c 'timeout -k 5 120 npx hyperloom local --workers 2 run.mjs | tee /dev/stderr | grep -qxF "\"Loom\nLoom again\n\""'

cat >count.mjs <<'EOF'
// The guide's native my/count on a worker that loads the task library given as argument.
import { LocalCluster, Task, tasks } from "hyperloom";

const cluster = await LocalCluster.start({ workers: 1, cpus: 1, workerArgs: ["--extension", process.argv[2]] });
try {
  const client = await cluster.connect();
  const count = new Task("my/count", { inputs: [tasks.const("banana")], config: "a" });
  console.log(`my/count = ${(await client.submitOne(count).gather()).readBigUInt64LE(0)}`);
  await client.close();
} finally {
  await cluster.stop();
}
EOF
cp "$root/crates/loom-task/examples/count.c" count.c
if [ "$on_host" -eq 1 ]; then cc_cmd=(cc); else cc_cmd=(zig cc -target "$zig_target"); fi
check "${cc_cmd[*]}: my/count in C against the installed include/hyperloom_task.h" \
  "${cc_cmd[@]}" -shared -fPIC -O2 -I node_modules/hyperloom/include count.c -o "$ext/libcount_c.so"
for lang in c rust; do
  check "a worker loads my/count ($lang, built for $target) and counts the a's in banana" \
    bash -c "timeout -k 5 120 node count.mjs '$ext/libcount_$lang.so' | tee /dev/stderr | grep -qx 'my/count = 3'"
done

if [ "$on_host" -eq 1 ]; then
  # Platform-independent: checked once, on the host.
  cp "$root/examples/hello.ts" hello.ts
  check "npx hyperloom local --workers 2 hello.ts (the guide's example as TypeScript)" \
    bash -c 'timeout -k 5 60 npx hyperloom local --workers 2 hello.ts | tee /dev/stderr | grep -qx "Hello world!"'
  # A Python function task (the original client's py_task, its pickles made by python3's cloudpickle)
  # runs on the installed worker: the package ships its Python helper.
  cat >pyhello.mjs <<'EOF'
import { execFileSync } from "node:child_process";
import { Client, Task, tasks } from "hyperloom";

const [host, port] = (process.env.HYPERLOOM_SERVER ?? "127.0.0.1:9010").split(":");
const pickle = (expr) => execFileSync("python3", ["-c", `import sys, cloudpickle; sys.stdout.buffer.write(cloudpickle.dumps(${expr}))`]);
const client = await Client.connect(host, Number(port));
const fn = new Task("loom/py/value", { config: pickle("((lambda a: b'Hello ' + a.read()), False)"), resourceRequest: tasks.cpus(1) });
const call = new Task("loom/py/call", { inputs: [fn, tasks.const("world!")], config: pickle("()"), resourceRequest: tasks.cpus(1) });
console.log((await client.submitOne(call).gather()).toString());
await client.close();
EOF
  if python3 -c "import cloudpickle" 2>/dev/null; then
    check "npx hyperloom local --workers 1 pyhello.mjs: a Python function task prints Hello world!" \
      bash -c 'timeout -k 5 60 npx hyperloom local --workers 1 pyhello.mjs | tee /dev/stderr | grep -qx "Hello world!"'
  elif [ "${CI:-}" = "true" ]; then
    check "python3 with cloudpickle for the Python function task check (.ci/run installs it)" false
  else
    echo "skip a Python function task (no python3 with cloudpickle)"
  fi
  check "npx loom-server --help" bash -c 'npx loom-server --help | grep -q -- "--port"'
  check "npx loom-worker --help" bash -c 'npx loom-worker --help | grep -q -- "--cpus"'
  check "require(\"hyperloom\") (CommonJS)" \
    node -e 'const h = require("hyperloom"); if (typeof h.Client !== "function" || typeof h.tasks.merge !== "function") process.exit(1)'
  check "import(\"hyperloom\") (ESM, named exports)" \
    node --input-type=module -e 'import { Client, LocalCluster, tasks } from "hyperloom"; const m = await import("hyperloom"); if (typeof Client !== "function" || typeof LocalCluster.start !== "function" || m.tasks !== tasks) process.exit(1)'

  cat >consumer.ts <<'EOF'
import { Client, LocalCluster, TaskFailed, tasks, type DataValue, type Future, type Task } from "hyperloom";

const cluster: LocalCluster = await LocalCluster.start({ workers: 1 });
const client: Client = await Client.connect(cluster.host, cluster.port);
const task: Task = tasks.merge([tasks.const("a"), tasks.const("b")], ",");
const future: Future = client.submitOne(task);
try {
  const value: DataValue = await future.gather();
  if (Buffer.isBuffer(value)) console.log(value.toString("utf8"));
} catch (e) {
  if (e instanceof TaskFailed) console.error(e.taskId, e.errorMessage);
}
await client.close();
EOF
  cat >wrong.ts <<'EOF'
import { tasks } from "hyperloom";
const n: number = tasks.const("a"); // a Task is not a number: must not type-check
console.log(n);
EOF
  tsc_opts=(--noEmit --strict --module nodenext --moduleResolution nodenext --target es2022 --types node)
  check "tsc --noEmit: a TypeScript consumer type-checks against the package's types" \
    npx -p typescript@5.9.3 tsc "${tsc_opts[@]}" consumer.ts
  check "tsc --noEmit: a wrong use fails (the types are real, not any)" \
    bash -c "! npx -p typescript@5.9.3 tsc ${tsc_opts[*]} wrong.ts"
fi

# --- 4. without the platform package: one clear message ---
rm -rf "node_modules/$plat_name"
expect_message() {
  local out
  out="$("$@" 2>&1)" && { echo "$out"; echo "(expected a failure)"; return 1; }
  echo "$out"
  [ "$(grep -o "HyperLoom has no native addon for this platform ($target)" <<<"$out" | wc -l)" -eq 1 ] &&
    grep -q "$plat_name" <<<"$out" && grep -q "cargo" <<<"$out" && grep -q "npm run build" <<<"$out" &&
    ! grep -q "Require stack" <<<"$out"
}
check "no platform package: loom-server fails with the message naming $target and the build" \
  expect_message timeout -k 5 60 npx loom-server --port $((20000 + RANDOM % 20000))
check "no platform package: hyperloom local fails with the same single message" \
  expect_message timeout -k 5 60 npx hyperloom local --workers 1 hello.mjs
check "no platform package: the client still loads (it never needs the addon)" \
  node -e 'require("hyperloom").tasks.const("x")'

# --- 5. nothing left running ---
sleep 0.5
no_leftovers() {
  local pids
  pids="$(pgrep -f "$work")" || return 0
  ps -o pid=,args= -p $pids
  return 1
}
check "nothing left running" no_leftovers
cd "$root" || true
finish
