"""Conversions between JSON values and annotated Python values.

``from_json`` turns a call's argument into what the parameter's annotation
asks for (dict → dataclass, list → tuple/set, value → Enum member, int →
float) and checks the JSON type on the way, raising :class:`InvalidArgument`.
``to_json`` turns a tool's return value into plain JSON values (dataclass →
dict, Enum → value, tuple/set → list) and raises
:class:`NotJSONSerializable` naming the first value it cannot convert.
"""

from __future__ import annotations

import contextlib
import enum
import inspect
import math
import typing
from collections.abc import Mapping
from typing import Any, Literal, get_args, get_origin

from ._typing import (
    ARRAY_ORIGINS,
    MAPPING_ORIGINS,
    SET_ORIGINS,
    NoneType,
    is_dataclass_type,
    is_enum_type,
    is_typeddict,
    is_union,
    type_name,
    typeddict_required_keys,
    unwrap,
)


class NotJSONSerializable(TypeError):
    """A value that JSON cannot hold; ``path`` says where it is (``$.a[0]``)."""

    def __init__(self, path: str, value: Any, reason: str | None = None) -> None:
        self.path = path
        self.value_type = type(value)
        why = reason or f"a {type(value).__module__}.{type(value).__qualname__} is not JSON"
        super().__init__(f"{path}: {why}")


