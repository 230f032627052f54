"""The worker: handshake, call dispatch, cancellation and the watchdog.

A ``Worker`` owns the protocol channel. A reader thread decodes the
supervisor's lines, answers heartbeats itself and hands everything else to
the asyncio loop in the main thread. Async tools run as tasks on that loop,
sync tools in a thread pool. Every call gets exactly one terminal reply;
progress, logs and chunks that come after it are dropped.

The watchdog: when the channel reaches end-of-file or fails (the supervisor
is gone, perhaps killed with SIGKILL) the worker kills its own process group
with SIGKILL, which takes every process its tools started with it. SIGTERM
does the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import signal
import sys
import threading
import traceback
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import Any, NamedTuple, NoReturn

from ._channel import Channel, LineReader, LineWriter
from ._context import Context
from ._convert import NotJSONSerializable, to_json
from ._protocol import DEFAULT_MAX_LINE_BYTES, PROTOCOL_VERSIONS, ProtocolError, decode
from ._tool import InvalidArguments, Tool, ToolDefinitionError
from ._version import __version__

SHUTDOWN_GRACE_SECONDS = 3.0
"""How long ``shutdown`` waits for calls still in flight."""

SHARED_THREADS = 64
"""Threads for sync tools in ``shared`` mode (``isolated`` uses one)."""


class Settings(NamedTuple):
    """What the supervisor tells the worker through its environment."""

    mode: str
    max_line_bytes: int
    label: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str], default_label: str) -> Settings:
        """Read ``FLW_MODE``, ``FLW_MAX_LINE_BYTES`` and ``FLW_WORKER``."""
        label = environ.get("FLW_WORKER") or default_label
        mode = environ.get("FLW_MODE") or "isolated"
        if mode not in ("isolated", "shared"):
            note(label, f"FLW_MODE={mode!r} is neither 'isolated' nor 'shared'; using 'isolated'")
            mode = "isolated"
        raw = environ.get("FLW_MAX_LINE_BYTES")
        limit = DEFAULT_MAX_LINE_BYTES
        if raw:
            try:
                limit = int(raw)
                if limit < 1:
                    raise ValueError
            except ValueError:
                note(label, f"FLW_MAX_LINE_BYTES={raw!r} is not a positive integer; using {limit}")
                limit = DEFAULT_MAX_LINE_BYTES
        return cls(mode, limit, label)


def note(label: str, text: str) -> None:
    """Write one SDK message to stderr, never failing (safe in signal handlers)."""
    with contextlib.suppress(OSError):
        os.write(2, f"flw[{label}]: {text}\n".encode("utf-8", "replace"))


def kill_process_group(label: str, reason: str) -> NoReturn:
    """The watchdog's action: end this worker and everything it started.

    As a process-group leader (spawned by the supervisor in a new session)
    the whole group gets SIGKILL; otherwise only this process exits.
    """
    note(label, reason)
    try:
        if os.getpgrp() == os.getpid():
            os.killpg(os.getpgrp(), signal.SIGKILL)
    except OSError:
        pass
    os._exit(1)


class _Call:
    """One call in flight. ``lock`` orders its messages and its end."""

    __slots__ = ("cancel_requested", "ctx", "done", "finished", "id", "lock", "task", "tool")

    def __init__(self, call_id: int, tool: Tool, ctx: Context) -> None:
        self.id = call_id
        self.tool = tool
        self.ctx = ctx
        self.lock = threading.Lock()
        self.done = False  # the terminal reply was sent
        self.finished = False  # the tool's function returned or raised
        self.cancel_requested = False  # a cancel came before the function ended
        self.task: asyncio.Task[None] | None = None

    def mark_finished(self) -> None:
        with self.lock:
            self.finished = True


class Worker:
    """Serves tools over one channel until ``shutdown`` or the channel ends."""

    def __init__(self, channel: Channel, settings: Settings) -> None:
        self.channel = channel
        self.settings = settings
        self._loop = asyncio.new_event_loop()
        self._writer = LineWriter(channel.write_fd, settings.max_line_bytes, self._write_failed)
        self._tools: dict[str, Tool] = {}
        self._calls: dict[int, _Call] = {}
        self._welcomed = False
        self._stopping = False  # shutdown came: the end of the channel is expected
        self._abandoned = False  # calls were still running when we gave up waiting
        self._handshake: asyncio.Future[dict[str, Any]] = self._loop.create_future()
        self._stop: asyncio.Future[None] = self._loop.create_future()
        threads = 1 if settings.mode == "isolated" else SHARED_THREADS
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="flw-tool")

    # -- channel and watchdog -------------------------------------------

    def start_reader(self) -> None:
        """Start the thread that reads the channel and guards it."""
        thread = threading.Thread(target=self._read_loop, name="flw-reader", daemon=True)
        thread.start()

    def install_signal_handlers(self) -> None:
        """Make SIGTERM kill the process group (main thread only)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        if os.getpgrp() == os.getpid():
            kill_process_group(self.settings.label, "SIGTERM: killing the worker's process group")
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    def _read_loop(self) -> None:
        reason = "the channel reached end-of-file"
        reader = LineReader(self.channel.read_fd, self.settings.max_line_bytes)
        try:
            for item in reader:
                if isinstance(item, ProtocolError):
                    note(self.settings.label, item.message)
                    continue
                try:
                    message = decode(item, "supervisor", self.settings.max_line_bytes)
                except ProtocolError as exc:
                    note(self.settings.label, f"ignoring a line from the supervisor: {exc}")
                    continue
                if message["type"] == "heartbeat":
                    self._writer.send({"type": "heartbeat", "seq": message["seq"]})
                    continue
                if message["type"] == "shutdown":
                    self._stopping = True
                try:
                    self._loop.call_soon_threadsafe(self._on_message, message)
                except RuntimeError:  # the loop is closed: we are exiting
                    return
            if reader.torn:
                reason = "the channel ended in the middle of a line"
        except OSError as exc:
            reason = f"reading the channel failed: {exc}"
        self._channel_lost(reason)

    def _channel_lost(self, reason: str) -> None:
        if self._stopping:
            return
        kill_process_group(
            self.settings.label, f"{reason}; the supervisor is gone, killing the process group"
        )

    def _write_failed(self, exc: OSError) -> None:
        self._channel_lost(f"writing to the channel failed: {exc}")

    # -- serving ----------------------------------------------------------

    def serve(self, tools: Sequence[Tool]) -> int:
        """Send ``hello``, serve calls until ``shutdown``; return the exit status."""
        try:
            self._tools = {entry.name: entry for entry in tools}
            hello = self._hello(tools)
        except ToolDefinitionError as exc:
            note(self.settings.label, str(exc))
            return 1
        try:
            code = self._loop.run_until_complete(self._main(hello))
        finally:
            self._stopping = True
            self._executor.shutdown(wait=False)
        if self._abandoned:
            flush_std_streams()
            os._exit(code)
        self._loop.close()
        return code

    def _hello(self, tools: Sequence[Tool]) -> dict[str, Any]:
        return {
            "type": "hello",
            "protocol": list(PROTOCOL_VERSIONS),
            "sdk": "python",
            "sdk_version": __version__,
            "runtime": f"{sys.implementation.name} {platform.python_version()}",
            "pid": os.getpid(),
            "tools": [entry.manifest() for entry in tools],
        }

    async def _main(self, hello: dict[str, Any]) -> int:
        try:
            self._writer.send(hello)
        except ProtocolError as exc:
            note(self.settings.label, f"cannot send hello: {exc.message}")
            return 1
        answer = await self._handshake
        if answer["type"] == "shutdown":
            reason = answer.get("reason")
            note(self.settings.label, f"shutdown before welcome: {reason or 'no reason given'}")
            return 0
        if answer["protocol"] not in PROTOCOL_VERSIONS:
            note(
                self.settings.label,
                f"welcome chose protocol {answer['protocol']}, "
                f"but this SDK speaks {list(PROTOCOL_VERSIONS)}",
            )
            return 1
        await self._stop
        tasks = [call.task for call in self._calls.values() if call.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE_SECONDS)
            if pending:
                note(
                    self.settings.label,
                    f"shutdown: {len(pending)} call(s) still running after "
                    f"{SHUTDOWN_GRACE_SECONDS:g} s; exiting anyway",
                )
                self._abandoned = True
        return 0

    def _on_message(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "shutdown":
            self._stopping = True
            if not self._handshake.done():
                self._handshake.set_result(message)  # _main reports the reason
                return
            reason = message.get("reason")
            if reason:
                note(self.settings.label, f"shutdown: {reason}")
            if not self._stop.done():
                self._stop.set_result(None)
        elif kind == "welcome":
            if self._handshake.done():
                note(self.settings.label, "ignoring a second welcome")
            else:
                # Calls may follow in the same loop iteration: accept them now.
                self._welcomed = message["protocol"] in PROTOCOL_VERSIONS
                self._handshake.set_result(message)
        elif kind == "call":
            if not self._welcomed or self._stop.done():
                note(self.settings.label, f"ignoring call {message['id']}: not serving calls now")
            else:
                self._start_call(message)
        elif kind == "cancel":
            self._cancel(message["id"])

    def _start_call(self, message: dict[str, Any]) -> None:
        call_id: int = message["id"]
        if call_id in self._calls:
            note(self.settings.label, f"ignoring call {call_id}: a call with that id is running")
            return
        entry = self._tools.get(message["tool"])
        if entry is None:
            names = ", ".join(sorted(self._tools)) or "none"
            self._send_terminal(
                _error(
                    call_id,
                    "unknown_tool",
                    f"no tool named {message['tool']!r} in worker {self.settings.label} "
                    f"(tools: {names})",
                )
            )
            return
        ctx = Context(call_id, entry.name)
        call = _Call(call_id, entry, ctx)
        ctx._attach(lambda msg: self._emit(call, msg))
        try:
            positional, keywords = entry.bind(message["args"], ctx)
        except InvalidArguments as exc:
            self._finish(call, _error(call_id, "invalid_arguments", str(exc)))
            return
        except Exception as exc:
            self._finish(call, _error(call_id, "internal", _exc_text(exc), traceback.format_exc()))
            return
        self._calls[call_id] = call
        runner = self._run_async if entry.is_async else self._run_sync
        task = self._loop.create_task(runner(call, positional, keywords))
        call.task = task
        task.add_done_callback(lambda done: self._task_done(call, done))

    async def _run_async(
        self, call: _Call, positional: list[Any], keywords: dict[str, Any]
    ) -> None:
        try:
            value = await call.tool.fn(*positional, **keywords)
        except asyncio.CancelledError as exc:
            call.mark_finished()
            if call.cancel_requested or self._stopping:
                self._finish(call, _cancelled(call.id))
            else:
                self._finish(call, self._failure(call, exc))
            return
        except BaseException as exc:
            call.mark_finished()
            self._finish(call, self._failure(call, exc))
            return
        call.mark_finished()
        if call.cancel_requested:
            self._finish(call, _cancelled(call.id))
        else:
            self._finish(call, self._success(call, value))

    async def _run_sync(self, call: _Call, positional: list[Any], keywords: dict[str, Any]) -> None:
        reply = await self._loop.run_in_executor(
            self._executor, self._call_in_thread, call, positional, keywords
        )
        if call.cancel_requested:
            reply = _cancelled(call.id)
        self._finish(call, reply)

    def _call_in_thread(
        self, call: _Call, positional: list[Any], keywords: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            value = call.tool.fn(*positional, **keywords)
        except BaseException as exc:
            call.mark_finished()
            return self._failure(call, exc)
        call.mark_finished()
        return self._success(call, value)

    def _success(self, call: _Call, value: Any) -> dict[str, Any]:
        try:
            return {"type": "result", "id": call.id, "value": to_json(value)}
        except NotJSONSerializable as exc:
            return _error(
                call.id,
                "tool_error",
                f"tool {call.tool.name!r} returned a value that is not JSON-serializable: {exc}",
            )
        except RecursionError:
            return _error(
                call.id,
                "tool_error",
                f"tool {call.tool.name!r} returned a value nested too deeply (or cyclic) for JSON",
            )

    def _failure(self, call: _Call, exc: BaseException) -> dict[str, Any]:
        tb = exc.__traceback__
        if tb is not None and tb.tb_next is not None:
            tb = tb.tb_next  # leave out the SDK's frame that called the tool
        text = "".join(traceback.format_exception(type(exc), exc, tb))
        return _error(call.id, "tool_error", _exc_text(exc), text)

    def _task_done(self, call: _Call, task: asyncio.Task[None]) -> None:
        """Make sure the call got its reply, whatever happened to the task."""
        if call.done:
            return
        if task.cancelled():
            self._finish(call, _cancelled(call.id))
            return
        exc = task.exception()
        message = _exc_text(exc) if exc is not None else "the call ended without a reply"
        self._finish(call, _error(call.id, "internal", f"flw SDK: {message}"))

    def _cancel(self, call_id: int) -> None:
        call = self._calls.get(call_id)
        if call is None:
            return
        with call.lock:
            if call.finished or call.done:
                return
            call.cancel_requested = True
        call.ctx._cancel()
        if call.tool.is_async and call.task is not None:
            call.task.cancel()

    # -- sending ----------------------------------------------------------

    def _emit(self, call: _Call, message: dict[str, Any]) -> None:
        """Send a progress/log/chunk message of a call, unless the call has ended."""
        with call.lock:
            if call.done:
                return
            try:
                self._writer.send(message)
            except ProtocolError as exc:
                raise ValueError(f"ctx.{message['type']}(): {exc.message}") from None

    def _finish(self, call: _Call, reply: dict[str, Any]) -> None:
        with call.lock:
            if call.done:
                return
            call.done = True
            self._send_terminal(reply)
        self._calls.pop(call.id, None)

    def _send_terminal(self, reply: dict[str, Any]) -> None:
        try:
            self._writer.send(reply)
        except ProtocolError as exc:
            what = "result" if reply["type"] == "result" else "error"
            self._writer.send(
                _error(
                    reply["id"], "tool_error", f"cannot send the {what} of the call: {exc.message}"
                )
            )


def _error(call_id: int, kind: str, message: str, tb: str | None = None) -> dict[str, Any]:
    reply: dict[str, Any] = {"type": "error", "id": call_id, "kind": kind, "message": message}
    if tb is not None:
        reply["traceback"] = tb
    return reply


def _cancelled(call_id: int) -> dict[str, Any]:
    return _error(call_id, "cancelled", f"call {call_id} was cancelled")


def _exc_text(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def flush_std_streams() -> None:
    """Flush ``sys.stdout`` and ``sys.stderr``, ignoring errors."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
