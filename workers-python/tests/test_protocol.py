"""Codec behaviour beyond the shared vectors: edge values, ordering, encoder checks."""

from __future__ import annotations

import pytest

from flw.worker._protocol import MAX_ID, ProtocolError, decode, encode, is_valid_tool_name


def code_of(line: str, sender: str = "worker", limit: int = 1 << 24) -> str:
    with pytest.raises(ProtocolError) as info:
        decode(line, sender, limit)
    return info.value.code


@pytest.mark.parametrize(
    ("line", "code"),
    [
        ('{"type":"result","id":true,"value":1}', "invalid_field"),
        ('{"type":"result","id":1.0,"value":1}', "invalid_field"),
        ('{"type":"progress","id":1,"progress":NaN}', "invalid_json"),
        ('{"type":"progress","id":1,"progress":Infinity}', "invalid_json"),
        ('{"type":"progress","id":1,"progress":1e999}', "invalid_json"),
        ('{"type":"progress","id":1,"progress":true}', "invalid_field"),
        ('{"type":"error","id":1,"kind":"made_up","message":"x"}', "invalid_field"),
        ('{"type":"log","level":"info","message":"x","id":null}', "invalid_field"),
        ('{"type":"heartbeat","seq":-1}', "invalid_field"),
        ('{"type":"hello","protocol":[0],"sdk":"p","sdk_version":"1","tools":[]}', "invalid_field"),
        ('{"type":"hello","protocol":1,"sdk":"p","sdk_version":"1","tools":[]}', "invalid_field"),
        ('{"type":"hello","protocol":[1],"sdk":"p","sdk_version":"1","tools":{}}', "invalid_field"),
        (
            '{"type":"hello","protocol":[1],"sdk":"p","sdk_version":"1","tools":[1]}',
            "invalid_field",
        ),
        ('{"type":"chunk","id":1}', "missing_field"),
        ("[" * 100000 + "]" * 100000, "invalid_json"),
        ("{}", "missing_type"),
        ("null", "not_object"),
    ],
)
def test_worker_lines_rejected(line: str, code: str) -> None:
    assert code_of(line) == code


def test_duplicate_tool_names_in_hello_are_rejected() -> None:
    tool = '{"name":"a","description":"","input_schema":{"type":"object"}}'
    line = f'{{"type":"hello","protocol":[1],"sdk":"p","sdk_version":"1","tools":[{tool},{tool}]}}'
    assert code_of(line) == "invalid_field"


@pytest.mark.parametrize(
    ("line", "code"),
    [
        ('{"type":"call","id":1,"tool":"x","args":{},"deadline_ms":-1}', "invalid_field"),
        ('{"type":"call","id":1,"tool":"x"}', "missing_field"),
        ('{"type":"welcome","protocol":"1"}', "invalid_field"),
        ('{"type":"shutdown","reason":null}', "invalid_field"),
        ('{"type":"cancel"}', "missing_field"),
        ('{"type":"hello","protocol":[1],"sdk":"p","sdk_version":"1","tools":[]}', "unknown_type"),
    ],
)
def test_supervisor_lines_rejected(line: str, code: str) -> None:
    assert code_of(line, "supervisor") == code


def test_id_bounds() -> None:
    assert decode(f'{{"type":"cancel","id":{MAX_ID}}}', "supervisor")["id"] == MAX_ID
    assert code_of(f'{{"type":"cancel","id":{MAX_ID + 1}}}', "supervisor") == "invalid_field"


def test_line_limit_counts_bytes_not_characters() -> None:
    line = '{"type":"result","id":1,"value":"' + "é" * 10 + '"}'
    assert len(line) == 45
    assert len(line.encode()) == 55
    decode(line, "worker", 55)
    assert code_of(line, "worker", 54) == "line_too_long"


def test_null_is_a_value_for_required_any_members() -> None:
    assert decode('{"type":"chunk","id":1,"data":null}', "worker")["data"] is None


def test_encode_orders_members_and_drops_unknown_ones() -> None:
    message = {"message": "m", "id": 3, "extra": 1, "level": "debug", "type": "log"}
    assert encode(message) == '{"type":"log","level":"debug","message":"m","id":3}'


def test_encode_writes_non_ascii_as_utf8() -> None:
    assert encode({"type": "result", "id": 1, "value": "世界"}) == (
        '{"type":"result","id":1,"value":"世界"}'
    )


