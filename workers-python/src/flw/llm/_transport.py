"""The transports of ``flw.llm``: a blocking socket one and an asyncio one.

Both open one connection per attempt (the request says ``Connection:
close``), write the request, and feed what they read to an ``Exchange``,
yielding the text deltas it returns. ``timeout`` is the socket timeout:
for connecting and for each read. Network failures become ``Retry`` (a
connection error before any byte of the response), ``TimeoutError`` or
``ConnectionError``.

Cancellation: the asyncio transport aborts its connection when the task is
cancelled (the ``CancelledError`` propagates). The socket transport is woken
by a ``CancelGuard``: the flw call's cancel shuts the socket down from the
cancelling thread, which ends a blocked read or write at once, and writes to
a wake-up socket that a connect in progress waits on beside its socket (the
connect is non-blocking, with ``poll``); the attempt raises ``Cancelled``.
Only the name lookup (``getaddrinfo``) cannot be interrupted: a cancel that
comes during it takes effect when it returns.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import errno
import math
import os
import select
import socket
import threading
from collections.abc import AsyncGenerator, Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable

from .._context import Context
from . import _errors as errors
from ._exchange import Exchange, Request, Retry

_READ_SIZE = 65536

if TYPE_CHECKING:
    import ssl

_ssl_context: ssl.SSLContext | None = None


def ssl_context() -> ssl.SSLContext:
    """The default TLS context (certificates from the system), made once."""
    global _ssl_context
    if _ssl_context is None:
        import ssl

        _ssl_context = ssl.create_default_context()
    return _ssl_context


def cancelled(request: Request) -> errors.Cancelled:
    """The error a cancelled call raises."""
    return errors.Cancelled(f"flw.llm: {request.label()}: the call was cancelled")


class CancelGuard:
    """Wakes a blocked sync request when its flw call is cancelled.

    While entered, the context's cancel sets ``cancelled``, shuts down the
    attached socket (``SHUT_RDWR``, on the raw socket even for TLS), so a
    thread blocked reading or writing it returns at once, and wakes a
    ``connect`` waiting for its socket.
    """

    def __init__(self, ctx: Context | None) -> None:
        self._ctx = ctx
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None  # made by a connect
        self._remove: Callable[[], None] | None = None

    def __enter__(self) -> CancelGuard:
        if self._ctx is not None:
            self._remove = self._ctx._on_cancel(self._fire)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._remove is not None:
            self._remove()
            self._remove = None
        with self._lock:  # a cancel running now may still write to it
            wake, self._wake = self._wake, None
        for end in wake or ():
            end.close()

    @property
    def cancelled(self) -> bool:
        """Whether the call was cancelled."""
        return self._event.is_set()

    def _fire(self) -> None:
        self._event.set()
        with self._lock:
            if self._sock is not None:
                _shutdown(self._sock)
            if self._wake is not None:
                with contextlib.suppress(OSError):
                    self._wake[1].send(b"!")

    def attach(self, sock: socket.socket) -> None:
        """Shut ``sock`` down on cancel (at once if the call is already cancelled)."""
        with self._lock:
            self._sock = sock
            if self._event.is_set():
                _shutdown(sock)

    def detach(self) -> None:
        """Forget the socket, before it is closed (its number may then be reused)."""
        with self._lock:
            self._sock = None

    def check(self, request: Request) -> None:
        """Raise ``Cancelled`` if the call was cancelled."""
        if self._event.is_set():
            raise cancelled(request)

    def sleep(self, seconds: float, request: Request) -> None:
        """Wait ``seconds``; raise ``Cancelled`` as soon as the call is cancelled."""
        if self._event.wait(seconds):
            raise cancelled(request)

    def connect(self, sock: socket.socket, address: Any, timeout: float) -> None:
        """Connect the attached ``sock``; a cancel ends the wait at once.

        Raises ``OSError`` as ``socket.connect`` does (``socket.timeout``
        after ``timeout`` seconds, ``ECANCELED`` on a cancel).
        """
        sock.setblocking(False)
        code = sock.connect_ex(address)
        if code in (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK):
            poll = select.poll()
            poll.register(sock, select.POLLOUT)
            wake = self._wake_end()
            if wake is not None:
                poll.register(wake, select.POLLIN)
            if self._event.is_set():
                code = errno.ECANCELED
            elif not poll.poll(math.ceil(timeout * 1000)):
                raise socket.timeout("timed out")
            else:
                code = errno.ECANCELED if self._event.is_set() else _socket_error(sock)
        if code:
            raise OSError(code, os.strerror(code))
        sock.settimeout(timeout)

    def _wake_end(self) -> socket.socket | None:
        """The end of the wake-up socket pair a cancel writes to (none outside a call)."""
        if self._ctx is None:
            return None
        with self._lock:
            if self._wake is None:
                self._wake = socket.socketpair()
                self._wake[1].setblocking(False)
            return self._wake[0]


def _socket_error(sock: socket.socket) -> int:
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the raw socket, even under TLS


def sync_attempt(
    request: Request, exchange: Exchange, guard: CancelGuard
) -> Generator[str, None, None]:
    """One attempt over a blocking socket; yields the text deltas."""
    guard.check(request)
    sock = _connect(request, exchange, guard)
    try:
        try:
            sock.sendall(request.data)
        except OSError as exc:
            raise _failure(exc, request, exchange, guard.cancelled) from None
        while not exchange.done:
            try:
                data = sock.recv(_READ_SIZE)
            except OSError as exc:
                raise _failure(exc, request, exchange, guard.cancelled) from None
            guard.check(request)
            if not data:
                exchange.feed_eof()
                break
            yield from exchange.feed(data)
        yield from exchange.end()
    finally:
        guard.detach()
        sock.close()


def _connect(request: Request, exchange: Exchange, guard: CancelGuard) -> socket.socket:
    where = request.where
    sock = _open(request, exchange, guard)
    if where.scheme != "https":
        return sock
    try:
        tls = ssl_context().wrap_socket(
            sock, server_hostname=where.host, do_handshake_on_connect=False
        )
    except BaseException:
        guard.detach()
        sock.close()
        raise
    try:
        guard.attach(tls)
        tls.do_handshake()
    except BaseException as exc:
        guard.detach()
        tls.close()
        if isinstance(exc, OSError):
            raise _failure(exc, request, exchange, guard.cancelled, connecting=True) from None
        raise
    return tls


def _open(request: Request, exchange: Exchange, guard: CancelGuard) -> socket.socket:
    """A TCP connection, attached to ``guard``: each address in turn, as ``create_connection``."""
    where = request.where
    try:
        addresses = socket.getaddrinfo(where.host, where.port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise _failure(exc, request, exchange, guard.cancelled, connecting=True) from None
    error: OSError = OSError(f"no address for {where.host}")
    for family, kind, protocol, _, address in addresses:
        guard.check(request)
        sock = socket.socket(family, kind, protocol)
        guard.attach(sock)
        try:
            guard.connect(sock, address, request.timeout)
        except BaseException as exc:
            guard.detach()
            sock.close()
            if not isinstance(exc, OSError):
                raise
            error = exc
            continue
        return sock
    raise _failure(error, request, exchange, guard.cancelled, connecting=True) from None


async def async_attempt(request: Request, exchange: Exchange) -> AsyncGenerator[str, None]:
    """One attempt over asyncio streams; yields the text deltas.

    Cancelling the task (or closing the generator) aborts the connection.
    """
    where = request.where
    timeout = request.timeout
    options: dict[str, Any] = {}
    if where.scheme == "https":
        options = {"ssl": ssl_context(), "server_hostname": where.host}
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(where.host, where.port, **options), timeout
        )
    except (OSError, asyncio.TimeoutError) as exc:
        raise _failure(exc, request, exchange, False, connecting=True) from None
    try:
        try:
            writer.write(request.data)
            await asyncio.wait_for(writer.drain(), timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise _failure(exc, request, exchange, False) from None
        while not exchange.done:
            try:
                data = await asyncio.wait_for(reader.read(_READ_SIZE), timeout)
            except (OSError, asyncio.TimeoutError) as exc:
                raise _failure(exc, request, exchange, False) from None
            if not data:
                exchange.feed_eof()
                break
            for text in exchange.feed(data):
                yield text
        for text in exchange.end():
            yield text
    finally:
        writer.transport.abort()


def _failure(
    exc: BaseException,
    request: Request,
    exchange: Exchange,
    was_cancelled: bool,
    connecting: bool = False,
) -> Exception:
    """The error to raise for a network failure."""
    if was_cancelled:
        return cancelled(request)
    where = request.where
    timeout = request.timeout
    if isinstance(exc, (socket.timeout, builtins.TimeoutError, asyncio.TimeoutError)):
        if connecting:
            what = f"could not connect to {where.host}:{where.port} within {timeout:g} s"
        elif not exchange.started:
            what = f"no response within {timeout:g} s"
        else:
            what = f"no data for {timeout:g} s (the response stalled)"
        return errors.TimeoutError(f"flw.llm: {request.label()}: {what} (timeout={timeout:g})")
    text = str(exc) or type(exc).__name__
    if connecting:
        text = f"cannot connect to {where.host}:{where.port}: {text}"
    error = errors.ConnectionError(f"flw.llm: {request.label()}: {text}")
    if isinstance(exc, builtins.ConnectionError) and not exchange.started:
        return Retry(error, None)
    return error
