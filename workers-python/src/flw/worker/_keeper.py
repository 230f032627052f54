"""The keeper: a tiny parent for one worker, which kills everything the worker started.

A tool can start processes that leave the worker's process group
(``setsid``, ``start_new_session=True``, a daemon's double fork), and a
group kill misses those. So every worker W has a keeper K as its parent.
K is a child subreaper (``PR_SET_CHILD_SUBREAPER``): an orphan anywhere
under W is reparented to K, not to init, and K finds it among its own
children and kills it.

    supervisor ─ fork server ─ K ─ W     (fork mode, ``_fork_server.py``)
    supervisor ─ K ─ W                   (exec mode, ``FLW_KEEPER=1``)

``start_worker`` forks W and returns in W only (which then serves as a
worker does). W leads its own process group inside K's session, so the
SDK's watchdog (``killpg`` of its own group) never hits K, and W gets
``PR_SET_PDEATHSIG(SIGKILL)``: it dies with K.

What K does, from the supervisor's point of view:

- W exits: K SIGKILLs W's group, sweeps, and exits with W's status (a
  signal is mirrored: K kills itself with it).
- SIGTERM (or SIGINT): graceful stop. SIGTERM to W's group, then the sweep
  once W exits or ``FLW_KILL_GRACE_MS`` minus 50 ms has passed.
- SIGUSR1: kill now, the sweep at once.
- The supervisor is gone: the lifeline pipe reaches end-of-file (fork
  mode), or, in exec mode, SIGTERM comes (the supervisor's
  ``PR_SET_PDEATHSIG``) and ``getppid()`` has changed. The sweep at once.

The sweep: SIGKILL W's group; then, while K has children, find them by
their ``ppid`` in ``/proc/*/stat``, SIGKILL each and its group, and reap.
Orphans of what was killed come to K (the subreaper), so it converges.

**Invariants.** K runs no user code and imports nothing after the fork (its
modules are the fork server's); its loop allocates next to nothing. K reaps
every child it gets, adopted orphans too, while W lives. W's group is
killed while W is still unreaped (``waitid(WNOWAIT)``), so its id cannot
have been reused. K exits only when it has no child left.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import importlib
import os
import select
import signal
import time
from collections.abc import Iterable
from types import FrameType
from typing import Any, NoReturn

from ._loop import flush_std_streams, note

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36

KEEPER_SIGNALS = frozenset({signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGUSR1})
"""The signals K handles. Whoever forks K blocks them until K's handlers are in."""

DEFAULT_KILL_GRACE_MS = 2000
"""``FLW_KILL_GRACE_MS`` when the supervisor does not set it (flw.toml's default)."""

_SWEEP_WAIT_MS = 20
"""How long the sweep waits for a SIGCHLD before it looks at ``/proc`` again."""

_SWEEP_ROUNDS_MAX = 500
"""Rounds (of ``_SWEEP_WAIT_MS``) after which a sweep gives up on what it cannot kill."""

_SWEEP_ROUNDS_FOR_W = 5
"""Rounds the sweep waits for W's own group to die before it looks at ``/proc`` anyway."""

# signal.py wraps the C functions of _signal so that they give back enum
# members: the old handler is looked up as Handlers(handler), which raises
# and catches a ValueError for a function, and a mask comes back as a set of
# Signals. In a process just forked, every object that touches is a page to
# copy, so K, W and the fork server's fork loop call the C functions.
_C: Any = importlib.import_module("_signal")


def block_signals() -> None:
    """Block ``KEEPER_SIGNALS`` in this thread (around a fork of K or W)."""
    _C.pthread_sigmask(_C.SIG_BLOCK, KEEPER_SIGNALS)


def unblock_signals() -> None:
    """Unblock ``KEEPER_SIGNALS`` in this thread."""
    _C.pthread_sigmask(_C.SIG_UNBLOCK, KEEPER_SIGNALS)


def catch_signals(signals: Iterable[int], wakeup_fd: int) -> None:
    """Make ``signals`` write their number to ``wakeup_fd`` (a non-blocking pipe) only."""
    _C.set_wakeup_fd(wakeup_fd, warn_on_full_buffer=False)
    for signum in signals:
        _C.signal(signum, _wake_only)


_prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)  # Linux only
if _prctl is not None:
    _prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
    _prctl.restype = ctypes.c_int


