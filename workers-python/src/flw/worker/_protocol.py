"""The wire codec: decode and encode protocol lines exactly as PROTOCOL.md says.

``decode`` turns one line (without its ``\\n``) into a message dict holding
only the members the protocol defines, in the order its tables give, and
raises :class:`ProtocolError` carrying one of the decoding error codes.
``encode`` checks a message the same way and writes canonical compact JSON:
``type`` first, then the other members in table order, optional members
without a value left out, non-ASCII text as UTF-8.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any, Callable

PROTOCOL_VERSIONS: tuple[int, ...] = (1,)
"""The protocol versions this SDK speaks, highest first."""

DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024
"""The default line limit in bytes, without the ``\\n``."""

MAX_ID = 2**53 - 1
"""The largest call id (and the largest integer any member may hold)."""

LOG_LEVELS = ("debug", "info", "warning", "error")

ERROR_KINDS = (
    "tool_error",
    "invalid_arguments",
    "unknown_tool",
    "cancelled",
    "internal",
    "timeout",
    "worker_crashed",
    "worker_killed",
    "protocol_error",
    "overloaded",
    "unavailable",
    "shutting_down",
    "superseded",
)

ERROR_CODES = (
    "line_too_long",
    "invalid_utf8",
    "invalid_json",
    "not_object",
    "missing_type",
    "unknown_type",
    "missing_field",
    "invalid_field",
)

NODE_KINDS = ("node", "batch", "batch_flow")
"""The kinds of a graph node (``hello.nodes[].kind``)."""

NODE_PHASES = ("run", "prep", "exec", "post", "fallback")
"""The phases a ``node`` message may ask for."""

_TOOL_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,128}")


class ProtocolError(ValueError):
    """A line or message that does not fit the protocol.

    ``code`` is one of the decoding error codes of PROTOCOL.md
    (``invalid_json``, ``missing_field``, ...); ``message`` says what is
    wrong for a person and names the member or the limit involved.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def is_valid_tool_name(name: str) -> bool:
    """Whether ``name`` is 1-128 characters of ``A-Z a-z 0-9 _ - .``."""
    return _TOOL_NAME.fullmatch(name) is not None


# ---------------------------------------------------------------------------
# Member checks. Each takes the value and the member's path (for messages)
# and returns the value to keep, or raises ProtocolError("invalid_field").


