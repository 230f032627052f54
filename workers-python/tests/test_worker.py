"""A real worker process, started as the supervisor starts it (fd 3, new session)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from conftest import FIXTURES, SDK_FILES, WorkerProcess, wait_dead, worker_env
from flw.worker import _loop
from flw.worker._protocol import decode, encode, encode_line

TOOLS = FIXTURES / "tools_script.py"

Spawn = Callable[..., WorkerProcess]


@pytest.fixture(scope="module")
def shared() -> Iterator[WorkerProcess]:
    """One shared-mode worker for the tests that do not end it."""
    worker = WorkerProcess(TOOLS, mode="shared")
    worker.handshake()
    yield worker
    worker.close()


_ids = iter(range(1000, 10**6))


def next_id() -> int:
    return next(_ids)


def only_result(messages: list[dict[str, Any]]) -> Any:
    assert messages[-1]["type"] == "result", messages[-1]
    return messages[-1]["value"]


# -- handshake -------------------------------------------------------------------


def test_hello_announces_the_tools(spawn: Spawn) -> None:
    worker = spawn(TOOLS)
    hello = worker.recv()
    assert list(hello) == ["type", "protocol", "sdk", "sdk_version", "runtime", "pid", "tools"]
    assert hello["protocol"] == [1]
    assert hello["sdk"] == "python"
    assert hello["sdk_version"] == "0.1.0"
    assert hello["runtime"] == f"cpython {'.'.join(map(str, sys.version_info[:3]))}"
    assert hello["pid"] == worker.pid
    tools = {t["name"]: t for t in hello["tools"]}
    assert tools["echo"] == {
        "name": "echo",
        "description": "Return the text unchanged.",
        "input_schema": {
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
            "additionalProperties": False,
        },
    }
    assert tools["slow"]["input_schema"]["properties"] == {
        "seconds": {"type": "number"},
        "steps": {"type": "integer", "default": 10},
    }
    assert tools["ns.renamed"]["description"] == "Has another name."
    assert tools["sum_points"]["output_schema"]["type"] == "object"
    worker.send({"type": "shutdown"})
    assert worker.wait() == 0


def test_shutdown_instead_of_welcome_exits_0_with_the_reason(spawn: Spawn) -> None:
    worker = spawn(TOOLS)
    worker.recv()
    worker.send({"type": "shutdown", "reason": "no common protocol version"})
    assert worker.wait() == 0
    assert b"no common protocol version" in worker.stderr


def test_welcome_with_a_version_we_do_not_speak_exits_1(spawn: Spawn) -> None:
    worker = spawn(TOOLS)
    worker.recv()
    worker.send({"type": "welcome", "protocol": 7})
    assert worker.wait() == 1
    assert b"protocol 7" in worker.stderr


# -- calls -----------------------------------------------------------------------


def test_sync_call(shared: WorkerProcess) -> None:
    call_id = next_id()
    assert shared.call(call_id, "echo", {"text": "héllo → 世界"}) == [
        {"type": "result", "id": call_id, "value": "héllo → 世界"}
    ]


def test_async_call_reports_progress_before_the_result(shared: WorkerProcess) -> None:
    call_id = next_id()
    messages = shared.call(call_id, "slow", {"seconds": 0.03, "steps": 3})
    assert messages == [
        {"type": "progress", "id": call_id, "progress": 1, "total": 3, "message": "step 1"},
        {"type": "progress", "id": call_id, "progress": 2, "total": 3, "message": "step 2"},
        {"type": "progress", "id": call_id, "progress": 3, "total": 3, "message": "step 3"},
        {"type": "result", "id": call_id, "value": "done"},
    ]


def test_arguments_are_bound_and_results_converted(shared: WorkerProcess) -> None:
    value = only_result(
        shared.call(
            next_id(),
            "sum_points",
            {"points": [{"x": 1}, {"x": 2, "y": 3}], "color": "green", "tags": ["b", "a", "b"]},
        )
    )
    assert value == {
        "x": 3,
        "y": 3,
        "all_points": True,
        "color": "green",
        "color_is_enum": True,
        "tags": ["a", "b"],
        "origin": {"x": 0, "y": 0},
    }


def test_chunks_and_logs_stream_before_the_result(shared: WorkerProcess) -> None:
    call_id = next_id()
    messages = shared.call(call_id, "chatty", {"n": 3})
    assert messages == [
        {"type": "log", "level": "info", "message": "starting", "id": call_id},
        {"type": "chunk", "id": call_id, "data": "tok0"},
        {"type": "chunk", "id": call_id, "data": "tok1"},
        {"type": "chunk", "id": call_id, "data": "tok2"},
        {"type": "log", "level": "warning", "message": "almost done", "id": call_id},
        {"type": "result", "id": call_id, "value": "tok0tok1tok2"},
    ]


def test_tool_exception_is_a_tool_error_with_traceback(shared: WorkerProcess) -> None:
    call_id = next_id()
    [error] = shared.call(call_id, "fail", {"message": "bad url"})
    assert error["type"] == "error"
    assert error["kind"] == "tool_error"
    assert error["message"] == "ValueError: bad url"
    trace = error["traceback"]
    assert trace.startswith("Traceback (most recent call last):\n")
    assert "tools_script.py" in trace
    assert "in fail" in trace
    assert trace.endswith("ValueError: bad url\n")
    assert SDK_FILES not in trace


def test_unknown_tool(shared: WorkerProcess) -> None:
    call_id = next_id()
    [error] = shared.call(call_id, "nope")
    assert error["kind"] == "unknown_tool"
    assert "'nope'" in error["message"]
    assert "echo" in error["message"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ({}, "missing required argument(s) 'text'"),
        ({"text": "a", "txt": "b"}, "unknown argument(s) 'txt'"),
        ({"text": 5}, "expected a string, got integer"),
    ],
)
def test_invalid_arguments(shared: WorkerProcess, args: dict[str, Any], words: str) -> None:
    [error] = shared.call(next_id(), "echo", args)
    assert error["kind"] == "invalid_arguments"
    assert words in error["message"]
    assert "traceback" not in error


def test_non_json_result_is_a_tool_error(shared: WorkerProcess) -> None:
    [error] = shared.call(next_id(), "not_json")
    assert error["kind"] == "tool_error"
    assert "'not_json'" in error["message"]
    assert "builtins.object" in error["message"]


def test_cancel_an_async_tool(shared: WorkerProcess) -> None:
    call_id = next_id()
    shared.send({"type": "call", "id": call_id, "tool": "wait_forever", "args": {}})
    assert shared.recv()["type"] == "progress"
    shared.send({"type": "cancel", "id": call_id})
    assert shared.collect(call_id, timeout=2) == [
        {
            "type": "error",
            "id": call_id,
            "kind": "cancelled",
            "message": f"call {call_id} was cancelled",
        }
    ]


def test_cancel_a_sync_tool_sets_the_flag(shared: WorkerProcess) -> None:
    call_id = next_id()
    shared.send({"type": "call", "id": call_id, "tool": "sync_wait", "args": {}})
    assert shared.recv()["type"] == "progress"
    shared.send({"type": "cancel", "id": call_id})
    [reply] = shared.collect(call_id, timeout=2)
    assert reply["kind"] == "cancelled"


def test_cancel_of_a_finished_call_is_ignored(shared: WorkerProcess) -> None:
    call_id = next_id()
    only_result(shared.call(call_id, "echo", {"text": "x"}))
    shared.send({"type": "cancel", "id": call_id})
    shared.send({"type": "heartbeat", "seq": 77})
    assert shared.recv() == {"type": "heartbeat", "seq": 77}


def test_concurrent_calls_in_shared_mode(shared: WorkerProcess) -> None:
    ids = [next_id() for _ in range(5)]
    for call_id in ids:
        shared.send(
            {"type": "call", "id": call_id, "tool": "slow", "args": {"seconds": 0.2, "steps": 2}}
        )
    start = time.monotonic()
    results = {}
    while len(results) < len(ids):
        message = shared.recv()
        if message["type"] == "result":
            results[message["id"]] = message["value"]
    assert sorted(results) == ids
    assert time.monotonic() - start < 0.8  # they ran side by side


def test_a_slow_sync_call_does_not_hold_up_calls_read_with_it(shared: WorkerProcess) -> None:
    slow_id, fast_id = next_id(), next_id()
    shared.send_raw(
        encode_line({"type": "call", "id": slow_id, "tool": "sync_sleep", "args": {"seconds": 1}})
        + encode_line({"type": "call", "id": fast_id, "tool": "echo", "args": {"text": "x"}})
    )
    start = time.monotonic()
    first = shared.recv(timeout=5)
    assert first == {"type": "result", "id": fast_id, "value": "x"}
    assert time.monotonic() - start < 0.8  # not after the second the slow call takes
    assert shared.recv(timeout=5) == {"type": "result", "id": slow_id, "value": "slept"}


def test_hundreds_of_sync_calls_in_one_read_all_get_their_reply(shared: WorkerProcess) -> None:
    ids = [next_id() for _ in range(300)]
    shared.send_raw(
        b"".join(
            encode_line({"type": "call", "id": i, "tool": "echo", "args": {"text": str(i)}})
            for i in ids
        )
    )
    replies = [shared.recv(timeout=5) for _ in ids]
    assert sorted(r["id"] for r in replies) == ids
    assert all(r == {"type": "result", "id": r["id"], "value": str(r["id"])} for r in replies)


def test_sync_calls_past_the_thread_limit_wait_and_heartbeats_go_on(
    shared: WorkerProcess,
) -> None:
    ids = [next_id() for _ in range(_loop.SHARED_THREADS + 6)]
    for call_id in ids:
        shared.send({"type": "call", "id": call_id, "tool": "sync_sleep", "args": {"seconds": 0.5}})
    time.sleep(0.1)
    shared.send({"type": "heartbeat", "seq": 9})
    assert shared.recv(timeout=0.4) == {"type": "heartbeat", "seq": 9}
    start = time.monotonic()
    replies = [shared.recv(timeout=5) for _ in ids]
    assert sorted(r["id"] for r in replies) == ids
    assert {r["value"] for r in replies} == {"slept"}
    # The six beyond the limit ran after a first call ended: about 0.5 s more.
    assert time.monotonic() - start > 0.2


def test_heartbeat_is_answered_while_a_sync_tool_runs_in_isolated_mode(spawn: Spawn) -> None:
    worker = spawn(TOOLS, mode="isolated")
    worker.handshake()
    call_id = next_id()
    worker.send({"type": "call", "id": call_id, "tool": "sync_sleep", "args": {"seconds": 1}})
    time.sleep(0.1)
    worker.send({"type": "heartbeat", "seq": 3})
    assert worker.recv(timeout=0.5) == {"type": "heartbeat", "seq": 3}
    assert worker.recv(timeout=5) == {"type": "result", "id": call_id, "value": "slept"}


@pytest.mark.parametrize("tool", ["spawn_sleeper", "exec_sleeper", "sync_sleeper"])
def test_a_cancelled_call_in_shared_mode_takes_its_subprocesses_with_it(
    shared: WorkerProcess, tool: str
) -> None:
    call_id = next_id()
    shared.send({"type": "call", "id": call_id, "tool": tool, "args": {}})
    log = shared.recv()
    assert log["type"] == "log", log
    sleeper = int(log["message"])
    os.kill(sleeper, 0)  # it runs
    shared.send({"type": "cancel", "id": call_id})
    assert shared.collect(call_id)[-1]["kind"] == "cancelled"
    assert wait_dead(sleeper, timeout=2), f"sleep {sleeper} outlived its cancelled call"
    os.kill(shared.pid, 0)  # the worker itself serves on


def test_a_call_that_ends_normally_leaves_what_it_started(shared: WorkerProcess) -> None:
    sleeper = only_result(shared.call(next_id(), "start_background"))
    try:
        time.sleep(0.1)
        assert not wait_dead(sleeper, timeout=0.2)
    finally:
        os.kill(sleeper, signal.SIGKILL)


def test_nothing_is_sent_for_a_call_after_its_reply(shared: WorkerProcess) -> None:
    call_id = next_id()
    assert only_result(shared.call(call_id, "late_talker")) == "early"
    time.sleep(0.2)  # the tool's thread tries to report progress meanwhile
    shared.send({"type": "heartbeat", "seq": 5})
    assert shared.recv() == {"type": "heartbeat", "seq": 5}


def test_heartbeat_is_answered_while_the_event_loop_is_blocked(shared: WorkerProcess) -> None:
    call_id = next_id()
    shared.send({"type": "call", "id": call_id, "tool": "block_loop", "args": {"seconds": 1.0}})
    time.sleep(0.1)
    shared.send({"type": "heartbeat", "seq": 42})
    start = time.monotonic()
    assert shared.recv(timeout=0.8) == {"type": "heartbeat", "seq": 42}
    assert time.monotonic() - start < 0.5
    assert only_result(shared.collect(call_id)) == "unblocked"


def test_bad_lines_from_the_supervisor_are_skipped(shared: WorkerProcess) -> None:
    shared.send_raw(b"not json\n")
    shared.send_raw(b'{"type":"telemetry"}\n')
    shared.send_raw(b'{"type":"cancel","id":0}\n')
    shared.send({"type": "heartbeat", "seq": 9})
    assert shared.recv() == {"type": "heartbeat", "seq": 9}


def test_the_channel_is_out_of_reach_of_tools_and_their_children(shared: WorkerProcess) -> None:
    value = only_result(shared.call(next_id(), "channel_fds"))
    channel = [fd for fd, info in value["sockets"].items() if info["link"] == shared.channel_link]
    assert len(channel) == 1, value  # one private descriptor holds the channel
    assert channel[0] != "3"
    assert value["sockets"][channel[0]]["inheritable"] is False
    assert value["child_sockets"] == 0
    assert value["env_has_channel"] is False


# -- output that must not touch the channel --------------------------------------------


def test_print_os_write_and_child_output_go_to_stdout_not_the_channel(spawn: Spawn) -> None:
    worker = spawn(TOOLS)
    worker.handshake()
    assert only_result(worker.call(1, "noisy")) == "quiet"
    assert only_result(worker.call(2, "echo", {"text": "still fine"})) == "still fine"
    worker.send({"type": "shutdown"})
    assert worker.wait() == 0
    assert worker.recv_line() is None  # every line on the channel decoded; nothing else came
    assert worker.stdout.splitlines() == [
        b"printed by noisy",
        b"raw write by noisy",
        b"echo by noisy",
    ]
    assert b"stderr by noisy" in worker.stderr


# -- limits ----------------------------------------------------------------------


def test_line_limit_both_ways(spawn: Spawn) -> None:
    worker = spawn(TOOLS, max_line_bytes=4096)
    worker.handshake()
    worker.send_raw(
        b'{"type":"call","id":1,"tool":"big","args":{"n":1},"pad":"' + b"x" * 10000 + b'"}\n'
    )
    worker.send({"type": "heartbeat", "seq": 1})
    assert worker.recv() == {"type": "heartbeat", "seq": 1}
    [error] = worker.call(2, "big", {"n": 5000})
    assert error["kind"] == "tool_error"
    size = len(encode({"type": "result", "id": 2, "value": "x" * 5000}))
    assert f"{size} bytes" in error["message"]
    assert "limit of 4096 bytes" in error["message"]
    assert only_result(worker.call(3, "big", {"n": 10})) == "x" * 10
    worker.send({"type": "shutdown"})
    assert worker.wait() == 0
    assert b"4096" in worker.stderr
    assert b"line_too_long" not in worker.stdout


# -- lifecycle and the watchdog ------------------------------------------------------------


def test_shutdown_exits_0(spawn: Spawn) -> None:
    worker = spawn(TOOLS)
    worker.handshake()
    only_result(worker.call(1, "echo", {"text": "x"}))
    worker.send({"type": "shutdown"})
    start = time.monotonic()
    assert worker.wait() == 0
    assert time.monotonic() - start < 2


def test_shutdown_waits_for_a_call_in_flight(spawn: Spawn) -> None:
    worker = spawn(TOOLS)
    worker.handshake()
    worker.send({"type": "call", "id": 1, "tool": "slow", "args": {"seconds": 0.2, "steps": 2}})
    worker.send({"type": "shutdown"})
    assert only_result(worker.collect(1)) == "done"
    assert worker.wait() == 0


def start_sleeper(worker: WorkerProcess) -> int:
    worker.handshake()
    worker.send({"type": "call", "id": 1, "tool": "spawn_sleeper", "args": {}})
    log = worker.recv()
    assert log["type"] == "log"
    sleeper = int(log["message"])
    os.kill(sleeper, 0)  # it runs
    return sleeper


def test_watchdog_kills_worker_and_grandchild_when_the_supervisor_goes(spawn: Spawn) -> None:
    worker = spawn(TOOLS, mode="isolated")
    sleeper = start_sleeper(worker)
    worker.sock.close()  # what a SIGKILLed supervisor leaves behind
    assert worker.proc.wait(timeout=2) == -signal.SIGKILL
    assert wait_dead(sleeper, timeout=2), f"sleep {sleeper} outlived the worker"
    assert b"killing the process group" in worker.stderr + worker.proc.stderr.read()


def test_sigterm_kills_worker_and_grandchild(spawn: Spawn) -> None:
    worker = spawn(TOOLS, mode="isolated")
    sleeper = start_sleeper(worker)
    os.kill(worker.pid, signal.SIGTERM)  # the worker only, as PR_SET_PDEATHSIG sends it
    assert worker.proc.wait(timeout=2) == -signal.SIGKILL
    assert wait_dead(sleeper, timeout=2)


def test_watchdog_during_a_slow_import(spawn: Spawn, tmp_path: Path) -> None:
    script = tmp_path / "slow_import.py"
    script.write_text("import time\ntime.sleep(30)\n")
    worker = spawn(script)
    time.sleep(0.3)
    worker.sock.close()
    assert worker.proc.wait(timeout=2) == -signal.SIGKILL


# -- scripts that fail to load ----------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "words"),
    [
        (FIXTURES / "syntax_error.py", [b"SyntaxError", b"syntax_error.py", b"line 4"]),
        (
            FIXTURES / "import_error.py",
            [b"Traceback", b"ModuleNotFoundError", b"flw_no_such_module_anywhere"],
        ),
    ],
)
def test_a_script_that_fails_to_import_exits_1_before_hello(
    spawn: Spawn, script: Path, words: list[bytes]
) -> None:
    worker = spawn(script)
    assert worker.wait() == 1
    assert worker.recv_line() is None  # not a byte on the channel
    for word in words:
        assert word in worker.stderr


def test_duplicate_tool_names_fail_the_import(spawn: Spawn, tmp_path: Path) -> None:
    script = tmp_path / "dup.py"
    script.write_text(
        "from flw import tool\n@tool\ndef a() -> None: ...\n@tool(name='a')\ndef b() -> None: ...\n"
    )
    worker = spawn(script)
    assert worker.wait() == 1
    assert worker.recv_line() is None
    assert b"two tools are named 'a'" in worker.stderr


def test_an_unsupported_parameter_type_is_one_message_at_the_script_line(
    spawn: Spawn, tmp_path: Path
) -> None:
    script = tmp_path / "bad_type.py"
    script.write_text(
        "import socket\nfrom flw import tool\n@tool\ndef f(s: socket.socket) -> None: ...\n"
    )
    worker = spawn(script)
    assert worker.wait() == 1
    assert worker.recv_line() is None
    lines = worker.stderr.decode().splitlines()
    what = "tool 'f' (bad_type.f): parameter 's' has an unsupported type socket.socket"
    assert lines[0].startswith(f"flw: cannot load {script}: {what}"), lines
    assert f'File "{script}", line 3, in <module>' in lines[1], lines
    # The frames of the SDK that found the problem are not the user's concern.
    assert "Traceback" not in worker.stderr.decode()
    assert "_tool.py" not in worker.stderr.decode()


def test_missing_script(spawn: Spawn, tmp_path: Path) -> None:
    worker = spawn(tmp_path / "absent.py")
    assert worker.wait() == 1
    assert b"no such file" in worker.stderr


def test_run_is_a_no_op_under_the_entry_point(spawn: Spawn) -> None:
    worker = spawn(FIXTURES / "by_hand.py")
    hello = worker.handshake()
    assert [t["name"] for t in hello["tools"]] == ["shout"]
    assert only_result(worker.call(1, "shout", {"text": "hi"})) == "HI"
    worker.send({"type": "shutdown"})
    assert worker.wait() == 0
    # run() returned at once during the import; the tool ran later.
    assert worker.stdout == b"after run\nshout was called\n"


# -- by hand: flw.run() over stdin/stdout -----------------------------------------------------


def test_run_by_hand_over_stdin_and_stdout() -> None:
    proc = subprocess.Popen(
        [sys.executable, str(FIXTURES / "by_hand.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=worker_env(),
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(
            b'{"type":"welcome","protocol":1}\n'
            b'{"type":"call","id":1,"tool":"shout","args":{"text":"hey"}}\n'
            b'{"type":"shutdown"}\n',
            timeout=10,
        )
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    messages = [decode(line, "worker") for line in lines]  # stdout holds protocol lines only
    assert [m["type"] for m in messages] == ["hello", "result"]
    assert messages[1] == {"type": "result", "id": 1, "value": "HEY"}
    assert b"shout was called" in err
    assert b"after run" in err


def test_import_flw_loads_nothing_heavy() -> None:
    """A worker's start stays cheap (ARCHITECTURE.md): `import flw` pulls in
    neither asyncio, ssl nor flw.llm until a script uses them."""
    heavy = ("asyncio", "ssl", "socket", "logging", "flw.llm")
    out = subprocess.run(
        [sys.executable, "-c", f"import sys, flw; print([m for m in {heavy} if m in sys.modules])"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "src")},
    )
    assert out.stdout.strip() == "[]"
