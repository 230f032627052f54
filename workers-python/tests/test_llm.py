"""flw.llm against a real loopback OpenAI-compatible server (../tests/openai_server.py).

No mocks: every request goes over a socket to the server, which records what
it received and how each reply ended.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable, Literal

import pytest

import flw
from flw import Context, llm
from flw._context import _CURRENT
from llm_helpers import HANG, LONG, cancel_achat_after, closed, of_kind


@pytest.fixture
def server(openai_server: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The loopback server, configured through the environment as a user would."""
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("OPENAI_MODEL", "loopback")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    return openai_server


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_MODEL"):
        monkeypatch.delenv(name, raising=False)


@contextlib.contextmanager
def current(ctx: Context) -> Iterator[Context]:
    """Make ``ctx`` the current context, as the worker does around a call."""
    token = _CURRENT.set(ctx)
    try:
        yield ctx
    finally:
        _CURRENT.reset(token)


def attached() -> tuple[Context, list[dict[str, Any]]]:
    sent: list[dict[str, Any]] = []
    ctx = Context(7, "t")
    ctx._attach(sent.append)
    return ctx, sent


def bodies(server: Any) -> list[dict[str, Any]]:
    return [e["body"] for e in of_kind(server.events, "request")]


# -- streaming --------------------------------------------------------------------


def test_deltas_arrive_one_by_one_before_the_stream_ends(server: Any) -> None:
    server.set_rules([{"content": "one two three four", "token_delay": 0.2}])
    seen: list[tuple[str, bool]] = []

    def on_delta(text: str) -> None:
        seen.append((text, bool(of_kind(server.events, "done"))))

    reply = llm.chat("go", on_delta=on_delta)
    assert [text for text, _ in seen] == ["one", " two", " three", " four"]
    assert not seen[0][1], "the first delta came only after the whole reply"
    assert reply.content == "one two three four"
    assert reply.finish_reason == "stop"
    assert reply.usage == {"prompt_tokens": 1, "completion_tokens": 4, "total_tokens": 5}
    assert reply.model == "loopback"
    assert reply.raw["usage"] == reply.usage  # the last chunk: the usage one
    [body] = bodies(server)
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


def test_chunks_go_to_the_running_call_in_order(server: Any) -> None:
    ctx, sent = attached()
    with current(ctx):
        reply = llm.chat("one two three")
    assert sent == [
        {"type": "chunk", "id": 7, "data": token} for token in ["echo:", " one", " two", " three"]
    ]
    assert reply.content == "echo: one two three"


def test_a_detached_context_gets_no_chunks(server: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="flw")
    seen: list[str] = []
    with current(Context()):
        reply = llm.chat("a b", on_delta=seen.append)
    assert seen == ["echo:", " a", " b"]
    assert reply.content == "echo: a b"
    assert not [r for r in caplog.records if "chunk" in r.getMessage()]


def test_stream_iterates_the_deltas_then_has_the_reply(server: Any) -> None:
    stream = llm.stream("x y", system="Be brief.")
    with pytest.raises(llm.LLMError, match="not ended"):
        _ = stream.reply
    assert list(stream) == ["echo:", " x", " y"]
    assert stream.reply.content == "echo: x y"
    assert stream.reply.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "x y"},
        {"role": "assistant", "content": "echo: x y"},
    ]


def test_closing_a_stream_early_closes_the_connection(server: Any) -> None:
    server.set_rules([{"content": LONG, "token_delay": 0.05}])
    with llm.stream("go") as stream:
        assert next(stream) == "tok"
        assert next(stream) == " tok"
    events = server.wait_for(closed, timeout=HANG)
    [gone] = of_kind(events, "client_closed")
    assert gone["tokens_sent"] < gone["tokens"] == 400


def test_astream(server: Any) -> None:
    async def main() -> tuple[list[str], llm.Reply]:
        stream = llm.astream("p q")
        texts = [text async for text in stream]
        return texts, stream.reply

    texts, reply = asyncio.run(main())
    assert texts == ["echo:", " p", " q"]
    assert reply.content == "echo: p q"


def test_an_async_on_delta_is_awaited(server: Any) -> None:
    seen: list[str] = []

    async def on_delta(text: str) -> None:
        await asyncio.sleep(0)
        seen.append(text)

    reply = asyncio.run(llm.achat("a b", on_delta=on_delta))
    assert seen == ["echo:", " a", " b"]
    assert reply.content == "echo: a b"
    with pytest.raises(TypeError, match="on_delta returned a coroutine"):
        llm.chat("a b", on_delta=on_delta)


