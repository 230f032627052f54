"""JSON Schema (2020-12) from Python type annotations.

``type_schema`` maps one annotation to a schema: scalars, ``None``,
``Optional``/``Union``/``X | Y``, ``Literal``, ``Enum`` subclasses, lists,
sets, tuples, dicts with string keys, dataclasses and ``TypedDict``
classes, nested freely; ``Annotated[T, "text"]`` adds a description. An
annotation it cannot map raises :class:`UnsupportedType`, which says what
is wrong and where inside the annotation.
"""

from __future__ import annotations

import enum
import inspect
import typing
from typing import Any, Literal, get_args, get_origin

from ._convert import NotJSONSerializable, to_json
from ._docstring import parse_docstring
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

SUPPORTED = (
    "str, int, float, bool, None, Any, Optional/Union/X | Y, Literal, Enum subclasses, "
    "list/Sequence/set/tuple, dict/Mapping with str keys, dataclasses, TypedDict, "
    "Annotated[T, 'description']"
)
"""The supported annotation forms, for error messages."""

_SCALARS: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    NoneType: {"type": "null"},
    None: {"type": "null"},
}

_JSON_TYPES: dict[type, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    NoneType: "null",
}

Mode = Literal["input", "output"]


class UnsupportedType(TypeError):
    """An annotation that has no JSON Schema here.

    ``annotation`` is the offending (innermost) annotation, ``reason`` what
    is wrong with it, and ``path`` where it sits (``items``, ``field 'x'``).
    """

    def __init__(self, annotation: Any, reason: str, path: tuple[str, ...] = ()) -> None:
        self.annotation = annotation
        self.reason = reason
        self.path = path
        super().__init__(self.describe())

    def describe(self) -> str:
        """The reason, with the location inside the annotation when nested."""
        where = f" (at {' > '.join(self.path)})" if self.path else ""
        return f"{self.reason}{where}"

    def inside(self, step: str) -> UnsupportedType:
        """The same error one level further out."""
        return UnsupportedType(self.annotation, self.reason, (step, *self.path))


def json_default(value: Any) -> tuple[bool, Any]:
    """``(True, json_value)`` when a default value can be written as JSON."""
    try:
        return True, to_json(value)
    except (NotJSONSerializable, RecursionError):
        return False, None


def type_schema(tp: Any, mode: Mode = "input", _stack: tuple[type, ...] = ()) -> dict[str, Any]:
    """The JSON Schema of values of annotation ``tp``.

    ``mode`` is ``"input"`` for arguments (dataclass fields that ``__init__``
    takes; required when they have no default) or ``"output"`` for results
    (every field, all required). Raises :class:`UnsupportedType`.
    """
    bare, description = unwrap(tp)
    schema = _bare_schema(bare, mode, _stack)
    if description is not None:
        schema = {**schema, "description": description}
    return schema


def is_object_shaped(tp: Any) -> bool:
    """Whether values of ``tp`` are JSON objects (dataclass, TypedDict, dict)."""
    bare, _ = unwrap(tp)
    if is_dataclass_type(bare) or is_typeddict(bare):
        return True
    return bare in MAPPING_ORIGINS or get_origin(bare) in MAPPING_ORIGINS


def _bare_schema(tp: Any, mode: Mode, stack: tuple[type, ...]) -> dict[str, Any]:
    if tp is Any or tp is object or tp is inspect.Parameter.empty:
        return {}
    try:
        scalar = _SCALARS.get(tp)
    except TypeError:  # unhashable annotation
        scalar = None
    if scalar is not None:
        return dict(scalar)
    if is_union(tp):
        return _union_schema(tp, mode, stack)
    origin = get_origin(tp)
    if origin is Literal:
        return _literal_schema(tp)
    if is_enum_type(tp):
        return _enum_schema(tp)
    if is_dataclass_type(tp):
        return _dataclass_schema(tp, mode, stack)
    if is_typeddict(tp):
        return _typeddict_schema(tp, mode, stack)
    if tp in ARRAY_ORIGINS or origin in ARRAY_ORIGINS:
        return _array_schema(tp, origin or tp, mode, stack)
    if tp in MAPPING_ORIGINS or origin in MAPPING_ORIGINS:
        return _mapping_schema(tp, mode, stack)
    if isinstance(tp, (str, typing.ForwardRef)):
        raise UnsupportedType(tp, f"the forward reference {tp!r} could not be resolved")
    if isinstance(tp, typing.TypeVar):
        raise UnsupportedType(tp, f"type variables such as {tp!r} are not supported")
    raise UnsupportedType(tp, f"{type_name(tp)} has no JSON Schema; supported: {SUPPORTED}")


def _union_schema(tp: Any, mode: Mode, stack: tuple[type, ...]) -> dict[str, Any]:
    arms = []
    for i, arm in enumerate(get_args(tp)):
        try:
            arms.append(type_schema(arm, mode, stack))
        except UnsupportedType as exc:
            raise exc.inside(f"union member {i + 1}") from None
    return {"anyOf": arms}


