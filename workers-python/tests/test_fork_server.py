"""The fork server and its keepers, driven as the supervisor drives them.

A real ``python -m flw --fork-server`` gets a ``SOCK_SEQPACKET`` control
socket on fd 3 and a lifeline pipe on fd 4; each fork request carries a
worker's channel, stdout and stderr. The workers are then talked to over
their channel like any other (``ChannelPeer``), and the processes their
tools start, in new sessions or double-forked, are checked dead and gone.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Callable

import pytest

from conftest import FIXTURES, ChannelPeer, WorkerProcess, wait_dead, worker_env
from flw.worker import _fork_wire

TOOLS = FIXTURES / "fork_tools.py"
LABEL = "fork_tools.py#fork"

# The keeper a forked child becomes: the Python one, or flw's (``flw
# __keeper``, supervisor/src/keeper.rs), which flw itself asks for. The
# second needs the debug build that scripts/test.sh makes first.
FLW = Path(os.environ.get("FLW_BIN") or Path(__file__).resolve().parents[2] / "target/debug/flw")
KEEPERS = ["python", "flw"]


def gone(pid: int, timeout: float = 5.0) -> bool:
    """The process has exited and was reaped: no zombie left behind."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not os.path.exists(f"/proc/{pid}"):
            return True
        time.sleep(0.01)
    return False


def stat_of(pid: int) -> tuple[str, int]:
    """A process's state letter and parent pid."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def children_of(ppid: int) -> dict[int, str]:
    """The processes whose parent is ``ppid``, with their state letter."""
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                state, parent = stat_of(int(name))
            except (FileNotFoundError, ProcessLookupError):
                continue
            if parent == ppid:
                found[int(name)] = state
    return found


def links(pid: int) -> set[str]:
    """What the descriptors of a process point at (``socket:[123]``, ``pipe:[45]``)."""
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:
            continue
    return out


def inode_link(fd: int, kind: str) -> str:
    return f"{kind}:[{os.fstat(fd).st_ino}]"


def only_result(messages: list[dict[str, Any]]) -> Any:
    assert messages[-1]["type"] == "result", messages[-1]
    return messages[-1]["value"]


class Forked(ChannelPeer):
    """A forked worker: its channel, its keeper's pid, the read ends of its output."""

    def __init__(self, sock: socket.socket, keeper: int, out: int, err: int) -> None:
        super().__init__(sock)
        self.keeper = keeper
        self.out = out
        self.err = err

    def read(self, fd: int, until: bytes, timeout: float = 5.0) -> bytes:
        data = b""
        deadline = time.monotonic() + timeout
        while until not in data and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                data += chunk
        return data

    def close_output(self) -> None:
        """Close the supervisor's ends of the worker's stdout and stderr."""
        for fd in (self.out, self.err):
            if fd >= 0:
                os.close(fd)
        self.out = self.err = -1

    def close(self) -> None:
        self.sock.close()
        self.close_output()


