"""The worker: handshake, call dispatch, cancellation and the watchdog.

Reading the channel is a role, not a thread. The worker's "pump" threads
take turns at it (leader/followers): the pump holding the role blocks in
``os.read``, decodes everything that arrived, answers heartbeats itself,
hands the role to another pump and then runs the sync calls it read on its
own thread. A sync call therefore reaches its function with no hand-off
between threads, and its reply is written as soon as the function returns.
At least one pump is always free to read, so heartbeats and cancels get
through while tools run; ``isolated`` mode has two pumps, ``shared`` mode up
to ``SHARED_THREADS + 1``, and calls beyond that wait in a backlog for the
next free pump. In ``shared`` mode a batch of calls read together runs on
one pump while its tools are fast; before a tool that is not known to be
fast, the rest of the batch goes back to the backlog for other pumps.

Async tools run as tasks on an asyncio loop in the main thread. The loop
(and ``asyncio`` itself) exists only when the script has an async tool; the
reader hands it the calls of one read at a time, and it writes the replies
of one loop iteration with one write.

Every call gets exactly one terminal reply; progress, logs and chunks that
come after it are dropped.

A ``node`` message (one phase of a graph node) is a call like any other:
``_node_call.prepare`` makes it a ``NodeTask`` that stands where a call's
tool stands, so it runs, is cancelled and replies exactly as a tool does.

The watchdog: when the channel reaches end-of-file or fails (the supervisor
is gone, perhaps killed with SIGKILL) the worker kills its own process group
with SIGKILL, which takes every process its tools started with it. SIGTERM
does the same.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, Union

from .._context import _CURRENT, Context
from .._convert import NotJSONSerializable, to_json
from .._tool import InvalidArguments, Tool, ToolDefinitionError
from .._version import __version__
from ..graph._base import NodeDefinitionError, NodeResultError
from ..graph._manifest import Graph, build_graph
from ..graph._node import registered_nodes
from ..graph._node_call import NodeTask, PhaseRefused, prepare
from . import _children
from ._channel import Channel, LineReader, LineWriter
from ._protocol import (
    DEFAULT_MAX_LINE_BYTES,
    MAX_ID,
    PROTOCOL_VERSIONS,
    ProtocolError,
    decode_from_supervisor,
    encode_line,
    result_line,
)

if TYPE_CHECKING:
    import asyncio

_Runnable = Union[Tool, NodeTask]

# The SDK's package folder, subpackages included: frames from files under it
# are the SDK's, not the tool's.
_SDK_PREFIX = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep

SHUTDOWN_GRACE_SECONDS = 3.0
"""How long ``shutdown`` waits for calls still in flight."""

SHARED_THREADS = 64
"""Sync calls running at once in ``shared`` mode (``isolated`` runs one)."""

FAST_TOOL_SECONDS = 0.0005
"""A tool whose calls take less than this on average runs batched on one pump."""


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


class Prepared(NamedTuple):
    """What a worker serves, worked out once: a fork server does it before forking."""

    tools: dict[str, Tool]
    graph: Graph
    hello: dict[str, Any]
    """The ``hello`` message; its ``pid`` is filled in by the worker that sends it."""
    needs_async: bool
    hello_line: tuple[bytes, bytes] | None
    """The encoded ``hello`` before and after the pid's digits (``None``: it does not encode)."""


def prepare_worker(tools: Sequence[Tool], namespace: Mapping[str, Any] | None = None) -> Prepared:
    """The tools by name, the graph and the ``hello`` of a script's worker.

    Raises ``ToolDefinitionError`` or ``NodeDefinitionError`` when the
    script's tools or nodes cannot be announced.
    """
    graph = build_graph(namespace or {}, registered_nodes())
    version = ".".join(str(part) for part in sys.version_info[:3])
    hello: dict[str, Any] = {
        "type": "hello",
        "protocol": list(PROTOCOL_VERSIONS),
        "sdk": "python",
        "sdk_version": __version__,
        "runtime": f"{sys.implementation.name} {version}",
        "pid": os.getpid(),
        "tools": [entry.manifest() for entry in tools],
    }
    if graph.manifest:
        hello["nodes"] = graph.manifest
    if graph.flows:
        hello["flows"] = graph.flows
    needs_async = any(entry.is_async for entry in tools) or graph.needs_async
    tools_by_name = {entry.name: entry for entry in tools}
    return Prepared(tools_by_name, graph, hello, needs_async, _hello_line(hello))


