"""Which processes a call started, so that cancelling the call stops them.

In ``isolated`` mode a cancel kills the worker's whole process group, which
takes every process its tool started. In ``shared`` mode the group also
hosts other calls, so a call that stops on request (within the grace period)
keeps its process group; what it started would live on. So the SDK records
every ``subprocess.Popen`` made while a call runs (``subprocess.run``,
``check_output`` and asyncio's subprocesses all make one) and, when the call
ends cancelled, kills those still running, through a pidfd where Linux has
them so a reused pid is never hit.

The record is a context variable: set for a sync call on its thread, and
inside an async call's task (which tasks it starts inherit).
``subprocess.Popen._execute_child`` is wrapped once ``subprocess`` is loaded.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import signal
import sys
from typing import Any

_CURRENT: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar(
    "flw_call_children", default=None
)

_installed = False


class _Child:
    """A process a call started: its ``Popen`` and, on Linux, a pidfd."""

    __slots__ = ("pidfd", "popen")

    def __init__(self, popen: Any) -> None:
        self.popen = popen
        self.pidfd = -1
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:
            try:
                self.pidfd = pidfd_open(popen.pid)
            except OSError:
                self.pidfd = -1

    def kill(self) -> None:
        send = getattr(signal, "pidfd_send_signal", None)
        try:
            if self.pidfd >= 0 and send is not None:
                send(self.pidfd, signal.SIGKILL)
            elif self.popen.returncode is None:
                self.popen.kill()
        except OSError:
            pass  # it has exited already

    def close(self) -> None:
        if self.pidfd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.pidfd)
            self.pidfd = -1


def install() -> None:
    """Start recording subprocesses, once ``subprocess`` is loaded (cheap to repeat)."""
    global _installed
    if _installed or "subprocess" not in sys.modules:
        return
    import subprocess

    original = subprocess.Popen._execute_child  # type: ignore[attr-defined]

    def _execute_child(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        children = _CURRENT.get()
        if children is not None:
            children.append(_Child(self))

    subprocess.Popen._execute_child = _execute_child  # type: ignore[attr-defined]
    _installed = True


def track(children: list[Any]) -> contextvars.Token[list[Any] | None]:
    """Record the subprocesses started from here on into ``children``."""
    install()
    return _CURRENT.set(children)


def untrack(token: contextvars.Token[list[Any] | None]) -> None:
    """Stop recording (the thread goes back to what it did before ``track``)."""
    _CURRENT.reset(token)


def settle(children: list[Any], cancelled: bool) -> None:
    """The call ended: kill what it started if it was cancelled; forget them."""
    for child in children:
        if cancelled:
            child.kill()
        child.close()
    children.clear()
