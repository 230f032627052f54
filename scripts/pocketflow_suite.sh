#!/usr/bin/env bash
# Runs PocketFlow's own test suite against flw's Python SDK: the tests/ of the
# pocketflow sdist on PyPI (version and hash pinned in pocketflow_suite.txt),
# with a module named pocketflow that re-exports flw's classes
# (workers-python/tests/pocketflow_compat). Nothing of PocketFlow is kept in
# this repository; the sdist is fetched from the registry at test time.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$python" -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
  --require-hashes -r "$root/scripts/pocketflow_suite.txt" -d "$work"
# Only tests/: each test puts the unpacked folder first on sys.path, so
# PocketFlow's own module must not be there for the shim to be the one found.
tar -xzf "$work"/pocketflow-*.tar.gz -C "$work" --wildcards '*/tests/*'
cd "$work"/pocketflow-*/
PYTHONPATH="$root/workers-python/tests/pocketflow_compat:$root/workers-python/src" \
  "$python" -m pytest -q -p no:cacheprovider tests