def _invalid(where: str, expected: str, value: Any) -> ProtocolError:
    return ProtocolError("invalid_field", f"`{where}` must be {expected}, got {_describe(value)}")


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return json.dumps(text, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return f"a value of type {type(value).__name__}"


def _int_in(where: str, value: Any, low: int, high: int = MAX_ID) -> int:
    if type(value) is not int or not low <= value <= high:
        raise _invalid(where, f"an integer from {low} to {high}", value)
    return value


def _call_id(value: Any, where: str) -> int:
    return _int_in(where, value, 1)


def _seq(value: Any, where: str) -> int:
    return _int_in(where, value, 0)


def _non_negative(value: Any, where: str) -> int:
    return _int_in(where, value, 0)


def _version(value: Any, where: str) -> int:
    return _int_in(where, value, 1)


def _pid(value: Any, where: str) -> int:
    return _int_in(where, value, 1)


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _invalid(where, "a string", value)
    return value


def _number(value: Any, where: str) -> float:
    if type(value) not in (int, float) or not math.isfinite(value):
        raise _invalid(where, "a number", value)
    return value  # type: ignore[no-any-return]


def _any(value: Any, where: str) -> Any:
    return value


def _present(value: Any, where: str) -> Any:
    """Any JSON value but ``null`` (an optional member without a value is left out)."""
    if value is None:
        raise _invalid(where, "a value (leave the member out instead of null)", value)
    return value


def _array(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise _invalid(where, "an array", value)
    return value


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid(where, "an object", value)
    return value


def _level(value: Any, where: str) -> str:
    if value not in LOG_LEVELS:
        raise _invalid(where, "one of " + ", ".join(LOG_LEVELS), value)
    return value  # type: ignore[no-any-return]


def _kind(value: Any, where: str) -> str:
    if value not in ERROR_KINDS:
        raise _invalid(where, "an error kind of PROTOCOL.md", value)
    return value  # type: ignore[no-any-return]


def _versions(value: Any, where: str) -> list[int]:
    items = _array(value, where)
    if not items:
        raise _invalid(where, "a non-empty array of integers", value)
    return [_version(item, f"{where}[{i}]") for i, item in enumerate(items)]


def _tool_name(value: Any, where: str) -> str:
    name = _string(value, where)
    if not is_valid_tool_name(name):
        raise _invalid(where, "1-128 characters of A-Z a-z 0-9 _ - .", value)
    return name


def _node_kind(value: Any, where: str) -> str:
    if value not in NODE_KINDS:
        raise _invalid(where, "one of " + ", ".join(NODE_KINDS), value)
    return value  # type: ignore[no-any-return]


def _phase(value: Any, where: str) -> str:
    if value not in NODE_PHASES:
        raise _invalid(where, "one of " + ", ".join(NODE_PHASES), value)
    return value  # type: ignore[no-any-return]


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise _invalid(where, "true or absent", value)
    return value


_Check = Callable[[Any, str], Any]
_Field = tuple[str, _Check, bool]

_TOOL_FIELDS: tuple[_Field, ...] = (
    ("name", _tool_name, True),
    ("description", _string, True),
    ("input_schema", _object, True),
    ("output_schema", _object, False),
)


def _tools(value: Any, where: str) -> list[dict[str, Any]]:
    tools = [
        _members(_object(item, f"{where}[{i}]"), _TOOL_FIELDS, f"{where}[{i}]")
        for i, item in enumerate(_array(value, where))
    ]
    seen: set[str] = set()
    for i, item in enumerate(tools):
        if item["name"] in seen:
            raise ProtocolError(
                "invalid_field",
                f"`{where}[{i}].name` repeats the tool name {item['name']!r}",
            )
        seen.add(item["name"])
    return tools


_NODE_FIELDS: tuple[_Field, ...] = (
    ("name", _tool_name, True),
    ("kind", _node_kind, True),
    ("description", _string, True),
    ("fallback", _flag, False),
)


def _nodes(value: Any, where: str) -> list[dict[str, Any]]:
    nodes = []
    for i, item in enumerate(_array(value, where)):
        here = f"{where}[{i}]"
        try:
            entry = _members(_object(item, here), _NODE_FIELDS, here)
        except ProtocolError as exc:
            # A member missing inside an array item is an invalid member of the message.
            raise ProtocolError("invalid_field", exc.message) from None
        if entry.get("fallback") is False:
            del entry["fallback"]  # written only when true
        nodes.append(entry)
    seen: set[str] = set()
    for i, item in enumerate(nodes):
        if item["name"] in seen:
            raise ProtocolError(
                "invalid_field",
                f"`{where}[{i}].name` repeats the node name {item['name']!r}",
            )
        seen.add(item["name"])
    return nodes


def _flows(value: Any, where: str) -> list[dict[str, Any]]:
    return [_object(item, f"{where}[{i}]") for i, item in enumerate(_array(value, where))]


def _node_error(value: Any, where: str) -> dict[str, str]:
    """``{"kind": ..., "message": ...}``, both strings; other members are dropped."""
    if not isinstance(value, dict):
        raise _invalid(where, 'an object with string "kind" and "message"', value)
    kind = value.get("kind")
    message = value.get("message")
    if not isinstance(kind, str) or not isinstance(message, str):
        raise _invalid(where, 'an object with string "kind" and "message"', value)
    return {"kind": kind, "message": message}


WORKER_MESSAGES: dict[str, tuple[_Field, ...]] = {
    "hello": (
        ("protocol", _versions, True),
        ("sdk", _string, True),
        ("sdk_version", _string, True),
        ("runtime", _string, False),
        ("pid", _pid, False),
        ("tools", _tools, True),
        ("nodes", _nodes, False),
        ("flows", _flows, False),
    ),
    "result": (("id", _call_id, True), ("value", _any, True)),
    "error": (
        ("id", _call_id, True),
        ("kind", _kind, True),
        ("message", _string, True),
        ("traceback", _string, False),
    ),
    "progress": (
        ("id", _call_id, True),
        ("progress", _number, True),
        ("total", _number, False),
        ("message", _string, False),
    ),
    "log": (("level", _level, True), ("message", _string, True), ("id", _call_id, False)),
    "chunk": (("id", _call_id, True), ("data", _any, True)),
    "heartbeat": (("seq", _seq, True),),
}
"""Member tables of the messages a worker sends, in table order."""

SUPERVISOR_MESSAGES: dict[str, tuple[_Field, ...]] = {
    "welcome": (("protocol", _version, True),),
    "call": (
        ("id", _call_id, True),
        ("tool", _string, True),
        ("args", _object, True),
        ("deadline_ms", _non_negative, False),
    ),
    "node": (
        ("id", _call_id, True),
        ("node", _string, True),
        ("phase", _phase, True),
        ("shared", _object, False),
        ("item", _present, False),
        ("prep", _present, False),
        ("results", _array, False),
        ("error", _node_error, False),
        ("params", _object, False),
        ("deadline_ms", _non_negative, False),
    ),
    "cancel": (("id", _call_id, True),),
    "heartbeat": (("seq", _seq, True),),
    "shutdown": (("reason", _string, False),),
}
"""Member tables of the messages the supervisor sends, in table order."""

_SENDERS = {"worker": WORKER_MESSAGES, "supervisor": SUPERVISOR_MESSAGES}


def _members(obj: Mapping[str, Any], fields: tuple[_Field, ...], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    prefix = f"{where}." if where else ""
    for name, check, required in fields:
        if name in obj:
            out[name] = check(obj[name], prefix + name)
        elif required:
            raise ProtocolError("missing_field", f"member `{prefix}{name}` is missing")
    return out


def _message(obj: Mapping[str, Any], sender: str | None) -> dict[str, Any]:
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("missing_type", "the object has no string member `type`")
    tables = [_SENDERS[sender]] if sender is not None else list(_SENDERS.values())
    for table in tables:
        fields = table.get(kind)
        if fields is not None:
            out = {"type": kind}
            out.update(_members(obj, fields, ""))
            return out
    origin = f" from the {sender}" if sender is not None else ""
    raise ProtocolError("unknown_type", f"message type {kind!r} is not defined{origin}")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def decode(
    line: bytes | str,
    sender: str,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> dict[str, Any]:
    """Decode one line (without its ``\\n``) sent by ``sender``.

    ``sender`` is ``"worker"`` or ``"supervisor"``; a message type the other
    side sends is ``unknown_type``. A trailing ``\\r`` is tolerated. Returns
    the message with only the members the protocol defines, in table order.
    Raises :class:`ProtocolError` with the code of the first problem found.
    """
    if sender not in _SENDERS:
        raise ValueError(f"sender must be 'worker' or 'supervisor', not {sender!r}")
    raw = line.encode("utf-8", "surrogatepass") if isinstance(line, str) else bytes(line)
    if len(raw) > max_line_bytes:
        raise ProtocolError(
            "line_too_long",
            f"the line is {len(raw)} bytes, over the limit of {max_line_bytes} bytes",
        )
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(
            "invalid_utf8", f"the line is not UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None
    try:
        obj = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("invalid_json", f"the line is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("not_object", f"the line holds {_describe(obj)}, not an object")
    return _message(obj, sender)


def encode(message: Mapping[str, Any]) -> str:
    """Encode a message as one canonical line, without the ``\\n``.

    The message is checked like a decoded one (a ``ProtocolError`` names the
    problem); members are written in table order, unknown members dropped,
    compact, with non-ASCII text as is. Values that JSON cannot hold raise
    ``ProtocolError("invalid_field")``.
    """
    if not isinstance(message, Mapping):
        raise ProtocolError("not_object", f"a message must be a mapping, got {_describe(message)}")
    canonical = _message(message, None)
    try:
        return json.dumps(canonical, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ProtocolError("invalid_field", f"a member cannot be written as JSON: {exc}") from None


def encode_line(message: Mapping[str, Any]) -> bytes:
    """Encode a message as UTF-8 bytes ending in ``\\n``."""
    try:
        return encode(message).encode("utf-8") + b"\n"
    except UnicodeEncodeError as exc:
        raise ProtocolError(
            "invalid_field", f"a string holds text that is not valid Unicode: {exc.reason}"
        ) from None


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def decode_from_supervisor(
    line: bytes, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> dict[str, Any]:
    """``decode(line, "supervisor", max_line_bytes)``, faster for a well-formed ``call``.

    A ``call`` whose members are all valid is checked inline and returned
    without the table machinery; anything else (other types, problems, a
    trailing ``\\r``) goes through ``decode`` and gets its exact result or
    error.
    """
    try:
        obj = _DECODER.decode(line.decode("utf-8"))
    except (ValueError, RecursionError):
        obj = None
    if type(obj) is dict and obj.get("type") == "call":
        call_id = obj.get("id")
        tool = obj.get("tool")
        args = obj.get("args")
        if (
            type(call_id) is int
            and 1 <= call_id <= MAX_ID
            and type(tool) is str
            and type(args) is dict
        ):
            deadline = obj.get("deadline_ms")
            if deadline is None and "deadline_ms" not in obj:
                return {"type": "call", "id": call_id, "tool": tool, "args": args}
            if type(deadline) is int and 0 <= deadline <= MAX_ID:
                return {
                    "type": "call",
                    "id": call_id,
                    "tool": tool,
                    "args": args,
                    "deadline_ms": deadline,
                }
    return decode(line, "supervisor", max_line_bytes)


def result_line(call_id: int, value: Any) -> bytes:
    """``encode_line({"type": "result", "id": call_id, "value": value})``, faster.

    ``value`` must already be plain JSON data; raises ``TypeError``,
    ``ValueError``, ``RecursionError`` or ``UnicodeEncodeError`` when it
    cannot be written (the caller then takes the checked path).
    """
    return b'{"type":"result","id":%d,"value":%b}\n' % (
        call_id,
        _ENCODER.encode(value).encode("utf-8"),
    )
