"""Shared helpers for the end-to-end tests: the real flw binary, real Python
workers, process inspection through /proc, and a loopback TCP server."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TOOLS = FIXTURES / "tools.py"
RAW_WORKER = FIXTURES / "raw_worker.py"


_SUMMARY: list[str] = []


def report(line: str) -> None:
    """Adds a line to what the run prints at its end (with -q too): numbers
    a passing test measured that the log should show, e.g. the conformance
    suite's counts."""
    _SUMMARY.append(line)


def pytest_terminal_summary(terminalreporter) -> None:
    for line in _SUMMARY:
        terminalreporter.write_line(line)


def flw_on_path(folder: Path) -> str:
    """PATH with the binary under test as `flw` and this suite's Python as
    `python3`, from folder; for commands run as a README shows them."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "flw").symlink_to(FLW)
    python3 = folder / "python3"  # a script, not a link: a venv's python finds its packages by its path
    python3.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python3.chmod(0o755)
    return f"{folder}{os.pathsep}{os.environ['PATH']}"


needs_node = pytest.mark.skipif(
    shutil.which("node") is None and not os.environ.get("FLW_NODE"), reason="needs node (or FLW_NODE)"
)


def flw_bin() -> str:
    env = os.environ.get("FLW_BIN")
    if env:
        return env
    path = ROOT / "target" / "debug" / "flw"
    if not path.exists():
        raise RuntimeError("build flw first: cargo build (or set FLW_BIN)")
    return str(path)


FLW = flw_bin()


def run_flw(*args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess[str]:
    """Runs flw to completion and returns its output."""
    return subprocess.run([FLW, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kw)


def alive(pid: int) -> bool:
    """Whether pid is a live process (a zombie counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def live_stats() -> dict[int, list[str]]:
    """Each live (not zombie) process's /proc/PID/stat fields after its
    name: state, ppid, pgrp, ..."""
    out: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] not in ("Z", "X"):
            out[int(entry)] = fields
    return out


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group is pgid."""
    return [pid for pid, fields in live_stats().items() if int(fields[2]) == pgid]


def children(pid: int) -> list[int]:
    """Direct children of pid."""
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(x) for x in f.read().split())
    except OSError:
        pass
    return out


def ppid_map() -> dict[int, int]:
    """Every live process's parent."""
    return {pid: int(fields[1]) for pid, fields in live_stats().items()}


def descendants(pid: int) -> set[int]:
    """Live processes below pid."""
    parents = ppid_map()
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier and p not in found}
        found |= frontier
    return found


def cmdline(pid: int) -> str:
    """A process's command line, its arguments joined by spaces ("" when gone)."""
    return _cmdline(pid).replace(b"\0", b" ").decode(errors="replace")


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _leads_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except OSError:
        return False


def workers(flw_pid: int) -> list[int]:
    """The worker processes of a flw process, however they were started:

    - forked: flw -> fork server (`--fork-server` in its command line) ->
      keeper -> worker;
    - exec'd Python: flw -> keeper (`-m flw`) -> worker;
    - Node: flw -> worker.

    A worker leads its own process group; a keeper's other children are
    processes it adopted."""
    found: list[int] = []
    for child in children(flw_pid):
        cmd = _cmdline(child)
        if b"--fork-server" in cmd:
            keepers = children(child)
        elif b"\0-m\0flw\0" in cmd:
            keepers = [child]
        else:
            found.append(child)
            continue
        for keeper in keepers:
            found.extend(w for w in children(keeper) if _leads_group(w))
    return found


def wait_until(pred: Callable[[], bool], timeout: float, what: str) -> float:
    """Polls pred every 10 ms; returns the seconds it took, fails on timeout."""
    start = time.monotonic()
    while not pred():
        if time.monotonic() - start > timeout:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)
    return time.monotonic() - start


