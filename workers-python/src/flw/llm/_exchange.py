"""One request's response, sans-IO: bytes in, text deltas and a ``Reply`` (or an error) out.

An ``Exchange`` feeds the bytes a transport read to the HTTP parser, the
body to the SSE parser (a ``text/event-stream`` answer) or to a buffer (a
JSON answer, or an error status), and the chunks to the ``Accumulator``.
A stream ends at its ``data: [DONE]`` event (``done`` turns true; the
transport closes the connection without waiting for the server to end the
body). An error status becomes ``APIError``, or ``Retry`` carrying it when
the status may be retried. Every buffer has a limit (``MAX_BODY_BYTES``,
``MAX_REPLY_CHARS``, the SSE parser's): a response over one raises
``LLMError``. The retry policy's delays are here too.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
from collections.abc import Mapping
from typing import Any, NamedTuple

from ._errors import APIError, ConnectionError, LLMError
from ._http import Endpoint, HTTPProtocolError, ResponseParser
from ._reply import Accumulator, Reply
from ._sse import Event, EventStreamError, SSEParser

MAX_BACKOFF = 8.0
"""The longest of the exponential backoff's waits, in seconds."""

MAX_RETRY_AFTER = 60.0
"""The longest wait a ``Retry-After`` may ask for; above it the error is raised."""

MAX_BODY_BYTES = 64 * 1024 * 1024
"""The largest JSON response body (a non-streamed reply) that is read."""

MAX_REPLY_CHARS = 64 * 1024 * 1024
"""The most text and tool-call arguments a streamed reply may gather."""

_MAX_ERROR_BODY = 1024 * 1024


class Request(NamedTuple):
    """What to send and where, and how long to wait for each byte."""

    where: Endpoint
    data: bytes  # the whole HTTP request
    messages: list[dict[str, Any]]  # the conversation the body holds
    timeout: float
    max_retries: int

    def label(self) -> str:
        """``POST <url>``, for messages."""
        return f"POST {self.where.url}"