class ForkServer:
    """``python -m flw --fork-server SCRIPT`` with the descriptors the supervisor gives it."""

    def __init__(
        self,
        script: Path | str,
        *,
        grace_ms: int = 400,
        mode: str = "isolated",
        keeper: str = "python",
    ) -> None:
        self.control, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        lifeline_r, self.lifeline = os.pipe()
        control_fd = fcntl.fcntl(child.fileno(), fcntl.F_DUPFD_CLOEXEC, 10)
        lifeline_fd = fcntl.fcntl(lifeline_r, fcntl.F_DUPFD_CLOEXEC, 10)
        self.control_link = inode_link(child.fileno(), "socket")
        self.lifeline_link = inode_link(lifeline_r, "pipe")

        def descriptors() -> None:
            os.dup2(control_fd, 3)
            os.dup2(lifeline_fd, 4)

        env = worker_env(
            FLW_CHANNEL_FD="3",
            FLW_LIFELINE_FD="4",
            FLW_FORK_SERVER="1",
            FLW_KILL_GRACE_MS=str(grace_ms),
            FLW_MODE=mode,
            FLW_WORKER=LABEL,
            FLW_KEEPER_EXE=str(FLW) if keeper == "flw" else "",
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "flw", "--fork-server", str(script)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
            close_fds=False,
            preexec_fn=descriptors,
        )
        for fd in (lifeline_r, control_fd, lifeline_fd):
            os.close(fd)
        child.close()
        self.keeper_kind = keeper
        self.backlog: list[dict[str, Any]] = []
        self.keepers: list[int] = []
        self.workers: list[Forked] = []
        self.stderr = b""

    def send(self, message: dict[str, Any], fds: Sequence[int] = ()) -> None:
        self.send_raw(_fork_wire.encode(message), fds)

    def send_raw(self, data: bytes, fds: Sequence[int] = ()) -> None:
        if fds:
            socket.send_fds(self.control, [data], list(fds))
        else:
            self.control.send(data)

    def recv(self, timeout: float = 5.0) -> dict[str, Any] | None:
        """The next message (``None`` at end-of-file)."""
        self.control.settimeout(timeout)
        data = self.control.recv(_fork_wire.MAX_DATAGRAM)
        return _fork_wire.decode(data, "fork_server") if data else None

    def expect(self, kind: str, timeout: float = 5.0, **members: Any) -> dict[str, Any]:
        """The next message of type ``kind`` with these members; others wait in the backlog."""
        for message in self.backlog:
            if message["type"] == kind and members.items() <= message.items():
                self.backlog.remove(message)
                return message
        deadline = time.monotonic() + timeout
        while True:
            message = self.recv(max(0.01, deadline - time.monotonic()))
            assert message is not None, f"the fork server closed the socket, {kind} expected"
            if message["type"] == kind and members.items() <= message.items():
                return message
            self.backlog.append(message)

    def request(self, request_id: int, label: str) -> tuple[socket.socket, int, int]:
        """Send a fork request; the supervisor's ends of the channel, stdout, stderr."""
        parent, child = socket.socketpair()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        self.send(
            {"type": "fork", "id": request_id, "label": label}, [child.fileno(), out_w, err_w]
        )
        child.close()
        os.close(out_w)
        os.close(err_w)
        return parent, out_r, err_r

    def fork(self, request_id: int, label: str = "fork_tools.py#1") -> Forked:
        sock, out, err = self.request(request_id, label)
        reply = self.expect("forked", id=request_id)
        forked = Forked(sock, reply["pid"], out, err)
        self.keepers.append(forked.keeper)
        self.workers.append(forked)
        return forked

    def wait(self, timeout: float = 5.0) -> int:
        _, err = self.proc.communicate(timeout=timeout)
        self.stderr += err
        return self.proc.returncode

    def cut_lifeline(self) -> None:
        if self.lifeline >= 0:
            os.close(self.lifeline)
            self.lifeline = -1

    def close(self) -> None:
        """Cut the lifeline (every keeper sweeps), stop the fork server."""
        self.cut_lifeline()
        for keeper in self.keepers:
            assert wait_dead(keeper, 5.0), f"keeper {keeper} outlived the lifeline"
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()
        self.control.close()
        for worker in self.workers:
            worker.close()


@pytest.fixture(params=KEEPERS)
def start(request: pytest.FixtureRequest) -> Iterator[Callable[..., ForkServer]]:
    servers: list[ForkServer] = []
    if request.param == "flw":
        assert FLW.is_file(), f"{FLW} is missing: build flw (cargo build) first, or set FLW_BIN"

    def make(script: Path | str = TOOLS, **kwargs: Any) -> ForkServer:
        server = ForkServer(script, keeper=request.param, **kwargs)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def server(start: Callable[..., ForkServer]) -> ForkServer:
    """A fork server of ``fork_tools.py`` that said ``ready``."""
    fork_server = start()
    assert fork_server.expect("ready") == {"type": "ready", "pid": fork_server.proc.pid}
    return fork_server