def test_not_streamed(server: Any) -> None:
    seen: list[str] = []
    ctx, sent = attached()
    with current(ctx):
        reply = llm.chat("hello", stream=False, on_delta=seen.append)
    assert reply.content == "echo: hello"
    assert reply.finish_reason == "stop"
    assert reply.usage is not None
    assert reply.raw["object"] == "chat.completion"
    # the whole text is one delta: on_delta and the running call's chunks get it once
    assert seen == ["echo: hello"]
    assert sent == [{"type": "chunk", "id": 7, "data": "echo: hello"}]
    [body] = bodies(server)
    assert body["stream"] is False
    assert "stream_options" not in body
    assert list(llm.stream("x", extra={"stream": False})) == ["echo: x"]  # JSON to a stream


@pytest.mark.parametrize("stream", [True, False])
def test_chunks_false_keeps_the_deltas_out_of_the_call(server: Any, stream: bool) -> None:
    seen: list[str] = []
    ctx, sent = attached()
    with current(ctx):
        reply = llm.chat("a b", stream=stream, chunks=False, on_delta=seen.append)
        asyncio.run(llm.achat("a b", stream=stream, chunks=False))
        assert list(llm.stream("a b", chunks=False)) == ["echo:", " a", " b"]
    assert reply.content == "echo: a b"
    assert "".join(seen) == "echo: a b"
    assert sent == []


def test_the_request_body(server: Any) -> None:
    messages = [{"role": "user", "content": "hi"}]
    before = [dict(m) for m in messages]
    reply = llm.chat(
        messages,
        system="sys",
        temperature=0.2,
        max_tokens=10,
        tool_choice="none",
        extra={"seed": 1, "temperature": 0.5},
    )
    assert messages == before  # not changed
    [body] = bodies(server)
    assert body == {
        "model": "loopback",
        "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.5,
        "max_tokens": 10,
        "tool_choice": "none",
        "seed": 1,
    }
    assert of_kind(server.events, "request")[0]["authorization"] is None
    # the reply continues the conversation
    llm.chat([*reply.messages, {"role": "user", "content": "more"}])
    assert bodies(server)[1]["messages"][2:] == [
        {"role": "assistant", "content": "echo: hi"},
        {"role": "user", "content": "more"},
    ]


def test_json_mode(server: Any) -> None:
    server.set_rules([{"content": '{"answer": 42}'}])
    reply = llm.chat("answer", json=True)
    assert reply.json() == {"answer": 42}
    assert bodies(server)[0]["response_format"] == {"type": "json_object"}
    server.set_rules([{"content": "I think 42"}])
    with pytest.raises(llm.LLMError, match="'I think 42'"):
        llm.chat("answer", json=True).json()


# -- tools ----------------------------------------------------------------------------


def test_tools_from_a_flw_tool_a_function_and_a_dict(server: Any) -> None:
    @flw.tool(name="geo.weather")
    def weather(city: str, unit: Literal["C", "F"] = "C") -> str:
        """Current weather of a city.

        Args:
            city: The city.
        """
        return f"Sunny in {city}"

    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    lookup = {
        "type": "function",
        "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
    }
    server.set_rules(
        [
            {
                "tool_calls": [
                    {"name": "geo_weather", "arguments": {"city": "Paris"}},
                    {"name": "add", "arguments": {"a": 1, "b": 2}},
                ]
            }
        ]
    )
    reply = llm.chat("go", tools=[weather, add, lookup], tool_choice="auto")
    assert [(c.name, c.arguments) for c in reply.tool_calls] == [
        ("geo_weather", {"city": "Paris"}),
        ("add", {"a": 1, "b": 2}),
    ]
    assert reply.finish_reason == "tool_calls"
    assert reply.message["tool_calls"][1]["function"] == {
        "name": "add",
        "arguments": '{"a": 1, "b": 2}',
    }
    [body] = bodies(server)
    assert body["tool_choice"] == "auto"
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "geo_weather",
                "description": "Current weather of a city.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "city": {"type": "string", "description": "The city."},
                        "unit": {"type": "string", "enum": ["C", "F"], "default": "C"},
                    },
                    "required": ["city"],
                    "additionalProperties": False,
                },
            },
        },
        {
            "type": "function",
            "function": {
                "name": "add",
                "description": "Add two numbers.",
                "parameters": {
                    "type": "object",
                    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                    "required": ["a", "b"],
                    "additionalProperties": False,
                },
            },
        },
        lookup,
    ]
    assert [t.name for t in flw.registered_tools()] == ["geo.weather"]  # add was not registered


