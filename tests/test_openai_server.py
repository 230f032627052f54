"""The loopback OpenAI-compatible server (tests/openai_server.py) that other
tests, the examples and the notebook talk to: reply shapes, streaming, tool
calls, rules, errors, a client that goes away, and the command line."""

from __future__ import annotations

import http.client
import json
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from openai_server import OpenAIServer

SERVER_PY = Path(__file__).resolve().parent / "openai_server.py"


def chat_body(content: Any, *, stream: bool = False, model: str = "demo", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], "stream": stream, **extra}


def post(
    conn: http.client.HTTPConnection, path: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, http.client.HTTPMessage, Any]:
    """POSTs body (JSON unless bytes) and reads the whole JSON reply."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    conn.request("POST", path, data, {"Content-Type": "application/json", **(headers or {})})
    resp = conn.getresponse()
    return resp.status, resp.headers, json.loads(resp.read())


def get(conn: http.client.HTTPConnection, path: str) -> tuple[int, Any]:
    conn.request("GET", path)
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read())


def open_stream(conn: http.client.HTTPConnection, body: dict[str, Any]) -> http.client.HTTPResponse:
    conn.request("POST", "/v1/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/event-stream"
    assert resp.headers["Transfer-Encoding"] == "chunked"
    return resp


def next_sse(resp: http.client.HTTPResponse) -> tuple[str, Any] | None:
    """The next SSE block: ("comment", text) or ("data", JSON or "[DONE]");
    None at the end of the stream."""
    lines: list[str] = []
    while True:
        raw = resp.readline()
        if not raw:
            return None
        line = raw.decode().rstrip("\r\n")
        if line:
            lines.append(line)
            continue
        if not lines:
            continue
        assert len(lines) == 1, lines
        if lines[0].startswith(":"):
            return "comment", lines[0][1:].strip()
        assert lines[0].startswith("data: "), lines
        data = lines[0][len("data: ") :]
        return "data", data if data == "[DONE]" else json.loads(data)


def read_stream(resp: http.client.HTTPResponse) -> list[tuple[float, str, Any]]:
    """Every SSE block to the end, each with the time it arrived."""
    out = []
    while (block := next_sse(resp)) is not None:
        out.append((time.monotonic(), *block))
    return out


def deltas(blocks: list[tuple[float, str, Any]]) -> list[dict[str, Any]]:
    return [
        data["choices"][0]["delta"]
        for _, kind, data in blocks
        if kind == "data" and data != "[DONE]" and data["choices"]
    ]


@pytest.fixture
def server():
    with OpenAIServer() as s:
        yield s


@pytest.fixture
def conn(server: OpenAIServer):
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    yield c
    c.close()


def test_non_streaming_reply_shape_usage_and_keep_alive(server: OpenAIServer, conn: http.client.HTTPConnection):
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", server.base_url)
    server.set_rules([{"match": "weather", "content": "Sunny and  warm today."}])
    body = {
        "model": "demo",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is the weather?"},
        ],
        "temperature": 0.2,
        "max_tokens": 50,
    }
    status, headers, reply = post(conn, "/v1/chat/completions", body, {"Authorization": "Bearer anything"})
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    first_sock = conn.sock
    assert reply["id"] == "chatcmpl-1"
    assert reply["object"] == "chat.completion"
    assert isinstance(reply["created"], int)
    assert reply["model"] == "demo"
    assert reply["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "Sunny and  warm today."}, "finish_reason": "stop"}
    ]
    assert reply["usage"] == {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}

    # The same connection serves the next request (HTTP/1.1 keep-alive).
    status, _, reply = post(conn, "/v1/chat/completions", chat_body("again"))
    assert status == 200 and reply["id"] == "chatcmpl-2"
    assert conn.sock is first_sock

    events = server.events
    assert [e["event"] for e in events] == ["request", "done", "request", "done"]
    assert events[0] == {
        "event": "request",
        "request": 1,
        "stream": False,
        "model": "demo",
        "body": body,
        "authorization": "Bearer anything",
        "rule": 0,
    }
    assert events[1] == {"event": "done", "request": 1, "tokens": 4}
    assert events[2]["rule"] is None and events[2]["authorization"] is None


def test_echo_default_and_content_parts(server: OpenAIServer, conn: http.client.HTTPConnection):
    _, _, reply = post(conn, "/v1/chat/completions", chat_body("hello there"))
    assert reply["choices"][0]["message"]["content"] == "echo: hello there"

    parts = [
        {"type": "text", "text": "part one, "},
        {"type": "image_url", "image_url": {"url": "x"}},
        {"type": "text", "text": "part two"},
    ]
    _, _, reply = post(conn, "/v1/chat/completions", chat_body(parts))
    assert reply["choices"][0]["message"]["content"] == "echo: part one, part two"

    # The last user or tool message counts, not a later assistant one.
    body = {
        "model": "demo",
        "messages": [
            {"role": "user", "content": "call the tool"},
            {"role": "assistant", "content": None, "tool_calls": []},
            {"role": "tool", "tool_call_id": "call_1_0", "content": "42"},
        ],
    }
    _, _, reply = post(conn, "/v1/chat/completions", body)
    assert reply["choices"][0]["message"]["content"] == "echo: 42"


def test_match_any_sees_the_whole_transcript(server: OpenAIServer, conn: http.client.HTTPConnection):
    server.set_rules([{"match_any": r"pirate.*treasure", "content": "Arr!"}, {"match": "^x$", "content": "no"}])
    body = {
        "model": "demo",
        "messages": [
            {"role": "system", "content": "Talk like a pirate."},
            {"role": "user", "content": "Where is the treasure?"},
        ],
    }
    _, _, reply = post(conn, "/v1/chat/completions", body)
    assert reply["choices"][0]["message"]["content"] == "Arr!"
    _, _, reply = post(conn, "/v1/chat/completions", chat_body("treasure"))
    assert reply["choices"][0]["message"]["content"] == "echo: treasure"


def test_streamed_tokens_arrive_one_event_each_in_order(server: OpenAIServer, conn: http.client.HTTPConnection):
    content = "The quick brown fox\njumps over  the lazy dog. "
    server.set_rules([{"match": "fox", "content": content, "token_delay": 0.03}])
    resp = open_stream(conn, chat_body("tell me about the fox", stream=True))
    blocks = read_stream(resp)

    assert blocks[0][1:] == ("comment", "keep-alive")
    assert blocks[-1][1:] == ("data", "[DONE]")
    chunks = [data for _, kind, data in blocks if kind == "data" and data != "[DONE]"]
    assert all(
        c["object"] == "chat.completion.chunk" and c["id"] == "chatcmpl-1" and c["model"] == "demo" for c in chunks
    )
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    tokens = [c["choices"][0]["delta"]["content"] for c in chunks[1:-1]]
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[1:-1])
    assert tokens == ["The", " quick", " brown", " fox", "\njumps", " over", "  the", " lazy", " dog. "]
    assert "".join(tokens) == content

    # Each token was written (and flushed) on its own, token_delay apart.
    times = [t for t, kind, data in blocks if kind == "data" and data != "[DONE]"][1:-1]
    assert times[-1] - times[0] >= 0.03 * (len(times) - 1) * 0.8

    events = server.wait_for(lambda evs: any(e["event"] == "done" for e in evs))
    assert events[0]["stream"] is True
    assert events[-1] == {"event": "done", "request": 1, "tokens": 9}

    # The connection is still good after a chunked stream.
    first_sock = conn.sock
    status, _, _ = post(conn, "/v1/chat/completions", chat_body("after the stream"))
    assert status == 200 and conn.sock is first_sock


def test_stream_include_usage(server: OpenAIServer, conn: http.client.HTTPConnection):
    server.set_rules([{"content": "one two three"}])
    resp = open_stream(conn, chat_body("count to three", stream=True, stream_options={"include_usage": True}))
    data = [d for _, kind, d in read_stream(resp) if kind == "data"]
    assert data[-1] == "[DONE]"
    assert data[-2]["choices"] == []
    assert data[-2]["usage"] == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
    assert data[-3]["choices"][0]["finish_reason"] == "stop"


TOOL_RULES = [
    {
        "match": "weather",
        "tool_calls": [
            {"name": "get_weather", "arguments": {"city": "Paris", "days": 3}},
            {"name": "get_time", "arguments": '{"tz": "Europe/Paris"}', "id": "call_custom"},
        ],
    }
]


def test_tool_calls_non_streamed(server: OpenAIServer, conn: http.client.HTTPConnection):
    server.set_rules(TOOL_RULES)
    body = chat_body("weather in Paris?", tools=[{"type": "function", "function": {"name": "get_weather"}}])
    _, _, reply = post(conn, "/v1/chat/completions", body)
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    calls = choice["message"]["tool_calls"]
    assert [(c["id"], c["type"], c["function"]["name"]) for c in calls] == [
        ("call_1_0", "function", "get_weather"),
        ("call_custom", "function", "get_time"),
    ]
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris", "days": 3}
    assert calls[1]["function"]["arguments"] == '{"tz": "Europe/Paris"}'
    assert server.events[0]["body"]["tools"][0]["function"]["name"] == "get_weather"


def test_tool_calls_streamed(server: OpenAIServer, conn: http.client.HTTPConnection):
    server.set_rules(TOOL_RULES)
    resp = open_stream(conn, chat_body("weather in Paris?", stream=True))
    blocks = read_stream(resp)
    assert server.events[-1]["event"] == "done"  # recorded before the stream ended
    ds = deltas(blocks)
    assert ds[0] == {"role": "assistant", "content": ""}
    assert ds[-1] == {}
    finish = [d for _, kind, d in blocks if kind == "data" and d != "[DONE]"][-1]["choices"][0]["finish_reason"]
    assert finish == "tool_calls"

    calls: dict[int, dict[str, Any]] = {}
    pieces: dict[int, int] = {}
    for delta in ds[1:-1]:
        assert list(delta) == ["tool_calls"]
        (part,) = delta["tool_calls"]
        index = part["index"]
        if "id" in part:
            assert index not in calls and part["type"] == "function" and part["function"]["arguments"] == ""
            calls[index] = {"id": part["id"], "name": part["function"]["name"], "arguments": ""}
            pieces[index] = 0
        else:
            calls[index]["arguments"] += part["function"]["arguments"]
            pieces[index] += 1
    assert [calls[i]["id"] for i in (0, 1)] == ["call_1_0", "call_custom"]
    assert [calls[i]["name"] for i in (0, 1)] == ["get_weather", "get_time"]
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris", "days": 3}
    assert json.loads(calls[1]["arguments"]) == {"tz": "Europe/Paris"}
    assert all(2 <= n <= 3 for n in pieces.values())


def test_times_then_status_with_retry_after(server: OpenAIServer, conn: http.client.HTTPConnection):
    server.set_rules(
        [
            {"times": 1, "status": 429, "retry_after": 1.0, "error": "slow down"},
            {"times": 1, "content": "second"},
            {"content": "ok"},
        ]
    )
    status, headers, reply = post(conn, "/v1/chat/completions", chat_body("hi"))
    assert status == 429
    assert headers["Retry-After"] == "1"
    assert reply["error"]["message"] == "slow down"
    assert reply["error"]["type"]

    for expected in ("second", "ok", "ok"):
        status, headers, reply = post(conn, "/v1/chat/completions", chat_body("hi"))
        assert status == 200 and "Retry-After" not in headers
        assert reply["choices"][0]["message"]["content"] == expected

    events = server.events
    assert [e["rule"] for e in events if e["event"] == "request"] == [0, 1, 2, 2]
    assert events[1] == {"event": "error_reply", "request": 1, "status": 429, "retry_after": 1}

    # set_rules resets the use counts.
    server.set_rules([{"times": 1, "status": 503}])
    assert post(conn, "/v1/chat/completions", chat_body("hi"))[0] == 503
    assert post(conn, "/v1/chat/completions", chat_body("hi"))[0] == 200


def test_api_key_required_when_configured():
    with OpenAIServer(api_key="sk-right") as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        for headers in ({}, {"Authorization": "Bearer sk-wrong"}):
            status, _, reply = post(conn, "/v1/chat/completions", chat_body("hi"), headers)
            assert status == 401
            assert set(reply["error"]) >= {"message", "type"}
        status, _, reply = post(conn, "/v1/chat/completions", chat_body("hi"), {"Authorization": "Bearer sk-right"})
        assert status == 200 and reply["choices"][0]["message"]["content"] == "echo: hi"
        conn.close()
        requests = [e for e in server.events if e["event"] == "request"]
        assert [e["authorization"] for e in requests] == [None, "Bearer sk-wrong", "Bearer sk-right"]
        errors = [e for e in server.events if e["event"] == "error_reply"]
        assert [(e["request"], e["status"]) for e in errors] == [(1, 401), (2, 401)]


def test_bad_requests_and_other_routes(server: OpenAIServer, conn: http.client.HTTPConnection):
    for body in (b"{not json", b"", json.dumps({"model": "demo"}).encode(), b"[1, 2]"):
        status, _, reply = post(conn, "/v1/chat/completions", body)
        assert status == 400, body
        assert reply["error"]["type"] == "invalid_request_error" and reply["error"]["message"]
    status, _, reply = post(conn, "/v1/chat/completions", chat_body("fine"))
    assert status == 200 and reply["id"] == "chatcmpl-5"
    assert [e["status"] for e in server.events if e["event"] == "error_reply"] == [400] * 4

    assert get(conn, "/v1/models") == (200, {"object": "list", "data": [{"id": "loopback", "object": "model"}]})
    status, reply = get(conn, "/v1/nothing")
    assert status == 404 and "error" in reply
    status, _, reply = post(conn, "/v2/chat/completions", chat_body("x"))
    assert status == 404 and "error" in reply

    status, _, reply = post(conn, "/_rules", [{"match": "("}])
    assert status == 400
    with pytest.raises(ValueError):
        server.set_rules([{"times": "twice"}])


def test_client_closing_mid_stream_is_recorded(server: OpenAIServer):
    server.set_rules([{"match": "long", "content": "word ", "repeat": 200, "token_delay": 0.01}])
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    resp = open_stream(conn, chat_body("a long story", stream=True))
    got = 0
    while got < 4:
        block = next_sse(resp)
        assert block is not None
        if block[0] == "data" and block[1]["choices"][0]["delta"].get("content", "").strip():
            got += 1
    resp.close()
    conn.close()
    events = server.wait_for(lambda evs: any(e["event"] == "client_closed" for e in evs), timeout=3)
    (closed,) = [e for e in events if e["event"] == "client_closed"]
    assert closed["request"] == 1 and closed["tokens"] == 200
    assert 4 <= closed["tokens_sent"] < 200
    assert not any(e["event"] == "done" for e in events)


def test_stop_ends_a_stream_in_flight():
    server = OpenAIServer(rules=[{"content": "slow " * 50}], token_delay=1.0).start()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    resp = open_stream(conn, chat_body("x", stream=True))
    assert next_sse(resp) == ("comment", "keep-alive")
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2
    done = False
    try:
        while (block := next_sse(resp)) is not None:
            done = done or block == ("data", "[DONE]")
    except (OSError, http.client.HTTPException):
        pass  # the connection was cut mid-chunk
    assert not done
    conn.close()
    assert [e["event"] for e in server.events][-1] == "client_closed"


def test_wait_for_names_what_it_waited_for(server: OpenAIServer):
    with pytest.raises(AssertionError, match="the moon"):
        server.wait_for(lambda events: False, timeout=0.1, what="the moon")

    def never_true(events: list[dict[str, Any]]) -> bool:
        return False

    with pytest.raises(AssertionError, match="never_true"):
        server.wait_for(never_true, timeout=0.05)
    with pytest.raises(AssertionError, match="lambda events: 1 == 2"):
        server.wait_for(lambda events: 1 == 2, timeout=0.05)
    server.clear_events()
    assert server.wait_for(lambda events: events == [], timeout=0.1) == []


def test_command_line_server():
    proc = subprocess.Popen(
        [sys.executable, str(SERVER_PY), "--token-delay", "0.005"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        assert ready, "the server printed nothing"
        first = proc.stdout.readline()
        match = re.fullmatch(r"listening on http://127\.0\.0\.1:(\d+)/v1\n", first)
        assert match, first
        conn = http.client.HTTPConnection("127.0.0.1", int(match.group(1)), timeout=5)
        assert post(conn, "/_rules", [{"match": "story", "content": "Once upon a time."}])[0] == 200
        resp = open_stream(conn, chat_body("Write a long story", stream=True))
        tokens = [d.get("content", "") for d in deltas(read_stream(resp))]
        assert "".join(tokens) == "Once upon a time."
        status, events = get(conn, "/_events")
        assert status == 200
        assert [(e["event"], e["request"]) for e in events] == [("request", 1), ("done", 1)]
        assert events[0]["body"]["messages"][0]["content"] == "Write a long story"
        assert post(conn, "/_clear", {})[0] == 200
        assert get(conn, "/_events") == (200, [])
        conn.close()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert err == ""
    assert out.splitlines() == [
        'request 1: stream, model demo, 1 messages, last: "Write a long story"',
        "request 1: sent 4 tokens, done",
    ]


CHILD = """
import json, os, signal, sys, urllib.request