_PID_MARK = b'"pid":%d,' % MAX_ID


def _hello_line(hello: dict[str, Any]) -> tuple[bytes, bytes] | None:
    """``hello``'s line around its pid, so that a forked worker does not encode it again.

    The top-level ``pid`` comes before ``tools`` (and every member that
    could hold the same text comes after it, or is a string where quotes
    are escaped), so the first ``"pid":N,`` of the line is that member.
    """
    try:
        line = encode_line({**hello, "pid": MAX_ID})
    except ProtocolError:
        return None  # the worker sends it the checked way and reports why
    at = line.index(_PID_MARK) + len(b'"pid":')
    return line[:at], line[at + len(str(MAX_ID)) :]


class _Call:
    """One call in flight. ``lock`` orders its messages and its end."""

    __slots__ = (
        "cancel_requested",
        "children",
        "ctx",
        "done",
        "finished",
        "id",
        "keywords",
        "lock",
        "positional",
        "task",
        "tool",
    )

    def __init__(self, call_id: int, tool: _Runnable, ctx: Context) -> None:
        self.id = call_id
        self.tool = tool
        self.ctx = ctx
        self.lock = threading.Lock()
        self.done = False  # the terminal reply was sent
        self.finished = False  # the tool's function returned or raised
        self.cancel_requested = False  # a cancel came before the function ended
        self.task: asyncio.Task[None] | None = None
        self.positional: list[Any] = []
        self.keywords: dict[str, Any] = {}
        self.children: list[Any] = []  # processes it started (see _children)

    def mark_finished(self) -> None:
        with self.lock:
            self.finished = True