def prctl(option: int, value: int) -> None:
    """``prctl(option, value, 0, 0, 0)``; ``OSError`` when it fails or is missing."""
    if _prctl is None:
        raise OSError(errno.ENOSYS, "prctl: keepers need Linux")
    if _prctl(option, value, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def kill_grace_seconds(raw: str | None) -> float:
    """How long a graceful stop waits: ``FLW_KILL_GRACE_MS`` minus 50 ms, at least 0."""
    try:
        grace_ms = int(raw) if raw else DEFAULT_KILL_GRACE_MS
    except ValueError:
        grace_ms = DEFAULT_KILL_GRACE_MS
    return max(0, grace_ms - 50) / 1000


def start_worker(
    label: str,
    channel_fd: int | None,
    lifeline_fd: int | None,
    grace_seconds: float,
    worker_closes: Iterable[int] = (),
    keeper_exe: str | None = None,
) -> None:
    """Become the keeper of a worker forked here; return in the worker only.

    ``channel_fd`` is the worker's protocol channel (K closes its copy);
    ``lifeline_fd`` the supervisor's lifeline (fork mode; W closes it) or
    ``None`` (exec mode: K watches its parent instead); ``worker_closes``
    more descriptors W must not keep. K keeps fds 0-2, the lifeline and its
    own signal pipe and closes every other descriptor. Does not return in K.
    With ``keeper_exe`` (fork mode: flw itself), K execs
    ``keeper_exe __keeper W LIFELINE GRACE_MS LABEL`` instead of looping
    here: the same keeper in Rust, which keeps none of the fork server's
    heap. ``KEEPER_SIGNALS`` stay blocked across the exec, so none is lost.
    In W, the signals K handles are back to their defaults and the signal
    wakeup fd is unset.

    W is forked first thing: what K still has to set up runs beside W's start.
    """
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    block_signals()
    parent = os.getppid()
    keeper = os.getpid()
    flush_std_streams()
    try:
        worker = os.fork()
    except OSError as exc:
        note(label, f"keeper: cannot fork the worker: {exc}")
        os._exit(1)
    if worker == 0:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != keeper:
            os._exit(1)  # K died before PDEATHSIG was armed
        os.setpgid(0, 0)
        _C.set_wakeup_fd(-1)
        for sig in KEEPER_SIGNALS:
            _C.signal(sig, _C.default_int_handler if sig == signal.SIGINT else _C.SIG_DFL)
        for fd in worker_closes:
            os.close(fd)
        if lifeline_fd is not None:
            os.close(lifeline_fd)
        unblock_signals()
        return
    if keeper_exe is not None and lifeline_fd is not None:
        _exec_keeper(keeper_exe, label, worker, channel_fd, lifeline_fd, grace_seconds)
        channel_fd = None  # closed there: its number may be another's by now
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    catch_signals(KEEPER_SIGNALS, wake_w)
    if channel_fd is not None:
        with contextlib.suppress(OSError):
            os.close(channel_fd)
    keep = {wake_r, wake_w} if lifeline_fd is None else {wake_r, wake_w, lifeline_fd}
    _close_fds_except(keep)
    unblock_signals()
    exec_parent = parent if lifeline_fd is None else None
    _keep(label, worker, wake_r, lifeline_fd, grace_seconds, exec_parent)


def _exec_keeper(
    exe: str, label: str, worker: int, channel_fd: int | None, lifeline_fd: int, grace: float
) -> None:
    """K: become ``flw __keeper`` (``supervisor/src/keeper.rs``); returns only if exec failed."""
    if channel_fd is not None:
        with contextlib.suppress(OSError):
            os.close(channel_fd)
    _close_fds_except({lifeline_fd})
    os.set_inheritable(lifeline_fd, True)
    args = [exe, "__keeper", str(worker), str(lifeline_fd), str(round(grace * 1000)), label]
    try:
        os.execv(exe, args)
    except OSError as exc:
        note(label, f"keeper: cannot run {exe} ({exc}); the keeper stays in Python")


def _wake_only(signum: int, frame: FrameType | None) -> None:
    """K's handler: the signal's number reaches the loop through the wakeup fd."""


def _close_fds_except(keep: Iterable[int]) -> None:
    low = 3
    for fd in sorted(keep):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, 1 << 30)


def _keep(
    label: str,
    worker: int,
    wake_r: int,
    lifeline_fd: int | None,
    grace_seconds: float,
    parent: int | None,
) -> NoReturn:
    """K's loop: wait for W's exit, a signal or the lifeline; then sweep and exit."""
    poller = select.poll()
    poller.register(wake_r, select.POLLIN)
    if lifeline_fd is not None:
        poller.register(lifeline_fd, select.POLLIN)
    status: int | None = None
    deadline: float | None = None
    while True:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic()) * 1000
        kill_now = False
        for fd, events in poller.poll(timeout):
            if fd == wake_r:
                for signum in drain_wakeup(wake_r):
                    if signum == signal.SIGUSR1:
                        kill_now = True
                    elif signum in (signal.SIGTERM, signal.SIGINT):
                        if parent is not None and os.getppid() != parent:
                            note(label, "keeper: the supervisor is gone; killing the worker")
                            kill_now = True
                        elif deadline is None:
                            _kill_group(worker, signal.SIGTERM)
                            deadline = time.monotonic() + grace_seconds
            elif lifeline_closed(fd, events):
                note(label, "keeper: the supervisor is gone (lifeline closed); killing the worker")
                kill_now = True
        status, _ = _reap(worker, status)
        if status is not None or kill_now:
            break
        if deadline is not None and time.monotonic() >= deadline:
            note(label, "keeper: the worker did not exit after SIGTERM; killing it")
            break
    _exit_like(_sweep(worker, status, wake_r))