def on_signal(signum, frame):
    print("got", signum, flush=True)
    sys.exit(5)

signal.signal(signal.SIGINT, on_signal)
signal.signal(signal.SIGTERM, on_signal)
body = {"model": os.environ["OPENAI_MODEL"], "messages": [{"role": "user", "content": sys.argv[1]}]}
request = urllib.request.Request(
    os.environ["OPENAI_BASE_URL"] + "/chat/completions",
    json.dumps(body).encode(),
    {"Content-Type": "application/json", "Authorization": "Bearer " + os.environ.get("OPENAI_API_KEY", "none")},
)
with urllib.request.urlopen(request, timeout=5) as reply:
    print(json.load(reply)["choices"][0]["message"]["content"], flush=True)
if sys.argv[2] == "wait":
    signal.pause()
sys.exit(3)
"""


def test_command_mode_runs_the_command_against_the_server(tmp_path: Path):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps([{"match": "greet", "content": "Hello from the rules."}]))
    out = subprocess.run(
        [
            sys.executable,
            str(SERVER_PY),
            "--rules",
            str(rules),
            "--api-key",
            "sk-x",
            "--",
            sys.executable,
            "-c",
            CHILD,
            "greet me",
            "exit",
        ],
        capture_output=True,
        text=True,
        timeout=10,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 3, out.stderr
    assert out.stdout == "Hello from the rules.\n"  # stdout is the command's alone
    log = out.stderr.splitlines()
    assert re.fullmatch(r"loopback model at http://127\.0\.0\.1:\d+/v1", log[0]), log
    assert log[1:] == [
        'request 1: no stream, model loopback, 1 messages, last: "greet me"',
        "request 1: sent 4 tokens, done",
    ]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_command_mode_passes_signals_on(sig: int):
    proc = subprocess.Popen(
        [sys.executable, str(SERVER_PY), "--", sys.executable, "-c", CHILD, "hi", "wait"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # no terminal: the signal reaches only the wrapper, which passes it on
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        assert ready and proc.stdout.readline() == "echo: hi\n"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 5, err
    assert out == f"got {int(sig)}\n"
    assert "request 1: sent 2 tokens, done" in err