WEATHER_RULES = [
    {"match": "weather", "tool_calls": [{"name": "weather", "arguments": {"city": "Paris"}}]},
    {"match": "^Sunny", "content": "It is sunny in Paris."},
    {"match": "^error:", "content": "Sorry, that failed."},
]


def test_run_tools_over_two_turns(server: Any) -> None:
    calls: list[str] = []

    def weather(city: str) -> str:
        """The weather of a city."""
        calls.append(city)
        return f"Sunny, 21 C in {city}"

    server.set_rules(WEATHER_RULES)
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    reply = llm.run_tools(messages, tools=[weather], system="You help.")
    assert calls == ["Paris"]
    assert reply.content == "It is sunny in Paris."
    assert len(messages) == 1  # the caller's list is not changed
    call_id = reply.messages[2]["tool_calls"][0]["id"]
    assert reply.messages == [
        {"role": "system", "content": "You help."},
        messages[0],
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": "Sunny, 21 C in Paris"},
        {"role": "assistant", "content": "It is sunny in Paris."},
    ]
    first, second = bodies(server)
    assert first["messages"] == reply.messages[:2]
    assert second["messages"] == reply.messages[:4]
    assert second["tools"] == first["tools"]


@pytest.mark.parametrize(
    ("arguments", "name", "error"),
    [
        ('{"city": ', "weather", "error: weather: the arguments are not valid JSON"),
        ("[1, 2]", "weather", "error: weather: the arguments are a list, not an object"),
        (
            {},
            "weather",
            "error: weather: InvalidArguments: tool 'weather': missing required argument",
        ),
        ({"city": "Atlantis"}, "weather", "error: weather: ValueError: no weather in Atlantis"),
        ({}, "nope", "error: nope: no such tool (tools: weather)"),
    ],
)
def test_run_tools_sends_errors_back_to_the_model(
    server: Any, arguments: Any, name: str, error: str
) -> None:
    def weather(city: str) -> str:
        """The weather of a city."""
        raise ValueError(f"no weather in {city}")

    server.set_rules(
        [
            {
                "match": "weather",
                "times": 1,
                "tool_calls": [{"name": name, "arguments": arguments}],
            },
            {"match": "^error:", "content": "Sorry, that failed."},
        ]
    )
    reply = llm.run_tools("weather?", tools=[weather])
    assert reply.content == "Sorry, that failed."
    tool_message = reply.messages[2]
    assert tool_message["role"] == "tool"
    assert tool_message["content"].startswith(error), tool_message["content"]


def test_run_tools_results_that_are_not_strings_are_json(server: Any) -> None:
    def stats(city: str) -> dict[str, Any]:
        """Numbers about a city."""
        return {"city": city, "people": 2_100_000, "tags": ("old", "big")}

    server.set_rules(
        [
            {"match": "stats", "tool_calls": [{"name": "stats", "arguments": {"city": "Paris"}}]},
            {"content": "ok"},
        ]
    )
    reply = llm.run_tools("stats?", tools=[stats])
    assert (
        reply.messages[2]["content"]
        == '{"city": "Paris", "people": 2100000, "tags": ["old", "big"]}'
    )


def test_run_tools_calls_async_tools(server: Any) -> None:
    async def weather(city: str) -> str:
        """The weather of a city."""
        await asyncio.sleep(0)
        return f"Sunny in {city}"

    server.set_rules(WEATHER_RULES)
    assert llm.run_tools("weather?", tools=[weather]).content == "It is sunny in Paris."

    async def main() -> llm.Reply:
        return await llm.arun_tools("weather?", tools=[weather])

    assert asyncio.run(main()).content == "It is sunny in Paris."

    async def sync_loop_in_async_code() -> None:
        llm.run_tools("weather?", tools=[weather])

    with pytest.raises(llm.LLMError, match=r"await llm\.arun_tools"):
        asyncio.run(sync_loop_in_async_code())
    assert len(bodies(server)) == 4  # two for each loop above; the third refused at once