class InvalidArgument(ValueError):
    """An argument that does not fit its parameter's annotation."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.detail = message
        super().__init__(f"argument {path!r}: {message}")


# ---------------------------------------------------------------------------
# Python -> JSON


def to_json(value: Any, path: str = "$") -> Any:
    """A copy of ``value`` made of JSON types only (dict, list, str, ...)."""
    if isinstance(value, enum.Enum):
        return to_json(value.value, path)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NotJSONSerializable(path, value, f"{value!r} is not a JSON number")
        return float(value)
    if isinstance(value, str):
        return str(value)
    if hasattr(type(value), "__dataclass_fields__") and not isinstance(value, type):
        import dataclasses  # loaded already: the value is a dataclass instance

        return {
            field.name: to_json(getattr(value, field.name), f"{path}.{field.name}")
            for field in dataclasses.fields(value)
        }
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = _json_key(key, path)
            out[name] = to_json(item, f"{path}.{name}")
        return out
    if isinstance(value, (list, tuple)):
        return [to_json(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        items = list(value)
        with contextlib.suppress(TypeError):
            items.sort()
        return [to_json(item, f"{path}[{i}]") for i, item in enumerate(items)]
    if inspect.isawaitable(value):
        raise NotJSONSerializable(
            path,
            value,
            "a coroutine or awaitable is not JSON (was an async tool declared with def?)",
        )
    raise NotJSONSerializable(path, value)


def _json_key(key: Any, path: str) -> str:
    if isinstance(key, enum.Enum):
        key = key.value
    if isinstance(key, str):
        return str(key)
    if isinstance(key, int) and not isinstance(key, bool):
        return str(int(key))
    raise NotJSONSerializable(
        path, key, f"the key {key!r} is a {type(key).__qualname__}; JSON object keys are strings"
    )


# ---------------------------------------------------------------------------
# JSON -> Python


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _expected(path: str, what: str, value: Any) -> InvalidArgument:
    return InvalidArgument(path, f"expected {what}, got {_json_type(value)}")


def from_json(value: Any, tp: Any, path: str) -> Any:
    """Convert the JSON ``value`` to the Python value annotation ``tp`` asks for."""
    tp, _ = unwrap(tp)
    if tp is Any or tp is object or tp is inspect.Parameter.empty:
        return value
    if tp is None or tp is NoneType:
        if value is not None:
            raise _expected(path, "null", value)
        return None
    if tp is str:
        if not isinstance(value, str):
            raise _expected(path, "a string", value)
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise _expected(path, "a boolean", value)
        return value
    if tp is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _expected(path, "an integer", value)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _expected(path, "a number", value)
        try:
            return float(value)
        except OverflowError:
            raise InvalidArgument(path, f"{value} is too large for a float") from None
    if is_union(tp):
        return _union_from_json(value, tp, path)
    origin = get_origin(tp)
    if origin is Literal:
        for allowed in get_args(tp):
            plain = allowed.value if isinstance(allowed, enum.Enum) else allowed
            if type(plain) is type(value) and plain == value:
                return allowed
        choices = ", ".join(repr(a) for a in get_args(tp))
        raise InvalidArgument(path, f"expected one of {choices}, got {value!r}")
    if is_enum_type(tp):
        return _enum_from_json(value, tp, path)
    if is_dataclass_type(tp):
        return _dataclass_from_json(value, tp, path)
    if is_typeddict(tp):
        return _typeddict_from_json(value, tp, path)
    if tp in ARRAY_ORIGINS or origin in ARRAY_ORIGINS:
        return _array_from_json(value, tp, origin or tp, path)
    if tp in MAPPING_ORIGINS or origin in MAPPING_ORIGINS:
        if not isinstance(value, dict):
            raise _expected(path, "an object", value)
        args = get_args(tp)
        if not args:
            return dict(value)
        return {key: from_json(item, args[1], f"{path}.{key}") for key, item in value.items()}
    return value


def _union_from_json(value: Any, tp: Any, path: str) -> Any:
    arms = get_args(tp)
    if value is None and (NoneType in arms or None in arms):
        return None
    errors = []
    for arm in arms:
        if arm is NoneType:
            continue
        try:
            return from_json(value, arm, path)
        except InvalidArgument as exc:
            errors.append(exc.detail)
    if len(errors) == 1:
        raise InvalidArgument(path, errors[0])
    raise InvalidArgument(path, f"the value fits none of {type_name(tp)} ({'; '.join(errors)})")


def _enum_from_json(value: Any, tp: Any, path: str) -> Any:
    for member in tp:
        if type(member.value) is type(value) and member.value == value:
            return member
    choices = ", ".join(repr(m.value) for m in tp)
    raise InvalidArgument(path, f"expected one of {choices} ({tp.__name__}), got {value!r}")


def _dataclass_from_json(value: Any, tp: type, path: str) -> Any:
    if not isinstance(value, dict):
        raise _expected(path, f"an object ({tp.__qualname__})", value)
    import dataclasses  # loaded already: tp is a dataclass

    hints = typing.get_type_hints(tp, include_extras=True)
    fields = {field.name: field for field in dataclasses.fields(tp) if field.init}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise InvalidArgument(
            path, f"unknown member(s) {', '.join(map(repr, unknown))} for {tp.__qualname__}"
        )
    kwargs = {}
    missing = []
    for name, field in fields.items():
        if name in value:
            kwargs[name] = from_json(value[name], hints.get(name, Any), f"{path}.{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            missing.append(name)
    if missing:
        raise InvalidArgument(
            path, f"missing member(s) {', '.join(map(repr, missing))} of {tp.__qualname__}"
        )
    return tp(**kwargs)


def _typeddict_from_json(value: Any, tp: type, path: str) -> Any:
    if not isinstance(value, dict):
        raise _expected(path, f"an object ({tp.__qualname__})", value)
    hints = typing.get_type_hints(tp, include_extras=True)
    missing = [
        key for key in hints if key in typeddict_required_keys(tp, hints) and key not in value
    ]
    if missing:
        raise InvalidArgument(
            path, f"missing member(s) {', '.join(map(repr, missing))} of {tp.__qualname__}"
        )
    return {
        key: from_json(item, hints[key], f"{path}.{key}") if key in hints else item
        for key, item in value.items()
    }


def _array_from_json(value: Any, tp: Any, origin: Any, path: str) -> Any:
    if not isinstance(value, (list, tuple)):
        raise _expected(path, "an array", value)
    args = get_args(tp)
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if args == ((),):
            args = ()
        if len(value) != len(args):
            raise InvalidArgument(path, f"expected an array of {len(args)} items, got {len(value)}")
        return tuple(
            from_json(item, arg, f"{path}[{i}]") for i, (item, arg) in enumerate(zip(value, args))
        )
    items = [
        from_json(item, args[0], f"{path}[{i}]") if args else item for i, item in enumerate(value)
    ]
    if origin is tuple:
        return tuple(items)
    if origin is frozenset:
        return frozenset(items)
    if origin in SET_ORIGINS:
        return set(items)
    return items
