"""Model calls through the real flw binary: tools that use flw.llm (Python)
and llm (TypeScript) against the loopback OpenAI-compatible server.

Streaming deltas reach `flw call` and MCP clients in order and as they come;
a cancel mid-stream closes the model connection (by killing the worker's
group, or, in a shared worker that stays up, by the SDK itself); a 429 is
retried after its Retry-After; a tool-call loop runs to its answer.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from openai_server import OpenAIServer, tokenize

from conftest import FIXTURES, FLW, McpPipe, StderrReader, needs_node, wait_until

PY = FIXTURES / "llm_tools.py"
TS = FIXTURES / "llm_tools.ts"
SCRIPTS = pytest.mark.parametrize(
    "script",
    [PY, pytest.param(TS, marks=needs_node)],
    ids=["python", "typescript"],
)

STORY = " ".join(f"word{i}" for i in range(20))


@pytest.fixture
def model():
    with OpenAIServer() as server:
        yield server


def call(script: Path, tool: str, args: str, server: OpenAIServer, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [FLW, "call", str(script), tool, "--json", args, *extra],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=server.env(),
    )


@SCRIPTS
def test_flw_call_shows_each_delta_before_the_answer_ends(script, model):
    model.set_rules([{"match": "story", "content": STORY, "token_delay": 0.1}])
    proc = call(script, "ask", '{"prompt": "tell a story"}', model)
    err = StderrReader(proc)
    wait_until(lambda: err.seen("word0"), 60, "the first delta on stderr")
    # The first words are on the terminal while the model is still writing.
    assert not model.of("done"), "the whole answer was in before the first delta showed"
    assert proc.wait(timeout=60) == 0, err.text
    assert proc.stdout is not None and proc.stdout.read().decode().strip() == f'"{STORY}"'
    assert STORY in err.text  # the deltas, in order, with nothing between them
    [request] = model.of("request")
    assert request["body"]["stream"] is True and request["body"]["model"] == "loopback"


@SCRIPTS
def test_an_mcp_client_gets_each_delta_as_a_progress_message(script, model):
    model.set_rules([{"match": "story", "content": STORY, "token_delay": 0.02}])
    mcp = McpPipe(str(script), env=model.env())
    try:
        result, progress = mcp.call_with_progress(1, "ask", {"prompt": "a story"})
        assert result["content"][0]["text"] == STORY
        texts = [p["message"] for p in progress if p.get("message")]
        assert texts == tokenize(STORY)
        values = [p["progress"] for p in progress]
        assert values == sorted(set(values)), "progress must increase"
    finally:
        mcp.close()


def test_a_tools_own_progress_still_counts_around_its_chunks(model):
    model.set_rules([{"match": "story", "content": STORY}])
    mcp = McpPipe(str(PY), env=model.env())
    try:
        result, progress = mcp.call_with_progress(1, "ask_in_steps", {"prompt": "a story"})
        assert result["content"][0]["text"] == STORY
        messages = [p["message"] for p in progress]
        assert messages == ["asking", *tokenize(STORY), "answered"]
        assert [p["progress"] for p in progress][:: len(progress) - 1] == [1, 2]
        assert all(p["total"] == 2 for p in progress)  # the chunks repeat the tool's total
        values = [p["progress"] for p in progress]
        assert values == sorted(set(values))
    finally:
        mcp.close()


@SCRIPTS
def test_ctrl_c_mid_stream_closes_the_model_connection(script, model):
    model.set_rules([{"match": "essay", "content": "and on ", "repeat": 2000, "token_delay": 0.05}])
    proc = call(script, "ask", '{"prompt": "an endless essay"}', model)
    err = StderrReader(proc)
    wait_until(lambda: err.seen("and on and on"), 60, "the stream to start")
    proc.send_signal(signal.SIGINT)
    # cancel_grace (1 s) and kill_grace (2 s) bound it; 10 s catches a hang.
    wait_until(lambda: model.of("client_closed"), 10, "the model connection to close")
    assert proc.wait(timeout=30) != 0
    [closed] = model.of("client_closed")
    assert 0 < closed["tokens_sent"] < closed["tokens"]
    assert not model.of("done")


SHARED = """
[pools.llm]
script = "{script}"
mode = "shared"
instances = 1
cancel_grace = "60s"
"""


@pytest.mark.parametrize(
    ("script", "tool"),
    [
        (PY, "ask"),
        (PY, "aask"),
        pytest.param(TS, "ask", marks=needs_node),
    ],
    ids=["python-sync", "python-async", "typescript"],
)
def test_a_shared_worker_closes_the_model_connection_itself_on_cancel(tmp_path, model, script, tool):
    """With a 60 s cancel grace nothing is killed: the SDK must close the
    connection when the call is cancelled, and the worker lives on."""
    model.set_rules([{"match": "essay", "content": "and on ", "repeat": 2000, "token_delay": 0.05}])
    config = tmp_path / "flw.toml"
    config.write_text(SHARED.format(script=script))
    mcp = McpPipe("--config", str(config), env=model.env())
    try:
        mcp.call(1, "pid", {})
        before = mcp.reply(1, 60)["result"]["content"][0]["text"]
        mcp.call(2, tool, {"prompt": "an endless essay"})
        model.wait_for(lambda events: [e for e in events if e["event"] == "request"], timeout=30)
        time.sleep(0.3)  # some tokens in
        mcp.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 2}})
        wait_until(lambda: model.of("client_closed"), 10, "the SDK to close the model connection")
        mcp.call(3, "pid", {})
        assert mcp.reply(3, 30)["result"]["content"][0]["text"] == before
    finally:
        mcp.close()


@SCRIPTS
def test_a_429_is_retried_after_its_retry_after(script, model):
    model.set_rules(
        [
            {"match": "hello", "status": 429, "retry_after": 1, "times": 1},
            {"match": "hello", "content": "hi there"},
        ]
    )
    start = time.monotonic()
    proc = call(script, "ask", '{"prompt": "hello"}', model)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert out.decode().strip() == '"hi there"'
    assert time.monotonic() - start >= 1.0, "the retry did not wait for Retry-After"
    [error] = model.of("error_reply")
    assert error["status"] == 429
    assert len(model.of("request")) == 2


@SCRIPTS
def test_a_tool_call_loop_runs_the_tool_and_answers(script, model):
    model.set_rules(
        [
            {"match": "weather in Paris", "tool_calls": [{"name": "weather", "arguments": {"city": "Paris"}}]},
            {"match": "sunny in Paris", "content": "It is sunny in Paris."},
        ]
    )
    proc = call(script, "forecast", '{"question": "What is the weather in Paris?"}', model)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert out.decode().strip() == '"It is sunny in Paris."'
    first, second = model.requests()
    [spec] = first["tools"]
    assert spec["function"]["name"] == "weather"
    assert spec["function"]["parameters"]["properties"]["city"]["type"] == "string"
    tool_message = second["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["content"] == "sunny in Paris"
    assert second["messages"][-2]["tool_calls"][0]["function"]["name"] == "weather"