def test_arun_tools_runs_sync_tools_in_a_thread(server: Any) -> None:
    threads: list[str] = []

    def weather(city: str) -> str:
        """The weather of a city."""
        threads.append(threading.current_thread().name)
        return f"Sunny in {city}"

    server.set_rules(WEATHER_RULES)
    reply = asyncio.run(llm.arun_tools("weather?", tools=[weather]))
    assert reply.content == "It is sunny in Paris."
    assert threads
    assert threads[0] != threading.current_thread().name


def test_run_tools_refuses_a_dict_tool_before_calling_the_model(server: Any) -> None:
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    spec = {"type": "function", "function": {"name": "weather", "parameters": {}}}
    server.set_rules(WEATHER_RULES)
    message = r"run_tools: tools\[1\] \('weather'\) is an OpenAI tool dict, which run_tools cannot"
    with pytest.raises(TypeError, match=message):
        llm.run_tools("weather?", tools=[add, spec])
    with pytest.raises(TypeError, match=r"arun_tools: tools\[0\] \('weather'\)"):
        asyncio.run(llm.arun_tools("weather?", tools=[spec]))
    assert server.events == []  # no model call was spent


def test_run_tools_stops_after_max_turns(server: Any) -> None:
    def weather(city: str) -> str:
        """The weather of a city."""
        return "weather again"

    server.set_rules(WEATHER_RULES)
    with pytest.raises(llm.LLMError, match=r"after 2 model calls \(max_turns=2\)"):
        llm.run_tools("weather?", tools=[weather], max_turns=2)
    assert len(bodies(server)) == 2


# -- errors and retries ------------------------------------------------------------


def test_429_waits_for_retry_after_then_succeeds(server: Any) -> None:
    server.set_rules([{"status": 429, "retry_after": 1, "times": 1}])
    ctx, sent = attached()
    started = time.monotonic()
    with current(ctx):
        reply = llm.chat("hi")
    took = time.monotonic() - started
    assert reply.content == "echo: hi"
    assert 0.95 <= took < HANG, took  # the Retry-After wait was honoured
    assert [e["event"] for e in server.events] == ["request", "error_reply", "request", "done"]
    [log] = [m for m in sent if m["type"] == "log"]
    assert log["level"] == "info"
    assert "429 Too Many Requests" in log["message"]
    assert "retry 1 of 2 in 1.00 s" in log["message"]


def test_a_retry_after_above_60_s_is_not_waited_for(server: Any) -> None:
    server.set_rules([{"status": 429, "retry_after": 120}])
    with pytest.raises(llm.APIError, match="retry after 120 s") as caught:
        llm.chat("hi")
    assert caught.value.status == 429
    assert len(bodies(server)) == 1


def test_500_exhausts_the_retries(server: Any) -> None:
    server.set_rules([{"status": 500, "error": "the model fell over"}])
    with pytest.raises(llm.APIError) as caught:
        llm.chat("hi", max_retries=1)
    error = caught.value
    assert error.status == 500
    assert error.body["error"]["message"] == "the model fell over"
    assert str(error) == (
        f"flw.llm: POST {server.base_url}/chat/completions: 500 Internal Server Error: "
        "the model fell over (after 1 retry)"
    )
    assert len(of_kind(server.events, "error_reply")) == 2


def test_400_is_not_retried(server: Any) -> None:
    server.set_rules([{"status": 400, "error": "bad model"}])
    with pytest.raises(llm.APIError, match=r"400 Bad Request: bad model$"):
        llm.chat("hi")
    assert len(bodies(server)) == 1


def test_api_key(openai_server: Any, monkeypatch: pytest.MonkeyPatch, no_env: None) -> None:
    with type(openai_server)(api_key="sekret") as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        with pytest.raises(llm.APIError) as caught:
            llm.chat("hi", model="m")
        assert caught.value.status == 401
        assert str(caught.value) == (
            f"flw.llm: POST {server.base_url}/chat/completions: 401 Unauthorized: "
            "Missing API key. (check OPENAI_API_KEY or api_key=)"
        )
        monkeypatch.setenv("OPENAI_API_KEY", "sekret")
        assert llm.chat("hi", model="m").content == "echo: hi"
        with pytest.raises(llm.APIError, match="401 Unauthorized: Incorrect API key"):
            llm.chat("hi", model="m", api_key="wrong")
        assert [e["authorization"] for e in of_kind(server.events, "request")] == [
            None,
            "Bearer sekret",
            "Bearer wrong",
        ]


