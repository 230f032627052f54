"""``Context``: what a running tool uses to report progress, logs and chunks.

The worker injects a ``Context`` into a parameter annotated with it. Its
methods send their message at once, from any thread, and return an object
that may be awaited (a no-op), so ``await ctx.progress(...)`` in an async
tool and ``ctx.progress(...)`` in a sync tool both work. A ``Context()``
made by hand (a notebook, a unit test) is detached: its methods write to the
``flw`` logger instead and never fail because no worker is around.
``current_context()`` gives the context of the call running in the current
thread or task (a tool, a graph node, or a node visit of ``Flow.run``).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import threading
from collections.abc import Generator
from typing import Any, Callable

from ._convert import NotJSONSerializable, to_json
from .worker._protocol import LOG_LEVELS


def _log(level: str, fmt: str, *args: Any) -> None:
    """Log to the ``flw`` logger (detached contexts only: ``logging`` loads late)."""
    import logging

    logging.getLogger("flw").log(getattr(logging, level.upper()), fmt, *args)


_MAX_LOG_CHARS = 1024 * 1024

Emit = Callable[[dict[str, Any]], None]


class Sent:
    """Returned by the ``Context`` methods: the message is already sent.

    Awaiting it does nothing and gives ``None``; not awaiting it is fine too
    (it is not a coroutine, so Python never warns about it).
    """

    __slots__ = ()

    def __await__(self) -> Generator[None, None, None]:
        yield from ()

    def __repr__(self) -> str:
        return "<flw.Sent>"


_SENT = Sent()

_CANCEL_LOCK = threading.Lock()
"""Guards every context's cancel flag and callbacks (cancels are rare)."""


class Context:
    """The running call, as seen by the tool.

    Declare a parameter annotated ``Context`` (``ctx: Context``, or
    ``ctx: Context = None`` so the function can still be called by hand)
    and the worker passes the context of the call; the parameter is not part
    of the tool's input schema.
    """

    def __init__(self, call_id: int | None = None, tool: str | None = None) -> None:
        self._call_id = call_id
        self._tool = tool
        self._emit: Emit | None = None
        self._cancelled = False
        self._cancel_callbacks: list[Callable[[], object]] | None = None

    @property
    def call_id(self) -> int | None:
        """The id of the call (``None`` outside a worker)."""
        return self._call_id

    @property
    def tool(self) -> str | None:
        """The name of the tool being called (``None`` outside a worker)."""
        return self._tool

    @property
    def cancelled(self) -> bool:
        """Whether the caller asked to stop this call; sync tools poll it."""
        return self._cancelled

    def progress(
        self,
        progress: float,
        total: float | None = None,
        message: str | None = None,
    ) -> Sent:
        """Report progress: ``progress`` out of ``total`` (when known)."""
        msg: dict[str, Any] = {
            "type": "progress",
            "id": self._call_id,
            "progress": _number("progress", progress),
        }
        if total is not None:
            msg["total"] = _number("total", total)
        if message is not None:
            msg["message"] = str(message)
        if self._emit is None:
            _log(
                "debug",
                "progress %s/%s %s",
                progress,
                "?" if total is None else total,
                message or "",
            )
        else:
            self._emit(msg)
        return _SENT

    def log(self, message: object, level: str = "info") -> Sent:
        """Send a log line for this call; ``level`` is debug, info, warning or error."""
        if level not in LOG_LEVELS:
            raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}, not {level!r}")
        text = str(message)
        if len(text) > _MAX_LOG_CHARS:
            cut = len(text) - _MAX_LOG_CHARS
            text = text[:_MAX_LOG_CHARS] + f"... [{cut} character{'' if cut == 1 else 's'} cut]"
        if self._emit is None:
            _log(level, "%s", text)
        else:
            msg: dict[str, Any] = {"type": "log", "level": level, "message": text}
            if self._call_id is not None:
                msg["id"] = self._call_id
            self._emit(msg)
        return _SENT

    def debug(self, message: object) -> Sent:
        """``log(message, "debug")``."""
        return self.log(message, "debug")

    def info(self, message: object) -> Sent:
        """``log(message, "info")``."""
        return self.log(message, "info")

    def warning(self, message: object) -> Sent:
        """``log(message, "warning")``."""
        return self.log(message, "warning")

    def error(self, message: object) -> Sent:
        """``log(message, "error")``."""
        return self.log(message, "error")

    def chunk(self, data: Any) -> Sent:
        """Stream a piece of output (usually a string) before the result."""
        try:
            value = to_json(data)
        except NotJSONSerializable as exc:
            raise TypeError(f"ctx.chunk() needs a JSON value: {exc}") from None
        if self._emit is None:
            _log("debug", "chunk %r", value)
        else:
            self._emit({"type": "chunk", "id": self._call_id, "data": value})
        return _SENT

    def __repr__(self) -> str:
        if self._emit is None:
            return "<flw.Context detached>"
        return f"<flw.Context call {self._call_id} of {self._tool!r}>"

    # -- used by the worker ---------------------------------------------

    def _attach(self, emit: Emit) -> None:
        self._emit = emit

    def _cancel(self) -> None:
        """Mark the call cancelled and run the ``_on_cancel`` callbacks (any thread)."""
        with _CANCEL_LOCK:
            if self._cancelled:
                return
            self._cancelled = True
            callbacks, self._cancel_callbacks = self._cancel_callbacks, None
        for callback in callbacks or ():
            try:
                callback()
            except Exception as exc:
                _log("warning", "a cancel callback of %r failed: %r", self, exc)

    def _on_cancel(self, callback: Callable[[], object]) -> Callable[[], None]:
        """Run ``callback`` when the call is cancelled, from the cancelling thread.

        Runs it at once when the call is already cancelled. Returns a function
        that unregisters it. ``flw.llm`` uses this to wake a blocked socket read.
        """
        with _CANCEL_LOCK:
            if not self._cancelled:
                callbacks = self._cancel_callbacks
                if callbacks is None:
                    callbacks = self._cancel_callbacks = []
                callbacks.append(callback)
                return lambda: self._forget_cancel(callback)
        callback()
        return _nothing

    def _forget_cancel(self, callback: Callable[[], object]) -> None:
        with _CANCEL_LOCK:
            callbacks = self._cancel_callbacks
            if callbacks is not None:
                with contextlib.suppress(ValueError):
                    callbacks.remove(callback)

    @property
    def _attached(self) -> bool:
        """Whether a worker call owns this context (not a detached one)."""
        return self._emit is not None


_CURRENT: contextvars.ContextVar[Context | None] = contextvars.ContextVar(
    "flw_current_context", default=None
)


def current_context() -> Context | None:
    """The ``Context`` of the call running here, or ``None`` outside a call.

    Set while a tool or a graph node runs in a worker (on the thread of a
    sync call, in the task of an async one, and in tasks it starts), and
    while ``Flow.run()`` / ``node.run()`` visits a node in-process (a
    detached context then, which logs to the ``flw`` logger). Class nodes use
    it to report progress: ``current_context().progress(1, 3)``.
    """
    return _CURRENT.get()


def _nothing() -> None:
    return None


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"ctx.progress(): {name} must be a number, not {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"ctx.progress(): {name} must be finite, not {value!r}")
    return int(value) if isinstance(value, int) else float(value)