class Worker:
    """Serves tools over one channel until ``shutdown`` or the channel ends."""

    def __init__(self, channel: Channel, settings: Settings) -> None:
        self.channel = channel
        self.settings = settings
        self._writer = LineWriter(channel.write_fd, settings.max_line_bytes, self._write_failed)
        self._reader = LineReader(channel.read_fd, settings.max_line_bytes)
        self._tools: dict[str, Tool] = {}
        self._graph = Graph({}, [], [])
        self._calls: dict[int, _Call] = {}
        self._average: dict[str, float] = {}  # seconds per call of each sync tool
        self._welcomed = False
        self._stopping = False  # shutdown came: the end of the channel is expected
        self._abandoned = False  # calls were still running when we gave up waiting
        self._ready = threading.Event()  # the tools are known: lines may be acted on
        self._handshake = threading.Event()
        self._answer: dict[str, Any] = {}
        self._stopped = threading.Event()
        self._async: _AsyncRunner | None = None
        # The pumps: ``_pumps`` threads, ``_busy`` of them running calls, one
        # of the others ``_reading``; ``_cond`` guards these and the backlog.
        self._max_pumps = 2 if settings.mode == "isolated" else SHARED_THREADS + 1
        self._cond = threading.Condition(threading.Lock())
        self._pumps = 0
        self._busy = 0
        self._reading = False
        self._ended = False  # the channel ended: pumps exit
        self._backlog: deque[list[_Call]] = deque()

    # -- channel and watchdog -------------------------------------------

    def start_reader(self) -> None:
        """Start reading the channel (and guarding it) on a pump thread."""
        with self._cond:
            self._pumps += 1
        self._spawn_pump()

    def install_signal_handlers(self) -> None:
        """Make SIGTERM kill the process group (main thread only)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        if os.getpgrp() == os.getpid():
            kill_process_group(self.settings.label, "SIGTERM: killing the worker's process group")
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    def _channel_lost(self, reason: str) -> None:
        if self._stopping:
            return
        kill_process_group(
            self.settings.label, f"{reason}; the supervisor is gone, killing the process group"
        )

    def _write_failed(self, exc: OSError) -> None:
        self._channel_lost(f"writing to the channel failed: {exc}")

    # -- pumps ------------------------------------------------------------

    def _spawn_pump(self) -> None:
        """Start one more pump; the caller already counted it in ``_pumps``."""
        threading.Thread(target=self._pump, name="flw-pump", daemon=True).start()

    def _pump(self) -> None:
        while True:
            work = self._next_work()
            if work is None:
                return
            if not work:
                continue
            try:
                self._run_batch(work)
            finally:
                with self._cond:
                    self._busy -= 1

    def _claim(self) -> bool | None:
        """Count the caller as busy if a pump stays free to read (``_cond`` held).

        Returns ``True`` when a new pump must be started for that, ``False``
        when none is needed, ``None`` when the caller may not run calls now.
        """
        free_others = self._pumps - self._busy - 1
        if free_others >= 1:
            self._busy += 1
            return False
        if self._pumps < self._max_pumps:
            self._pumps += 1
            self._busy += 1
            return True
        return None

    def _next_work(self) -> list[_Call] | None:
        """Wait for calls to run: from the backlog, or by taking the reader role."""
        cond = self._cond
        spawn = False
        with cond:
            while True:
                if self._ended:
                    return None
                if self._backlog:
                    claimed = self._claim()
                    if claimed is not None:
                        work = self._backlog.popleft()
                        spawn = claimed
                        break
                if not self._reading:
                    self._reading = True
                    work = None
                    break
                cond.wait()
        if work is not None:
            if spawn:
                self._spawn_pump()
            return work
        work = self._read()
        with cond:
            self._reading = False
            if work is None:
                if self._ended:
                    cond.notify_all()
                    return None
                cond.notify()
                return []
            claimed = self._claim()
            if claimed is None:
                self._backlog.append(work)
                cond.notify()
                return []
            cond.notify()
        if claimed:
            self._spawn_pump()
        return work

    def _read(self) -> list[_Call] | None:
        """One read as the reader: the sync calls to run, or ``None`` if there are none."""
        try:
            batch = self._reader.read_batch()
        except OSError as exc:
            self._end(f"reading the channel failed: {exc}")
            return None
        if batch is None:
            torn = self._reader.torn
            self._end(
                "the channel ended in the middle of a line"
                if torn
                else "the channel reached end-of-file"
            )
            return None
        if not self._ready.is_set():
            self._ready.wait()  # lines that came while the script was loading
        work = self._dispatch(batch)
        return work or None

    def _end(self, reason: str) -> None:
        with self._cond:
            self._ended = True
        self._channel_lost(reason)

    def _share(self, rest: list[_Call]) -> None:
        """Put calls back in the backlog for another pump."""
        spawn = False
        with self._cond:
            self._backlog.append(rest)
            waiting = self._pumps - self._busy - (1 if self._reading else 0)
            if waiting >= 1:
                self._cond.notify()
            elif self._pumps < self._max_pumps:
                self._pumps += 1
                spawn = True
        if spawn:
            self._spawn_pump()

    # -- serving ----------------------------------------------------------

    def serve(self, tools: Sequence[Tool], namespace: Mapping[str, Any] | None = None) -> int:
        """Send ``hello``, serve calls until ``shutdown``; return the exit status.

        ``namespace`` is the script's module globals: its flows and nodes
        (with the ``@node`` registry) make the graph the worker announces.
        """
        try:
            prepared = prepare_worker(tools, namespace)
        except (ToolDefinitionError, NodeDefinitionError) as exc:
            note(self.settings.label, str(exc))
            return 1
        return self.serve_prepared(prepared)

    def serve_prepared(self, prepared: Prepared, start_reader: bool = False) -> int:
        """``serve`` with what ``prepare_worker`` worked out (maybe in a fork server).

        ``start_reader``: start reading the channel right after ``hello`` is
        written (a forked worker, whose script is loaded: the supervisor
        reads ``hello`` while the reader thread starts).
        """
        self._tools = prepared.tools
        self._graph = prepared.graph
        message = dict(prepared.hello)
        message["pid"] = os.getpid()
        hello: dict[str, Any] | bytes = message
        if prepared.hello_line is not None:
            head, tail = prepared.hello_line
            line = b"%b%d%b" % (head, os.getpid(), tail)
            if len(line) - 1 <= self.settings.max_line_bytes:
                hello = line
        if prepared.needs_async:
            self._async = _AsyncRunner(self)
        self._ready.set()
        try:
            code = self._serve(hello, start_reader)
        finally:
            self._stopping = True
        if self._abandoned:
            flush_std_streams()
            os._exit(code)
        if self._async is not None:
            self._async.close()
        return code

    def _serve(self, hello: dict[str, Any] | bytes, start_reader: bool) -> int:
        try:
            if isinstance(hello, bytes):
                self._writer.write(hello)
            else:
                self._writer.send(hello)
        except ProtocolError as exc:
            note(self.settings.label, f"cannot send hello: {exc.message}")
            return 1
        if start_reader:
            self.start_reader()
        self._handshake.wait()
        answer = self._answer
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
        if self._async is not None:
            self._async.serve_until_drained()
        else:
            self._stopped.wait()
            deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
            while self._in_flight() and time.monotonic() < deadline:
                time.sleep(0.01)
        if self._calls:
            note(
                self.settings.label,
                f"shutdown: {len(self._calls)} call(s) still running after "
                f"{SHUTDOWN_GRACE_SECONDS:g} s; exiting anyway",
            )
            self._abandoned = True
        return 0

    def _in_flight(self) -> bool:
        """Calls running, or pumps still writing replies (a call leaves
        ``_calls`` when its reply is made, a little before it is written)."""
        return bool(self._calls) or self._busy > 0

    # -- what the reader does ----------------------------------------------

    def _dispatch(self, batch: list[bytes | ProtocolError]) -> list[_Call]:
        """Act on the lines of one read; return the sync calls among them."""
        work: list[_Call] = []
        to_loop: list[tuple[bool, _Call]] = []
        label = self.settings.label
        for item in batch:
            if isinstance(item, ProtocolError):
                note(label, item.message)
                continue
            try:
                message = decode_from_supervisor(item, self.settings.max_line_bytes)
            except ProtocolError as exc:
                note(label, f"ignoring a line from the supervisor: {exc}")
                continue
            kind = message["type"]
            if kind in ("call", "node"):
                call = self._accept(message) if kind == "call" else self._accept_node(message)
                if call is None:
                    continue
                if call.tool.is_async and self._async is not None:
                    to_loop.append((True, call))
                else:
                    work.append(call)
            elif kind == "heartbeat":
                self._writer.send({"type": "heartbeat", "seq": message["seq"]})
            elif kind == "cancel":
                call = self._calls.get(message["id"])
                if call is not None and self._cancel(call) and call.tool.is_async:
                    to_loop.append((False, call))
            elif kind == "welcome":
                if self._handshake.is_set():
                    note(label, "ignoring a second welcome")
                else:
                    self._welcomed = message["protocol"] in PROTOCOL_VERSIONS
                    self._answer = message
                    self._handshake.set()
            elif kind == "shutdown":
                self._stopping = True
                if not self._handshake.is_set():
                    self._answer = message  # _serve reports the reason
                    self._handshake.set()
                else:
                    reason = message.get("reason")
                    if reason:
                        note(label, f"shutdown: {reason}")
                    self._stopped.set()
                    if self._async is not None:
                        self._async.wake()
        if to_loop and self._async is not None:
            self._async.submit(to_loop)
        return work

    def _can_accept(self, call_id: int) -> bool:
        if not self._welcomed or self._stopped.is_set():
            note(self.settings.label, f"ignoring call {call_id}: not serving calls now")
            return False
        if call_id in self._calls:
            note(self.settings.label, f"ignoring call {call_id}: a call with that id is running")
            return False
        return True

    def _accept(self, message: dict[str, Any]) -> _Call | None:
        """Register a call and bind its arguments; reply at once when it cannot run."""
        call_id: int = message["id"]
        if not self._can_accept(call_id):
            return None
        entry = self._tools.get(message["tool"])
        if entry is None:
            names = ", ".join(sorted(self._tools)) or "none"
            self._write_reply(
                _error(
                    call_id,
                    "unknown_tool",
                    f"no tool named {message['tool']!r} in worker {self.settings.label} "
                    f"(tools: {names})",
                )
            )
            return None
        ctx = Context(call_id, entry.name)
        call = _Call(call_id, entry, ctx)
        ctx._attach(lambda msg: self._emit(call, msg))
        try:
            call.positional, call.keywords = entry.bind(message["args"], ctx)
        except InvalidArguments as exc:
            self._write_reply(self._finish(call, _error(call_id, "invalid_arguments", str(exc))))
            return None
        except Exception as exc:
            import traceback

            reply = _error(call_id, "internal", _exc_text(exc), traceback.format_exc())
            self._write_reply(self._finish(call, reply))
            return None
        self._calls[call_id] = call
        return call

    def _accept_node(self, message: dict[str, Any]) -> _Call | None:
        """Register a ``node`` message as a call; reply at once when it cannot run."""
        call_id: int = message["id"]
        if not self._can_accept(call_id):
            return None
        name: str = message["node"]
        target = self._graph.nodes.get(name)
        if target is None:
            names = ", ".join(sorted(self._graph.nodes)) or "none"
            self._write_reply(
                _error(
                    call_id,
                    "unknown_tool",
                    f"no node named {name!r} in worker {self.settings.label} (nodes: {names})",
                )
            )
            return None
        ctx = Context(call_id, name)
        try:
            task = prepare(target, name, message, ctx)
        except PhaseRefused as exc:
            self._write_reply(_error(call_id, "invalid_arguments", str(exc)))
            return None
        call = _Call(call_id, task, ctx)
        ctx._attach(lambda msg: self._emit(call, msg))
        self._calls[call_id] = call
        return call

    def _cancel(self, call: _Call) -> bool:
        """Flag a cancel; whether it came before the call's function ended."""
        with call.lock:
            if call.finished or call.done:
                return False
            call.cancel_requested = True
        call.ctx._cancel()
        return True

    # -- sync calls -------------------------------------------------------

    def _run_batch(self, work: list[_Call]) -> None:
        """Run sync calls in turn, writing fast tools' replies together.

        Before a tool not known to be fast, the replies so far are written
        and the rest of the batch goes back to the backlog.
        """
        out: list[bytes] = []
        average = self._average
        count = len(work)
        for i, call in enumerate(work):
            name = call.tool.name
            if average.get(name, 1.0) >= FAST_TOOL_SECONDS:
                if out:
                    self._writer.write(b"".join(out))
                    out = []
                if i + 1 < count:
                    self._share(work[i + 1 :])
                    count = i + 1
            started = time.perf_counter()
            line = self._run_sync(call)
            took = time.perf_counter() - started
            before = average.get(name)
            average[name] = took if before is None else 0.8 * before + 0.2 * took
            if line is not None:
                out.append(line)
            if i + 1 >= count:
                break
        if out:
            self._writer.write(out[0] if len(out) == 1 else b"".join(out))

    def _run_sync(self, call: _Call) -> bytes | None:
        """Run one sync call; the line of its terminal reply (``None`` if already sent)."""
        if call.cancel_requested:
            reply: dict[str, Any] | bytes = _cancelled(call.id)
        else:
            token = _children.track(call.children)
            current = _CURRENT.set(call.ctx)
            try:
                value = call.tool.fn(*call.positional, **call.keywords)
            except BaseException as exc:
                call.mark_finished()
                reply = self._failure(call, exc)
            else:
                call.mark_finished()
                reply = self._success(call, value)
            finally:
                _CURRENT.reset(current)
                _children.untrack(token)
            if call.cancel_requested:
                reply = _cancelled(call.id)
        return self._finish(call, reply)

    # -- replies ----------------------------------------------------------

    def _success(self, call: _Call, value: Any) -> dict[str, Any] | bytes:
        try:
            data = value if isinstance(call.tool, NodeTask) else to_json(value)
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
        try:
            line = result_line(call.id, data)
        except (TypeError, ValueError, RecursionError, UnicodeEncodeError):
            return {"type": "result", "id": call.id, "value": data}  # the checked path says why
        if len(line) - 1 > self.settings.max_line_bytes:
            return {"type": "result", "id": call.id, "value": data}
        return line

    def _failure(self, call: _Call, exc: BaseException) -> dict[str, Any]:
        import traceback  # loaded late: a worker whose tools never fail does not need it

        if isinstance(exc, NodeResultError):  # the node's result, not its code, is wrong
            return _error(call.id, "tool_error", str(exc))
        tb = _user_frames(exc.__traceback__)
        text = "".join(traceback.format_exception(type(exc), exc, tb))
        return _error(call.id, "tool_error", _exc_text(exc), text)

    def _emit(self, call: _Call, message: dict[str, Any]) -> None:
        """Send a progress/log/chunk message of a call, unless the call has ended."""
        with call.lock:
            if call.done:
                return
            try:
                self._writer.send(message)
            except ProtocolError as exc:
                raise ValueError(f"ctx.{message['type']}(): {exc.message}") from None

    def _finish(self, call: _Call, reply: dict[str, Any] | bytes) -> bytes | None:
        """End the call: the line of its terminal reply, or ``None`` if it has one."""
        with call.lock:
            if call.done:
                return None
            call.done = True
        self._calls.pop(call.id, None)
        if call.children:
            cancelled = isinstance(reply, dict) and reply.get("kind") == "cancelled"
            _children.settle(call.children, cancelled)
        return reply if isinstance(reply, bytes) else self._line(reply)

    def _line(self, reply: dict[str, Any]) -> bytes:
        """Encode a terminal reply; one that cannot be sent becomes a ``tool_error``."""
        try:
            return self._writer.encode(reply)
        except ProtocolError as exc:
            what = "result" if reply["type"] == "result" else "error"
            return self._writer.encode(
                _error(
                    reply["id"], "tool_error", f"cannot send the {what} of the call: {exc.message}"
                )
            )

    def _write_reply(self, line: bytes | dict[str, Any] | None) -> None:
        if line is None:
            return
        self._writer.write(line if isinstance(line, bytes) else self._line(line))


