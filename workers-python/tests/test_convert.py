"""JSON values to annotated Python values and back."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, FrozenSet, Literal, Optional, TypedDict, Union

import pytest

from flw._convert import InvalidArgument, NotJSONSerializable, from_json, to_json


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    LOW = 1


@dataclass
class Inner:
    n: int


@dataclass
class Outer:
    inner: Inner
    inners: list[Inner] = field(default_factory=list)
    color: Color = Color.RED


class Movie(TypedDict):
    title: str
    inner: Inner


@pytest.mark.parametrize(
    ("value", "annotation", "expected"),
    [
        ("s", str, "s"),
        (1, int, 1),
        (2.0, int, 2),
        (1, float, 1.0),
        (True, bool, True),
        (None, None, None),
        (None, Optional[int], None),
        (3, Optional[int], 3),
        ("x", Union[int, str], "x"),
        (1.5, Union[int, float], 1.5),
        ("a", Literal["a", "b"], "a"),
        ("red", Literal[Color.RED], Color.RED),
        ("red", Color, Color.RED),
        (1, Level, Level.LOW),
        ([1, 2], list[int], [1, 2]),
        ([1, 2], Sequence[int], [1, 2]),
        ([1, 1], set[int], {1}),
        ([1], FrozenSet[int], frozenset({1})),
        ([1, 2], tuple[int, ...], (1, 2)),
        ([1, "a"], tuple[int, str], (1, "a")),
        ({"a": {"n": 1}}, dict[str, Inner], {"a": Inner(1)}),
        (
            {"inner": {"n": 1}, "inners": [{"n": 2}]},
            Outer,
            Outer(Inner(1), [Inner(2)]),
        ),
        (
            {"title": "t", "inner": {"n": 1}, "x": 1},
            Movie,
            {"title": "t", "inner": Inner(1), "x": 1},
        ),
        ({"anything": [1]}, Any, {"anything": [1]}),
        ({"k": "v"}, dict, {"k": "v"}),
    ],
)
def test_from_json(value: Any, annotation: Any, expected: Any) -> None:
    result = from_json(value, annotation, "arg")
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("value", "annotation", "words"),
    [
        (1, str, "expected a string, got integer"),
        (True, int, "expected an integer, got boolean"),
        (1.5, int, "expected an integer, got number"),
        ("1", float, "expected a number"),
        (1, bool, "expected a boolean"),
        (1, None, "expected null"),
        ("c", Literal["a", "b"], "expected one of 'a', 'b'"),
        ("blue", Color, "expected one of 'red' (Color)"),
        ([1], tuple[int, int], "expected an array of 2 items, got 1"),
        ({}, list[int], "expected an array, got object"),
        ([], dict[str, int], "expected an object"),
        ({"inner": {}}, Outer, "missing member(s) 'n' of Inner"),
        ({"title": "t"}, Movie, "missing member(s) 'inner' of Movie"),
        ([1.5], Union[list[int], str], "fits none of"),
    ],
)
def test_from_json_errors(value: Any, annotation: Any, words: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        from_json(value, annotation, "arg")
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (Outer(Inner(1), [Inner(2)]), {"inner": {"n": 1}, "inners": [{"n": 2}], "color": "red"}),
        (Color.RED, "red"),
        (Level.LOW, 1),
        ((1, (2, 3)), [1, [2, 3]]),
        ({3, 1, 2}, [1, 2, 3]),
        (frozenset({"b", "a"}), ["a", "b"]),
        (
            {"a": (1,), 2: "int key", Color.RED: "enum key"},
            {"a": [1], "2": "int key", "red": "enum key"},
        ),
        (1.5, 1.5),
    ],
)
def test_to_json(value: Any, expected: Any) -> None:
    assert to_json(value) == expected


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (object(), ["$:", "builtins.object"]),
        ({"a": [1, b"x"]}, ["$.a[1]", "bytes"]),
        (float("nan"), ["nan", "not a JSON number"]),
        ({(1, 2): 3}, ["key (1, 2)", "tuple"]),
        (Inner(n=object()), ["$.n"]),  # type: ignore[arg-type]
    ],
)
def test_to_json_errors_name_the_place_and_type(value: Any, words: list[str]) -> None:
    with pytest.raises(NotJSONSerializable) as info:
        to_json(value)
    for word in words:
        assert word in str(info.value)


def test_to_json_of_a_coroutine_explains() -> None:
    async def f() -> int:
        return 1

    coro = f()
    try:
        with pytest.raises(NotJSONSerializable, match="async"):
            to_json(coro)
    finally:
        coro.close()