def _uniform_type(values: list[Any]) -> str | None:
    kinds = {_JSON_TYPES.get(type(value)) for value in values}
    if len(kinds) == 1:
        return kinds.pop()
    return None


def _literal_schema(tp: Any) -> dict[str, Any]:
    values = []
    for value in get_args(tp):
        if is_enum_type(type(value)):
            value = value.value
        if type(value) not in _JSON_TYPES:
            raise UnsupportedType(tp, f"the Literal value {value!r} is not a JSON scalar")
        values.append(value)
    kind = _uniform_type(values)
    return {"type": kind, "enum": values} if kind else {"enum": values}


def _enum_schema(tp: type[enum.Enum]) -> dict[str, Any]:
    values = []
    for member in tp:
        ok, value = json_default(member.value)
        if not ok:
            raise UnsupportedType(
                tp, f"the value of {tp.__name__}.{member.name} ({member.value!r}) is not JSON"
            )
        values.append(value)
    kind = _uniform_type(values)
    return {"type": kind, "enum": values} if kind else {"enum": values}


def _array_schema(tp: Any, origin: Any, mode: Mode, stack: tuple[type, ...]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "array"}
    args = get_args(tp)
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if args == ((),):  # Tuple[()]
            args = ()
        prefix = []
        for i, arg in enumerate(args):
            try:
                prefix.append(type_schema(arg, mode, stack))
            except UnsupportedType as exc:
                raise exc.inside(f"tuple item {i}") from None
        if prefix:
            schema["prefixItems"] = prefix
        schema["items"] = False
        schema["minItems"] = len(prefix)
        schema["maxItems"] = len(prefix)
        return schema
    if args:
        try:
            items = type_schema(args[0], mode, stack)
        except UnsupportedType as exc:
            raise exc.inside("items") from None
        if items:
            schema["items"] = items
    if origin in SET_ORIGINS:
        schema["uniqueItems"] = True
    return schema


def _mapping_schema(tp: Any, mode: Mode, stack: tuple[type, ...]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object"}
    args = get_args(tp)
    if not args:
        return schema
    key, _ = unwrap(args[0])
    if key is not str and key is not Any:
        raise UnsupportedType(
            tp, f"JSON object keys are strings, so the key type must be str, not {type_name(key)}"
        )
    try:
        values = type_schema(args[1], mode, stack)
    except UnsupportedType as exc:
        raise exc.inside("values") from None
    if values:
        schema["additionalProperties"] = values
    return schema


def _class_hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls, include_extras=True)
    except NameError:
        raise
    except Exception as exc:
        raise UnsupportedType(
            cls, f"the annotations of {cls.__qualname__} cannot be read: {exc}"
        ) from None


def _guard(cls: type, stack: tuple[type, ...]) -> tuple[type, ...]:
    if cls in stack:
        raise UnsupportedType(
            cls, f"{cls.__qualname__} refers to itself; recursive types are not supported"
        )
    return (*stack, cls)


def _dataclass_schema(cls: type, mode: Mode, stack: tuple[type, ...]) -> dict[str, Any]:
    import dataclasses  # loaded already: cls is a dataclass

    stack = _guard(cls, stack)
    hints = _class_hints(cls)
    docs = parse_docstring(cls.__doc__).params
    properties: dict[str, Any] = {}
    required: list[str] = []
    for field in dataclasses.fields(cls):
        if mode == "input" and not field.init:
            continue
        try:
            prop = type_schema(hints.get(field.name, Any), mode, stack)
        except UnsupportedType as exc:
            raise exc.inside(f"{cls.__qualname__}.{field.name}") from None
        if "description" not in prop and field.name in docs:
            prop["description"] = docs[field.name]
        has_default = field.default is not dataclasses.MISSING
        has_factory = field.default_factory is not dataclasses.MISSING
        if mode == "input" and has_default:
            ok, value = json_default(field.default)
            if ok:
                prop["default"] = value
        if mode == "output" or not (has_default or has_factory):
            required.append(field.name)
        properties[field.name] = prop
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    schema["additionalProperties"] = False
    return schema


def _typeddict_schema(cls: type, mode: Mode, stack: tuple[type, ...]) -> dict[str, Any]:

    stack = _guard(cls, stack)
    hints = _class_hints(cls)
    docs = parse_docstring(cls.__doc__).params
    required_keys = typeddict_required_keys(cls, hints)
    properties: dict[str, Any] = {}
    for name, hint in hints.items():
        try:
            prop = type_schema(hint, mode, stack)
        except UnsupportedType as exc:
            raise exc.inside(f"{cls.__qualname__}.{name}") from None
        if "description" not in prop and name in docs:
            prop["description"] = docs[name]
        properties[name] = prop
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    required = [name for name in hints if name in required_keys]
    if required:
        schema["required"] = required
    return schema
