"""The fork server: a script imported once, its workers forked on request.

``python -m flw --fork-server SCRIPT [ARGS...]`` is started by the supervisor
once per pool generation. It imports the script as a worker would (``flw.run()``
does nothing meanwhile), works out the tools, graph and ``hello`` once,
imports what the workers will need, ``gc.freeze()``s the heap and then forks a
keeper and its worker for every ``fork`` request (``_keeper.py``): a worker
costs about a millisecond and shares the fork server's memory.

Descriptors and environment (PROTOCOL.md, "Fork server"): fd 3
(``FLW_CHANNEL_FD``) is a ``SOCK_SEQPACKET`` control socket, one JSON message
per datagram (``_fork_wire.py``); fd 4 (``FLW_LIFELINE_FD``) is the read end
of a pipe only the supervisor writes to, so its end-of-file means the
supervisor is gone; ``FLW_KILL_GRACE_MS`` is the keepers' grace for SIGTERM.

    supervisor                          fork server
      | <------------- ready | unsafe --- |   after the import
      | --- fork (+ channel, stdout, ---> |
      |     stderr fds)                   |
      | <------- forked | fork_failed --- |   one per fork
      | <------------------- exited ----- |   a keeper was reaped
      | --- shutdown -------------------> |   (or EOF, SIGTERM, lifeline EOF)
      exits 0; keepers and workers live on

**Invariants.** The fork server never runs a second thread: a script that
started one while it was imported gets ``unsafe``, and the SDK starts none
before the fork. Bad input never ends it: it notes it on stderr and goes on.
Its signals are blocked around ``fork`` so that a keeper never runs the fork
server's handlers, and a forked child never returns into this loop (it ends
with ``os._exit``). Its own exit leaves keepers and workers running: they
watch the lifeline themselves.
"""

from __future__ import annotations

import array
import contextlib
import gc
import os
import select
import signal
import socket
import threading
from collections.abc import Sequence
from typing import Any, NamedTuple, NoReturn

from .._tool import ToolDefinitionError, registered_tools
from ..graph._base import NodeDefinitionError
from . import _fork_wire
from ._channel import open_channel
from ._keeper import (
    block_signals,
    catch_signals,
    drain_wakeup,
    kill_grace_seconds,
    lifeline_closed,
    start_worker,
    unblock_signals,
)
from ._loop import Prepared, Settings, Worker, flush_std_streams, note, prepare_worker
from ._protocol import ProtocolError

CONTROL_FD = 3
LIFELINE_FD = 4

_FDS_SPACE = socket.CMSG_SPACE(8 * array.array("i").itemsize)
"""Room for 8 descriptors: a request with more is cut (``MSG_CTRUNC``) and refused."""

MAX_BATCH = 64
"""Fork requests read (and forked) at most in one go."""

_OWN_VARIABLES = (
    "FLW_CHANNEL_FD",
    "FLW_FORK_SERVER",
    "FLW_KEEPER",
    "FLW_KEEPER_EXE",
    "FLW_LIFELINE_FD",
    "FLW_KILL_GRACE_MS",
)
"""What the supervisor tells the fork server alone; workers and their children never see it."""


def serve(script: str, args: Sequence[str]) -> int:
    """Run the fork server for ``script``; the exit status."""
    from ._entry import load_script, script_globals

    settings = Settings.from_env(os.environ, f"{os.path.basename(script)}#fork")
    label = settings.label
    env = {name: os.environ.pop(name, "") for name in _OWN_VARIABLES}
    try:
        control, lifeline = _take_descriptors(env)
    except (OSError, ValueError) as exc:
        note(label, f"fork server: cannot take its descriptors: {exc}")
        return 2
    status = load_script(script, args)
    if status is not None:
        return status
    try:
        prepared = prepare_worker(registered_tools(), script_globals())
    except (ToolDefinitionError, NodeDefinitionError) as exc:
        note(label, str(exc))
        return 1
    _preload(prepared)
    server = _ForkServer(control, lifeline, settings, prepared, env["FLW_KILL_GRACE_MS"])
    server.keeper_exe = _keeper_exe(env["FLW_KEEPER_EXE"], label)
    reason = _threads_started()
    if reason is not None:
        server.send({"type": "unsafe", "reason": reason})
        # Not a return: a thread the script left running (not a daemon)
        # would keep this process alive after main.
        flush_std_streams()
        os._exit(0)
    gc.collect()
    gc.freeze()
    return server.run()


def _take_descriptors(env: dict[str, str]) -> tuple[socket.socket, int]:
    """The control socket and the lifeline, both close-on-exec."""
    control_fd = int(env["FLW_CHANNEL_FD"] or CONTROL_FD)
    lifeline = int(env["FLW_LIFELINE_FD"] or LIFELINE_FD)
    os.fstat(lifeline)
    os.set_inheritable(lifeline, False)
    os.set_inheritable(control_fd, False)
    os.set_blocking(control_fd, True)
    control = socket.socket(fileno=control_fd)
    if control.type != socket.SOCK_SEQPACKET:
        control.detach()
        raise ValueError(f"fd {control_fd} is not a SOCK_SEQPACKET socket")
    return control, lifeline


