"""flw.llm without a network: the HTTP and SSE parsers, the accumulator, retry delays,
endpoints, Reply.json() and the Context cancel hook."""

from __future__ import annotations

import email.utils
import threading
import time
from typing import Any, Callable

import pytest

from flw import Context, llm
from flw.llm import _exchange
from flw.llm._exchange import Exchange, Request, Retry, backoff, retry_after, retryable_status
from flw.llm._http import (
    HTTPProtocolError,
    ResponseParser,
    endpoint,
    header_problem,
    request_bytes,
)
from flw.llm._reply import Accumulator
from flw.llm._sse import Event, EventStreamError, SSEParser

# -- HTTP ------------------------------------------------------------------------


def feed_all(parser: ResponseParser, data: bytes, step: int) -> bytes:
    """Feed ``data`` ``step`` bytes at a time; the body pieces joined."""
    out = b""
    for i in range(0, len(data), step):
        out += b"".join(parser.feed(data[i : i + step]))
    return out


CHUNKED = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
    b"X-Twice: a\r\nx-twice: b\r\n\r\n"
    b"5;ext=1\r\nhello\r\n1\r\n \r\n6\r\nworld!\r\n0\r\nTrailer: t\r\n\r\n"
)


@pytest.mark.parametrize("step", [1, 2, 3, 7, 1000])
def test_chunked_body_fed_in_any_pieces(step: int) -> None:
    parser = ResponseParser()
    assert feed_all(parser, CHUNKED, step) == b"hello world!"
    assert parser.done
    assert (parser.status, parser.reason) == (200, "OK")
    assert parser.headers["content-type"] == "text/event-stream"
    assert parser.headers["x-twice"] == "a, b"
    parser.feed_eof()  # a closed connection after a whole response is fine


@pytest.mark.parametrize("step", [1, 5, 1000])
def test_content_length_body_and_interim_responses(step: int) -> None:
    data = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b'HTTP/1.1 404 Not Found\r\nContent-Length: 11\r\n\r\n{"a": true}extra'
    )
    parser = ResponseParser()
    assert feed_all(parser, data, step) == b'{"a": true}'
    assert parser.done
    assert (parser.status, parser.reason) == (404, "Not Found")


def test_read_to_close_body_ends_at_eof() -> None:
    parser = ResponseParser()
    assert parser.feed(b"HTTP/1.0 200 OK\r\n\r\nab") == [b"ab"]
    assert parser.feed(b"cd") == [b"cd"]
    assert not parser.done
    parser.feed_eof()
    assert parser.done


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "before sending a response"),
        (b"HTTP/1.1 200 OK\r\nContent-", "before the response's headers"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "mid-body"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", "mid-body"),
    ],
)
def test_a_response_cut_short_is_an_error(data: bytes, message: str) -> None:
    parser = ResponseParser()
    parser.feed(data)
    with pytest.raises(HTTPProtocolError, match=message):
        parser.feed_eof()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n", "without a colon"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 7\r\n\r\n", "conflicting Content-Length"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n",
            "conflicting Content-Length",
        ),
    ],
)
def test_malformed_responses_are_errors(data: bytes, message: str) -> None:
    with pytest.raises(HTTPProtocolError, match=message):
        ResponseParser().feed(data)


@pytest.mark.parametrize("size", [b"0x5", b"+5", b"0_5", b"-5", b" ", b"", b"5 5", b"1" * 17])
def test_a_chunk_size_is_hex_digits_only(size: bytes) -> None:
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + size + b"\r\nhello\r\n"
    with pytest.raises(HTTPProtocolError, match="bad chunk size"):
        ResponseParser().feed(data)


@pytest.mark.parametrize("size", [b"5", b"05", b"5;name=value", b"5 ;x", b"5\t; x"])
def test_chunk_sizes_that_are_fine(size: bytes) -> None:
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%s\r\nhello\r\n0\r\n\r\n"
    parser = ResponseParser()
    assert parser.feed(data % size) == [b"hello"]
    assert parser.done


def test_a_repeated_content_length_that_agrees_is_fine() -> None:
    parser = ResponseParser()
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nokay"
    assert parser.feed(data) == [b"ok"]
    assert parser.done


