"""`flw mcp` on the wire: each MCP protocol version rmcp supports, the
stateless 2026-07-28 revision, stdout hygiene and bad configs."""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import FLW, TOOLS, run_flw, write_config

META_2026 = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


def exchange(messages: list[dict], expect: int) -> list[dict]:
    """Sends messages to flw mcp and reads `expect` replies from stdout."""
    proc = subprocess.Popen(
        [FLW, "mcp", str(TOOLS)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    for m in messages:
        proc.stdin.write((json.dumps(m) + "\n").encode())
    proc.stdin.flush()
    replies = []
    try:
        for _ in range(expect):
            line = proc.stdout.readline()
            assert line, "flw mcp closed stdout early"
            replies.append(json.loads(line))  # every stdout line is JSON-RPC
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    return replies


@pytest.mark.parametrize("version", ["2025-06-18", "2025-11-25"])
def test_initialize_negotiates_the_clients_version(version):
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "noisy", "arguments": {"text": "x"}}}
    initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    r1, r2 = exchange([init, initialized, call], 2)
    assert r1["result"]["protocolVersion"] == version
    assert r1["result"]["capabilities"]["tools"] == {"listChanged": True}
    # The tool printed to stdout three ways; none of it reached flw's stdout.
    assert r2["id"] == 2 and r2["result"]["content"] == [{"type": "text", "text": "x"}]


def test_stateless_2026_07_28_requests_work_without_initialize():
    discover = {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": META_2026}}
    call = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "stateless"}, "_meta": META_2026},
    }
    r1, r2 = exchange([discover, call], 2)
    assert "2026-07-28" in r1["result"]["supportedVersions"]
    assert r2["result"]["content"] == [{"type": "text", "text": "stateless"}]


def test_unknown_tool_is_a_json_rpc_error():
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "nope", "arguments": {}}}
    _, r2 = exchange([init, {"jsonrpc": "2.0", "method": "notifications/initialized"}, call], 2)
    assert r2["error"]["code"] == -32602
    assert 'no tool named "nope"' in r2["error"]["message"]


def test_bad_config_is_refused_with_file_line_and_column(tmp_path):
    cfg = write_config(tmp_path, '[pools.tools]\nscript = "tools.py"\ninstances = "many"\n')
    r = run_flw("mcp", "--config", str(cfg))
    assert r.returncode == 2
    assert f'error: {cfg}:3:13: invalid type: string "many"' in r.stderr
