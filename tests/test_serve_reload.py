"""Hot swap under `flw serve`: a save reaches MCP-over-HTTP session clients
as `notifications/tools/list_changed` on their stream, the new tool
answers, and /metrics counts the swap and the new generation."""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession, types
from mcp.client.streamable_http import streamable_http_client

from conftest import FLW

V1 = '''
from flw import tool

@tool
def ping() -> str:
    """Answer pong."""
    return "pong"
'''

V2 = (
    V1
    + '''
@tool
def added(x: int) -> int:
    """Double x."""
    return 2 * x
'''
)


def start(script: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [FLW, "serve", str(script), "--listen", "127.0.0.1:0", "--watch"],
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        if m:
            return proc, m.group(1)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError("flw serve did not say where it listens")


def metric(base: str, name: str) -> float:
    body = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
    for line in body.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.anyio
async def test_a_save_reaches_http_sessions_as_list_changed_and_is_counted(tmp_path: Path) -> None:
    script = tmp_path / "agent.py"
    script.write_text(V1)
    proc, base = start(script)
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    try:
        async with (
            streamable_http_client(base + "/mcp") as (read, write),
            ClientSession(read, write, message_handler=on_message) as s,
        ):
            await s.initialize()
            names = [t.name for t in (await s.list_tools()).tools]
            assert names == ["ping"]
            await anyio.sleep(0.5)  # the session's stream is open
            script.write_text(V2)
            with anyio.fail_after(30):
                await changed.wait()
            names = [t.name for t in (await s.list_tools()).tools]
            assert names == ["ping", "added"]
            result = await s.call_tool("added", {"x": 21})
            assert result.structured_content is None or result.structured_content == {}
            block = result.content[0]
            assert isinstance(block, types.TextContent) and block.text == "42"
        assert metric(base, 'flw_reloads_total{pool="agent",outcome="swapped"}') == 1
        assert metric(base, 'flw_generation{pool="agent"}') == 2
        assert metric(base, 'flw_calls_total{tool="added",outcome="ok"}') == 1
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