def test_request_bytes() -> None:
    where = endpoint("http://localhost:8080/v1/", "chat/completions")
    data = request_bytes("POST", where, {"Content-Type": "application/json"}, b"{}")
    assert data == (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost:8080\r\n"
        b"Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    )


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("a\r\nX: y", "a line break (character 2 of 7)"),
        ("a\nb", "a line break (character 2 of 3)"),
        ("a\x00", "a control character (character 2 of 2)"),
        ("\x7f", "a control character (character 1 of 1)"),
        ("caf\u00e9 \u20ac", "a character outside Latin-1 (character 6 of 6)"),
    ],
)
def test_header_values_that_cannot_be_sent(value: str, problem: str) -> None:
    assert header_problem(value) == f"it contains {problem}"
    where = endpoint("http://h/v1", "chat/completions")
    with pytest.raises(ValueError, match="the X-Key header cannot be sent: it contains") as caught:
        request_bytes("POST", where, {"X-Key": value}, b"")
    assert value not in str(caught.value)
    assert header_problem("Bearer sk-\t\u00e9 ok") is None


@pytest.mark.parametrize(
    ("base", "url", "host_header"),
    [
        (
            "https://api.openai.com/v1",
            "https://api.openai.com/v1/chat/completions",
            "api.openai.com",
        ),
        (
            "http://127.0.0.1:11434/v1/",
            "http://127.0.0.1:11434/v1/chat/completions",
            "127.0.0.1:11434",
        ),
        ("http://[::1]:8000", "http://[::1]:8000/chat/completions", "[::1]:8000"),
        ("HTTP://h/a?v=1", "http://h/a/chat/completions?v=1", "h"),
        (
            "http://h/a b/\u00fc?q=x y&r=%20",
            "http://h/a%20b/%C3%BC/chat/completions?q=x%20y&r=%20",
            "h",
        ),
        (
            "http://b\u00fccher.example/v1",
            "http://b\u00fccher.example/v1/chat/completions",
            "xn--bcher-kva.example",
        ),
    ],
)
def test_endpoints(base: str, url: str, host_header: str) -> None:
    where = endpoint(base, "chat/completions")
    assert where.url == url
    assert where.host_header == host_header
    request_bytes("POST", where, {}, b"").decode("ascii")  # the head is ASCII


