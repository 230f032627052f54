"""JavaScript and TypeScript workers (the embedded TypeScript SDK) through
the real `flw` binary: calls, progress, cancel (a child process and an
in-flight fetch stop), `.ts` scripts, and MCP through the official MCP
Python SDK client."""

from __future__ import annotations

import json
import os
import signal
import time
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client

from conftest import FLW, alive, read_pids, run_flw, start_flw, wait_until

JS_TOOLS = Path(__file__).parent / "fixtures" / "tools.mjs"
GRACE = 0.5
BOUND = 3.0


def test_call_runs_a_javascript_worker_from_its_own_folder():
    r = run_flw("call", str(JS_TOOLS), "echo", "--json", '{"text": "from node"}')
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == "from node"


def test_progress_of_a_javascript_tool_reaches_the_terminal():
    r = run_flw("call", str(JS_TOOLS), "slow", "--json", '{"seconds": 0.2, "steps": 3}')
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == "done"
    for i in range(1, 4):
        assert f"progress {i}/3: step {i}" in r.stderr


def test_tools_lists_the_schemas_of_the_exports():
    r = run_flw("tools", str(JS_TOOLS), "--json")
    assert r.returncode == 0, r.stderr
    tools = {t["name"]: t for t in json.loads(r.stdout)}
    assert set(tools) == {"echo", "slow", "spawn_sleep", "slow_http"}
    assert tools["echo"]["input_schema"]["required"] == ["text"]


def test_cancel_kills_the_child_process_of_a_javascript_tool(tmp_path):
    pidfile = tmp_path / "pids"
    args = json.dumps({"pidfile": str(pidfile)})
    proc = start_flw("call", str(JS_TOOLS), "spawn_sleep", "--json", args, "--cancel-grace", f"{GRACE}s")
    worker, grandchild = read_pids(pidfile)
    assert alive(grandchild)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode == 130
    wait_until(lambda: not alive(grandchild) and not alive(worker), GRACE + BOUND, "sleep 300 to die")
    assert time.monotonic() - t0 < GRACE + BOUND


def test_cancel_aborts_an_in_flight_fetch(tmp_path, hanging_server):
    pidfile = tmp_path / "pids"
    args = json.dumps({"port": hanging_server.port, "pidfile": str(pidfile)})
    proc = start_flw("call", str(JS_TOOLS), "slow_http", "--json", args, "--cancel-grace", f"{GRACE}s")
    (worker,) = read_pids(pidfile)
    assert hanging_server.opened.wait(10)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    wait_until(lambda: hanging_server.closed_at is not None, GRACE + BOUND, "the server to see the close")
    assert hanging_server.closed_at - t0 < GRACE + BOUND
    wait_until(lambda: not alive(worker), BOUND, "the worker to die")


TYPED = """\
import { tool } from "flw-worker";

interface Greeting {
  text: string;
}

function shout(g: Greeting): string {
  return g.text.toUpperCase();
}

export const loud = tool({
  description: "Shout the text.",
  input: { type: "object", properties: { text: { type: "string" } }, required: ["text"] },
  run: async ({ text }): Promise<string> => shout({ text }),
});
"""


@pytest.mark.parametrize("name", ["agent.ts", "agent.mts"])
def test_a_typescript_worker_runs_from_a_folder_without_package_json(tmp_path, name):
    script = tmp_path / name
    script.write_text(TYPED)
    # On Node < 22.6 the first run installs the tsx loader into flw's cache.
    r = run_flw("call", str(script), "loud", "--json", '{"text": "typed"}', timeout=180)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == "TYPED"


@pytest.fixture
def anyio_backend():
    return "asyncio"


@asynccontextmanager
async def session(*args: str):
    params = StdioServerParameters(command=FLW, args=["mcp", *args], env=dict(os.environ))
    with open(os.devnull, "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as s:
            await s.initialize()
            yield s


@pytest.mark.anyio
async def test_mcp_lists_calls_and_cancels_javascript_tools(tmp_path: Path):
    pidfile = tmp_path / "pids"
    async with session(str(JS_TOOLS)) as s:
        names = {t.name for t in (await s.list_tools()).tools}
        assert names == {"echo", "slow", "spawn_sleep", "slow_http"}
        r = await s.call_tool("echo", {"text": "hi"})
        assert not r.is_error and r.content[0].text == "hi"
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                await s.call_tool("spawn_sleep", {"pidfile": str(pidfile)})

            tg.start_soon(run)
            while not (pidfile.exists() and pidfile.read_text().endswith("\n")):
                await anyio.sleep(0.02)
            worker, grandchild = read_pids(pidfile)
            tg.cancel_scope.cancel()  # the client sends notifications/cancelled
        await anyio.to_thread.run_sync(
            lambda: wait_until(lambda: not alive(grandchild) and not alive(worker), 5, "the cancelled call to die")
        )
        r = await s.call_tool("echo", {"text": "again"})
        assert r.content[0].text == "again"