def test_a_client_holds_its_endpoint_key_and_model(openai_server: Any, no_env: None) -> None:
    client = llm.Client(base_url=openai_server.base_url + "/", api_key="sk-secret", model="mine")
    assert client.chat("hi").content == "echo: hi"
    assert client.chat("hi", model="other", stream=False).model == "other"
    requests = of_kind(openai_server.events, "request")
    assert [(e["model"], e["authorization"]) for e in requests] == [
        ("mine", "Bearer sk-secret"),
        ("other", "Bearer sk-secret"),
    ]
    assert "secret" not in repr(client)


def test_timeout(server: Any) -> None:
    server.set_rules([{"content": "slow reply", "token_delay": 30}])
    started = time.monotonic()
    with pytest.raises(llm.TimeoutError) as caught:
        llm.chat("hi", timeout=0.3)
    assert time.monotonic() - started < HANG
    assert isinstance(caught.value, builtins.TimeoutError)
    assert isinstance(caught.value, llm.LLMError)
    message = str(caught.value)
    assert f"POST {server.base_url}/chat/completions" in message
    assert "timeout=0.3" in message
    assert len(bodies(server)) == 1  # a timeout is not retried


def test_async_timeout(server: Any) -> None:
    server.set_rules([{"content": "slow reply", "token_delay": 30}])
    with pytest.raises(llm.TimeoutError, match=r"timeout=0\.3"):
        asyncio.run(llm.achat("hi", timeout=0.3))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_connection_refused_is_retried_then_a_connection_error(no_env: None) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(llm.ConnectionError, match=r"cannot connect to 127\.0\.0\.1") as caught:
        llm.chat("hi", base_url=url, model="m", max_retries=0)
    assert isinstance(caught.value, builtins.ConnectionError)
    started = time.monotonic()
    with pytest.raises(llm.ConnectionError, match=r"\(after 1 retry\)$"):
        asyncio.run(llm.achat("hi", base_url=url, model="m", max_retries=1))
    assert 0.3 <= time.monotonic() - started < HANG


# -- configuration ------------------------------------------------------------------


def test_no_endpoint(no_env: None) -> None:
    with pytest.raises(llm.ConfigError) as caught:
        llm.chat("hi", model="m")
    assert str(caught.value) == (
        "flw.llm: no model endpoint: set OPENAI_BASE_URL (for example "
        "http://localhost:11434/v1 for Ollama) or OPENAI_API_KEY (for api.openai.com), "
        "or pass base_url="
    )


