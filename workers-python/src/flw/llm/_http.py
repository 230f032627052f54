"""Sans-IO HTTP/1.1 for ``flw.llm``: the request bytes and a response parser fed bytes.

The transports (``_transport``) only move bytes: they write what
``request_bytes`` builds and feed what they read to ``ResponseParser``, which
reads the status line and headers, then the body as ``Content-Length``,
chunked transfer encoding or read-to-close says. One parser serves the
socket transport and the asyncio one.
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import quote, urlsplit

MAX_HEAD_BYTES = 64 * 1024
"""The most a status line and headers may take (and a chunk-size line)."""


class HTTPProtocolError(Exception):
    """The response is not valid HTTP/1.1, or it ended early."""


class Endpoint(NamedTuple):
    """Where requests go: ``scheme://host:port`` and the path to post to."""

    scheme: str
    host: str
    port: int
    path: str  # with the query, if any
    url: str  # for messages

    @property
    def host_header(self) -> str:
        """The ``Host`` header: the host, bracketed if IPv6, and a non-default port."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def endpoint(base_url: str, suffix: str) -> Endpoint:
    """The endpoint ``{base_url}/{suffix}``; ``ValueError`` says what is wrong.

    Spaces, control and non-ASCII characters of the path are percent-encoded,
    and a non-ASCII host name is IDNA-encoded, so the request line and the
    ``Host`` header hold printable ASCII only.
    """
    try:
        parts = urlsplit(base_url.strip())
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"it is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError("it is not an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError("it has no host")
    host = _ascii_host(parts.hostname)
    if port is None:
        port = 443 if scheme == "https" else 80
    path = quote(parts.path.rstrip("/") + "/" + suffix, safe=_URL_SAFE)
    url = f"{scheme}://{parts.netloc.rpartition('@')[2]}{path}"
    if parts.query:
        query = quote(parts.query, safe=_URL_SAFE)
        path = f"{path}?{query}"
        url = f"{url}?{query}"
    return Endpoint(scheme, host, port, path, url)


_URL_SAFE = "/%:@!$&'()*+,;=-._~?"
"""What ``quote`` leaves as is: the path and query characters of RFC 3986, and ``%``."""

_HOST = re.compile(r"[A-Za-z0-9._~:%-]+")


def _ascii_host(host: str) -> str:
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError("its host name is not valid") from None
    if not _HOST.fullmatch(host):
        raise ValueError("its host name is not valid")
    return host


def header_problem(value: str) -> str | None:
    """Why ``value`` cannot be a header value (a line break, a control or non-Latin-1 character)."""
    bad = _BAD_HEADER_CHAR.search(value)
    if bad is None:
        return None
    char = bad.group()
    kind = (
        "a line break"
        if char in "\r\n"
        else "a character outside Latin-1"
        if char > "\xff"
        else "a control character"
    )
    return f"it contains {kind} (character {bad.start() + 1} of {len(value)})"


_BAD_HEADER_CHAR = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]|[^\x00-\xff]")


def request_bytes(method: str, where: Endpoint, headers: dict[str, str], body: bytes) -> bytes:
    """An HTTP/1.1 request with ``Host``, ``Content-Length`` and ``Connection: close``.

    ``ValueError`` names a header whose value cannot be sent (never showing the value).
    """
    lines = [f"{method} {where.path} HTTP/1.1", f"Host: {where.host_header}"]
    for name, value in headers.items():
        problem = header_problem(value)
        if problem is not None:
            raise ValueError(f"the {name} header cannot be sent: {problem}")
        lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    head = "\r\n".join(lines) + "\r\n\r\n"
    return head.encode("latin-1") + body


_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _TO_CLOSE, _DONE = range(8)


class ResponseParser:
    """Parses one HTTP/1.1 response from the bytes given to ``feed``.

    ``feed`` returns the body's pieces as they complete (decoded from the
    chunked encoding); ``status``, ``reason`` and ``headers`` (lower-case
    names) are set once ``head_done``. Interim ``1xx`` responses are
    skipped. ``done`` turns true at the end of the body; ``feed_eof`` says
    the connection closed and raises ``HTTPProtocolError`` if the response
    was not complete.
    """

    def __init__(self) -> None:
        self.status = 0
        self.reason = ""
        self.headers: dict[str, str] = {}
        self.received = 0  # bytes fed so far
        self._state = _HEAD
        self._buffer = bytearray()
        self._left = 0  # body bytes still to come (Content-Length, or the current chunk)

    @property
    def head_done(self) -> bool:
        """Whether the status line and headers were read."""
        return self._state != _HEAD

    @property
    def done(self) -> bool:
        """Whether the whole response was read."""
        return self._state == _DONE

    def feed(self, data: bytes) -> list[bytes]:
        """Take bytes from the connection; return the body pieces they complete."""
        self.received += len(data)
        if self._state == _DONE:
            return []
        if self._state == _TO_CLOSE:
            return [bytes(data)] if data else []
        self._buffer += data
        out: list[bytes] = []
        while self._step(out):
            pass
        return out

    def feed_eof(self) -> None:
        """The connection closed: the end of a read-to-close body, else an error."""
        if self._state == _TO_CLOSE:
            self._state = _DONE
        elif self._state != _DONE:
            where = "before the response's headers" if self._state == _HEAD else "mid-body"
            if self.received == 0:
                where = "before sending a response"
            raise HTTPProtocolError(f"the server closed the connection {where}")

    def _step(self, out: list[bytes]) -> bool:
        """Advance by one piece of the buffer; whether to go on."""
        state = self._state
        buffer = self._buffer
        if state == _HEAD:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD_BYTES:
                    raise HTTPProtocolError("the response's headers are too long")
                return False
            head = bytes(buffer[:end])
            del buffer[: end + 4]
            self._head(head)
            return True
        if state in (_LENGTH, _CHUNK_DATA):
            if not buffer:
                return False
            out.append(self._take_body())
            if self._left == 0:
                self._state = _DONE if state == _LENGTH else _CHUNK_END
            return self._state != _DONE
        if state in (_CHUNK_SIZE, _CHUNK_END, _TRAILER):
            end = buffer.find(b"\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD_BYTES:
                    raise HTTPProtocolError("a line of the chunked body is too long")
                return False
            line = bytes(buffer[:end])
            del buffer[: end + 2]
            self._chunk_line(line)
            return self._state != _DONE
        if state == _TO_CLOSE:  # the rest of the buffer after the headers
            if buffer:
                out.append(bytes(buffer))
                buffer.clear()
            return False
        return False

    def _take_body(self) -> bytes:
        """The body bytes of the buffer, up to what is left of the body or chunk."""
        piece = bytes(self._buffer[: self._left])
        del self._buffer[: len(piece)]
        self._left -= len(piece)
        return piece

    def _head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or not (code.isdigit() and len(code) == 3):
            raise HTTPProtocolError(f"not an HTTP/1.x status line: {lines[0][:100]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon:
                raise HTTPProtocolError(f"a header line without a colon: {line[:100]!r}")
            key = name.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        status = int(code)
        if 100 <= status < 200:
            return  # an interim response: the real one follows
        self.status, self.reason, self.headers = status, reason.strip(), headers
        if status in (204, 304):
            self._state = _DONE
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self._state = _CHUNK_SIZE
        elif "content-length" in headers:
            self._left = _content_length(headers["content-length"])
            self._state = _LENGTH if self._left else _DONE
        else:
            self._state = _TO_CLOSE

    def _chunk_line(self, line: bytes) -> None:
        if self._state == _CHUNK_END:
            if line:
                raise HTTPProtocolError("a chunk does not end with CRLF")
            self._state = _CHUNK_SIZE
        elif self._state == _CHUNK_SIZE:
            size = line.split(b";", 1)[0].strip(b" \t")  # without the chunk extensions
            if not _CHUNK_SIZE_DIGITS.fullmatch(size):
                raise HTTPProtocolError(f"a bad chunk size: {size[:40]!r}")
            self._left = int(size, 16)
            self._state = _CHUNK_DATA if self._left else _TRAILER
        elif not line:  # the blank line after the trailers
            self._state = _DONE


_CHUNK_SIZE_DIGITS = re.compile(rb"[0-9A-Fa-f]{1,16}")
"""A chunk size: hex digits only (``int(x, 16)`` would also take ``0x5``, ``+5``, ``0_5``)."""


def _content_length(value: str) -> int:
    """The ``Content-Length``: digits; repeated values (joined with commas) must agree."""
    values = {text.strip() for text in value.split(",")}
    if len(values) != 1:
        raise HTTPProtocolError(f"conflicting Content-Length values: {value[:80]!r}")
    text = values.pop()
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise HTTPProtocolError(f"a bad Content-Length: {text[:40]!r}")
    return int(text)