@pytest.mark.parametrize(
    ("base", "problem"),
    [
        ("ftp://h/v1", "http:// or https://"),
        ("localhost:8000", "http:// or https://"),
        ("http:///v1", "no host"),
        ("http://h:x/", "not a valid URL"),
        ("http://a b/v1", "host name is not valid"),
        ("http://a\x00b/v1", "host name is not valid"),
    ],
)
def test_bad_endpoints(base: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        endpoint(base, "chat/completions")


# -- SSE -------------------------------------------------------------------------


def feed_many(feed: Callable[[bytes], object], piece: bytes, times: int) -> None:
    for _ in range(times):
        feed(piece)


STREAM = (
    b"\xef\xbb\xbf: keep-alive\r\n\r\n"
    b"data: one\r\n\r\n"
    b"event: error\ndata: two\ndata:  three\n\n"
    b"id: 7\rdata:four\r\r"
    b"data\n\n"
    b"event: only-a-name\n\n"
    b"retry: 10\ndata: caf\xc3\xa9\n\n"
)
EXPECTED = [
    Event("message", "one", None),
    Event("error", "two\n three", None),
    Event("message", "four", "7"),
    Event("message", "", "7"),
    Event("message", "café", "7"),
]


@pytest.mark.parametrize("step", [1, 2, 3, 5, 1000])
def test_sse_events_fed_in_any_pieces(step: int) -> None:
    parser = SSEParser()
    events: list[Event] = []
    for i in range(0, len(STREAM), step):
        events += parser.feed(STREAM[i : i + step])
    events += parser.feed_eof()
    assert events == EXPECTED


def test_sse_a_last_event_without_its_blank_line_is_kept_at_the_end() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: [DONE]") == []
    assert parser.feed_eof() == [Event("message", "[DONE]", None)]


def test_sse_a_line_split_over_many_pieces() -> None:
    parser = SSEParser()
    for _ in range(1000):
        assert parser.feed(b"x" * 100) == []
    assert parser.feed(b"\r") == []
    assert parser.feed(b"\ndata: y\r") == []  # a CR at the end: perhaps half a CRLF
    assert parser.feed(b"\n\n") == [Event("message", "y", None)]


def test_sse_a_line_too_long_is_an_error() -> None:
    parser = SSEParser()
    piece = b"data: " + b"x" * (1 << 20)
    with pytest.raises(EventStreamError, match="a line of the event stream is longer than 16 MiB"):
        feed_many(parser.feed, piece, 17)


def test_sse_an_event_too_long_is_an_error() -> None:
    parser = SSEParser()
    line = b"data: " + b"x" * (1 << 20) + b"\n"
    with pytest.raises(
        EventStreamError, match="an event of the event stream is longer than 16 MiB"
    ):
        feed_many(parser.feed, line, 17)
    parser = SSEParser()
    for _ in range(40):  # many events of 1 MiB are fine
        assert len(parser.feed(line + b"\n")) == 1


# -- accumulating a reply ----------------------------------------------------------


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def test_tool_call_deltas_by_index_with_arguments_concatenated() -> None:
    acc = Accumulator()
    texts = [
        acc.add_chunk(chunk({"role": "assistant", "content": ""})),
        acc.add_chunk(chunk({"content": "Let me look."})),
        acc.add_chunk(
            chunk(
                {
                    "tool_calls": [
                        {"index": 0, "id": "a", "function": {"name": "f", "arguments": ""}}
                    ]
                }
            )
        ),
        acc.add_chunk(
            chunk(
                {
                    "tool_calls": [
                        {"index": 1, "id": "b", "function": {"name": "g", "arguments": '{"x'}}
                    ]
                }
            )
        ),
        acc.add_chunk(chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"q": '}}]})),
        acc.add_chunk(chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]})),
        acc.add_chunk(chunk({"tool_calls": [{"index": 1, "function": {"arguments": '": tru'}}]})),
        acc.add_chunk(chunk({}, "tool_calls")),
        acc.add_chunk({"choices": [], "usage": {"total_tokens": 3}}),
    ]
    assert "".join(texts) == "Let me look."
    reply = acc.reply([{"role": "user", "content": "hi"}])
    assert reply.content == "Let me look."
    assert reply.finish_reason == "tool_calls"
    assert reply.usage == {"total_tokens": 3}
    assert reply.model == "m"
    first, second = reply.tool_calls
    assert (first.id, first.name, first.arguments, first.error) == ("a", "f", {"q": 1}, None)
    assert (second.name, second.arguments, second.arguments_json) == ("g", {}, '{"x": tru')
    assert second.error is not None
    assert second.error.startswith("the arguments are not valid JSON")
    assert reply.message == {
        "role": "assistant",
        "content": "Let me look.",
        "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"q": 1}'}},
            {"id": "b", "type": "function", "function": {"name": "g", "arguments": '{"x": tru'}},
        ],
    }
    assert reply.messages == [{"role": "user", "content": "hi"}, reply.message]


def test_tool_calls_without_an_index_and_with_object_arguments() -> None:
    acc = Accumulator()
    acc.add_chunk(
        chunk({"tool_calls": [{"id": "1", "function": {"name": "f", "arguments": {"a": 1}}}]})
    )
    acc.add_chunk(
        chunk({"tool_calls": [{"id": "2", "function": {"name": "g", "arguments": "[1]"}}]})
    )
    acc.add_chunk(chunk({"tool_calls": [{"function": {"name": "h"}}]}))
    calls = acc.reply([]).tool_calls
    assert [(c.id, c.name, c.arguments) for c in calls] == [("1", "f", {"a": 1}), ("2", "h", {})]
    assert calls[1].error == "the arguments are a list, not an object"


