"""`flw mcp` answers every line a client sends on stdio: lines that are not
JSON (or too long, or not UTF-8) get -32700, JSON that is not a request gets
-32600, wrong params of tools/call get -32602, each with the request's id when
it can be recovered; a request whose id is in flight already gets an error and
leaves the first call alone."""

from __future__ import annotations

import json
import queue
import time

import pytest

from conftest import TOOLS, McpPipe, alive, read_pids

WAIT = 15  # seconds for an answer that should come at once; old flw never answered these

PARSE_ERROR, INVALID_REQUEST, INVALID_PARAMS = -32700, -32600, -32602


def send_raw(client: McpPipe, line: bytes) -> None:
    assert client.proc.stdin is not None
    client.proc.stdin.write(line + b"\n")
    client.proc.stdin.flush()


def next_error(client: McpPipe) -> dict:
    """The next message, which must be a JSON-RPC error answer."""
    try:
        message = client.recv(WAIT)
    except queue.Empty:
        pytest.fail(f"no answer within {WAIT}s: the client would wait forever")
    assert "error" in message, message
    assert message["jsonrpc"] == "2.0"
    assert "id" in message, f"an error answer must carry an id, null if unknown: {message}"
    return message


def still_serves(client: McpPipe, request_id: int) -> None:
    client.call(request_id, "echo", {"text": "still here"})
    assert client.reply(request_id, 30)["result"]["content"] == [{"type": "text", "text": "still here"}]


@pytest.fixture
def client():
    c = McpPipe(str(TOOLS))
    yield c
    c.close()


def call_line(request_id: object, text_json: bytes, id_last: bool = False) -> bytes:
    """A tools/call of echo whose `text` is the raw JSON `text_json`; the id
    first (as the Python SDK writes it) or last (as the TypeScript SDK does)."""
    body = b'"method":"tools/call","params":{"name":"echo","arguments":{"text":' + text_json + b"}}"
    rid = b'"id":' + json.dumps(request_id).encode()
    if id_last:
        return b'{"jsonrpc":"2.0",' + body + b"," + rid + b"}"
    return b'{"jsonrpc":"2.0",' + rid + b"," + body + b"}"


@pytest.mark.parametrize(
    ("line", "request_id"),
    [
        pytest.param(b'{"jsonrpc":"2.0","id":1,"method":"tools/list"', 1, id="cut-json"),
        pytest.param(b"\xff\xfe not json", None, id="garbage-not-utf8"),
        pytest.param(call_line(2, b'"\xff\xfe"'), 2, id="invalid-utf8-in-a-string"),
        pytest.param(call_line("three", b'"\\ud800"', id_last=True), "three", id="lone-surrogate"),
        pytest.param(call_line(4, b"1e400"), 4, id="number-out-of-range"),
        pytest.param(b'{"jsonrpc":"2.0","id":1e400,"method":"tools/list"}', None, id="id-out-of-range"),
        pytest.param(b"this is not json", None, id="not-json"),
    ],
)
def test_a_line_that_is_not_json_gets_a_parse_error_with_the_id_when_it_can_be_found(client, line, request_id):
    send_raw(client, line)
    answer = next_error(client)
    assert answer["error"]["code"] == PARSE_ERROR
    assert answer["id"] == request_id
    assert answer["error"]["message"].startswith("Parse error: ")
    still_serves(client, 100)


@pytest.mark.parametrize("id_last", [False, True], ids=["id-first", "id-last"])
def test_a_line_over_the_limit_gets_a_parse_error_with_its_id_and_the_session_goes_on(client, id_last):
    big = b'"' + b"a" * (20 * 1024 * 1024) + b'"'  # 20 MB, over the 16 MiB limit
    send_raw(client, call_line(7, big, id_last=id_last))
    answer = next_error(client)
    assert answer["error"]["code"] == PARSE_ERROR
    assert answer["id"] == 7
    assert "longer than the limit of 16777216 bytes" in answer["error"]["message"]
    # The line was dropped as it came, not kept: flw stays far below its size.
    with open(f"/proc/{client.proc.pid}/status") as f:
        peak_kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    assert peak_kb < 60 * 1024, f"flw mcp peaked at {peak_kb} kB reading a 20 MB line"
    still_serves(client, 101)