@pytest.mark.parametrize(
    "message",
    [
        {"type": "progress", "id": 1, "progress": float("nan")},
        {"type": "progress", "id": 1, "progress": 1, "total": None},
        {"type": "result", "id": 0, "value": 1},
        {"type": "result", "id": 1, "value": float("inf")},
        {"type": "result", "id": 1, "value": object()},
        {"type": "telemetry"},
        {"id": 1},
    ],
)
def test_encode_refuses_what_decode_would_refuse(message: dict) -> None:
    with pytest.raises(ProtocolError):
        encode(message)


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        *[("a", True), ("stats.count", True), ("A-b_c.9", True), ("x" * 128, True)],
        *[("", False), ("a b", False), ("x" * 129, False), ("café", False), ("a/b", False)],
    ],
)
def test_tool_names(name: str, ok: bool) -> None:
    assert is_valid_tool_name(name) is ok


# -- graph nodes -------------------------------------------------------------------------

_HELLO = '{"type":"hello","protocol":[1],"sdk":"p","sdk_version":"1","tools":[]'


@pytest.mark.parametrize(
    ("line", "code"),
    [
        ('{"type":"node","id":1,"node":"a","phase":"exec","item":null}', "invalid_field"),
        ('{"type":"node","id":1,"node":"a","phase":"post","prep":null}', "invalid_field"),
        ('{"type":"node","id":1,"node":"a","phase":"run","shared":null}', "invalid_field"),
        ('{"type":"node","id":1,"node":3,"phase":"run"}', "invalid_field"),
        ('{"type":"node","id":0,"node":"a","phase":"run"}', "invalid_field"),
        ('{"type":"node","id":1,"phase":"run"}', "missing_field"),
        ('{"type":"node","id":1,"node":"a","phase":"RUN"}', "invalid_field"),
        (
            '{"type":"node","id":1,"node":"a","phase":"fallback","error":{"kind":"x","message":1}}',
            "invalid_field",
        ),
        ('{"type":"node","id":1,"node":"a","phase":"fallback","error":"x"}', "invalid_field"),
        ('{"type":"node","id":1,"node":"a","phase":"run","deadline_ms":1.5}', "invalid_field"),
    ],
)
def test_node_lines_rejected(line: str, code: str) -> None:
    assert code_of(line, "supervisor") == code


def test_node_is_a_supervisor_message_only() -> None:
    assert code_of('{"type":"node","id":1,"node":"a","phase":"run"}', "worker") == "unknown_type"


def test_node_error_keeps_kind_and_message_only() -> None:
    line = (
        '{"type":"node","id":1,"node":"a","phase":"fallback",'
        '"error":{"message":"m","kind":"max_steps","extra":1}}'
    )
    assert decode(line, "supervisor")["error"] == {"kind": "max_steps", "message": "m"}


@pytest.mark.parametrize(
    ("nodes", "code"),
    [
        ('[{"name":"a b","kind":"node","description":""}]', "invalid_field"),
        ('[{"name":"a","kind":"node"}]', "invalid_field"),
        ('[{"name":"a","kind":"node","description":"","fallback":"yes"}]', "invalid_field"),
        ('[{"name":"a","kind":"node","description":"","fallback":null}]', "invalid_field"),
        ("[1]", "invalid_field"),
        ("{}", "invalid_field"),
    ],
)
def test_hello_nodes_rejected(nodes: str, code: str) -> None:
    assert code_of(f'{_HELLO},"nodes":{nodes}}}') == code


def test_hello_node_fallback_is_written_only_when_true() -> None:
    nodes = '[{"name":"a","kind":"batch","description":"","fallback":false}]'
    hello = decode(f'{_HELLO},"nodes":{nodes}}}', "worker")
    assert hello["nodes"] == [{"name": "a", "kind": "batch", "description": ""}]
    assert encode(hello).endswith('"nodes":[{"name":"a","kind":"batch","description":""}]}')


def test_hello_flows_are_objects_passed_through() -> None:
    flows = '[{"name":"f","extra":[1,{"b":2}]}]'
    hello = decode(f'{_HELLO},"flows":{flows}}}', "worker")
    assert hello["flows"] == [{"name": "f", "extra": [1, {"b": 2}]}]
    assert code_of(f'{_HELLO},"flows":{{}}}}') == "invalid_field"
