"""Elastic pools and fork-served Python workers, through the real binary:
hundreds of model-like calls at once on the defaults, the per-call kill of
processes that left their group, the fork server's fallbacks and crashes,
flw's own death, hot swap under load, and idle workers stopped."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from conftest import FIXTURES, FLW, alive, cmdline, descendants, ppid_map, read_pids, wait_until
from serving import Server

ELASTIC = FIXTURES / "elastic"
TOOLS = ELASTIC / "tools.py"
HANG = 60.0  # generous bounds: they catch hangs, the benchmark times things


def fork_servers(flw_pid: int) -> list[int]:
    return [p for p, pp in ppid_map().items() if pp == flw_pid and "--fork-server" in cmdline(p)]


@asynccontextmanager
async def mcp(*args: str, errlog_path: Path | None = None, env: dict[str, str] | None = None):
    params = StdioServerParameters(command=FLW, args=["mcp", *args], env=env or dict(os.environ))
    with open(errlog_path or os.devnull, "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as s:
            await s.initialize()
            yield s


def payload(result) -> dict:
    assert not result.is_error, result.content
    return result.structured_content or __import__("json").loads(result.content[0].text)


@pytest.mark.anyio
@pytest.mark.parametrize("tool", ["wait_async", "wait_sync"])
async def test_256_model_like_calls_at_once_on_the_defaults(tool):
    results: dict[int, dict] = {}
    began = time.monotonic()
    async with mcp(str(TOOLS)) as s:

        async def one(i: int) -> None:
            results[i] = payload(await s.call_tool(tool, {"ms": 1000, "tag": i}))

        with anyio.fail_after(HANG):
            async with anyio.create_task_group() as tg:
                for i in range(256):
                    tg.start_soon(one, i)
    assert sorted(results) == list(range(256))
    assert all(results[i]["tag"] == i for i in results)
    # One call at a time per worker: 256 one-second calls in a few seconds
    # took many workers (the old default had one per core).
    pids = {r["pid"] for r in results.values()}
    assert len(pids) >= 32, f"{len(pids)} workers served 256 calls"
    assert time.monotonic() - began < HANG


@pytest.mark.anyio
async def test_cancelling_one_call_among_256_kills_its_escaped_grandchild_only(tmp_path):
    pidfile = tmp_path / "pids"
    results: dict[int, dict] = {}
    async with mcp(str(TOOLS)) as s:

        async def one(i: int) -> None:
            results[i] = payload(await s.call_tool("wait_sync", {"ms": 4000, "tag": i}))

        with anyio.fail_after(HANG):
            async with anyio.create_task_group() as tg:
                for i in range(255):
                    tg.start_soon(one, i)
                async with anyio.create_task_group() as victim:

                    async def escape() -> None:
                        await s.call_tool("escape", {"pidfile": str(pidfile), "how": "setsid"})

                    victim.start_soon(escape)
                    worker, grandchild = await anyio.to_thread.run_sync(lambda: read_pids(pidfile))
                    assert alive(grandchild)
                    victim.cancel_scope.cancel()  # notifications/cancelled
                await anyio.to_thread.run_sync(
                    lambda: wait_until(lambda: not alive(grandchild) and not alive(worker), 10, "the call's processes")
                )
    assert sorted(results) == list(range(255))
    assert all(results[i]["tag"] == i for i in results)


def escape_config(tmp_path: Path, extra: str = "") -> Path:
    shutil.copy(TOOLS, tmp_path / "tools.py")
    cfg = tmp_path / "flw.toml"
    cfg.write_text(f'[pools.tools]\nscript = "tools.py"\ncancel_grace = "200ms"\n{extra}')
    return cfg


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["setsid", "double_fork"])
@pytest.mark.parametrize("spawn", ["fork", "exec"])
async def test_a_cancel_kills_grandchildren_that_left_the_group(tmp_path, how, spawn):
    cfg = escape_config(tmp_path, f'spawn = "{spawn}"\n')
    pidfile = tmp_path / "pids"
    async with mcp("--config", str(cfg)) as s:
        with anyio.fail_after(HANG):
            async with anyio.create_task_group() as tg:

                async def escape() -> None:
                    await s.call_tool("escape", {"pidfile": str(pidfile), "how": how})

                tg.start_soon(escape)
                worker, grandchild = await anyio.to_thread.run_sync(lambda: read_pids(pidfile))
                assert alive(grandchild) and os.getsid(grandchild) != os.getsid(worker)
                tg.cancel_scope.cancel()
            await anyio.to_thread.run_sync(
                lambda: wait_until(lambda: not alive(grandchild) and not alive(worker), 10, "the escaped sleep to die")
            )
            # The pool goes on with a new worker.
            assert payload(await s.call_tool("wait_async", {"ms": 1}))["pid"] != worker


@pytest.mark.parametrize("how", ["setsid", "double_fork"])
def test_a_timeout_kills_grandchildren_that_left_the_group(tmp_path, how):
    pidfile = tmp_path / "pids"
    args = f'{{"pidfile": "{pidfile}", "how": "{how}"}}'
    proc = subprocess.Popen(
        [FLW, "call", str(TOOLS), "escape", "--json", args, "--timeout", "2s", "--cancel-grace", "200ms"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    worker, grandchild = read_pids(pidfile)
    out, err = proc.communicate(timeout=HANG)
    assert proc.returncode != 0 and b"timed out" in err, err
    wait_until(lambda: not alive(grandchild) and not alive(worker), 10, "the escaped sleep to die")


@pytest.mark.parametrize("how", ["setsid", "double_fork"])
def test_sigkill_of_flw_kills_grandchildren_that_left_the_group(tmp_path, how):
    pidfile = tmp_path / "pids"
    args = f'{{"pidfile": "{pidfile}", "how": "{how}"}}'
    proc = subprocess.Popen(
        [FLW, "call", str(TOOLS), "escape", "--json", args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker, grandchild = read_pids(pidfile)
    below = descendants(proc.pid) | {grandchild}
    proc.kill()
    proc.wait()
    wait_until(lambda: not any(alive(p) for p in below), 10, "every process flw started to die")


@pytest.mark.anyio
async def test_sigkill_of_flw_with_100_busy_forked_workers_leaves_no_process(tmp_path):
    errlog = tmp_path / "stderr"
    pidfile = tmp_path / "pids"
    params = StdioServerParameters(command=FLW, args=["mcp", str(TOOLS)], env=dict(os.environ))
    with open(errlog, "w") as err:
        async with stdio_client(params, errlog=err) as (read, write), ClientSession(read, write) as s:
            await s.initialize()
            flw_pid = next(p for p, pp in ppid_map().items() if pp == os.getpid() and cmdline(p).startswith(FLW))

            async def call(tool: str, args: dict) -> None:
                with contextlib.suppress(Exception):  # flw is killed under it
                    await s.call_tool(tool, args)

            with anyio.fail_after(HANG):
                async with anyio.create_task_group() as tg:
                    for i in range(99):
                        tg.start_soon(call, "wait_sync", {"ms": 300_000, "tag": i})
                    tg.start_soon(call, "escape", {"pidfile": str(pidfile), "how": "double_fork"})
                    _, grandchild = await anyio.to_thread.run_sync(lambda: read_pids(pidfile))
                    # 100 workers busy: 100 keepers below the fork server.
                    await anyio.to_thread.run_sync(
                        lambda: wait_until(
                            lambda: len(descendants(flw_pid)) >= 200, HANG, "100 forked workers and their keepers"
                        )
                    )
                    assert fork_servers(flw_pid), "the workers were not forked"
                    below = descendants(flw_pid) | {grandchild}
                    os.kill(flw_pid, signal.SIGKILL)
                    await anyio.to_thread.run_sync(
                        lambda: wait_until(lambda: not any(alive(p) for p in below), 20, "every process flw started")
                    )
                    tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_a_script_that_starts_threads_at_import_is_served_by_exec(tmp_path):
    errlog = tmp_path / "stderr"
    env = {**os.environ, "FLW_LOG": "info"}
    async with mcp(str(ELASTIC / "threads_at_import.py"), errlog_path=errlog, env=env) as s:
        pids = set()
        with anyio.fail_after(HANG):
            for _ in range(3):
                r = await s.call_tool("where", {})
                assert not r.is_error, r.content
                pids.add(int(r.content[0].text))
    log = errlog.read_text()
    assert "workers start with exec, not fork" in log, log
    assert "thread" in log and "warm-cache" in log, log


@pytest.mark.anyio
async def test_a_script_that_does_not_survive_fork_is_served_by_exec(tmp_path):
    errlog = tmp_path / "stderr"
    env = {**os.environ, "FLW_LOG": "info"}
    async with mcp(str(ELASTIC / "dies_after_fork.py"), errlog_path=errlog, env=env) as s:
        with anyio.fail_after(HANG):
            r = await s.call_tool("where", {})
            assert not r.is_error, r.content
        flw_pid = next(p for p, pp in ppid_map().items() if pp == os.getpid() and cmdline(p).startswith(FLW))
        # The fork server it gave up on is gone (it would hold the script in memory).
        await anyio.to_thread.run_sync(lambda: wait_until(lambda: not fork_servers(flw_pid), 10, "the fork server"))
    log = errlog.read_text()
    assert "a forked worker failed to start, so the script may not survive fork" in log, log


@pytest.mark.anyio
async def test_a_crashing_fork_server_is_restarted_and_calls_go_on(tmp_path):
    async with mcp(str(TOOLS)) as s:
        flw_pid = next(p for p, pp in ppid_map().items() if pp == os.getpid() and cmdline(p).startswith(FLW))
        with anyio.fail_after(HANG):
            payload(await s.call_tool("wait_async", {"ms": 1}))
            (server,) = fork_servers(flw_pid)
            results: list[dict] = []

            async def one(i: int, ms: int) -> None:
                results.append(payload(await s.call_tool("wait_sync", {"ms": ms, "tag": i})))

            async with anyio.create_task_group() as tg:
                for i in range(4):
                    tg.start_soon(one, i, 1500)  # in flight on forked workers
                await anyio.sleep(0.5)
                os.kill(server, signal.SIGKILL)
                await anyio.sleep(0.2)
                for i in range(4, 12):
                    tg.start_soon(one, i, 200)  # need workers the old server cannot fork
            assert sorted(r["tag"] for r in results) == list(range(12))
            (again,) = fork_servers(flw_pid)
            assert again != server


@pytest.mark.anyio
async def test_a_hot_swap_under_64_concurrent_calls_fails_none(tmp_path):
    script = tmp_path / "tools.py"
    shutil.copy(TOOLS, script)
    results: list[dict] = []
    async with mcp(str(script)) as s:
        with anyio.fail_after(HANG):

            async def one(i: int) -> None:
                results.append(payload(await s.call_tool("wait_async", {"ms": 1500, "tag": i})))

            async with anyio.create_task_group() as tg:
                for i in range(64):
                    tg.start_soon(one, i)
                await anyio.sleep(0.5)
                script.write_text(TOOLS.read_text() + '\n\n@tool\ndef version() -> int:\n    """2"""\n    return 2\n')
            assert sorted(r["tag"] for r in results) == list(range(64))

            async def swapped() -> None:
                while True:
                    r = await s.call_tool("version", {})
                    if not r.is_error:
                        assert r.content[0].text == "2"
                        return
                    await anyio.sleep(0.1)

            await swapped()


def test_idle_workers_are_stopped_after_idle_timeout(tmp_path):
    cfg = escape_config(tmp_path, 'idle_timeout = "1s"\nmin_workers = 1\n')
    with Server(("--config", str(cfg))) as srv:
        srv.wait_ready()
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(16) as ex:
            replies = list(
                ex.map(
                    lambda i: srv.post("/v1/tools/wait_sync/call", {"ms": 1000, "tag": i}),
                    range(16),
                )
            )
        assert all(r.status == 200 for r in replies), [r.body for r in replies]
        pools = srv.get("/v1/pools").json()["pools"]
        (pool,) = pools
        assert pool["workers"]["live"] >= 8, pool
        assert pool["forks"] >= 8, pool

        def live() -> int:
            return srv.get("/v1/pools").json()["pools"][0]["workers"]["live"]

        ps = subprocess.run([FLW, "ps"], capture_output=True, text=True, timeout=HANG)
        line = next((ln for ln in ps.stdout.splitlines() if ln.split()[:2] == ["tools", "isolated"]), None)
        assert line is not None, ps.stdout
        assert int(line.split()[2]) >= 8, line  # LIVE

        wait_until(lambda: live() == 1, 20, "the idle workers to be stopped")
        time.sleep(1.5)
        assert live() == 1  # min_workers stays
        metrics = srv.get("/metrics").body.decode()
        assert 'workers_live{pool="tools"} 1' in metrics, metrics