def read_pids(path: Path, timeout: float = 20) -> list[int]:
    """Waits for a pid file a fixture tool writes, returns its pids."""
    wait_until(lambda: path.exists() and path.read_text().endswith("\n"), timeout, f"{path.name}")
    return [int(x) for x in path.read_text().split()]


class HangingServer:
    """A loopback TCP server that accepts connections, reads requests and
    never answers; it records when each connection is closed by the peer."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.opened = threading.Event()
        self.closed_at: float | None = None
        self._stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        self.opened.set()
        conn.settimeout(0.05)
        while not self._stop:
            try:
                data = conn.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                data = b""
            if not data:
                self.closed_at = time.monotonic()
                break
        conn.close()

    def close(self) -> None:
        self._stop = True
        self.sock.close()


@pytest.fixture
def hanging_server():
    s = HangingServer()
    yield s
    s.close()


def write_config(tmp_path: Path, body: str) -> Path:
    """Writes flw.toml into tmp_path with a copy of the fixture tools."""
    (tmp_path / "tools.py").write_text(TOOLS.read_text())
    cfg = tmp_path / "flw.toml"
    cfg.write_text(body)
    return cfg


def start_flw(*args: str, **kw) -> subprocess.Popen:
    """Starts flw in the background with pipes on all three streams."""
    return subprocess.Popen(
        [FLW, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,
    )


def interrupt(proc: subprocess.Popen, sig: int = signal.SIGINT) -> None:
    proc.send_signal(sig)


class StderrReader:
    """Reads a process's stderr as it comes; `seen(text)` tells whether it showed up yet."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.text = ""
        self._lock = threading.Lock()
        self._proc = proc
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._proc.stderr is not None
        while chunk := os.read(self._proc.stderr.fileno(), 4096):
            with self._lock:
                self.text += chunk.decode(errors="replace")

    def seen(self, text: str) -> bool:
        with self._lock:
            return text in self.text

    def join(self, timeout: float) -> str:
        """Waits for the end of the stream (the process exited); returns all of it."""
        self._thread.join(timeout)
        with self._lock:
            return self.text


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# The initialize request of the raw JSON-RPC clients of `flw mcp` (id 0).
MCP_INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}


class McpPipe:
    """A raw JSON-RPC client of `flw mcp ARGS...` on pipes, with a deadline
    on every read; a thread queues every message flw writes."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [FLW, "mcp", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        self.lines: queue.Queue[dict] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.send(MCP_INITIALIZE)
        assert self.recv(30)["id"] == 0
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def send(self, message: dict) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        self.proc.stdin.flush()

    def recv(self, timeout: float) -> dict:
        """The next message (a reply or a notification); queue.Empty after timeout."""
        return self.lines.get(timeout=timeout)

    def reply(self, request_id: int, timeout: float) -> dict:
        """The reply to request_id; messages before it are dropped."""
        deadline = time.monotonic() + timeout
        while True:
            message = self.recv(max(0.01, deadline - time.monotonic()))
            if message.get("id") == request_id:
                return message

    def list_tools(self, request_id: int) -> None:
        self.send({"jsonrpc": "2.0", "id": request_id, "method": "tools/list"})

    def call(self, request_id: int, tool: str, args: dict) -> None:
        self.send(
            {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": tool, "arguments": args}}
        )

    def call_with_progress(
        self, request_id: int, tool: str, args: dict, timeout: float = 60
    ) -> tuple[dict, list[dict]]:
        """Calls tool with a progress token; returns the result and the
        params of the progress notifications that came before it."""
        self.send(
            {
                "jsonrpc": "2.0",
                "id": request_id,
                "method": "tools/call",
                "params": {"name": tool, "arguments": args, "_meta": {"progressToken": f"p{request_id}"}},
            }
        )
        progress: list[dict] = []
        while (message := self.recv(timeout)).get("id") != request_id:
            if message.get("method") == "notifications/progress":
                progress.append(message["params"])
        return message["result"], progress

    def close(self) -> None:
        """Closes flw's stdin (the host leaves) and waits for it to exit."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
