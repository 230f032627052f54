#!/usr/bin/env bash
# Smoke run of the fuzz targets: builds them all in one go and runs each for
# FUZZ_SECONDS (60) from its committed corpus, two at a time; fails on any
# crash, leak, timeout or out-of-memory. Installs cargo-fuzz (crates.io) and
# a nightly toolchain when they are missing. New inputs the runs find stay in
# a scratch copy of the corpus, not in fuzz/corpus/.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${FUZZ_SECONDS:-60}"
targets=(protocol_line mcp_stdio_line graph_document flw_toml api_body)

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

# A debug build without a sanitizer: it builds in a fraction of the time of
# the release ASAN build the long runs use (flw is safe Rust; panics, debug
# overflow checks, timeouts and OOMs still fail the run). The long runs:
# `cargo +nightly fuzz run TARGET` as the README says.
flags=(--dev -s none)
cargo +nightly fuzz build "${flags[@]}"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

run() {
  local t="$1"
  mkdir -p "$scratch/$t"
  cp -R "corpus/$t/." "$scratch/$t/"
  if cargo +nightly fuzz run "${flags[@]}" "$t" "$scratch/$t" -- \
    -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
    -dict="dicts/$t.dict" -print_final_stats=1 >"$scratch/$t.log" 2>&1; then
    echo "fuzz $t: ok ($(grep -o 'stat::number_of_executed_units: *[0-9]*' "$scratch/$t.log" | grep -o '[0-9]*$') runs in ${seconds}s)"
  else
    tail -n 40 "$scratch/$t.log" >&2
    echo "fuzz $t: FAILED; the input is under fuzz/artifacts/$t/" >&2
    return 1
  fi
}

failed=0
pids=()
for t in "${targets[@]}"; do
  run "$t" &
  pids+=("$!")
  if [ "${#pids[@]}" -eq 2 ]; then
    wait "${pids[0]}" || failed=1
    pids=("${pids[1]}")
  fi
done
for p in "${pids[@]}"; do
  wait "$p" || failed=1
done
exit "$failed"
