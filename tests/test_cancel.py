"""Cancellation kills the worker's process group: a sync tool, a tool's child
process and an in-flight HTTP request all stop, whatever the tool does."""

from __future__ import annotations

import json
import signal
import time

import pytest

from conftest import TOOLS, alive, descendants, read_pids, start_flw, wait_until, workers, write_config

GRACE = 0.5  # --cancel-grace used below
BOUND = 3.0  # SIGTERM->SIGKILL grace (2 s) plus slack for a loaded machine


def start_call(tool: str, args: dict, sig_grace: float = GRACE):
    return start_flw("call", str(TOOLS), tool, "--json", json.dumps(args), "--cancel-grace", f"{sig_grace}s")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_cancel_of_a_sync_tool_in_time_sleep_kills_the_worker(tmp_path, sig):
    pidfile = tmp_path / "pids"
    proc = start_call("sleepy", {"seconds": 300, "pidfile": str(pidfile)})
    (worker,) = read_pids(pidfile)
    t0 = time.monotonic()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    took = wait_until(lambda: not alive(worker), GRACE + BOUND, "the worker to die")
    assert time.monotonic() - t0 < GRACE + BOUND
    assert proc.returncode == (130 if sig == signal.SIGINT else 143), err
    assert b"error: cancelled: call 1 to sleepy was cancelled" in err
    assert out == b""
    assert took >= 0


def test_cancel_kills_a_child_process_the_tool_started(tmp_path):
    pidfile = tmp_path / "pids"
    proc = start_call("spawn_sleep", {"pidfile": str(pidfile)})
    worker, grandchild = read_pids(pidfile)
    assert alive(grandchild)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    wait_until(lambda: not alive(grandchild) and not alive(worker), GRACE + BOUND, "sleep 300 to die")
    assert time.monotonic() - t0 < GRACE + BOUND


def test_cancel_closes_an_in_flight_http_request(tmp_path, hanging_server):
    pidfile = tmp_path / "pids"
    proc = start_call("slow_http", {"port": hanging_server.port, "pidfile": str(pidfile)})
    (worker,) = read_pids(pidfile)
    assert hanging_server.opened.wait(10)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    wait_until(lambda: hanging_server.closed_at is not None, GRACE + BOUND, "the server to see the close")
    assert hanging_server.closed_at - t0 < GRACE + BOUND
    wait_until(lambda: not alive(worker), BOUND, "the worker to die")


def test_supervisor_sigkill_leaves_no_worker_and_no_grandchild(tmp_path):
    cfg = write_config(
        tmp_path,
        '[pools.tools]\nscript = "tools.py"\ninstances = 2\n',
    )
    pidfile = tmp_path / "pids"
    proc = start_flw("mcp", "--config", str(cfg))
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    call = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "spawn_sleep", "arguments": {"pidfile": str(pidfile)}},
    }
    for msg in (init, {"jsonrpc": "2.0", "method": "notifications/initialized"}, call):
        proc.stdin.write((json.dumps(msg) + "\n").encode())
    proc.stdin.flush()
    worker, grandchild = read_pids(pidfile)
    wait_until(lambda: worker in workers(proc.pid), 20, "the worker to be seen")
    below = descendants(proc.pid)
    assert worker in below and grandchild in below
    proc.kill()
    proc.wait(timeout=10)
    time.sleep(1.0)
    survivors = [p for p in below if alive(p)]
    assert survivors == [], f"alive 1 s after SIGKILL of flw: {survivors}"