def _preload(prepared: Prepared) -> None:
    """Import and work out what workers would on their first call, once for all of them."""
    import traceback  # noqa: F401  (every failed call formats one)

    for entry in prepared.tools.values():
        entry.plan_binding()

    if prepared.needs_async:
        import asyncio  # noqa: F401


def _keeper_exe(path: str, label: str) -> str | None:
    """The keeper program the forked keepers exec, if it can run; else Python keepers."""
    if not path:
        return None
    if not os.access(path, os.X_OK):
        note(label, f"fork server: the keeper {path} cannot be run; keepers stay in Python")
        return None
    return path


def _threads_started() -> str | None:
    """Why forking is unsafe (threads run besides this one), or ``None``."""
    main = threading.main_thread()
    names = [thread.name for thread in threading.enumerate() if thread is not main]
    try:
        tasks = [task for task in os.listdir("/proc/self/task") if int(task) != os.getpid()]
    except OSError:
        tasks = []
    if not names and not tasks:
        return None
    if not names:
        names = [_task_name(task) for task in tasks]
        what = f"{len(tasks)} native thread(s)"
    else:
        what = f"{len(names)} thread(s)"
    return (
        f"the script started {what} while it was imported (names: {', '.join(names)}); "
        "forking would copy them half-alive. Start threads inside the tools, or run this "
        'pool with spawn = "exec"'
    )


def _task_name(task: str) -> str:
    try:
        with open(f"/proc/self/task/{task}/comm", encoding="utf-8", errors="replace") as comm:
            return comm.read().strip()
    except OSError:
        return task


class _Request(NamedTuple):
    """A checked fork request: its id, the worker's label and [channel, stdout, stderr]."""

    id: int
    label: str
    fds: list[int]


