"""Shutdown does what the flags say: `flw mcp --drain` lets calls in flight
finish after SIGTERM and kills the rest through the kill path."""

from __future__ import annotations

import signal
import time

import pytest

from conftest import McpPipe, alive, group_members, read_pids, write_config

ONE_WORKER = '[pools.tools]\nscript = "tools.py"\ninstances = 1\n'


def text_of(answer: dict) -> tuple[bool, str]:
    """(isError, text) of a tools/call answer."""
    result = answer["result"]
    return result.get("isError", False), result["content"][0]["text"]


@pytest.fixture
def stop_at_end():
    """Kills the McpPipe clients a test leaves running."""
    clients: list[McpPipe] = []
    yield clients.append
    for c in clients:
        if c.proc.poll() is None:
            c.proc.kill()
            c.proc.wait()


def test_mcp_sigterm_lets_a_call_in_flight_finish_within_the_drain(tmp_path, stop_at_end):
    cfg = write_config(tmp_path, ONE_WORKER)
    client = McpPipe("--drain", "20s", "--config", str(cfg))
    stop_at_end(client)
    client.call(1, "sleepy", {"seconds": 3, "pidfile": str(tmp_path / "pids")})
    read_pids(tmp_path / "pids")
    time.sleep(0.5)
    client.proc.send_signal(signal.SIGTERM)
    # A call that comes during the drain is refused, and answered.
    client.call(2, "echo", {"text": "late"})
    refused = client.reply(2, 30)
    assert text_of(refused)[0] is True
    assert text_of(refused)[1].startswith("shutting_down: "), refused
    # The call in flight finishes, and its result reaches the client.
    assert text_of(client.reply(1, 30)) == (False, "slept")
    assert client.proc.wait(30) == 143


def test_mcp_drain_over_kills_the_call_through_the_kill_path_and_exits(tmp_path, stop_at_end):
    cfg = write_config(tmp_path, ONE_WORKER)
    client = McpPipe("--drain", "1s", "--config", str(cfg))
    stop_at_end(client)
    client.call(1, "spawn_sleep", {"pidfile": str(tmp_path / "pids")})
    worker, grandchild = read_pids(tmp_path / "pids")
    started = time.monotonic()
    client.proc.send_signal(signal.SIGTERM)
    is_error, text = text_of(client.reply(1, 30))
    assert is_error and text.startswith("shutting_down: "), text
    assert "did not finish within the drain time (1s)" in text
    assert client.proc.wait(30) == 143
    took = time.monotonic() - started
    assert took < 10, f"flw mcp took {took:.1f}s to exit after a 1 s drain"
    assert group_members(worker) == [], "the worker's process group outlived flw"
    assert not alive(grandchild)


def test_mcp_a_second_signal_cuts_the_drain_short(tmp_path, stop_at_end):
    cfg = write_config(tmp_path, ONE_WORKER)
    client = McpPipe("--drain", "60s", "--config", str(cfg))
    stop_at_end(client)
    client.call(1, "spawn_sleep", {"pidfile": str(tmp_path / "pids")})
    worker, grandchild = read_pids(tmp_path / "pids")
    client.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    started = time.monotonic()
    client.proc.send_signal(signal.SIGINT)
    is_error, text = text_of(client.reply(1, 30))
    assert is_error and text.startswith("shutting_down: "), text
    assert client.proc.wait(30) == 130
    assert time.monotonic() - started < 10
    assert group_members(worker) == [] and not alive(grandchild)
