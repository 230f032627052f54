"""flw.llm inside a real worker process: tokens stream out as chunks of the call,
and cancelling the call over the protocol closes the model connection."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from conftest import FIXTURES, WorkerProcess
from llm_helpers import HANG, LONG, closed

SCRIPT = FIXTURES / "llm_tools.py"


@pytest.fixture
def worker(spawn: Callable[..., WorkerProcess], openai_server: Any) -> WorkerProcess:
    env = {
        "OPENAI_BASE_URL": openai_server.base_url,
        "OPENAI_MODEL": "loopback",
        "OPENAI_API_KEY": "",
    }
    started = spawn(SCRIPT, env=env)
    started.handshake()
    return started


@pytest.mark.parametrize("tool", ["ask", "aask"])
def test_tokens_stream_out_as_chunks(worker: WorkerProcess, tool: str) -> None:
    messages = worker.call(1, tool, {"prompt": "one two three"})
    assert messages[:-1] == [
        {"type": "chunk", "id": 1, "data": token} for token in ["echo:", " one", " two", " three"]
    ]
    assert messages[-1] == {"type": "result", "id": 1, "value": "echo: one two three"}


@pytest.mark.parametrize("tool", ["ask", "aask"])
def test_cancelling_the_call_closes_the_model_connection(
    worker: WorkerProcess, openai_server: Any, tool: str
) -> None:
    openai_server.set_rules([{"content": LONG, "token_delay": 0.05}])
    worker.send({"type": "call", "id": 2, "tool": tool, "args": {"prompt": "go"}})
    chunks = 0
    while chunks < 2:
        message = worker.recv(timeout=HANG)
        assert message["type"] == "chunk", message
        chunks += 1
    worker.send({"type": "cancel", "id": 2})
    reply = worker.collect(2, timeout=HANG)[-1]
    assert reply["type"] == "error"
    assert reply["kind"] == "cancelled"
    events = openai_server.wait_for(closed, timeout=HANG)
    [gone] = [e for e in events if e["event"] == "client_closed"]
    assert 2 <= gone["tokens_sent"] < gone["tokens"]
    assert not [e for e in events if e["event"] == "done"]
    # the worker goes on serving
    openai_server.set_rules([])
    assert worker.call(3, "ask", {"prompt": "still here"})[-1]["value"].startswith("echo:")


def test_run_tools_in_a_worker(worker: WorkerProcess, openai_server: Any) -> None:
    openai_server.set_rules(
        [
            {
                "match": "weather",
                "tool_calls": [{"name": "weather", "arguments": {"city": "Oslo"}}],
            },
            {"match": "^Sunny", "content": "Sunny in Oslo."},
        ]
    )
    messages = worker.call(4, "agent", {"question": "weather in Oslo?"})
    assert [m["data"] for m in messages if m["type"] == "chunk"] == ["Sunny", " in", " Oslo."]
    assert messages[-1]["value"] == {"answer": "Sunny in Oslo.", "messages": 4}
