"""Small helpers to take runtime type annotations apart on Python 3.9 and later.

They hide the differences between versions: ``X | None`` is a
``types.UnionType`` on 3.10+, ``typing.is_typeddict`` and ``NewType`` as a
class appear in 3.10, ``Required``/``NotRequired`` in 3.11.
"""

from __future__ import annotations

import collections.abc
import enum
import inspect
import types
import typing
from typing import Any, Union, get_args, get_origin

NoneType = type(None)

_UNION_ORIGINS: tuple[Any, ...] = (Union,)
if hasattr(types, "UnionType"):  # Python 3.10+: X | Y
    _UNION_ORIGINS += (types.UnionType,)

_REQUIRED_WRAPPERS: tuple[Any, ...] = tuple(
    getattr(typing, name)
    for name in ("Required", "NotRequired", "ReadOnly")
    if hasattr(typing, name)
)

ARRAY_ORIGINS: frozenset[Any] = frozenset(
    {
        list,
        tuple,
        set,
        frozenset,
        collections.abc.Sequence,
        collections.abc.MutableSequence,
        collections.abc.Set,
        collections.abc.MutableSet,
        collections.abc.Collection,
        collections.abc.Iterable,
    }
)
"""Container types written as a JSON array."""

SET_ORIGINS: frozenset[Any] = frozenset(
    {set, frozenset, collections.abc.Set, collections.abc.MutableSet}
)

MAPPING_ORIGINS: frozenset[Any] = frozenset(
    {dict, collections.abc.Mapping, collections.abc.MutableMapping}
)
"""Container types written as a JSON object with string keys."""


def strip_annotated(tp: Any) -> tuple[Any, tuple[Any, ...]]:
    """Return ``(inner type, metadata)`` for ``Annotated[T, ...]``, else ``(tp, ())``."""
    metadata: tuple[Any, ...] = ()
    while get_origin(tp) is typing.Annotated:
        metadata += tuple(tp.__metadata__)
        tp = tp.__origin__
    return tp, metadata


def description_of(metadata: tuple[Any, ...]) -> str | None:
    """The first string in ``Annotated`` metadata, used as a description."""
    for item in metadata:
        if isinstance(item, str):
            return item
    return None


def unwrap(tp: Any) -> tuple[Any, str | None]:
    """Strip ``Annotated``, ``NewType`` and ``Required``-style wrappers.

    Returns the bare type and the description found in ``Annotated``.
    """
    description: str | None = None
    while True:
        tp, metadata = strip_annotated(tp)
        if description is None:
            description = description_of(metadata)
        if _REQUIRED_WRAPPERS and get_origin(tp) in _REQUIRED_WRAPPERS:
            tp = get_args(tp)[0]
        elif is_newtype(tp):
            tp = tp.__supertype__
        else:
            return tp, description


def is_newtype(tp: Any) -> bool:
    """Whether ``tp`` was made by ``typing.NewType``."""
    return callable(tp) and hasattr(tp, "__supertype__") and not isinstance(tp, type)


def is_union(tp: Any) -> bool:
    """Whether ``tp`` is ``Union[...]``, ``Optional[...]`` or ``X | Y``."""
    return get_origin(tp) in _UNION_ORIGINS


def is_typeddict(tp: Any) -> bool:
    """Whether ``tp`` is a ``TypedDict`` class."""
    check = getattr(typing, "is_typeddict", None)
    if check is not None:
        return bool(check(tp))
    return (
        isinstance(tp, type)
        and issubclass(tp, dict)
        and hasattr(tp, "__required_keys__")
        and hasattr(tp, "__total__")
    )


def typeddict_required_keys(cls: type, hints: dict[str, Any]) -> frozenset[str]:
    """The required keys of a ``TypedDict``, from ``Required``/``NotRequired``
    markers when the hints carry them (``__required_keys__`` misses markers
    written as strings under ``from __future__ import annotations``).
    """
    declared: frozenset[str] = getattr(cls, "__required_keys__", frozenset(hints))
    required = set(declared)
    for name, hint in hints.items():
        marker = get_origin(strip_annotated(hint)[0])
        if marker is not None and marker is getattr(typing, "NotRequired", None):
            required.discard(name)
        elif marker is not None and marker is getattr(typing, "Required", None):
            required.add(name)
    return frozenset(required)


def is_dataclass_type(tp: Any) -> bool:
    """Whether ``tp`` is a dataclass (the class, not an instance)."""
    return isinstance(tp, type) and hasattr(tp, "__dataclass_fields__")


def is_enum_type(tp: Any) -> bool:
    """Whether ``tp`` is an ``enum.Enum`` subclass."""
    return isinstance(tp, type) and issubclass(tp, enum.Enum)


def type_name(tp: Any) -> str:
    """A readable name for an annotation: ``list[int]``, ``Optional[str]``."""
    if tp is inspect.Parameter.empty:
        return "(no annotation)"
    return inspect.formatannotation(tp)
