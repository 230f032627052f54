"""`flw serve` as a daemon: hot swap reaches MCP-over-HTTP sessions as
`notifications/tools/list_changed` (and /metrics counts it), `flw ps` and
`flw cancel` find a running daemon through the instance registry, and a
client too slow to send its request is cut off."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession, types
from mcp.client.streamable_http import streamable_http_client

from conftest import alive, run_flw, wait_until
from serving import Server, metric_lines, serve

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


def metric(server: Server, name: str) -> float:
    return float(metric_lines(server.get("/metrics").body.decode()).get(name, "0"))


@pytest.mark.anyio
async def test_a_save_reaches_http_sessions_as_list_changed_and_is_counted(tmp_path: Path) -> None:
    script = tmp_path / "agent.py"
    script.write_text(V1)
    server = serve(script, "--watch", "--drain", "5s")
    base = server.url
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
        assert metric(server, 'flw_reloads_total{pool="agent",outcome="swapped"}') == 1
        assert metric(server, 'flw_generation{pool="agent"}') == 2
        assert metric(server, 'flw_calls_total{tool="added",outcome="ok"}') == 1
    finally:
        assert server.stop() == 0


SLEEPER = """
import os, subprocess
from flw import tool

@tool
def nap(pidfile: str) -> str:
    \"\"\"Start `sleep 300`, write its pid, wait for it.\"\"\"
    child = subprocess.Popen(["sleep", "300"])
    with open(pidfile + ".tmp", "w") as f:
        f.write(str(child.pid))
    os.replace(pidfile + ".tmp", pidfile)
    child.wait()
    return "rested"

@tool
def echo(text: str) -> str:
    \"\"\"Return the text.\"\"\"
    return text
"""


def test_flw_ps_lists_a_daemon_s_runs_and_flw_cancel_kills_one(tmp_path: Path) -> None:
    script = tmp_path / "agent.py"
    script.write_text(SLEEPER)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path / "run"))
    server = serve(script, "--drain", "5s", env=env)
    base = server.url
    try:
        pidfile = tmp_path / "child.pid"
        run = server.post("/v1/tools/nap/call?async=true", {"pidfile": str(pidfile)}).json()
        assert run["status"] == "running"
        wait_until(pidfile.exists, 30, "the tool's child")
        child = int(pidfile.read_text())

        listed = run_flw("ps", "--json", env=env)
        assert listed.returncode == 0, listed.stderr
        servers = json.loads(listed.stdout)["servers"]
        assert [s["url"] for s in servers] == [base]
        assert servers[0]["pid"] == server.proc.pid
        assert [(r["id"], r["name"], r["status"]) for r in servers[0]["runs"]] == [(run["id"], "nap", "running")]
        text = run_flw("ps", env=env).stdout
        assert base in text and run["id"] in text, text

        cancelled = run_flw("cancel", run["id"], env=env)
        assert cancelled.returncode == 0, cancelled.stderr
        assert f"cancelled {run['id']}" in cancelled.stdout
        assert not alive(child), "the tool's child outlived the cancel"
        ended = server.get(f"/v1/runs/{run['id']}").json()
        assert ended["status"] == "cancelled" and ended["error"]["kind"] == "cancelled"
        assert json.loads(run_flw("ps", "--json", env=env).stdout)["servers"][0]["runs"] == []

        missing = run_flw("cancel", "r_00ff", env=env)
        assert missing.returncode == 1
        assert "no running flw serve has a run" in missing.stderr
        invalid = run_flw("cancel", "nope", env=env)
        assert invalid.returncode == 2 and "is not a run id" in invalid.stderr
    finally:
        assert server.stop() == 0
    gone = run_flw("cancel", "r_0a", env=env)
    assert gone.returncode == 1 and "no flw serve of this user is running" in gone.stderr


def test_a_client_too_slow_with_its_headers_or_body_is_cut_off(tmp_path: Path) -> None:
    script = tmp_path / "agent.py"
    script.write_text(SLEEPER)
    config = tmp_path / "flw.toml"
    config.write_text('[pools.agent]\nscript = "agent.py"\n\n[serve]\nclient_timeout = "1s"\n')
    server = serve("--config", config, "--drain", "5s")
    port = server.port
    try:
        # Headers that never end.
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
            s.sendall(b"POST /v1/tools/echo/call HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            started = time.monotonic()
            reply = s.recv(4096)
            assert time.monotonic() - started < 15, "the connection was not cut"
            assert reply == b"" or reply.startswith(b"HTTP/1.1 408"), reply
        # A body that stops halfway.
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
            s.sendall(
                b"POST /v1/tools/echo/call HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"text": '
            )
            reply = s.recv(4096)
            assert reply.startswith(b"HTTP/1.1 408") or reply.startswith(b"HTTP/1.1 400"), reply
        # The server still serves.
        assert server.post("/v1/tools/echo/call", {"text": "on"}).json()["result"] == "on"
    finally:
        assert server.stop() == 0


def test_two_scripts_that_would_share_a_pool_name_are_refused(tmp_path: Path) -> None:
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "agent.py").write_text(SLEEPER)
    r = run_flw(
        "serve", str(tmp_path / "one" / "agent.py"), str(tmp_path / "two" / "agent.py"), "--listen", "127.0.0.1:0"
    )
    assert r.returncode == 2
    assert 'would both be pool "agent"' in r.stderr and "flw.toml" in r.stderr
