"""Shared fixtures: a clean tool registry per test and a worker-process harness."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flw import _tool
from flw.graph import _node
from flw.worker._protocol import decode, encode_line

TESTS = Path(__file__).resolve().parent
FIXTURES = TESTS / "fixtures"
SRC = TESTS.parent / "src"
SDK_FILES = f"{SRC / 'flw'}{os.sep}"  # what every SDK file's path starts with
REPO_TESTS = TESTS.parent.parent / "tests"  # the end-to-end tests: openai_server.py
TERMINAL = ("result", "error")


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    """Each test starts with the registries it found and leaves them that way."""
    saved = dict(_tool._registry)
    saved_nodes = dict(_node._registry)
    _tool._registry.clear()
    _node._registry.clear()
    yield
    _tool._registry.clear()
    _tool._registry.update(saved)
    _node._registry.clear()
    _node._registry.update(saved_nodes)


@pytest.fixture
def openai_server() -> Iterator[Any]:
    """A loopback OpenAI-compatible server (``tests/openai_server.py`` of the repo)."""
    if str(REPO_TESTS) not in sys.path:
        sys.path.append(str(REPO_TESTS))
    from openai_server import OpenAIServer

    with OpenAIServer() as server:
        yield server


def worker_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLW_")}
    env["PYTHONPATH"] = str(SRC)
    env.update(extra)
    return env


class ChannelPeer:
    """The supervisor's end of a worker's protocol channel (a stream socket)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = b""

    def send(self, message: dict[str, Any]) -> None:
        self.sock.sendall(encode_line(message))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_line(self, timeout: float = 5.0) -> bytes | None:
        """The next raw line, or None at end-of-file. Fails on timeout."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no line from the worker within {timeout} s")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not data:
                return None
            self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next message, decoded and checked as a supervisor would."""
        line = self.recv_line(timeout)
        assert line is not None, "the worker closed the channel"
        return decode(line, "worker", 1 << 30)

    def handshake(self) -> dict[str, Any]:
        hello = self.recv()
        assert hello["type"] == "hello"
        self.send({"type": "welcome", "protocol": 1})
        return hello

    def call(
        self, call_id: int, tool: str, args: dict[str, Any] | None = None, timeout: float = 5.0
    ) -> list[dict[str, Any]]:
        """Send a call; return its messages up to and including the terminal reply."""
        self.send({"type": "call", "id": call_id, "tool": tool, "args": args or {}})
        return self.collect(call_id, timeout)

    def node(
        self, call_id: int, node: str, phase: str, timeout: float = 5.0, **members: Any
    ) -> list[dict[str, Any]]:
        """Send a ``node`` message; return its messages up to the terminal reply."""
        self.send({"type": "node", "id": call_id, "node": node, "phase": phase, **members})
        return self.collect(call_id, timeout)

    def collect(self, call_id: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        messages = []
        while True:
            message = self.recv(timeout)
            if message.get("id") != call_id:
                continue
            messages.append(message)
            if message["type"] in TERMINAL:
                return messages


class WorkerProcess(ChannelPeer):
    """A worker started the way the supervisor starts it: fd 3, new session."""

    def __init__(
        self,
        script: Path | str,
        *,
        mode: str = "shared",
        max_line_bytes: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        parent, child = socket.socketpair()
        child_fd = child.fileno()

        def put_channel_on_fd_3() -> None:
            if child_fd == 3:
                os.set_inheritable(3, True)
            else:
                os.dup2(child_fd, 3)  # dup2 makes fd 3 inheritable

        extra = {"FLW_CHANNEL_FD": "3", "FLW_MODE": mode, "FLW_WORKER": "test.py#1"}
        if max_line_bytes is not None:
            extra["FLW_MAX_LINE_BYTES"] = str(max_line_bytes)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flw", str(script)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**worker_env(**extra), **(env or {})},
            start_new_session=True,
            close_fds=False,
            preexec_fn=put_channel_on_fd_3,
        )
        self.channel_link = f"socket:[{os.fstat(child_fd).st_ino}]"
        child.close()
        super().__init__(parent)
        self.stdout = b""
        self.stderr = b""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait(self, timeout: float = 5.0) -> int:
        out, err = self.proc.communicate(timeout=timeout)
        self.stdout += out
        self.stderr += err
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.wait()
        self.sock.close()


@pytest.fixture
def spawn() -> Iterator[Any]:
    """Start workers; every one is killed and reaped at the end of the test."""
    workers: list[WorkerProcess] = []

    def start(script: Path | str, **kwargs: Any) -> WorkerProcess:
        worker = WorkerProcess(script, **kwargs)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.close()


def process_is_dead(pid: int) -> bool:
    """Gone, or a zombie waiting for init to reap it: either way it cannot run."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def wait_dead(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process_is_dead(pid):
            return True
        time.sleep(0.02)
    return process_is_dead(pid)