def test_a_whole_response() -> None:
    acc = Accumulator()
    acc.add_response(
        {
            "model": "m",
            "choices": [
                {
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "c",
                                "type": "function",
                                "function": {"name": "f", "arguments": ""},
                            }
                        ],
                    },
                    "finish_reason": "tool_calls",
                }
            ],
        }
    )
    reply = acc.reply([])
    assert reply.content == ""
    assert reply.tool_calls[0].arguments == {}
    assert reply.message["content"] is None
    assert reply.message["tool_calls"][0]["function"]["arguments"] == "{}"
    with pytest.raises(llm.LLMError, match="no choices"):
        Accumulator().add_response({"object": "error"})


def test_reply_json() -> None:
    assert llm.Reply(content=' {"a": [1, 2]} ').json() == {"a": [1, 2]}
    assert llm.Reply(content='```json\n{"a": 1}\n```').json() == {"a": 1}
    with pytest.raises(llm.LLMError, match=r"the reply is not JSON .*'Sure! Here is the JSON: {'"):
        llm.Reply(content="Sure! Here is the JSON: {").json()


# -- retries -----------------------------------------------------------------------


def test_retry_after_headers() -> None:
    assert retry_after({"retry-after-ms": "250"}) == 0.25
    assert retry_after({"retry-after-ms": "x", "retry-after": "2"}) == 2.0
    assert retry_after({"retry-after": "1.5"}) == 1.5
    assert retry_after({"retry-after": "-3"}) == 0.0
    assert retry_after({}) is None
    assert retry_after({"retry-after": "soon"}) is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= (retry_after({"retry-after": later}) or 0) <= 30
    past = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert retry_after({"retry-after": past}) == 0.0


def test_backoff_and_retryable_statuses() -> None:
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        delay = backoff(attempt)
        assert 0.75 * ceiling <= delay <= ceiling
    assert [
        s for s in (200, 400, 401, 404, 408, 409, 422, 429, 500, 503) if retryable_status(s)
    ] == [
        408,
        409,
        429,
        500,
        503,
    ]


# -- the Context cancel hook ---------------------------------------------------------


def test_on_cancel_runs_callbacks_once_and_can_be_removed() -> None:
    ctx = Context(1, "t")
    ran: list[str] = []
    ctx._on_cancel(lambda: ran.append("a"))
    remove = ctx._on_cancel(lambda: ran.append("b"))
    remove()
    remove()  # twice is fine
    ctx._cancel()
    ctx._cancel()
    assert ran == ["a"]
    assert ctx.cancelled
    ctx._on_cancel(lambda: ran.append("late"))  # already cancelled: runs at once
    assert ran == ["a", "late"]


def test_on_cancel_from_another_thread() -> None:
    ctx = Context(1, "t")
    woke = threading.Event()
    ctx._on_cancel(woke.set)
    threading.Timer(0.05, ctx._cancel).start()
    assert woke.wait(5)


def test_a_failing_cancel_callback_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ctx = Context(1, "t")
    ran: list[int] = []
    ctx._on_cancel(lambda: 1 / 0)
    ctx._on_cancel(lambda: ran.append(1))
    ctx._cancel()
    assert ran == [1]
    assert "ZeroDivisionError" in caplog.text


# -- one exchange, fed bytes ------------------------------------------------------------


def exchange() -> Exchange:
    where = endpoint("http://h/v1", "chat/completions")
    return Exchange(Request(where, b"", [{"role": "user", "content": "hi"}], 1.0, 0))


def run(data: bytes, step: int = 1) -> tuple[list[str], llm.Reply]:
    ex = exchange()
    texts: list[str] = []
    for i in range(0, len(data), step):
        texts += ex.feed(data[i : i + step])
    if not ex.done:
        ex.feed_eof()
    texts += ex.end()
    return texts, ex.reply()


def sse_response(*events: bytes) -> bytes:
    body = b"".join(events)
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n" + body


@pytest.mark.parametrize("step", [1, 4, 1000])
def test_an_exchange_streams_text_from_sse_over_a_read_to_close_body(step: int) -> None:
    data = sse_response(
        b": keep-alive\r\n\r\n",
        b'data: {"choices": [{"index": 0, "delta": {"content": "Hel"}}]}\r\n\r\n',
        b'data: {"choices": [{"delta": {"content": "lo"}, "finish_reason": "stop"}]}\n\n',
        b"data: [DONE]\n\n",
    )
    texts, reply = run(data, step)
    assert texts == ["Hel", "lo"]
    assert reply.content == "Hello"
    assert reply.finish_reason == "stop"


