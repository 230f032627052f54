"""The fork server's control messages: one JSON object per datagram.

The supervisor and a fork server (``_fork_server.py``) talk on a
``SOCK_SEQPACKET`` socket, one UTF-8 JSON object per datagram of at most
``MAX_DATAGRAM`` bytes (one trailing ``\\n`` is tolerated on input). The
members and their checks are those of PROTOCOL.md's "Fork server" section;
``protocol/vectors/fork_server.json`` pins them for both implementations.

``decode`` gives the message with only the members defined for it, in table
order, or raises ``ProtocolError`` with a decoding error code of PROTOCOL.md.
``encode`` checks a message the same way and writes its canonical text:
compact JSON, ``type`` first, then the members in table order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ._protocol import (
    ProtocolError,
    _describe,
    _Field,
    _int_in,
    _invalid,
    _members,
    _string,
)

MAX_DATAGRAM = 65536
"""The largest datagram either side sends or accepts, in bytes."""

MAX_SIGNAL = 64
"""The largest signal number Linux has (``SIGRTMAX``)."""


def _id(value: Any, where: str) -> int:
    return _int_in(where, value, 0)


def _pid(value: Any, where: str) -> int:
    return _int_in(where, value, 1)


def _label(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value or "\x00" in value:
        raise _invalid(where, "a non-empty string without NUL", value)
    return value


def _code(value: Any, where: str) -> int | None:
    return None if value is None else _int_in(where, value, 0, 255)


def _signal(value: Any, where: str) -> int | None:
    return None if value is None else _int_in(where, value, 1, MAX_SIGNAL)


SUPERVISOR_MESSAGES: dict[str, tuple[_Field, ...]] = {
    "fork": (("id", _id, True), ("label", _label, True)),
    "shutdown": (),
}
"""What the supervisor sends, with the members of each type in table order."""

FORK_SERVER_MESSAGES: dict[str, tuple[_Field, ...]] = {
    "ready": (("pid", _pid, True),),
    "unsafe": (("reason", _string, True),),
    "forked": (("id", _id, True), ("pid", _pid, True)),
    "fork_failed": (("id", _id, True), ("error", _string, True)),
    "exited": (("pid", _pid, True), ("code", _code, True), ("signal", _signal, True)),
}
"""What the fork server sends, with the members of each type in table order."""

_DIRECTIONS = {"supervisor": SUPERVISOR_MESSAGES, "fork_server": FORK_SERVER_MESSAGES}


def _message(obj: Mapping[str, Any], tables: list[dict[str, tuple[_Field, ...]]]) -> dict[str, Any]:
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("missing_type", "the object has no string member `type`")
    for table in tables:
        fields = table.get(kind)
        if fields is not None:
            out: dict[str, Any] = {"type": kind}
            out.update(_members(obj, fields, ""))
            if kind == "exited" and (out["code"] is None) == (out["signal"] is None):
                raise ProtocolError(
                    "invalid_field", "exactly one of `code` and `signal` must be an integer"
                )
            return out
    raise ProtocolError("unknown_type", f"message type {kind!r} is not defined")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse(data: bytes) -> Any:
    """The JSON value of a datagram (one trailing ``\\n`` tolerated), unchecked.

    Raises ``ProtocolError`` (``line_too_long``, ``invalid_utf8``,
    ``invalid_json``).
    """
    if len(data) > MAX_DATAGRAM:
        raise ProtocolError(
            "line_too_long",
            f"the datagram is {len(data)} bytes, over the limit of {MAX_DATAGRAM} bytes",
        )
    if data.endswith(b"\n"):
        data = data[:-1]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(
            "invalid_utf8", f"the datagram is not UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("invalid_json", f"the datagram is not JSON: {exc}") from None


def decode(data: bytes, direction: str) -> dict[str, Any]:
    """Decode one datagram sent in ``direction`` (``supervisor`` or ``fork_server``)."""
    table = _DIRECTIONS.get(direction)
    if table is None:
        raise ValueError(f"direction must be 'supervisor' or 'fork_server', not {direction!r}")
    obj = parse(data)
    if not isinstance(obj, dict):
        raise ProtocolError("not_object", f"the datagram holds {_describe(obj)}, not an object")
    return _message(obj, [table])


def encode(message: Mapping[str, Any]) -> bytes:
    """The canonical datagram of ``message`` (either direction), checked first."""
    canonical = _message(message, list(_DIRECTIONS.values()))
    try:
        data = json.dumps(canonical, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        out = data.encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError) as exc:
        raise ProtocolError("invalid_field", f"a member cannot be written as JSON: {exc}") from None
    if len(out) > MAX_DATAGRAM:
        raise ProtocolError(
            "line_too_long",
            f"the {canonical['type']} message is {len(out)} bytes, over the "
            f"limit of {MAX_DATAGRAM} bytes",
        )
    return out