class _ForkServer:
    """The control loop: fork requests, reaping, the ways to stop."""

    def __init__(
        self,
        control: socket.socket,
        lifeline: int,
        settings: Settings,
        prepared: Prepared,
        grace: str,
    ) -> None:
        self.control = control
        self.lifeline = lifeline
        self.settings = settings
        self.prepared = prepared
        self.grace_seconds = kill_grace_seconds(grace)
        self.keeper_exe: str | None = None  # flw, exec'd by each keeper (``_keeper.py``)
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.gone = False  # the supervisor cannot be reached

    def run(self) -> int:
        """Serve until ``shutdown``, EOF, SIGTERM or the lifeline ends; the exit status."""
        catch_signals((signal.SIGCHLD, signal.SIGTERM, signal.SIGINT), self.wake_w)
        poller = select.poll()
        poller.register(self.control.fileno(), select.POLLIN)
        poller.register(self.lifeline, select.POLLIN)
        poller.register(self.wake_r, select.POLLIN)
        self.send({"type": "ready", "pid": os.getpid()})
        while not self.gone:
            for fd, events in poller.poll():
                if fd == self.wake_r:
                    if _stop_signal(drain_wakeup(self.wake_r)):
                        return 0
                elif fd == self.lifeline:
                    if lifeline_closed(fd, events):
                        return 0
                elif not self._on_control():
                    return 0
            self._reap()
        return 0

    def send(self, message: dict[str, Any]) -> None:
        """Send one message; a supervisor that cannot be reached ends the loop."""
        if self.gone:
            return
        try:
            self.control.send(_fork_wire.encode(message))
        except OSError as exc:
            note(self.settings.label, f"fork server: cannot reach the supervisor: {exc}")
            self.gone = True

    def _on_control(self) -> bool:
        """Take every datagram waiting; ``False`` at ``shutdown`` or end-of-file.

        The fork requests among them are forked back to back and answered
        after: between two forks the fork server touches few pages, and each
        page it writes after a fork costs it a copy.
        """
        requests: list[_Request] = []
        go_on = True
        flags = 0
        while go_on and len(requests) < MAX_BATCH:
            try:
                data, fds, cut = _receive(self.control, flags)
            except BlockingIOError:
                break
            except OSError as exc:
                note(self.settings.label, f"fork server: reading the control socket failed: {exc}")
                go_on = False
                break
            flags = socket.MSG_DONTWAIT
            go_on = self._take(data, fds, cut, requests)
        if requests:
            self._fork(requests)
        return go_on

    def _take(self, data: bytes, fds: list[int], cut: int, requests: list[_Request]) -> bool:
        """Check one datagram: a fork request goes to ``requests``; ``False`` to stop."""
        label = self.settings.label
        if not data:
            _close_all(fds)
            return False
        if cut & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            _close_all(fds)
            note(label, "fork server: ignoring a datagram that was cut (too long, or too many fds)")
            self._refuse(data, "the request was cut: too long, or more than 3 descriptors")
            return True
        try:
            message = _fork_wire.decode(data, "supervisor")
        except ProtocolError as exc:
            _close_all(fds)
            what = "of unknown type" if exc.code == "unknown_type" else "that does not decode"
            note(label, f"fork server: ignoring a message {what}: {exc}")
            self._refuse(data, f"the request does not decode: {exc}")
            return True
        if message["type"] == "shutdown":
            _close_all(fds)
            return False
        if len(fds) != 3:
            _close_all(fds)
            self.send(
                {
                    "type": "fork_failed",
                    "id": message["id"],
                    "error": "a fork request carries 3 descriptors (channel, stdout, stderr), "
                    f"this one {len(fds)}",
                }
            )
            return True
        requests.append(_Request(message["id"], message["label"], fds))
        return True

    def _refuse(self, data: bytes, error: str) -> None:
        """Answer ``fork_failed`` to a broken ``fork`` whose id can be read."""
        try:
            obj = _fork_wire.parse(data)
        except ProtocolError:
            return
        if isinstance(obj, dict) and obj.get("type") == "fork":
            with contextlib.suppress(ProtocolError):
                self.send({"type": "fork_failed", "id": obj.get("id"), "error": error})

    def _fork(self, requests: list[_Request]) -> None:
        """Fork a keeper for each request, then answer them and close their fds."""
        flush_std_streams()
        block_signals()
        outcomes: list[int | str] = []
        for request in requests:
            try:
                pid = os.fork()
            except OSError as exc:
                outcomes.append(f"fork: {exc}")
                continue
            if pid == 0:
                self._keeper(request, requests)
            outcomes.append(pid)
        unblock_signals()
        for request, outcome in zip(requests, outcomes):
            _close_all(request.fds)
            if isinstance(outcome, int):
                self.send({"type": "forked", "id": request.id, "pid": outcome})
            else:
                self.send({"type": "fork_failed", "id": request.id, "error": outcome})

    def _keeper(self, request: _Request, batch: list[_Request]) -> NoReturn:
        """The child: become the keeper K, fork the worker W and, in W, serve.

        Signals are blocked here (``KEEPER_SIGNALS``) until K's handlers, or
        W's defaults, are in: the fork server's handlers write to its pipe.
        """
        status = 1
        try:
            channel, out, err = request.fds
            os.setsid()
            os.dup2(out, 1)
            os.dup2(err, 2)
            for other in batch:
                if other is not request:
                    _close_all(other.fds)
            os.close(out)
            os.close(err)
            self.control.detach()  # fd 3: K closes it, W puts the channel there
            os.environ["FLW_WORKER"] = request.label
            closes = (self.wake_r, self.wake_w)
            start_worker(
                request.label,
                channel,
                self.lifeline,
                self.grace_seconds,
                closes,
                self.keeper_exe,
            )
            settings = self.settings._replace(label=request.label)
            status = _serve_worker(channel, settings, self.prepared)
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            flush_std_streams()
            os._exit(status)

    def _reap(self) -> None:
        """Report every keeper that exited."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
            signum = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
            if code is None and signum is None:
                continue  # stopped or continued: not an exit
            self.send({"type": "exited", "pid": pid, "code": code, "signal": signum})


def _receive(control: socket.socket, flags: int) -> tuple[bytes, list[int], int]:
    """One datagram: its bytes, the descriptors it carried (close-on-exec), its flags.

    (``socket.recv_fds`` of Python 3.11 drops its ``flags`` argument.)
    """
    data, ancillary, cut, _ = control.recvmsg(
        _fork_wire.MAX_DATAGRAM, _FDS_SPACE, socket.MSG_CMSG_CLOEXEC | flags
    )
    fds = array.array("i")
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    return data, list(fds), cut


def _serve_worker(channel_fd: int, settings: Settings, prepared: Prepared) -> int:
    """W: what ``main`` does once the script is loaded, on the channel it was given."""
    if channel_fd != CONTROL_FD:
        os.dup2(channel_fd, CONTROL_FD)
        os.close(channel_fd)
    try:
        channel = open_channel({"FLW_CHANNEL_FD": str(CONTROL_FD)})
    except (OSError, ValueError) as exc:
        note(settings.label, f"cannot open the protocol channel: {exc}")
        return 2
    worker = Worker(channel, settings)
    worker.install_signal_handlers()
    return worker.serve_prepared(prepared, start_reader=True)


def _stop_signal(signals: bytes) -> bool:
    return signal.SIGTERM in signals or signal.SIGINT in signals


def _close_all(fds: Sequence[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
