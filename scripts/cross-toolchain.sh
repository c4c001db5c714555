#!/usr/bin/env bash
# The cross toolchain for the prebuilt Linux packages (`node scripts/pack.mjs --target ...`): the
# rustup standard libraries of the four Linux targets, and zig plus cargo-zigbuild (both from PyPI,
# in a venv) as linker and C compiler for every target. zig links glibc targets against glibc 2.17
# symbols, so the arm64 glibc package loads on any glibc >= 2.17, and links musl targets against
# its own musl (no musl sysroot needed). Idempotent; everything goes under
# $HYPERLOOM_CROSS_HOME (default ~/.cache/hyperloom-cross).
#
# Usage: eval "$(bash scripts/cross-toolchain.sh)"   (prints `export PATH=...` with a directory that
# holds only zig and cargo-zigbuild: the venv's python3 stays off PATH)
set -euo pipefail
home="${HYPERLOOM_CROSS_HOME:-$HOME/.cache/hyperloom-cross}"
mkdir -p "$home"
say() { echo "cross-toolchain: $*" >&2; }

# 1. Rust standard libraries of the targets (the host's is there already).
targets=(x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu x86_64-unknown-linux-musl aarch64-unknown-linux-musl)
installed="$(rustup target list --installed)"
missing=()
for t in "${targets[@]}"; do grep -qx "$t" <<<"$installed" || missing+=("$t"); done
if [ "${#missing[@]}" -gt 0 ]; then
  say "rustup target add ${missing[*]}"
  rustup target add "${missing[@]}" >&2
fi

# 2. zig and cargo-zigbuild from PyPI; `zig` on PATH is what cargo-zigbuild and `napi build -x` call.
venv="$home/venv"
if [ ! -x "$venv/bin/cargo-zigbuild" ] || ! "$venv/bin/python3" -m ziglang version >/dev/null 2>&1; then
  say "pip install cargo-zigbuild ziglang (into $venv)"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check "cargo-zigbuild==0.24.*" "ziglang==0.17.*" >&2
fi
bin="$home/bin"
mkdir -p "$bin"
printf '#!/bin/sh\nexec "%s" -m ziglang "$@"\n' "$venv/bin/python3" >"$bin/zig"
chmod +x "$bin/zig"
ln -sf "$venv/bin/cargo-zigbuild" "$bin/cargo-zigbuild"
say "zig $("$bin/zig" version), $("$bin/cargo-zigbuild" --version)"
echo "export PATH=\"$bin:\$PATH\""
