"""One suite, two languages: the same scenarios against a Python worker and
a TypeScript worker (tests/fixtures/parity/tools.{py,ts}, the same tools),
through the real `flw` binary and the official MCP Python and TypeScript SDK
clients."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client

from conftest import FIXTURES, FLW, alive, read_pids, run_flw, start_flw, wait_until, write_config

SCRIPTS = {
    "python": FIXTURES / "parity" / "tools.py",
    "typescript": FIXTURES / "parity" / "tools.ts",
}
BROKEN = {
    "python": ("broken.py", "raise RuntimeError('boom at import')\n"),
    "typescript": ("broken.ts", "throw new Error('boom at import');\nexport {};\n"),
}
GRACE = 0.5
BOUND = 3.0  # kill grace (2 s) plus slack for a loaded machine


@pytest.fixture(params=sorted(SCRIPTS))
def lang(request) -> str:
    return request.param


def script(lang: str) -> str:
    return str(SCRIPTS[lang])


def call(lang: str, tool: str, args: dict, *extra: str):
    return run_flw("call", script(lang), tool, "--json", json.dumps(args), *extra, timeout=180)


def test_call(lang):
    r = call(lang, "echo", {"text": "same in both"})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == "same in both"


def test_progress(lang):
    r = call(lang, "slow", {"seconds": 0.3, "steps": 3})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == "done"
    for i in (1, 2, 3):
        assert f"progress {i}/3: step {i}" in r.stderr


def test_cancel_kills_the_child_process(lang, tmp_path):
    pidfile = tmp_path / "pids"
    args = json.dumps({"pidfile": str(pidfile)})
    proc = start_flw("call", script(lang), "spawn_sleep", "--json", args, "--cancel-grace", f"{GRACE}s")
    worker, grandchild = read_pids(pidfile, timeout=120)
    assert alive(grandchild)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode == 130
    wait_until(lambda: not alive(grandchild) and not alive(worker), GRACE + BOUND, "sleep 300 to die")
    assert time.monotonic() - t0 < GRACE + BOUND


def test_cancel_closes_the_in_flight_http_request(lang, tmp_path, hanging_server):
    pidfile = tmp_path / "pids"
    args = json.dumps({"port": hanging_server.port, "pidfile": str(pidfile)})
    proc = start_flw("call", script(lang), "slow_http", "--json", args, "--cancel-grace", f"{GRACE}s")
    (worker,) = read_pids(pidfile, timeout=120)
    assert hanging_server.opened.wait(10)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    wait_until(lambda: hanging_server.closed_at is not None, GRACE + BOUND, "the server to see the close")
    assert hanging_server.closed_at - t0 < GRACE + BOUND
    wait_until(lambda: not alive(worker), BOUND, "the worker to die")


def test_crash_mid_call(lang):
    r = call(lang, "crash", {"code": 7})
    assert r.returncode == 1
    assert "error: worker_crashed: worker tools" in r.stderr
    assert "ended with exit status 7 while it hosted this call" in r.stderr
    assert "about to crash" in r.stderr


def test_garbage_line_is_a_protocol_error(lang):
    r = call(lang, "garbage", {})
    assert r.returncode == 1
    assert "protocol_error: worker tools" in r.stderr
    assert "broke the protocol: sent a bad line: line is not JSON" in r.stderr
    assert "this is not json" in r.stderr


def test_handshake_failure_is_a_clear_error(lang, tmp_path):
    name, body = BROKEN[lang]
    bad = tmp_path / name
    bad.write_text(body)
    r = run_flw("call", str(bad), "echo", "--json", "{}", timeout=180)
    assert r.returncode == 2
    assert f"worker {name}#1 failed to start" in r.stderr
    assert "exited with exit status 1 before its handshake" in r.stderr
    assert "boom at import" in r.stderr


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
async def test_mcp_list_call_and_cancel(lang, tmp_path: Path):
    pidfile = tmp_path / "pids"
    async with session(script(lang)) as s:
        names = {t.name for t in (await s.list_tools()).tools}
        assert names == {"echo", "slow", "spawn_sleep", "slow_http", "crash", "garbage"}
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
        if lang == "python":
            # Python pools are isolated by default: the call's worker dies with it.
            await anyio.to_thread.run_sync(
                lambda: wait_until(lambda: not alive(grandchild) and not alive(worker), 5, "the cancelled call to die")
            )
        else:
            # TypeScript pools are shared by default: the call's child dies, its
            # worker (which hosts other calls) goes on.
            await anyio.to_thread.run_sync(lambda: wait_until(lambda: not alive(grandchild), 5, "the child to die"))
            assert alive(worker)
        r = await s.call_tool("echo", {"text": "again"})
        assert r.content[0].text == "again"


@pytest.mark.anyio
async def test_mcp_shared_mode_cancel_kills_the_child_and_keeps_the_worker(lang, tmp_path: Path):
    # In shared mode the supervisor does not kill a worker whose cancelled call
    # stops within cancel_grace; the SDK itself kills the processes the call
    # started. spawn_sleep waits for its child, so it ends only once the child
    # is dead: if the SDK did not kill it, the supervisor would kill the worker.
    grace = 2.0
    config = write_config(
        tmp_path,
        f'[pools.parity]\nscript = "{script(lang)}"\nmode = "shared"\ninstances = 1\ncancel_grace = "{grace}s"\n',
    )
    pidfile = tmp_path / "pids"
    async with session("--config", str(config)) as s:
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                await s.call_tool("spawn_sleep", {"pidfile": str(pidfile)})

            tg.start_soon(run)
            while not (pidfile.exists() and pidfile.read_text().endswith("\n")):
                await anyio.sleep(0.02)
            worker, grandchild = read_pids(pidfile)
            tg.cancel_scope.cancel()  # the client sends notifications/cancelled
        await anyio.to_thread.run_sync(lambda: wait_until(lambda: not alive(grandchild), grace, "the child to die"))
        await anyio.sleep(grace + 0.5)  # past the grace: a call still running would have cost the worker
        assert alive(worker), "the worker was killed: its cancelled call did not end within cancel_grace"
        r = await s.call_tool("echo", {"text": "same worker"})
        assert r.content[0].text == "same worker"
        assert alive(worker)


@pytest.mark.anyio
async def test_mcp_hundreds_of_concurrent_calls(lang, tmp_path: Path):
    config = write_config(
        tmp_path,
        f'[pools.parity]\nscript = "{script(lang)}"\nmode = "shared"\ninstances = 2\nmax_concurrency = 256\n',
    )
    results: dict[int, str] = {}
    async with session("--config", str(config)) as s:

        async def one(i: int) -> None:
            r = await s.call_tool("echo", {"text": f"call {i}"})
            results[i] = r.content[0].text

        async with anyio.create_task_group() as tg:
            for i in range(250):
                tg.start_soon(one, i)
    assert results == {i: f"call {i}" for i in range(250)}


MCP_TS_CLIENT = Path(__file__).parent / "mcp_ts" / "client.mjs"


def test_mcp_through_the_official_typescript_client(lang, tmp_path):
    assert (MCP_TS_CLIENT.parent / "node_modules").is_dir(), "run `npm ci` in tests/mcp_ts (scripts/test.sh does)"
    pidfile = tmp_path / "pids"
    r = subprocess.run(
        ["node", str(MCP_TS_CLIENT), FLW, script(lang), str(pidfile)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    assert seen["tools"] == ["crash", "echo", "garbage", "slow", "slow_http", "spawn_sleep"]
    assert seen["slow"] == "done"
    assert seen["progress"] == [[1, 2, "step 1"], [2, 2, "step 2"]]
    assert seen["cancelled"].startswith("rejected")
    worker, grandchild = seen["pids"]
    wait_until(lambda: not alive(grandchild) and not alive(worker), 5, "the cancelled call to die")
    assert seen["again"] == "again"
