#!/usr/bin/env bash
# Install test: a new user on a machine without Rust installs the packed tarballs from npm.
# Packs hyperloom-<version>.tgz and the platform package (scripts/pack.mjs, which needs cargo), then,
# with cargo and rustc NOT on PATH, installs both into an empty temporary project and checks the
# guide's first example, the commands, CommonJS/ESM loading, the types, and the loader's message
# when the platform package is missing. Also checks that the SDK crate passes `cargo package`. Ends with `N passed, N failed`; exits non-zero on a failure.
# Nothing is left running and the temporary project is removed.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
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

# --- 1. pack (the only step that needs cargo) ---
check "npm run pack: main and platform tarballs" node "$root/scripts/pack.mjs" --out-dir "$work/pack"
cat "$log" | grep -E '\.tgz|^in ' | sed 's/^/     /'
main_tgz="$(ls "$work"/pack/hyperloom-[0-9]*.tgz 2>/dev/null | head -n 1)"
plat_tgz="$(ls "$work"/pack/hyperloom-binding-*.tgz 2>/dev/null | head -n 1)"
if [ -z "$main_tgz" ] || [ -z "$plat_tgz" ]; then finish; fi
plat_name="$(tar xzf "$plat_tgz" -O package/package.json | node -e 'process.stdout.write(JSON.parse(require("fs").readFileSync(0, "utf8")).name)')"
target="${plat_name#@hyperloom/binding-}"

# The Rust SDK crate for native task extensions is publishable as it is (packaged and verified).
check "cargo package -p loom-task (the SDK crate for extensions)" \
  cargo package -p loom-task --allow-dirty --manifest-path "$root/Cargo.toml"

# --- 2. a PATH without cargo and rustc ---
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
export PATH="${new_path#:}"
unset CARGO_TARGET_DIR CARGO_HOME RUSTUP_HOME
check "cargo and rustc are not on PATH" bash -c '! command -v cargo && ! command -v rustc && command -v node && command -v npm'

# --- 3. an empty project installing the tarballs ---
mkdir -p "$app"
cd "$app" || finish
cat >package.json <<'EOF'
{ "name": "hyperloom-install-test", "version": "1.0.0", "private": true, "type": "module" }
EOF
cp "$main_tgz" "$plat_tgz" .
check "npm install ./$(basename "$main_tgz") ./$(basename "$plat_tgz") (+ typescript@5.9.3 from the registry)" \
  npm install --no-audit --no-fund "./$(basename "$main_tgz")" "./$(basename "$plat_tgz")" typescript@5.9.3 @types/node@20
check "the platform package holds the .node; the main package holds none, and no sources" bash -c "
  test -f node_modules/$plat_name/hyperloom.$target.node &&
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
  bash -c 'timeout -k 5 60 npx hyperloom local --workers 2 hello.mjs | tee /dev/stderr | grep -qx "Hello world!"'
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
  expect_message timeout -k 5 30 npx loom-server --port $((20000 + RANDOM % 20000))
check "no platform package: hyperloom local fails with the same single message" \
  expect_message timeout -k 5 30 npx hyperloom local --workers 1 hello.mjs
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