# -- the happy path ------------------------------------------------------------------


def test_a_forked_worker_serves_and_its_keeper_reports_the_exit(server: ForkServer) -> None:
    worker = server.fork(1, "fork_tools.py#1")
    hello = worker.handshake()
    assert [tool["name"] for tool in hello["tools"]][:2] == ["echo", "whoami"]
    assert only_result(worker.call(1, "echo", {"text": "héllo"})) == "héllo"

    who = only_result(worker.call(2, "whoami"))
    assert who["pid"] == hello["pid"] != worker.keeper
    assert who["ppid"] == worker.keeper  # W's parent is its keeper
    assert who["pgid"] == who["pid"]  # W leads its own group...
    assert who["sid"] == worker.keeper  # ...in the session its keeper leads
    assert who["loaded_by"] == server.proc.pid  # the script was imported once, before the fork
    assert who["label"] == "fork_tools.py#1"
    assert who["flw_env"] == ["FLW_MODE", "FLW_WORKER"]
    assert who["modules"] == ["traceback"]  # preloaded; no asyncio for a script of sync tools

    # The keeper is the program asked for: flw's, or the fork server's Python.
    keeper_exe = os.readlink(f"/proc/{worker.keeper}/exe")
    assert (keeper_exe == str(FLW.resolve())) == (server.keeper_kind == "flw"), keeper_exe

    # The worker holds neither the control socket nor the lifeline; the
    # keeper holds the lifeline but not the worker's channel.
    worker_links = links(who["pid"])
    keeper_links = links(worker.keeper)
    assert server.control_link not in worker_links | keeper_links
    assert server.lifeline_link not in worker_links
    assert server.lifeline_link in keeper_links
    assert not any(link.startswith("socket:") for link in keeper_links)

    # Its stdout and stderr are the pipes that came with the request.
    assert only_result(worker.call(3, "say", {"text": "hi"})) == "hi"
    assert b"out: hi\n" in worker.read(worker.out, b"out: hi\n")
    assert b"err: hi\n" in worker.read(worker.err, b"err: hi\n")

    worker.send({"type": "shutdown"})
    exited = server.expect("exited", pid=worker.keeper)
    assert exited == {"type": "exited", "pid": worker.keeper, "code": 0, "signal": None}
    assert gone(who["pid"])

    server.send({"type": "shutdown"})
    assert server.wait() == 0


def test_many_forks_at_once(server: ForkServer) -> None:
    requests = [server.request(i, f"fork_tools.py#{i}") for i in range(1, 9)]
    replies = [server.expect("forked", id=i) for i in range(1, 9)]
    keepers = [reply["pid"] for reply in replies]
    assert len(set(keepers)) == 8
    workers = []
    for (sock, out, err), keeper in zip(requests, keepers):
        worker = Forked(sock, keeper, out, err)
        server.keepers.append(keeper)
        server.workers.append(worker)
        workers.append(worker)
    pids = set()
    for i, worker in enumerate(workers, 1):
        pids.add(worker.handshake()["pid"])
        assert only_result(worker.call(1, "whoami"))["label"] == f"fork_tools.py#{i}"
        worker.send({"type": "shutdown"})
    assert len(pids) == 8
    for keeper in keepers:
        assert server.expect("exited", pid=keeper)["code"] == 0


def test_the_keeper_exits_with_the_workers_status(server: ForkServer) -> None:
    coded = server.fork(1)
    coded.handshake()
    coded.send({"type": "call", "id": 1, "tool": "exit_with", "args": {"code": 7}})
    assert server.expect("exited", pid=coded.keeper) == {
        "type": "exited",
        "pid": coded.keeper,
        "code": 7,
        "signal": None,
    }
    killed = server.fork(2)
    pid = killed.handshake()["pid"]
    os.kill(pid, signal.SIGSEGV)
    exited = server.expect("exited", pid=killed.keeper)
    assert (exited["code"], exited["signal"]) == (None, signal.SIGSEGV)
    # A real-time signal too (which some wait wrappers cannot represent).
    realtime = server.fork(3)
    pid = realtime.handshake()["pid"]
    os.kill(pid, signal.SIGRTMIN + 2)
    exited = server.expect("exited", pid=realtime.keeper)
    assert (exited["code"], exited["signal"]) == (None, signal.SIGRTMIN + 2)


