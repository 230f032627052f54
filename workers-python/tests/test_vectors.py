"""Every shared test vector of protocol/vectors/ (vectors.json, fork_server.json),
decoded and encoded."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from flw.worker import _fork_wire
from flw.worker._channel import LineReader
from flw.worker._protocol import (
    ERROR_CODES,
    ProtocolError,
    decode,
    decode_from_supervisor,
    encode,
    encode_line,
    result_line,
)

VECTORS_FILE = (
    Path(__file__).resolve().parent.parent.parent / "protocol" / "vectors" / "vectors.json"
)
VECTORS = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))
VALID: list[dict[str, Any]] = VECTORS["valid"]
INVALID: list[dict[str, Any]] = VECTORS["invalid"]
DEFAULT_MAX = VECTORS["default_max_line_bytes"]


def _raw(case: dict[str, Any]) -> bytes:
    if "line_hex" in case:
        return bytes.fromhex(case["line_hex"])
    return case["line"].encode("utf-8")


GRAPH_VECTORS = {
    "hello with nodes and flows",
    "node run",
    "node prep with deadline",
    "node exec",
    "node exec of a null item",
    "node post",
    "node fallback",
    "result with a node outcome",
    "node with unknown phase",
    "node without phase",
    "node whose shared is not an object",
    "node whose results is not an array",
    "node whose error has no kind",
    "hello naming a node twice",
    "hello with an unknown node kind",
    "hello with a node without kind",
    "hello whose flow is not an object",
}


def test_the_graph_vectors_are_there() -> None:
    """The parametrized tests below only run the vectors the file holds."""
    assert {case["name"] for case in VALID + INVALID} >= GRAPH_VECTORS


def test_the_vector_file_has_cases_of_both_kinds() -> None:
    assert VECTORS["protocol"] == 1
    assert len(VALID) >= 20
    assert len(INVALID) >= 20
    assert {case["from"] for case in VALID} == {"worker", "supervisor"}
    for case in INVALID:
        assert case["error"] in ERROR_CODES, case["name"]


@pytest.mark.parametrize("case", VALID, ids=[c["name"] for c in VALID])
def test_valid_line_decodes_to_message(case: dict[str, Any]) -> None:
    message = decode(_raw(case), case["from"], DEFAULT_MAX)
    assert message == case["message"]
    # Members come out in table order, whatever order the line had.
    assert list(message) == list(case["message"])


@pytest.mark.parametrize("case", VALID + INVALID, ids=[c["name"] for c in VALID + INVALID])
def test_the_fast_supervisor_decoder_agrees_with_decode(case: dict[str, Any]) -> None:
    if case["from"] != "supervisor":
        pytest.skip("a worker's line")
    limit = case.get("max_line_bytes", DEFAULT_MAX)

    def outcome(fn: Any) -> Any:
        try:
            message = fn()
        except ProtocolError as exc:
            return ("error", exc.code, exc.message)
        return ("message", message, list(message))

    fast = outcome(lambda: decode_from_supervisor(_raw(case), limit))
    assert fast == outcome(lambda: decode(_raw(case), "supervisor", limit))


@pytest.mark.parametrize("case", VALID, ids=[c["name"] for c in VALID])
def test_result_line_matches_encode_line(case: dict[str, Any]) -> None:
    message = case["message"]
    if message["type"] != "result":
        pytest.skip("not a result")
    assert result_line(message["id"], message["value"]) == encode_line(message)


@pytest.mark.parametrize("case", VALID, ids=[c["name"] for c in VALID])
def test_valid_message_encodes_to_canonical_line(case: dict[str, Any]) -> None:
    expected = case.get("canonical", case["line"])
    assert encode(case["message"]) == expected
    assert encode_line(case["message"]) == expected.encode("utf-8") + b"\n"
    assert encode(decode(_raw(case), case["from"])) == expected


@pytest.mark.parametrize("case", INVALID, ids=[c["name"] for c in INVALID])
def test_invalid_line_fails_with_its_code(case: dict[str, Any]) -> None:
    limit = case.get("max_line_bytes", DEFAULT_MAX)
    with pytest.raises(ProtocolError) as info:
        decode(_raw(case), case["from"], limit)
    assert info.value.code == case["error"]
    assert info.value.message
    if case["error"] == "line_too_long":
        assert str(limit) in info.value.message


@pytest.mark.parametrize("case", INVALID, ids=[c["name"] for c in INVALID])
def test_invalid_line_through_the_line_reader(case: dict[str, Any]) -> None:
    """The bounded reader reports over-long lines itself; the rest reach decode."""
    limit = case.get("max_line_bytes", DEFAULT_MAX)
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, _raw(case) + b"\n")
        os.close(write_fd)
        items = list(LineReader(read_fd, limit))
    finally:
        os.close(read_fd)
    assert len(items) == 1
    item = items[0]
    if isinstance(item, ProtocolError):
        code = item.code
    else:
        with pytest.raises(ProtocolError) as info:
            decode(item, case["from"], limit)
        code = info.value.code
    assert code == case["error"]


def test_all_valid_lines_through_the_line_reader() -> None:
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, b"".join(_raw(case) + b"\n" for case in VALID))
        os.close(write_fd)
        lines = list(LineReader(read_fd, DEFAULT_MAX))
    finally:
        os.close(read_fd)
    assert [decode(line, c["from"]) for line, c in zip(lines, VALID)] == [
        c["message"] for c in VALID
    ]


# -- the fork server's control datagrams (fork_server.json) --------------------------

FORK_VECTORS = json.loads((VECTORS_FILE.parent / "fork_server.json").read_text(encoding="utf-8"))


def _fork_id(case: dict[str, Any]) -> str:
    return f"{case['direction']}:{case['text'][:60]}"


@pytest.mark.parametrize("case", FORK_VECTORS["valid"], ids=_fork_id)
def test_fork_server_valid_datagram(case: dict[str, Any]) -> None:
    data = case["text"].encode("utf-8")
    assert _fork_wire.decode(data, case["direction"]) == case["message"]
    assert _fork_wire.decode(data + b"\n", case["direction"]) == case["message"]
    assert _fork_wire.encode(case["message"]) == data


@pytest.mark.parametrize("case", FORK_VECTORS["invalid"], ids=_fork_id)
def test_fork_server_invalid_datagram(case: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as info:
        _fork_wire.decode(case["text"].encode("utf-8"), case["direction"])
    assert info.value.code == case["why"].split(":")[0]


def test_fork_server_vectors_cover_every_message_type() -> None:
    covered = {(case["direction"], case["message"]["type"]) for case in FORK_VECTORS["valid"]}
    assert covered == {
        *(("supervisor", kind) for kind in _fork_wire.SUPERVISOR_MESSAGES),
        *(("fork_server", kind) for kind in _fork_wire.FORK_SERVER_MESSAGES),
    }


def test_fork_server_datagram_limit() -> None:
    reason = "x" * _fork_wire.MAX_DATAGRAM
    with pytest.raises(ProtocolError) as info:
        _fork_wire.encode({"type": "unsafe", "reason": reason})
    assert info.value.code == "line_too_long"
    with pytest.raises(ProtocolError) as info:
        _fork_wire.decode(b" " * (_fork_wire.MAX_DATAGRAM + 1), "supervisor")
    assert info.value.code == "line_too_long"