def drain_wakeup(fd: int) -> bytes:
    """The signal numbers waiting in a (non-blocking) wakeup pipe."""
    try:
        return os.read(fd, 256)
    except BlockingIOError:
        return b""


def lifeline_closed(fd: int, events: int) -> bool:
    """Whether ``poll`` says the lifeline's writer (the supervisor) is gone."""
    if events & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
        return True
    try:
        return os.read(fd, 1) == b""  # the supervisor never writes to it
    except BlockingIOError:
        return False


def _kill(pid: int, signum: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, signum)


def _kill_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pgid, signum)


def _reap(worker: int, status: int | None) -> tuple[int | None, bool]:
    """Reap every child that has exited: W's wait status, and whether K has children left.

    W's group gets SIGKILL before W is reaped: while W is a zombie its pid,
    and so its group id, cannot be taken by another process.
    """
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return status, False
        if info is None:
            return status, True
        pid = info.si_pid
        if pid == worker and status is None:
            _kill_group(worker, signal.SIGKILL)
        try:
            _, code = os.waitpid(pid, 0)  # waitable: does not block
        except ChildProcessError:
            continue
        if pid == worker:
            status = code


def _sweep(worker: int, status: int | None, wake_r: int) -> int | None:
    """Kill W's group and every process that comes to K; reap them all. W's status.

    Until W is reaped (or a few rounds passed), what is left is W's own
    group dying: K looks for other children only after that.
    """
    if status is None:
        _kill_group(worker, signal.SIGKILL)
    me = os.getpid()
    own_group = os.getpgrp()
    poller = select.poll()
    poller.register(wake_r, select.POLLIN)
    rounds = 0
    while True:
        status, more = _reap(worker, status)
        if not more:
            return status
        if status is not None or rounds >= _SWEEP_ROUNDS_FOR_W:
            if rounds >= _SWEEP_ROUNDS_MAX:
                # A child SIGKILL cannot reach (a set-user-ID program):
                # K stops looking and leaves it to init rather than spin.
                return status
            for pid, pgid in _children_of(me):
                _kill(pid, signal.SIGKILL)
                if pgid != own_group:
                    _kill_group(pgid, signal.SIGKILL)
        rounds += 1
        poller.poll(_SWEEP_WAIT_MS)
        drain_wakeup(wake_r)


def _children_of(ppid: int) -> list[tuple[int, int]]:
    """The live (not zombie) children of ``ppid``, as ``(pid, pgid)``, from ``/proc``.

    ``/proc/PID/task/PID/children`` names them where the kernel has it
    (``CONFIG_PROC_CHILDREN``); else every ``/proc/*/stat`` is read.
    """
    listed = _read(f"/proc/{ppid}/task/{ppid}/children")
    if listed is not None:
        candidates = listed.split()
    else:
        try:
            candidates = [name.encode() for name in os.listdir("/proc") if name.isdigit()]
        except OSError:
            return []
    found: list[tuple[int, int]] = []
    for name in candidates:
        data = _read(f"/proc/{name.decode()}/stat")
        if data is None:
            continue
        # pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
        fields = data[data.rfind(b")") + 2 :].split(b" ", 3)
        if len(fields) < 3 or fields[0] == b"Z":
            continue
        with contextlib.suppress(ValueError):
            if int(fields[1]) == ppid:
                found.append((int(name), int(fields[2])))
    return found


def _read(path: str) -> bytes | None:
    """A small ``/proc`` file's bytes, ``None`` when it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    chunks = []
    try:
        while True:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    return b"".join(chunks)


def _exit_like(status: int | None) -> NoReturn:
    """Exit as W did: with its code, or killed by its signal (without a core dump)."""
    if status is None:
        os._exit(1)
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        with contextlib.suppress(OSError):
            prctl(PR_SET_DUMPABLE, 0)
        with contextlib.suppress(OSError, ValueError):
            _C.signal(signum, _C.SIG_DFL)
        _C.pthread_sigmask(_C.SIG_UNBLOCK, {signum})
        os.kill(os.getpid(), signum)
        os._exit(128 + signum)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)