# -- what the fork server refuses --------------------------------------------------


def test_an_unsafe_script_is_reported_and_not_forked(
    start: Callable[..., ForkServer], tmp_path: Path
) -> None:
    script = tmp_path / "threads.py"
    script.write_text(
        "import threading, time\n"
        "from flw import tool\n"
        "threading.Thread(target=time.sleep, args=(5,), name='poller', daemon=True).start()\n"
        "@tool\ndef echo(text: str) -> str:\n    return text\n"
    )
    fork_server = start(script)
    message = fork_server.expect("unsafe")
    assert "1 thread(s)" in message["reason"]
    assert "poller" in message["reason"]
    assert "half-alive" in message["reason"]
    assert fork_server.wait() == 0


def test_a_script_that_fails_to_import_exits_non_zero(
    start: Callable[..., ForkServer], tmp_path: Path
) -> None:
    script = tmp_path / "broken.py"
    script.write_text("raise RuntimeError('no model configured')\n")
    fork_server = start(script)
    assert fork_server.recv() is None
    assert fork_server.wait() == 1
    assert b"no model configured" in fork_server.stderr


def test_bad_requests_are_noted_and_the_server_goes_on(server: ForkServer) -> None:
    server.send_raw(b"not json")
    server.send_raw(b'{"type":"bogus"}')
    server.send_raw(b'{"type":"fork","id":4,"label":"x"}\n', [0, 1])  # two fds
    assert server.expect("fork_failed", id=4)["error"].startswith("a fork request carries 3")
    out_r, out_w = os.pipe()
    server.send_raw(b'{"type":"fork","id":5,"label":""}', [out_w, out_w, out_w])
    os.close(out_w)
    assert "label" in server.expect("fork_failed", id=5)["error"]
    assert os.read(out_r, 10) == b""  # the fork server closed what came with it
    os.close(out_r)
    server.send_raw(b'{"type":"fork","id":6}', [0, 1, 2])
    assert "label" in server.expect("fork_failed", id=6)["error"]

    worker = server.fork(7)
    worker.handshake()
    assert only_result(worker.call(1, "echo", {"text": "still here"})) == "still here"
    server.send({"type": "shutdown"})
    assert server.wait() == 0
    assert b"ignoring a message that does not decode" in server.stderr
    assert b"ignoring a message of unknown type" in server.stderr


# -- the keeper's kills ------------------------------------------------------------


def test_sigusr1_kills_what_escaped_the_group(server: ForkServer) -> None:
    worker = server.fork(1)
    pid = worker.handshake()["pid"]
    escaped = only_result(worker.call(1, "escape"))
    for other in escaped.values():
        assert stat_of(other)[0] != "Z"
    os.kill(worker.keeper, signal.SIGUSR1)
    exited = server.expect("exited", pid=worker.keeper)
    assert (exited["code"], exited["signal"]) == (None, signal.SIGKILL)
    for other in (pid, *escaped.values()):
        assert gone(other), f"{other} survived its keeper's sweep"


def test_sigterm_stops_gracefully(start: Callable[..., ForkServer]) -> None:
    server = start(grace_ms=10_000)
    server.expect("ready")
    worker = server.fork(1)
    pid = worker.handshake()["pid"]
    escaped = only_result(worker.call(1, "escape"))
    started = time.monotonic()
    os.kill(worker.keeper, signal.SIGTERM)
    server.expect("exited", pid=worker.keeper, timeout=15.0)
    assert time.monotonic() - started < 5.0  # the worker's own SIGTERM handler ended it
    assert b"SIGTERM: killing the worker's process group" in worker.read(worker.err, b"group")
    for other in (pid, *escaped.values()):
        assert gone(other)