def test_no_model(no_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:11434/v1")
    with pytest.raises(llm.ConfigError, match="OPENAI_MODEL") as caught:
        llm.chat("hi")
    assert "model=" in str(caught.value)


def test_a_key_alone_means_api_openai_com(no_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    assert llm.Client()._base_url(None, "k")[0] == "https://api.openai.com/v1"
    with pytest.raises(llm.ConfigError, match="OPENAI_MODEL"):
        llm.chat("hi")  # the endpoint was found: the model is what is missing


def test_bad_base_urls_say_where_they_came_from(
    no_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "localhost:11434/v1")
    with pytest.raises(llm.ConfigError, match="'localhost:11434/v1' from OPENAI_BASE_URL"):
        llm.chat("hi", model="m")
    with pytest.raises(llm.ConfigError, match="'ftp://h' from the base_url= argument"):
        llm.chat("hi", model="m", base_url="ftp://h")


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match=r"messages\[0\] is a str"):
        llm.chat(["hi"], model="m", base_url="http://h")  # type: ignore[list-item]


@pytest.mark.parametrize("value", [0, -1, float("inf"), float("nan"), 86401, True, "5"])
def test_bad_timeouts(value: Any, no_env: None) -> None:
    with pytest.raises(ValueError, match=r"llm\.Client\(timeout=\) must be a number of seconds"):
        llm.Client(timeout=value)
    with pytest.raises(ValueError, match=r"flw\.llm: timeout= must be .* at most 86400 \(24 h\)"):
        llm.chat("hi", model="m", base_url="http://h", timeout=value)
    client = llm.Client(base_url="http://h", model="m")
    client.timeout = value  # set after the client was made: checked at the call
    with pytest.raises(ValueError, match=r"llm\.Client\(timeout=\)"):
        client.chat("hi")


@pytest.mark.parametrize("value", [-1, 101, 1.0, True, None])
def test_bad_max_retries(value: Any, no_env: None) -> None:
    message = r"max_retries=\) must be an integer from 0 to 100"
    with pytest.raises(ValueError, match=message):
        llm.Client(max_retries=value)
    if value is not None:
        with pytest.raises(ValueError, match=r"flw\.llm: max_retries= must be an integer"):
            llm.chat("hi", model="m", base_url="http://h", max_retries=value)


def test_the_longest_timeout_and_most_retries_are_taken(server: Any) -> None:
    client = llm.Client(timeout=86400, max_retries=100)
    assert client.chat("hi").content == "echo: hi"
    assert llm.chat("hi", timeout=86400.0, max_retries=0).content == "echo: hi"


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("sk-abc\n", "a line break (character 7 of 7)"),
        ("sk-abc\r\nX-Evil: 1", "a line break (character 7 of 17)"),
        ("sk-\x1babc", "a control character (character 4 of 7)"),
        ("sk-\u2013abc", "a character outside Latin-1 (character 4 of 7)"),
    ],
)
def test_an_api_key_that_cannot_be_a_header(
    server: Any, monkeypatch: pytest.MonkeyPatch, key: str, problem: str
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", key)
    attempts: list[tuple[str, Callable[[], Any]]] = [
        ("OPENAI_API_KEY", lambda: llm.chat("hi")),
        ("the api_key= argument", lambda: llm.chat("hi", api_key=key)),
        ("llm.Client(api_key=)", lambda: llm.Client(api_key=key).chat("hi")),
    ]
    for source, attempt in attempts:
        with pytest.raises(llm.ConfigError) as caught:
            attempt()
        assert str(caught.value) == (
            f"flw.llm: the API key from {source} cannot be sent in a header: it contains {problem}"
        )
        assert "abc" not in str(caught.value)  # the key is never shown
    assert server.events == []  # nothing went on the wire
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fine\tkey\xe9")  # a tab and Latin-1 may be sent
    assert llm.chat("hi").content == "echo: hi"
    assert of_kind(server.events, "request")[0]["authorization"] == "Bearer sk-fine\tkey\xe9"


def test_a_base_url_with_spaces_and_non_ascii_is_percent_encoded(server: Any) -> None:
    url = server.base_url.replace("/v1", "/v1/x y/\u00fc")
    with pytest.raises(llm.APIError, match="404") as caught:
        llm.chat("hi", base_url=url, max_retries=0)
    assert "/v1/x%20y/%C3%BC/chat/completions: 404" in str(caught.value)
    with pytest.raises(llm.ConfigError, match="its host name is not valid"):
        llm.chat("hi", base_url="http://a\u2013b\u00a0c/v1")


def test_module_access() -> None:
    import flw.llm

    assert flw.llm is llm
    assert flw.llm.chat.__self__.__class__ is llm.Client  # type: ignore[attr-defined]
    # every type in the public signatures can be named from flw.llm
    for name in ("Messages", "OnDelta", "ToolLike", "Reply", "Stream", "AsyncStream"):
        assert name in llm.__all__
        assert getattr(llm, name) is not None


# -- cancellation ---------------------------------------------------------------------


def test_async_cancel_mid_stream_closes_the_connection(server: Any) -> None:
    server.set_rules([{"content": LONG, "token_delay": 0.05}])
    cancel_achat_after(2)
    events = server.wait_for(closed, timeout=HANG)
    [gone] = of_kind(events, "client_closed")
    assert 2 <= gone["tokens_sent"] < gone["tokens"]
    assert not of_kind(events, "done")


def in_a_thread(
    ctx: Context, work: Callable[[], Any]
) -> tuple[threading.Thread, list[BaseException]]:
    """Run ``work`` in a thread with ``ctx`` current, as the worker runs a sync tool."""
    outcome: list[BaseException] = []

    def run() -> None:
        with current(ctx):
            try:
                work()
            except BaseException as exc:
                outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_sync_cancel_from_another_thread_closes_the_connection(server: Any) -> None:
    server.set_rules([{"content": LONG, "token_delay": 0.05}])
    ctx, sent = attached()
    thread, outcome = in_a_thread(ctx, lambda: llm.chat("go"))
    deadline = time.monotonic() + HANG
    while len(sent) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    ctx._cancel()  # what the worker's reader thread does on a cancel message
    thread.join(HANG)
    assert not thread.is_alive(), "the blocked read was not woken"
    [error] = outcome
    assert isinstance(error, llm.Cancelled)
    assert "the call was cancelled" in str(error)
    events = server.wait_for(closed, timeout=HANG)
    [gone] = of_kind(events, "client_closed")
    assert 2 <= gone["tokens_sent"] < gone["tokens"]


def test_sync_cancel_during_connect(no_env: None) -> None:
    # A listener whose accept queue is full drops further SYNs: a connect to it hangs.
    with socket.create_server(("127.0.0.1", 0), backlog=0) as listener:
        filler = socket.create_connection(listener.getsockname())
        url = "http://{}:{}/v1".format(*listener.getsockname())
        ctx, _ = attached()
        thread, outcome = in_a_thread(
            ctx, lambda: llm.chat("hi", base_url=url, model="m", timeout=60)
        )
        time.sleep(0.3)  # the connect is under way
        assert thread.is_alive()
        ctx._cancel()
        thread.join(HANG)
        filler.close()
    assert not thread.is_alive(), "the connect was not woken"
    [error] = outcome
    assert isinstance(error, llm.Cancelled), error


def test_a_cancelled_call_does_not_connect(server: Any) -> None:
    ctx, _ = attached()
    ctx._cancel()
    with current(ctx), pytest.raises(llm.Cancelled):
        llm.chat("hi")
    assert server.events == []


def test_cancel_during_a_retry_wait(server: Any) -> None:
    server.set_rules([{"status": 503, "retry_after": 30}])
    ctx, _ = attached()
    threading.Timer(0.2, ctx._cancel).start()
    started = time.monotonic()
    with current(ctx), pytest.raises(llm.Cancelled):
        llm.chat("hi")
    assert time.monotonic() - started < HANG


# -- a server that holds the connection after [DONE] ------------------------------------


class HoldingServer:
    """Answers one request with a chunked SSE stream ending in ``[DONE]``, then holds on.

    It never sends the last chunk nor closes: a client that waited for the end
    of the body would hang until its timeout. ``client_closed`` is set when the
    client closes its end.
    """

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.base_url = "http://{}:{}/v1".format(*self.listener.getsockname())
        self.client_closed = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(65536)
            events = [
                b'data: {"choices": [{"index": 0, "delta": {"content": "all"}}]}\n\n',
                b'data: {"choices": [{"index": 0, "delta": {"content": " here"}}]}\n\n',
                b"data: [DONE]\n\n",
                b'data: {"choices": [{"index": 0, "delta": {"content": "never"}}]}\n\n',
            ]
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
                + b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events)
            )
            conn.settimeout(0.1)
            while not self.stop.is_set():  # hold the connection open
                try:
                    data = conn.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    data = b""
                if not data:
                    self.client_closed.set()
                    return

    def close(self) -> None:
        self.stop.set()
        self.thread.join(HANG)
        self.listener.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_reply_ends_at_done_even_if_the_server_holds_on(no_env: None, mode: str) -> None:
    server = HoldingServer()
    try:
        seen: list[str] = []
        options: dict[str, Any] = {"base_url": server.base_url, "model": "m", "timeout": 60}
        started = time.monotonic()
        if mode == "sync":
            reply = llm.chat("hi", on_delta=seen.append, **options)
        else:
            reply = asyncio.run(llm.achat("hi", on_delta=seen.append, **options))
        assert time.monotonic() - started < HANG
        assert reply.content == "all here"
        assert seen == ["all", " here"]
        assert server.client_closed.wait(HANG), "the connection was not closed after [DONE]"
    finally:
        server.close()


def test_the_readme_example(server: Any) -> None:
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Model calls: flw.llm\n", 1)[1].split("\n## ", 1)[0]
    [example] = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    namespace: dict[str, Any] = {"__name__": "readme"}
    exec(compile(example, "README.md", "exec"), namespace)
    server.set_rules(
        [
            {
                "match": "Oslo",
                "times": 1,
                "tool_calls": [{"name": "weather", "arguments": {"city": "Oslo"}}],
            },
            {"match": "^sunny", "content": "Sunny in Oslo."},
        ]
    )
    assert namespace["summarize"]("A long text.") == "echo: A long text."
    assert asyncio.run(namespace["forecast"]("Weather in Oslo?")) == "Sunny in Oslo."
    assert bodies(server)[0]["temperature"] == 0
    assert [t.name for t in flw.registered_tools()] == ["summarize", "forecast"]
