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

_LINE_END = re.compile(rb"\r\n|\r|\n")


class Event(NamedTuple):
    """One dispatched event: its type (``"message"`` unless named) and data."""

    event: str
    data: str
    id: str | None


class SSEParser:
    """Turns the pieces of an event-stream body into ``Event`` values."""

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._started = False  # a byte-order mark is only skipped at the start

    def feed(self, data: bytes) -> list[Event]:
        """Take body bytes; return the events they complete."""
        buffer = self._buffer + data if self._buffer else data
        if not self._started and buffer:
            if len(buffer) < 3 and b"\xef\xbb\xbf".startswith(buffer):
                self._buffer = buffer
                return []
            self._started = True
            if buffer.startswith(b"\xef\xbb\xbf"):
                buffer = buffer[3:]
        events: list[Event] = []
        pos = 0
        size = len(buffer)
        while True:
            match = _LINE_END.search(buffer, pos)
            if match is None:
                break
            if match.end() == size and match.group() == b"\r":
                break  # perhaps a CRLF whose LF comes in the next piece
            self._line(buffer[pos : match.start()], events)
            pos = match.end()
        self._buffer = buffer[pos:]
        return events

    def feed_eof(self) -> list[Event]:
        """The body ended: the events still pending (a last event without its blank line)."""
        events: list[Event] = []
        if self._buffer:
            lines = _LINE_END.split(self._buffer)
            self._buffer = b""
            for line in lines:
                self._line(line, events)
        self._line(b"", events)
        return events

    def _line(self, raw: bytes, events: list[Event]) -> None:
        if not raw:
            if self._data:
                events.append(Event(self._event or "message", "\n".join(self._data), self._id))
            self._data = []
            self._event = ""
            return
        line = raw.decode("utf-8", "replace")
        if line.startswith(":"):
            return  # a comment
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id" and "\0" not in value:
            self._id = value