def test_sigterm_escalates_after_the_grace(server: ForkServer) -> None:
    worker = server.fork(1)
    pid = worker.handshake()["pid"]
    assert only_result(worker.call(1, "ignore_sigterm")) is True
    escaped = only_result(worker.call(2, "escape"))
    started = time.monotonic()
    os.kill(worker.keeper, signal.SIGTERM)
    exited = server.expect("exited", pid=worker.keeper)
    took = time.monotonic() - started
    assert 0.3 <= took < 5.0  # FLW_KILL_GRACE_MS=400: 350 ms, then SIGKILL
    assert (exited["code"], exited["signal"]) == (None, signal.SIGKILL)
    assert b"did not exit after SIGTERM" in worker.read(worker.err, b"SIGTERM")
    for other in (pid, *escaped.values()):
        assert gone(other)


def test_a_cut_lifeline_ends_keepers_workers_and_what_they_started(server: ForkServer) -> None:
    first, second = server.fork(1), server.fork(2)
    pids = [first.handshake()["pid"], second.handshake()["pid"]]
    escaped = list(only_result(first.call(1, "escape")).values())
    escaped += only_result(second.call(1, "daemons", {"count": 2, "seconds": 60}))
    # A dead supervisor's ends of the output pipes are closed too: a keeper's
    # note must not end it (EPIPE) before it has swept.
    for worker in (first, second):
        worker.close_output()
    server.cut_lifeline()
    assert server.wait() == 0
    for pid in (*pids, *escaped):
        assert wait_dead(pid, 5.0), f"{pid} outlived the supervisor"
    for keeper in (first.keeper, second.keeper):
        assert wait_dead(keeper, 5.0)


def test_workers_outlive_a_killed_fork_server(server: ForkServer) -> None:
    worker = server.fork(1)
    pid = worker.handshake()["pid"]
    server.proc.kill()
    server.wait()
    assert only_result(worker.call(1, "echo", {"text": "alive"})) == "alive"
    assert stat_of(worker.keeper)[0] != "Z"
    server.cut_lifeline()
    assert wait_dead(pid, 5.0)
    assert wait_dead(worker.keeper, 5.0)


@pytest.mark.parametrize("how", ["sigterm", "eof"])
def test_the_fork_server_stops_on_sigterm_or_eof_and_leaves_workers(
    server: ForkServer, how: str
) -> None:
    worker = server.fork(1)
    pid = worker.handshake()["pid"]
    if how == "sigterm":
        server.proc.terminate()
    else:
        server.control.shutdown(socket.SHUT_RDWR)
    assert server.wait() == 0
    assert only_result(worker.call(1, "echo", {"text": "on"})) == "on"
    assert stat_of(pid)[0] != "Z"


def test_keepers_reap_adopted_orphans_while_the_worker_lives(server: ForkServer) -> None:
    worker = server.fork(1)
    pid = worker.handshake()["pid"]
    daemons = only_result(worker.call(1, "daemons", {"count": 3, "seconds": 0.05}))
    for daemon in daemons:
        assert gone(daemon, 2.0), f"{daemon} was left a zombie"
    assert children_of(worker.keeper) == {pid: stat_of(pid)[0]}
    assert "Z" not in children_of(pid).values()
    worker.send({"type": "shutdown"})
    server.expect("exited", pid=worker.keeper)
    assert gone(worker.keeper)  # the fork server reaped it
    assert children_of(server.proc.pid) == {}


# -- exec mode: FLW_KEEPER=1 --------------------------------------------------------


