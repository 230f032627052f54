"""Sans-IO server-sent events: a parser fed the bytes of a ``text/event-stream`` body.

It follows the WHATWG event-stream rules: lines end with CRLF, LF or CR
(a CR at the end of one piece may be the first half of a CRLF split across
two), ``data:`` lines of one event are joined with newlines, a blank line
dispatches the event, lines starting with ``:`` are comments (keep-alives),
``event:`` names the event, and an event without data is not dispatched.
"""

from __future__ import annotations

import re
from typing import NamedTuple

MAX_LINE_BYTES = 16 * 1024 * 1024
"""The longest line the parser holds (an endpoint that never ends one is cut off)."""

MAX_EVENT_BYTES = 16 * 1024 * 1024
"""The most data one event may gather over its ``data:`` lines."""

_LINE_END = re.compile(rb"\r\n|\r|\n")


class EventStreamError(Exception):
    """The event stream broke a limit (``MAX_LINE_BYTES``, ``MAX_EVENT_BYTES``)."""


class Event(NamedTuple):
    """One dispatched event: its type (``"message"`` unless named) and data."""

    event: str
    data: str
    id: str | None


class SSEParser:
    """Turns the pieces of an event-stream body into ``Event`` values.

    A line longer than ``MAX_LINE_BYTES``, or an event whose data is longer
    than ``MAX_EVENT_BYTES``, raises ``EventStreamError``.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()  # the start of a line whose end has not come
        self._scanned = 0  # how much of the buffer holds no line end
        self._data: list[str] = []
        self._size = 0  # the bytes of the event's data lines so far
        self._event = ""
        self._id: str | None = None
        self._started = False  # a byte-order mark is only skipped at the start

    def feed(self, data: bytes) -> list[Event]:
        """Take body bytes; return the events they complete."""
        buffer = self._buffer
        buffer += data
        if not self._started and buffer:
            if len(buffer) < 3 and b"\xef\xbb\xbf".startswith(buffer):
                return []
            self._started = True
            if buffer.startswith(b"\xef\xbb\xbf"):
                del buffer[:3]
        events: list[Event] = []
        pos = 0
        size = len(buffer)
        while True:
            match = _LINE_END.search(buffer, max(pos, self._scanned))
            if match is None:
                break
            if match.end() == size and match.group() == b"\r":
                break  # perhaps a CRLF whose LF comes in the next piece
            self._line(bytes(buffer[pos : match.start()]), events)
            pos = match.end()
        del buffer[:pos]
        if len(buffer) > MAX_LINE_BYTES:
            raise EventStreamError(
                f"a line of the event stream is longer than {MAX_LINE_BYTES >> 20} MiB"
            )
        self._scanned = len(buffer) - 1 if buffer.endswith(b"\r") else len(buffer)
        return events

    def feed_eof(self) -> list[Event]:
        """The body ended: the events still pending (a last event without its blank line)."""
        events: list[Event] = []
        if self._buffer:
            lines = _LINE_END.split(bytes(self._buffer))
            self._buffer.clear()
            self._scanned = 0
            for line in lines:
                self._line(line, events)
        self._line(b"", events)
        return events

    def _line(self, raw: bytes, events: list[Event]) -> None:
        if not raw:
            if self._data:
                events.append(Event(self._event or "message", "\n".join(self._data), self._id))
            self._data = []
            self._size = 0
            self._event = ""
            return
        line = raw.decode("utf-8", "replace")
        if line.startswith(":"):
            return  # a comment
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._size += len(raw)
            if self._size > MAX_EVENT_BYTES:
                raise EventStreamError(
                    f"an event of the event stream is longer than {MAX_EVENT_BYTES >> 20} MiB"
                )
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id" and "\0" not in value:
            self._id = value