class _AsyncRunner:
    """The asyncio loop of a worker with async tools, run by the main thread."""

    def __init__(self, worker: Worker) -> None:
        import asyncio

        self._asyncio = asyncio
        self.worker = worker
        self.loop = asyncio.new_event_loop()
        self._stop = self.loop.create_future()
        self._out: list[bytes] = []

    def submit(self, items: list[tuple[bool, _Call]]) -> None:
        """From the reader: start (``True``) or cancel (``False``) calls on the loop."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: we are exiting
            self.loop.call_soon_threadsafe(self._take, items)

    def wake(self) -> None:
        """From the reader: ``shutdown`` came."""
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._stopped)

    def _stopped(self) -> None:
        if not self._stop.done():
            self._stop.set_result(None)

    def _take(self, items: list[tuple[bool, _Call]]) -> None:
        for start, call in items:
            if start:
                task = self.loop.create_task(self._run(call))
                call.task = task
                task.add_done_callback(lambda done, call=call: self._task_done(call, done))
            elif call.task is not None:
                call.task.cancel()

    async def _run(self, call: _Call) -> None:
        worker = self.worker
        _children.track(call.children)  # this task's own context
        _CURRENT.set(call.ctx)
        try:
            value = await call.tool.fn(*call.positional, **call.keywords)
        except self._asyncio.CancelledError as exc:
            call.mark_finished()
            if call.cancel_requested or worker._stopping:
                self._send(worker._finish(call, _cancelled(call.id)))
            else:
                self._send(worker._finish(call, worker._failure(call, exc)))
            return
        except BaseException as exc:
            call.mark_finished()
            self._send(worker._finish(call, worker._failure(call, exc)))
            return
        call.mark_finished()
        if call.cancel_requested:
            self._send(worker._finish(call, _cancelled(call.id)))
        else:
            self._send(worker._finish(call, worker._success(call, value)))

    def _task_done(self, call: _Call, task: asyncio.Task[None]) -> None:
        """Make sure the call got its reply, whatever happened to the task."""
        if call.done:
            return
        if task.cancelled():
            self._send(self.worker._finish(call, _cancelled(call.id)))
            return
        exc = task.exception()
        message = _exc_text(exc) if exc is not None else "the call ended without a reply"
        self._send(self.worker._finish(call, _error(call.id, "internal", f"flw SDK: {message}")))

    def _send(self, line: bytes | None) -> None:
        """Queue a reply; the queue is written once per loop iteration."""
        if line is None:
            return
        self._out.append(line)
        if len(self._out) == 1:
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        out, self._out = self._out, []
        if out:
            self.worker._writer.write(out[0] if len(out) == 1 else b"".join(out))

    def serve_until_drained(self) -> None:
        """Run the loop until ``shutdown`` and the calls in flight end (or time out)."""
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        await self._stop
        deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
        while self.worker._in_flight() and time.monotonic() < deadline:
            await self._asyncio.sleep(0.01)
        self._flush()

    def close(self) -> None:
        """Close the loop (after ``serve_until_drained``)."""
        self.loop.close()


def _error(call_id: int, kind: str, message: str, tb: str | None = None) -> dict[str, Any]:
    reply: dict[str, Any] = {"type": "error", "id": call_id, "kind": kind, "message": message}
    if tb is not None:
        reply["traceback"] = tb
    return reply


def _user_frames(tb: TracebackType | None) -> TracebackType | None:
    """The traceback from the first frame outside the SDK (the tool's or node's own)."""
    first = tb
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_SDK_PREFIX):
        tb = tb.tb_next
    return tb if tb is not None else first


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