class Retry(Exception):
    """An attempt failed in a way that may be retried: ``error`` if it is not."""

    def __init__(self, error: LLMError, after: float | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.after = after  # seconds the server asked to wait, if it did


class Exchange:
    """The response to one attempt of a request."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.http = ResponseParser()
        self.acc = Accumulator()
        self._sse: SSEParser | None = None
        self._body = bytearray()
        self._decided = False
        self._stream_done = False  # the [DONE] event came

    @property
    def started(self) -> bool:
        """Whether any byte of the response came (then it is never retried)."""
        return self.http.received > 0

    @property
    def done(self) -> bool:
        """Whether the whole response was read (a stream: up to its ``[DONE]`` event)."""
        return self._stream_done or self.http.done

    def feed(self, data: bytes) -> list[str]:
        """Take bytes read from the connection; return the text deltas they complete."""
        try:
            pieces = self.http.feed(data)
        except HTTPProtocolError as exc:
            raise self._broken(exc) from None
        if not self._decided and self.http.head_done:
            self._decided = True
            ok = 200 <= self.http.status < 300
            content_type = self.http.headers.get("content-type", "").lower()
            if ok and "text/event-stream" in content_type:
                self._sse = SSEParser()
        texts: list[str] = []
        sse = self._sse
        for piece in pieces:
            if sse is None:
                self._keep(piece)
                continue
            try:
                events = sse.feed(piece)
            except EventStreamError as exc:
                raise LLMError(f"flw.llm: {self.request.label()}: {exc}") from None
            self._events(events, texts)
            if self._stream_done:
                break
        return texts

    def feed_eof(self) -> None:
        """The connection closed: fine after a whole response, else an error."""
        try:
            self.http.feed_eof()
        except HTTPProtocolError as exc:
            raise self._broken(exc) from None

    def end(self) -> list[str]:
        """After the response: the text of its last events (the error an error status is)."""
        if not 200 <= self.http.status < 300:
            raise self._status_error()
        texts: list[str] = []
        if self._sse is None:  # a JSON reply: its whole text is one delta
            text = self.acc.add_response(self._json(bytes(self._body)))
            return [text] if text else []
        if not self._stream_done:
            self._events(self._sse.feed_eof(), texts)
        return texts

    def reply(self) -> Reply:
        """The ``Reply``, after ``end``."""
        return self.acc.reply(self.request.messages)

    # -- the pieces -----------------------------------------------------------

    def _keep(self, piece: bytes) -> None:
        """Buffer a piece of a JSON body (an error body: its first MiB)."""
        body = self._body
        if 200 <= self.http.status < 300:
            if len(body) + len(piece) > MAX_BODY_BYTES:
                raise LLMError(
                    f"flw.llm: {self.request.label()}: the response body is larger than "
                    f"{MAX_BODY_BYTES >> 20} MiB"
                )
            body += piece
        elif len(body) < _MAX_ERROR_BODY:
            body += piece[: _MAX_ERROR_BODY - len(body)]

    def _events(self, events: list[Event], texts: list[str]) -> None:
        """Take the stream's events up to ``[DONE]``; add their text to ``texts``."""
        for event in events:
            if event.data.strip() == "[DONE]":
                self._stream_done = True
                return
            text = self._event(event)
            if text:
                texts.append(text)
            if self.acc.size > MAX_REPLY_CHARS:
                raise LLMError(
                    f"flw.llm: {self.request.label()}: the streamed reply is longer than "
                    f"{MAX_REPLY_CHARS >> 20} Mi characters"
                )

    def _event(self, event: Event) -> str:
        data = event.data.strip()
        try:
            chunk = json.loads(data)
        except ValueError:
            raise LLMError(
                f"flw.llm: {self.request.label()}: a stream event is not JSON: {data[:200]!r}"
            ) from None
        if event.event == "error" or (
            isinstance(chunk, dict) and chunk.get("error") and "choices" not in chunk
        ):
            raise APIError(
                f"flw.llm: {self.request.label()}: the stream reported an error: "
                f"{_error_message(chunk)}",
                self.http.status,
                chunk,
            )
        return self.acc.add_chunk(chunk)

    def _json(self, body: bytes) -> Any:
        try:
            return json.loads(body)
        except ValueError:
            text = body[:300].decode("utf-8", "replace")
            raise LLMError(
                f"flw.llm: {self.request.label()}: the response is not JSON: {text!r}"
            ) from None

    def _broken(self, exc: HTTPProtocolError) -> LLMError | Retry:
        error = ConnectionError(f"flw.llm: {self.request.label()}: {exc}")
        return Retry(error, None) if not self.started else error

    def _status_error(self) -> APIError | Retry:
        http = self.http
        text = bytes(self._body).decode("utf-8", "replace")
        body: Any = text
        with contextlib.suppress(ValueError):
            body = json.loads(text)
        message = f"flw.llm: {self.request.label()}: {http.status} {http.reason}".rstrip()
        detail = _error_message(body)
        if detail:
            message += f": {detail}"
        if http.status in (401, 403):
            message += " (check OPENAI_API_KEY or api_key=)"
        elif 300 <= http.status < 400 and "location" in http.headers:
            message += f" (redirected to {http.headers['location']}; set the base URL to it)"
        error = APIError(message, http.status, body)
        if not retryable_status(http.status):
            return error
        after = retry_after(http.headers)
        if after is not None and after > MAX_RETRY_AFTER:
            error.args = (f"{message} (the server asks to retry after {after:g} s)",)
            return error
        return Retry(error, after)


def _error_message(body: Any) -> str:
    """The ``error.message`` of an error body (or its text, shortened)."""
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            for key in ("message", "detail", "msg"):
                if isinstance(error.get(key), str):
                    return str(error[key])
        if isinstance(error, str):
            return error
        for key in ("message", "detail"):
            if isinstance(body.get(key), str):
                return str(body[key])
        return json.dumps(body)[:500]
    text = str(body).strip()
    return text[:500] + ("..." if len(text) > 500 else "")


def retryable_status(status: int) -> bool:
    """408, 409, 429 and 5xx may be retried."""
    return status in (408, 409, 429) or status >= 500


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    raw = headers.get("retry-after-ms")
    if raw is not None:
        try:
            value = float(raw) / 1000
        except ValueError:
            value = math.nan
        if math.isfinite(value):
            return max(0.0, value)
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return _seconds_until(raw)
    return max(0.0, value) if math.isfinite(value) else None


def _seconds_until(date: str) -> float | None:
    import email.utils
    import time

    try:
        when = email.utils.parsedate_to_datetime(date)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff(attempt: int) -> float:
    """The wait before retry ``attempt + 1``: 0.5 s doubling, at most 8 s, minus up to 25 %."""
    return min(MAX_BACKOFF, 0.5 * 2.0 ** min(attempt, 16)) * (1 - 0.25 * random.random())
