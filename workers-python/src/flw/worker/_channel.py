"""The protocol channel: a bounded line reader and a locked line writer.

The reader never holds more than ``max_line_bytes + 1`` bytes of one line:
past that it discards the rest of the line and reports ``line_too_long``.
The writer sends whole lines with ``os.write`` in a loop under one lock, so
lines from several threads never interleave. ``open_channel`` takes the
descriptors the worker talks on (``FLW_CHANNEL_FD`` or stdin/stdout) and
makes sure user code and child processes cannot reach them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any, Callable, NamedTuple

from ._protocol import ProtocolError, encode_line

_CHUNK = 64 * 1024


class LineReader:
    """Reads ``\\n``-terminated lines from a descriptor with a bounded buffer.

    ``read_batch`` does one ``os.read`` and returns every line it completed
    (bytes, without the ``\\n``) or, for a line longer than
    ``max_line_bytes``, a ``ProtocolError("line_too_long")`` once its end
    was found and skipped; ``None`` at end-of-file, when ``torn`` says
    whether the stream stopped in the middle of a line. Iterating yields the
    same items one by one. Read errors (``OSError``) propagate. One thread
    at a time may read; the buffer moves with the reader.
    """

    def __init__(self, fd: int, max_line_bytes: int) -> None:
        self.fd = fd
        self.max_line_bytes = max_line_bytes
        self.torn = False
        self._buf = bytearray()
        self._discarding = False

    def __iter__(self) -> Iterator[bytes | ProtocolError]:
        while True:
            batch = self.read_batch()
            if batch is None:
                return
            yield from batch

    def read_batch(self) -> list[bytes | ProtocolError] | None:
        """Read once; the items completed by that read (maybe none), or ``None`` at EOF."""
        limit = self.max_line_bytes
        buf = self._buf
        if self._discarding:
            chunk = os.read(self.fd, _CHUNK)
        else:
            chunk = os.read(self.fd, max(1, min(_CHUNK, limit + 1 - len(buf))))
        if not chunk:
            self.torn = self._discarding or bool(buf)
            return None
        items: list[bytes | ProtocolError] = []
        if self._discarding:
            end = chunk.find(b"\n")
            if end < 0:
                return items
            self._discarding = False
            items.append(self._too_long())
            chunk = chunk[end + 1 :]
        if not chunk:
            return items
        if not buf:
            # The common case: whole lines in one read, nothing carried over.
            last = chunk.rfind(b"\n")
            if last == len(chunk) - 1:
                items.extend(chunk[:last].split(b"\n"))
                # The read was at most limit + 1 bytes, so no line in it is
                # over the limit.
                return items
        buf += chunk
        start = 0
        while True:
            end = buf.find(b"\n", start)
            if end < 0:
                break
            items.append(bytes(buf[start:end]))
            start = end + 1
        del buf[:start]
        if len(buf) > limit:
            buf.clear()
            self._discarding = True
        return items

    def _too_long(self) -> ProtocolError:
        return ProtocolError(
            "line_too_long",
            f"a line was longer than the limit of {self.max_line_bytes} bytes "
            "(FLW_MAX_LINE_BYTES) and was skipped",
        )


class LineWriter:
    """Writes protocol messages as whole lines, one thread at a time.

    ``send`` encodes the message, refuses a line over ``max_line_bytes``
    with ``ProtocolError("line_too_long")`` before writing anything, and
    writes the line with ``os.write`` until every byte is out. When the
    descriptor fails, ``on_broken`` is called with the error (the worker's
    watchdog, which does not return) and the error is raised.
    """

    def __init__(
        self,
        fd: int,
        max_line_bytes: int,
        on_broken: Callable[[OSError], None] | None = None,
    ) -> None:
        self.fd = fd
        self.max_line_bytes = max_line_bytes
        self.on_broken = on_broken
        self._lock = threading.Lock()

    def send(self, message: Mapping[str, Any]) -> None:
        """Encode ``message`` and write it as one line."""
        self.write(self.encode(message))

    def encode(self, message: Mapping[str, Any]) -> bytes:
        """The line for ``message``; ``ProtocolError`` when it is over the limit."""
        data = encode_line(message)
        size = len(data) - 1
        if size > self.max_line_bytes:
            raise ProtocolError(
                "line_too_long",
                f"the {message.get('type')} message is {size} bytes, over the line limit "
                f"of {self.max_line_bytes} bytes (FLW_MAX_LINE_BYTES)",
            )
        return data

    def write(self, data: bytes) -> None:
        """Write ``data`` (whole lines, already checked) until every byte is out."""
        view = memoryview(data)
        with self._lock:
            try:
                while view:
                    written = os.write(self.fd, view)
                    view = view[written:]
            except OSError as exc:
                if self.on_broken is not None:
                    self.on_broken(exc)
                raise


class Channel(NamedTuple):
    """The descriptors the worker reads from and writes to (may be equal)."""

    read_fd: int
    write_fd: int
    description: str


def open_channel(environ: MutableMapping[str, str] | None = None) -> Channel:
    """Take the protocol channel away from user code.

    With ``FLW_CHANNEL_FD`` set, that descriptor is duplicated to a new
    non-inheritable descriptor and closed, and the variable is removed from
    ``os.environ`` so child processes do not look for it. Without it, stdin
    and stdout become the channel: both are duplicated, fd 0 is pointed at
    ``/dev/null`` and fd 1 at stderr, so ``print()`` and child processes
    write to stderr instead of the protocol stream.
    Raises ``OSError`` or ``ValueError`` when the descriptor is unusable.
    """
    env = os.environ if environ is None else environ
    raw = env.get("FLW_CHANNEL_FD")
    if raw:
        try:
            fd = int(raw)
        except ValueError:
            raise ValueError(f"FLW_CHANNEL_FD must be a descriptor number, got {raw!r}") from None
        channel_fd = os.dup(fd)  # os.dup gives a non-inheritable descriptor
        os.close(fd)
        os.set_blocking(channel_fd, True)
        env.pop("FLW_CHANNEL_FD", None)
        return Channel(channel_fd, channel_fd, f"fd {fd}")
    read_fd = os.dup(0)
    write_fd = os.dup(1)
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(devnull, 0)
    finally:
        os.close(devnull)
    return Channel(read_fd, write_fd, "stdin/stdout")
