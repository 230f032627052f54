"""`flw serve` at /mcp (MCP Streamable HTTP) driven by the official MCP
Python SDK client (a 2025-11-25 session, and the sessionless 2026-07-28
protocol through `server/discover`), by raw HTTP for the stateless path, and
by the official TypeScript SDK client (mcp_ts/http_client.mjs)."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from conftest import alive, read_pids, wait_until
from serving import (
    MODERN,
    SERVE_TOOLS,
    Server,
    env_without_token,
    read_sse,
    serve,
    stateless_call,
    wait_dead,
    write_serve_config,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve_mcp")
    cfg = write_serve_config(tmp, '[pools.tools]\nscript = "tools.py"\ninstances = 3\n')
    with serve("--config", cfg) as s:
        s.wait_ready()
        yield s


@asynccontextmanager
async def session(s: Server, modern: bool = False):
    """A ClientSession over Streamable HTTP: the initialize handshake, or
    server/discover and the 2026-07-28 per-request envelope."""
    async with streamable_http_client(f"{s.url}/mcp") as (read, write), ClientSession(read, write) as c:
        if modern:
            await c.discover()
        else:
            await c.initialize()
        yield c


async def wait_for_pids(pidfile: Path) -> list[int]:
    while not (pidfile.exists() and pidfile.read_text().endswith("\n")):
        await anyio.sleep(0.02)
    return [int(x) for x in pidfile.read_text().split()]


async def check_cancel_kills_the_call(c: ClientSession, pidfile: Path) -> None:
    """Cancels a spawn_sleep call from the client; its worker and `sleep` die
    and the next call works."""
    async with anyio.create_task_group() as tg:

        async def run() -> None:
            await c.call_tool("spawn_sleep", {"pidfile": str(pidfile)})

        tg.start_soon(run)
        with anyio.fail_after(30):
            pids = await wait_for_pids(pidfile)
        assert all(alive(p) for p in pids)
        tg.cancel_scope.cancel()
    await anyio.to_thread.run_sync(lambda: wait_dead(pids, 10, "the cancelled call's worker and sleep to die"))
    r = await c.call_tool("echo", {"text": "after the cancel"})
    assert r.content[0].text == "after the cancel"


@pytest.mark.parametrize("modern", [False, True], ids=["session-2025-11-25", "stateless-2026-07-28"])
async def test_python_sdk_lists_calls_and_gets_progress(server, modern):
    async with session(server, modern) as c:
        assert c.protocol_version == (MODERN if modern else "2025-11-25")
        assert c.server_info is not None and c.server_info.name == "flw"
        tools = {t.name: t for t in (await c.list_tools()).tools}
        assert set(tools) == {"echo", "aecho", "steps", "spawn_sleep", "fail", "agent", "ticker"}
        assert tools["echo"].input_schema["properties"] == {"text": {"type": "string"}}

        r = await c.call_tool("echo", {"text": "over http"})
        assert not r.is_error
        assert r.content[0].text == "over http"

        seen: list[tuple[float, float | None, str | None]] = []

        async def on_progress(progress, total, message):
            seen.append((progress, total, message))

        r = await c.call_tool("steps", {"count": 4}, progress_callback=on_progress)
        assert r.content[0].text == "4 steps"
        assert seen == [(i, 4, f"step {i}") for i in range(1, 5)]

        r = await c.call_tool("fail", {"message": "bad url"})
        assert r.is_error
        assert "tool_error: ValueError: bad url" in r.content[0].text

        # A flow is a tool: the arguments are the initial store, the result the final one.
        r = await c.call_tool("agent", {"question": "why"})
        assert not r.is_error, r.content[0].text
        store = json.loads(r.content[0].text)
        assert store == {"question": "why", "notes": ["note 0", "note 1"], "answer": "note 0 / note 1"}


@pytest.mark.parametrize("modern", [False, True], ids=["session-2025-11-25", "stateless-2026-07-28"])
async def test_python_sdk_cancel_kills_the_tool_and_its_child(server, tmp_path, modern):
    async with session(server, modern) as c:
        await check_cancel_kills_the_call(c, tmp_path / "pids")


async def test_many_sessions_at_once_get_their_own_results(server):
    results: dict[int, str] = {}

    async def one(i: int) -> None:
        async with session(server) as c:
            for j in range(3):
                r = await c.call_tool("aecho", {"text": f"{i}-{j}", "delay": 0.01})
                results[i * 3 + j] = r.content[0].text

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(one, i)
    assert results == {i * 3 + j: f"{i}-{j}" for i in range(20) for j in range(3)}


# --- the stateless protocol by hand ---------------------------------------


def test_a_stateless_request_needs_no_session(server):
    body, headers = stateless_call(7, "steps", {"count": 2}, progress_token="p")
    conn = server.connection()
    conn.request("POST", "/mcp", body=json.dumps(body), headers=headers)
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("mcp-session-id") is None
    messages = [json.loads(e.data) for e in read_sse(resp, stop_after=None) if e.data]
    conn.close()
    assert [m.get("method") for m in messages[:2]] == ["notifications/progress"] * 2
    assert [m["params"]["progress"] for m in messages[:2]] == [1, 2]
    assert messages[-1]["id"] == 7
    assert messages[-1]["result"]["content"][0]["text"] == "2 steps"


def test_a_stateless_call_is_cancelled_when_its_client_disconnects(server, tmp_path):
    pidfile = tmp_path / "pids"
    body, headers = stateless_call(1, "spawn_sleep", {"pidfile": str(pidfile)})
    conn = server.connection()
    conn.request("POST", "/mcp", body=json.dumps(body), headers=headers)
    worker, child = read_pids(pidfile)
    time.sleep(0.2)
    assert alive(worker) and alive(child)
    conn.close()
    wait_dead([worker, child], 10, "the stateless call's worker and sleep to die after the disconnect")
    r = server.post("/v1/tools/echo/call", {"text": "still serving"})
    assert r.json()["result"] == "still serving"


def test_sigterm_lets_mcp_calls_in_flight_finish_and_answers_the_rest(tmp_path):
    cfg = write_serve_config(tmp_path, '[pools.tools]\nscript = "tools.py"\ninstances = 2\n[serve]\ndrain = "2s"\n')
    answers: dict[str, tuple[int, list[dict]]] = {}

    with serve("--config", cfg) as s:
        s.wait_ready()

        def call(key: str, seconds: float) -> None:
            body, headers = stateless_call(1, "spawn_sleep", {"pidfile": str(tmp_path / key), "seconds": seconds})
            conn = s.connection()
            conn.request("POST", "/mcp", body=json.dumps(body), headers=headers)
            resp = conn.getresponse()
            answers[key] = (resp.status, [json.loads(e.data) for e in read_sse(resp, stop_after=None) if e.data])
            conn.close()

        threads = [threading.Thread(target=call, args=("long", 300))]
        threads[0].start()
        pids = read_pids(tmp_path / "long")
        threads.append(threading.Thread(target=call, args=("short", 1.5)))
        threads[-1].start()
        pids += read_pids(tmp_path / "short")
        assert s.stop(signal.SIGTERM) == 0, s.stderr
        for t in threads:
            t.join(10)

    wait_dead(pids, 10, "every worker and sleep to die")
    status, messages = answers["short"]
    assert status == 200
    assert messages[-1]["result"]["content"][0]["text"] == "slept 1.5"
    # The call that outlived the drain is answered too, saying why it ended.
    status, messages = answers["long"]
    assert status == 200 and messages, f"HTTP {status} with {messages} for the MCP call cancelled at shutdown"
    last = messages[-1]
    assert last["id"] == 1
    said = json.dumps(last.get("error") or last["result"])
    assert "cancelled" in said or "shutting" in said, last


async def test_python_sdk_sends_the_bearer_token(tmp_path):
    token = "t0ken-for-the-mcp-e2e-tests-0123456789"
    with serve(SERVE_TOOLS, env=env_without_token(FLW_TOKEN=token)) as s:
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=60) as http,
            streamable_http_client(f"{s.url}/mcp", http_client=http) as (read, write),
            ClientSession(read, write) as c,
        ):
            await c.initialize()
            r = await c.call_tool("echo", {"text": "authorized"})
            assert r.content[0].text == "authorized"
        assert s.post("/mcp", {}, headers={"Accept": "application/json, text/event-stream"}).status == 401


# --- the official TypeScript SDK client -------------------------------------

TS_CLIENT = Path(__file__).parent / "mcp_ts" / "http_client.mjs"


def test_typescript_sdk_client_over_streamable_http(tmp_path):
    assert (TS_CLIENT.parent / "node_modules").is_dir(), "run `npm ci` in tests/mcp_ts (scripts/test.sh does)"
    cfg = write_serve_config(tmp_path, '[pools.tools]\nscript = "tools.py"\ninstances = 2\n')
    pidfile = tmp_path / "pids"
    with serve("--config", cfg) as s:
        r = subprocess.run(
            ["node", str(TS_CLIENT), f"{s.url}/mcp", str(pidfile)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr
        seen = json.loads(r.stdout)
        assert seen["protocolVersion"] == "2025-11-25"
        assert seen["sessionId"]
        assert seen["server"] == "flw"
        assert seen["tools"] == ["aecho", "agent", "echo", "fail", "spawn_sleep", "steps", "ticker"]
        assert seen["steps"] == "3 steps"
        assert seen["progress"] == [[1, 3, "step 1"], [2, 3, "step 2"], [3, 3, "step 3"]]
        assert seen["cancelled"].startswith("rejected")
        worker, child = seen["pids"]
        wait_until(lambda: not alive(child) and not alive(worker), 10, "the cancelled call to die")
        assert seen["again"] == "again"