def test_exec_mode_keeper_kills_a_setsid_grandchild(spawn: Callable[..., WorkerProcess]) -> None:
    keeper = spawn(TOOLS, env={"FLW_KEEPER": "1"})
    hello = keeper.handshake()
    assert hello["pid"] != keeper.pid
    who = only_result(keeper.call(1, "whoami"))
    assert (who["ppid"], who["pgid"], who["sid"]) == (keeper.pid, who["pid"], keeper.pid)
    assert "FLW_KEEPER" not in who["flw_env"]
    assert keeper.channel_link not in links(keeper.pid)  # the keeper closed its copy
    escaped = only_result(keeper.call(2, "escape"))
    os.kill(keeper.pid, signal.SIGUSR1)
    assert keeper.wait() == -signal.SIGKILL
    for other in (who["pid"], *escaped.values()):
        assert gone(other)


def test_exec_mode_keeper_exits_0_after_shutdown(spawn: Callable[..., WorkerProcess]) -> None:
    keeper = spawn(TOOLS, env={"FLW_KEEPER": "1"})
    keeper.handshake()
    keeper.send({"type": "shutdown"})
    assert keeper.wait() == 0


LAUNCHER = textwrap.dedent(
    """
    import ctypes, os, subprocess, sys, time
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    def arm():
        os.dup2(int(sys.argv[1]), 3)
        prctl(1, 15, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGTERM: what the supervisor does
    keeper = subprocess.Popen(
        [sys.executable, "-m", "flw", sys.argv[2]], start_new_session=True,
        close_fds=False, preexec_fn=arm,
    )
    print(keeper.pid, flush=True)
    time.sleep(60)
    """
)


def test_exec_mode_keeper_sweeps_when_the_supervisor_dies(tmp_path: Path) -> None:
    parent, child = socket.socketpair()
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(child.fileno()), str(TOOLS)],
        stdout=subprocess.PIPE,
        env=worker_env(
            FLW_KEEPER="1",
            FLW_CHANNEL_FD="3",
            FLW_WORKER="fork_tools.py#1",
            FLW_KILL_GRACE_MS="20000",  # a graceful stop would wait for it
        ),
        pass_fds=[child.fileno()],
    )
    child.close()
    try:
        assert launcher.stdout is not None
        keeper = int(launcher.stdout.readline())
        peer = ChannelPeer(parent)
        pid = peer.handshake()["pid"]
        assert only_result(peer.call(1, "ignore_sigterm")) is True
        escaped = only_result(peer.call(2, "escape"))
        started = time.monotonic()
        launcher.kill()  # the supervisor dies: PDEATHSIG brings SIGTERM to the keeper
        launcher.wait()
        for other in (pid, *escaped.values()):
            assert wait_dead(other, 10.0)
        assert wait_dead(keeper, 10.0)
        assert time.monotonic() - started < 10.0  # at once, not after the grace of a SIGTERM
    finally:
        launcher.kill()
        launcher.communicate()
        parent.close()


# -- pieces ----------------------------------------------------------------------------


def test_the_prepared_hello_line_is_the_encoded_hello() -> None:
    from flw import Tool
    from flw.worker._loop import prepare_worker
    from flw.worker._protocol import MAX_ID, encode_line

    def tricky(pid: int = MAX_ID) -> int:
        """Mentions "pid":9007199254740991, in its description."""
        return pid

    prepared = prepare_worker([Tool(tricky)])
    assert prepared.hello_line is not None
    head, tail = prepared.hello_line
    assert head + b"4242" + tail == encode_line({**prepared.hello, "pid": 4242})


def test_children_are_found_with_and_without_the_children_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flw.worker import _keeper

    procs = [
        subprocess.Popen(["sleep", "10"]),
        subprocess.Popen(["sleep", "10"], start_new_session=True),
    ]
    try:
        expected = {(proc.pid, os.getpgid(proc.pid)) for proc in procs}
        assert expected <= set(_keeper._children_of(os.getpid()))
        read = _keeper._read
        monkeypatch.setattr(
            _keeper, "_read", lambda path: None if path.endswith("/children") else read(path)
        )
        assert expected <= set(_keeper._children_of(os.getpid()))
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
