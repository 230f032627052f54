"""A pool whose first start is slow (the tsx loader's `npm install`, an SDK
unpack) must not stall the rest of the server: that work runs off the async
runtime (issue: every slot waited on it on a runtime thread, so heartbeats,
probes and other pools' calls stalled meanwhile)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from conftest import FIXTURES, McpPipe
from serving import serve

NPM_SLEEP = 30  # the fake npm's install time; the checks below take far less


def slow_node_toolchain(tmp_path: Path) -> dict[str, str]:
    """PATH with a `node` too old to strip types (so TypeScript needs the
    tsx loader) and an `npm` whose install hangs, and a fresh cache."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "node").write_text('#!/bin/sh\n[ "$1" = --version ] && echo v20.0.0 && exit 0\nexit 1\n')
    (bin_dir / "npm").write_text(f"#!/bin/sh\nexec sleep {NPM_SLEEP}\n")
    for f in ("node", "npm"):
        (bin_dir / f).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("FLW_NODE", "FLW_TS_LOADER", "FLW_TOKEN")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    return env


def two_pools(tmp_path: Path) -> Path:
    (tmp_path / "agent.ts").write_text(
        'import { tool } from "flw-worker";\nexport const hi = tool({ description: "hi" }, () => "hi");\n'
    )
    config = tmp_path / "flw.toml"
    config.write_text(
        f'[pools.a_py]\nscript = "{FIXTURES / "serve_tools.py"}"\n\n[pools.b_ts]\nscript = "{tmp_path / "agent.ts"}"\n'
    )
    return config


def test_a_slow_npm_install_does_not_stall_http_or_another_pools_calls(tmp_path: Path) -> None:
    env = slow_node_toolchain(tmp_path)
    with serve("--config", str(two_pools(tmp_path)), env=env) as s:
        started = time.monotonic()
        for i in range(3):
            assert s.get("/healthz", timeout=10).status == 200
            r = s.post("/v1/tools/echo/call", {"text": f"call {i}"}, timeout=20)
            assert r.status == 200, r.body
            assert r.json()["result"] == f"call {i}"
        took = time.monotonic() - started
        assert took < NPM_SLEEP - 5, f"the other pool waited for npm ({took:.1f}s)"


def test_a_slow_npm_install_does_not_stall_mcp_ping(tmp_path: Path) -> None:
    env = slow_node_toolchain(tmp_path)
    client = McpPipe("--config", str(two_pools(tmp_path)), env=env)
    try:
        started = time.monotonic()
        for i in range(1, 4):
            client.send({"jsonrpc": "2.0", "id": i, "method": "ping"})
            assert client.reply(i, 20) == {"jsonrpc": "2.0", "id": i, "result": {}}
            time.sleep(0.5)
        took = time.monotonic() - started
        assert took < NPM_SLEEP - 5, f"ping waited for npm ({took:.1f}s)"
    finally:
        client.proc.kill()
        client.proc.wait()