@pytest.mark.parametrize(
    ("message", "request_id", "says"),
    [
        pytest.param([1, 2], None, "batches are not supported", id="array"),
        pytest.param(42, None, "must be a JSON object", id="number"),
        pytest.param({"jsonrpc": "1.0", "id": 17, "method": "tools/list"}, 17, '"jsonrpc" must be "2.0"', id="v1"),
        pytest.param({"id": 18, "method": "tools/list"}, 18, '"jsonrpc" must be "2.0"', id="no-jsonrpc"),
        pytest.param({"jsonrpc": "2.0", "id": 19}, 19, 'no "method"', id="no-method"),
        pytest.param({"jsonrpc": "2.0", "id": "x", "method": 5}, "x", '"method" must be a string', id="method-number"),
        pytest.param({"jsonrpc": "2.0", "id": 1.5, "method": "tools/list"}, None, '"id" must be', id="float-id"),
        pytest.param({"jsonrpc": "2.0", "id": None, "method": "tools/list"}, None, '"id" must be', id="null-id"),
        pytest.param({"jsonrpc": "2.0", "id": [1], "method": "tools/list"}, None, '"id" must be', id="array-id"),
    ],
)
def test_json_that_is_not_a_request_gets_invalid_request_with_its_id(client, message, request_id, says):
    send_raw(client, json.dumps(message).encode())
    answer = next_error(client)
    assert answer["error"]["code"] == INVALID_REQUEST, answer
    assert answer["id"] == request_id
    assert says in answer["error"]["message"]
    still_serves(client, 102)


@pytest.mark.parametrize(
    ("params", "says"),
    [
        pytest.param(None, "missing field `params`", id="no-params"),
        pytest.param({"arguments": {"text": "x"}}, "missing field `name`", id="no-name"),
        pytest.param({"name": 5}, "invalid type", id="name-not-a-string"),
        pytest.param({"name": "echo", "arguments": [1]}, "invalid type", id="arguments-not-an-object"),
        pytest.param([1], "invalid type", id="params-an-array"),
        pytest.param("echo", "invalid type", id="params-a-string"),
    ],
)
def test_wrong_params_of_tools_call_get_invalid_params(client, params, says):
    message = {"jsonrpc": "2.0", "id": 9, "method": "tools/call"}
    if params is not None:
        message["params"] = params
    client.send(message)
    answer = next_error(client)
    assert answer["error"]["code"] == INVALID_PARAMS, answer
    assert answer["id"] == 9
    assert says in answer["error"]["message"]
    still_serves(client, 103)


def test_a_duplicate_id_in_flight_gets_an_error_and_the_first_call_goes_on(client, tmp_path):
    pidfile = tmp_path / "pids"
    client.call(5, "sleepy", {"seconds": 2, "pidfile": str(pidfile)})
    (worker,) = read_pids(pidfile)
    client.call(5, "echo", {"text": "duplicate"})
    answer = next_error(client)
    assert answer["id"] == 5
    assert answer["error"]["code"] == INVALID_REQUEST
    assert "request id 5 is already in flight" in answer["error"]["message"]
    first = client.reply(5, 30)
    assert first.get("result", {}).get("content") == [{"type": "text", "text": "slept"}], first
    assert alive(worker), "the first call's worker was killed"
    # The id is free again once its answer is out.
    client.call(5, "echo", {"text": "again"})
    assert client.reply(5, 30)["result"]["content"] == [{"type": "text", "text": "again"}]


def test_a_cancelled_id_can_be_used_again_once_its_call_has_ended(client, tmp_path):
    pidfile = tmp_path / "pids"
    client.call(6, "sleepy", {"seconds": 300, "pidfile": str(pidfile)})
    (worker,) = read_pids(pidfile)
    client.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 6}})
    deadline = time.monotonic() + 30
    while True:
        client.call(6, "echo", {"text": "reused"})
        answer = client.reply(6, 30)
        if "result" in answer:
            break
        assert "already in flight" in answer["error"]["message"], answer
        assert time.monotonic() < deadline, "the cancelled id was never freed"
        time.sleep(0.2)
    assert answer["result"]["content"] == [{"type": "text", "text": "reused"}]
    assert not alive(worker)