def test_a_last_event_without_a_blank_line_still_counts() -> None:
    texts, reply = run(sse_response(b'data: {"choices": [{"delta": {"content": "end"}}]}'))
    assert texts == ["end"]
    assert reply.content == "end"


def test_a_json_answer_to_a_stream_request_is_read_whole() -> None:
    body = b'{"choices": [{"message": {"content": "whole"}, "finish_reason": "stop"}]}'
    data = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )
    texts, reply = run(data)
    assert texts == ["whole"]  # the whole text is one delta
    assert reply.content == "whole"


def test_an_error_event_in_a_stream_is_an_api_error() -> None:
    data = sse_response(b'data: {"error": {"message": "model overloaded"}}\n\n')
    with pytest.raises(llm.APIError, match="the stream reported an error: model overloaded"):
        run(data)


def test_an_error_status_may_be_retried() -> None:
    data = (
        b"HTTP/1.1 503 Service Unavailable\r\nretry-after-ms: 1500\r\nContent-Length: 4\r\n\r\nbusy"
    )
    with pytest.raises(Retry) as caught:
        run(data)
    assert caught.value.after == 1.5
    assert isinstance(caught.value.error, llm.APIError)
    assert str(caught.value.error) == (
        "flw.llm: POST http://h/v1/chat/completions: 503 Service Unavailable: busy"
    )
    assert caught.value.error.body == "busy"


def test_a_connection_closed_before_any_byte_may_be_retried_but_not_after() -> None:
    ex = exchange()
    with pytest.raises(Retry, match="before sending a response"):
        ex.feed_eof()
    ex = exchange()
    ex.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{")
    with pytest.raises(llm.ConnectionError, match="mid-body"):
        ex.feed_eof()


def test_a_stream_ends_at_done_without_waiting_for_the_body_to_end() -> None:
    ex = exchange()
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    events = (
        b'data: {"choices": [{"delta": {"content": "a"}}]}\n\n'
        b"data: [DONE]\n\n"
        b'data: {"choices": [{"delta": {"content": "after"}}]}\n\n'
    )
    assert ex.feed(head + b"%x\r\n%s\r\n" % (len(events), events)) == ["a"]
    assert ex.done  # the chunked body has not ended: the transport stops reading anyway
    assert not ex.http.done
    assert ex.end() == []
    assert ex.reply().content == "a"


def test_a_json_body_over_the_limit_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_exchange, "MAX_BODY_BYTES", 1 << 20)
    ex = exchange()
    ex.feed(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
    ex.feed(b" " * (1 << 20))
    with pytest.raises(llm.LLMError) as caught:
        ex.feed(b"{}")
    assert str(caught.value) == (
        "flw.llm: POST http://h/v1/chat/completions: the response body is larger than 1 MiB"
    )


def test_an_error_body_is_kept_up_to_1_mib() -> None:
    ex = exchange()
    ex.feed(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\r\n")
    for _ in range(3):
        ex.feed(b"e" * (1 << 20))
    ex.feed_eof()
    with pytest.raises(llm.APIError) as caught:
        ex.end()
    assert len(caught.value.body) == 1 << 20


def test_a_stream_line_over_the_limit_is_an_llm_error() -> None:
    ex = exchange()
    ex.feed(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
    with pytest.raises(llm.LLMError, match=r"POST http://h/v1/chat/completions: a line .* 16 MiB"):
        feed_many(ex.feed, b"x" * (1 << 20), 17)


def test_a_streamed_reply_over_the_limit_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_exchange, "MAX_REPLY_CHARS", 1 << 20)
    ex = exchange()
    ex.feed(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
    event = b'data: {"choices": [{"delta": {"content": "%s"}}]}\n\n' % (b"x" * 1000)
    with pytest.raises(llm.LLMError, match="the streamed reply is longer than 1 Mi characters"):
        feed_many(ex.feed, event, 1100)
