"""`flw serve` against the official MCP conformance suite
(`@modelcontextprotocol/conformance`), spec versions 2025-11-25 and
2026-07-28: tests/conformance/run.sh fails on a scenario that fails and is
not in tests/conformance/expected-failures.txt, or that passes and is.
The counts ("VERSION: N of M scenarios pass") go to the run's summary."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from conftest import FLW, ROOT, report

COUNTS = re.compile(r"^conformance: \S+: \d+ of \d+ scenarios pass$", re.MULTILINE)


def test_conformance_suite_matches_the_expected_failures():
    env = dict(os.environ, FLW_BIN=FLW)
    proc = subprocess.run(
        ["bash", str(ROOT / "tests" / "conformance" / "run.sh")],
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    if proc.returncode != 0:
        pytest.fail(f"tests/conformance/run.sh exited with {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    counts = COUNTS.findall(proc.stdout)
    assert len(counts) == 2, f"run.sh printed no count for each spec version:\n{proc.stdout}"
    for line in counts:
        report(line)
