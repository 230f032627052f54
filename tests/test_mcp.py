"""`flw mcp` driven by the official MCP Python SDK client (`mcp` from PyPI):
list, call, progress, cancel, concurrency and errors."""

from __future__ import annotations

import os
import time
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client

from conftest import FLW, RAW_WORKER, TOOLS, alive, read_pids, wait_until, write_config

pytestmark = pytest.mark.anyio


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


async def test_list_tools_comes_from_the_worker_manifest():
    async with session(str(TOOLS)) as s:
        tools = {t.name: t for t in (await s.list_tools()).tools}
    assert {"echo", "aecho", "sleepy", "spawn_sleep", "steps"} <= set(tools)
    echo = tools["echo"]
    assert echo.description == "Return the text unchanged."
    assert echo.input_schema["properties"] == {"text": {"type": "string"}}
    assert echo.input_schema["required"] == ["text"]


async def test_call_returns_text_content():
    async with session(str(TOOLS)) as s:
        r = await s.call_tool("echo", {"text": "hi"})
    assert not r.is_error
    assert r.content[0].text == "hi"


async def test_progress_notifications_arrive_in_order_before_the_result():
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress, total, message):
        seen.append((progress, total, message))

    async with session(str(TOOLS)) as s:
        r = await s.call_tool("steps", {"count": 4}, progress_callback=on_progress)
    assert r.content[0].text == "4 steps"
    assert seen == [(i, 4, f"step {i}") for i in range(1, 5)]


async def test_tool_exception_is_an_error_result_with_the_message():
    async with session(str(TOOLS)) as s:
        r = await s.call_tool("fail", {"message": "bad url"})
    assert r.is_error
    assert "tool_error: ValueError: bad url" in r.content[0].text


async def test_invalid_arguments_are_an_error_result_naming_the_problem():
    async with session(str(TOOLS)) as s:
        r = await s.call_tool("echo", {"text": 5})
    assert r.is_error
    assert 'invalid arguments for tool echo: /text: 5 is not of type "string"' in r.content[0].text


async def test_cancel_kills_the_tool_and_its_child_process(tmp_path: Path):
    pidfile = tmp_path / "pids"
    async with session(str(TOOLS)) as s:
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                await s.call_tool("spawn_sleep", {"pidfile": str(pidfile)})

            tg.start_soon(run)
            while not (pidfile.exists() and pidfile.read_text().endswith("\n")):
                await anyio.sleep(0.02)
            worker, grandchild = read_pids(pidfile)
            t0 = time.monotonic()
            tg.cancel_scope.cancel()  # the client sends notifications/cancelled
        await anyio.to_thread.run_sync(
            lambda: wait_until(lambda: not alive(grandchild) and not alive(worker), 5, "the cancelled call to die")
        )
        assert time.monotonic() - t0 < 5
        # The slot was refilled: the next call works.
        r = await s.call_tool("echo", {"text": "after"})
        assert r.content[0].text == "after"


@pytest.mark.parametrize("mode", ["isolated", "shared"])
async def test_two_hundred_concurrent_calls_get_their_own_results(tmp_path: Path, mode: str):
    cfg = write_config(tmp_path, f'[pools.tools]\nscript = "tools.py"\nmode = "{mode}"\ninstances = 2\n')
    results: dict[int, str] = {}
    async with session("--config", str(cfg)) as s:

        async def one(i: int) -> None:
            r = await s.call_tool("aecho", {"text": f"call-{i}", "delay": 0.01})
            results[i] = r.content[0].text

        async with anyio.create_task_group() as tg:
            for i in range(200):
                tg.start_soon(one, i)
    assert results == {i: f"call-{i}" for i in range(200)}


async def test_shared_mode_escalation_fails_sibling_calls_with_worker_killed(tmp_path: Path):
    cfg = write_config(
        tmp_path,
        '[pools.tools]\nscript = "tools.py"\nmode = "shared"\ninstances = 1\ncancel_grace = "200ms"\n',
    )
    pidfile = tmp_path / "pids"
    sibling: dict[str, object] = {}
    async with session("--config", str(cfg)) as s:

        async def run_sibling() -> None:
            sibling["result"] = await s.call_tool("aecho", {"text": "sibling", "delay": 30})

        async with anyio.create_task_group() as outer:
            outer.start_soon(run_sibling)
            async with anyio.create_task_group() as tg:

                async def run_sleepy() -> None:
                    await s.call_tool("sleepy", {"seconds": 300, "pidfile": str(pidfile)})

                tg.start_soon(run_sleepy)
                while not (pidfile.exists() and pidfile.read_text().endswith("\n")):
                    await anyio.sleep(0.02)
                tg.cancel_scope.cancel()  # a sync tool ignores the cooperative cancel
        r = sibling["result"]
        assert r.is_error
        assert "worker_killed: worker tools.py#1 was killed because call" in r.content[0].text
        # A new worker took the slot.
        r = await s.call_tool("echo", {"text": "again"})
        assert r.content[0].text == "again"


async def test_crashes_restart_the_slot_until_the_ceiling(tmp_path: Path):
    cfg = write_config(
        tmp_path,
        '[pools.tools]\nscript = "tools.py"\ninstances = 1\nmax_restarts = 1\n',
    )
    async with session("--config", str(cfg)) as s:
        r = await s.call_tool("crash", {"code": 3})
        assert r.is_error and "worker_crashed" in r.content[0].text
        assert "ended with exit status 3" in r.content[0].text
        r = await s.call_tool("echo", {"text": "restarted"})
        assert r.content[0].text == "restarted"
        r = await s.call_tool("crash", {"code": 4})
        assert r.is_error and "worker_crashed" in r.content[0].text
        r = await s.call_tool("echo", {"text": "no worker left"})
        assert r.is_error
        assert "unavailable: pool tools has no worker: worker tools.py#2 ended with exit status 4" in r.content[0].text


async def test_protocol_errors_count_toward_the_restart_ceiling(tmp_path: Path):
    # Regression: a worker that broke the protocol was restarted at once, forever.
    cfg = write_config(
        tmp_path,
        '[pools.tools]\nscript = "tools.py"\ninstances = 1\nmax_restarts = 1\n'
        f'interpreter = "{RAW_WORKER}"\nenv = {{ RAW_MODE = "garbage" }}\n',
    )
    async with session("--config", str(cfg)) as s:
        for _ in range(2):
            r = await s.call_tool("echo", {})
            assert r.is_error and "protocol_error" in r.content[0].text
        r = await s.call_tool("echo", {})
        assert r.is_error and "unavailable: pool tools has no worker" in r.content[0].text


async def test_a_caller_that_left_the_queue_does_not_count_against_its_bound(tmp_path: Path):
    # Regression: cancelled waiters stayed in the queue and caused false `overloaded`.
    cfg = write_config(tmp_path, '[pools.tools]\nscript = "tools.py"\ninstances = 1\nqueue = 1\n')
    async with session("--config", str(cfg)) as s, anyio.create_task_group() as tg:
        tg.start_soon(s.call_tool, "sleepy", {"seconds": 1.5})
        await anyio.sleep(0.3)
        with anyio.move_on_after(0.3):
            await s.call_tool("echo", {"text": "gives up while queued"})
        r = await s.call_tool("echo", {"text": "queued after"})
        assert not r.is_error, r.content[0].text
        assert r.content[0].text == "queued after"
