#!/usr/bin/env bash
# Runs the official MCP conformance suite (@modelcontextprotocol/conformance,
# pinned in package.json) against `flw serve` with the fixture worker
# tests/fixtures/conformance/agent.py: every server scenario of spec versions
# 2025-11-25 and 2026-07-28. Fails when a scenario fails that
# expected-failures.txt does not list (entries: VERSION SCENARIO or VERSION
# SCENARIO:CHECK-ID, each with a # reason), and when a listed one passes. See
# README.md.
#
# Environment: FLW_BIN (default target/debug/flw), CONFORMANCE_NODE (a
# Node.js 22 or newer to run the suite with; default: `node` if it is 22 or
# newer, else the Node 22 of scripts/node22.sh),
# CONFORMANCE_KEEP=1 keeps the suite's results directory.
set -euo pipefail
export LC_ALL=C

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
FLW_BIN="${FLW_BIN:-$root/target/debug/flw}"
case "$FLW_BIN" in
  /*) ;;
  */*) FLW_BIN="$PWD/$FLW_BIN" ;;
  *) FLW_BIN="$(command -v "$FLW_BIN" || echo "$FLW_BIN")" ;;
esac
cd "$root"

SPEC_VERSIONS=(2025-11-25 2026-07-28)
FIXTURE=tests/fixtures/conformance/agent.py
EXPECTED="$here/expected-failures.txt"

die() { echo "conformance: $*" >&2; exit 1; }

[ -x "$FLW_BIN" ] || die "no flw binary at $FLW_BIN: run 'cargo build -p flw' (or set FLW_BIN)"

# The suite imports fs.globSync, which Node has from version 22 on.
node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
node="${CONFORMANCE_NODE:-}"
if [ -z "$node" ]; then
  if command -v node >/dev/null && [ "$(node_major node)" -ge 22 ]; then
    node="$(command -v node)"
  else
    node="$("$root/scripts/node22.sh")" || die "the suite needs Node.js 22 or newer: set CONFORMANCE_NODE"
  fi
fi
[ "$(node_major "$node")" -ge 22 ] || die "$node is not Node.js 22 or newer"

if [ ! -d "$here/node_modules/@modelcontextprotocol/conformance" ]; then
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error) >&2
fi
suite="$here/node_modules/@modelcontextprotocol/conformance/dist/index.js"

work="$(mktemp -d)"
flw_pid=""
workers=""

cleanup() {
  local status=$?
  if [ -n "$flw_pid" ]; then
    # flw's workers are its children (each leads its own process group).
    workers="$(pgrep -P "$flw_pid" 2>/dev/null | tr '\n' ' ' || true)"
    if kill -0 "$flw_pid" 2>/dev/null; then
      kill -TERM "$flw_pid" 2>/dev/null || true
      for _ in $(seq 100); do kill -0 "$flw_pid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$flw_pid" 2>/dev/null; then
        echo "conformance: flw did not stop within 10 s of SIGTERM; killing it" >&2
        kill -KILL "$flw_pid" 2>/dev/null || true
        status=1
      fi
    fi
    wait "$flw_pid" 2>/dev/null || true
    # A worker exits when its channel to flw closes; give it a moment.
    for pid in $workers; do
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then
        echo "conformance: worker $pid outlived flw; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
        status=1
      fi
    done
  fi
  if [ "$status" -ne 0 ] || [ "${CONFORMANCE_KEEP:-}" = 1 ]; then
    echo "conformance: results kept in $work" >&2
  else
    rm -rf "$work"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

: >"$work/flw.log"
"$FLW_BIN" serve "$FIXTURE" --listen 127.0.0.1:0 >>"$work/flw.log" 2>&1 &
flw_pid=$!

# flw prints "flw serve: listening on http://127.0.0.1:PORT ..." on stderr.
url=""
for _ in $(seq 300); do
  url="$(grep -o 'listening on http://127\.0\.0\.1:[0-9]*' "$work/flw.log" | head -n1 | sed 's/^listening on //' || true)"
  [ -n "$url" ] && break
  kill -0 "$flw_pid" 2>/dev/null || { cat "$work/flw.log" >&2; die "flw serve exited before listening"; }
  sleep 0.1
done
[ -n "$url" ] || { cat "$work/flw.log" >&2; die "flw serve did not print its address within 30 s"; }

ready=""
for _ in $(seq 300); do
  if "$node" -e 'fetch(process.argv[1]).then(r => process.exit(r.status === 200 ? 0 : 1), () => process.exit(1))' "$url/readyz"; then
    ready=1
    break
  fi
  kill -0 "$flw_pid" 2>/dev/null || { cat "$work/flw.log" >&2; die "flw serve exited before it was ready"; }
  sleep 0.1
done
[ -n "$ready" ] || { cat "$work/flw.log" >&2; die "GET $url/readyz did not answer 200 within 30 s"; }

echo "conformance: $("$node" "$suite" --version) against $url/mcp"
for v in "${SPEC_VERSIONS[@]}"; do
  # Exit status 1 means "some scenario failed": the comparison below judges.
  rc=0
  timeout 50 "$node" "$suite" server --url "$url/mcp" --suite all --spec-version "$v" \
    --timeout 10000 -o "$work/$v" >"$work/suite-$v.log" 2>&1 || rc=$?
  if [ "$rc" -gt 1 ] || ! grep -q '^=== SUMMARY ===' "$work/suite-$v.log"; then
    tail -n 40 "$work/suite-$v.log" >&2
    die "the suite did not finish for $v (exit status $rc)"
  fi
done

# Compare with expected-failures.txt.
if ! "$node" "$here/compare.cjs" "$work" "$EXPECTED" "${SPEC_VERSIONS[@]}"; then
  echo
  echo "conformance: the suite's logs are in $work (suite-VERSION.log, flw.log, VERSION/*/checks.json)"
  exit 1
fi
