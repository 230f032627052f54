"""JSON Schema from type hints: every supported form, and clear errors for the rest."""

from __future__ import annotations

import enum
import sys
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Dict, List, Literal, NewType, Optional, Tuple, TypedDict, Union

import pytest

from flw import Context, Tool, ToolDefinitionError
from flw._schema import UnsupportedType, is_object_shaped, type_schema


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Mixed(enum.Enum):
    A = "a"
    B = 2


@dataclass
class Point:
    """A point.

    Attributes:
        x: across.
        y: down.
    """

    x: int
    y: int = 0


@dataclass
class Shape:
    name: str
    points: list[Point]
    color: Color = Color.RED
    tags: list[str] = field(default_factory=list)
    area: float = field(default=0.0, init=False)


class Movie(TypedDict):
    """A movie.

    Attributes:
        title: the title.
    """

    title: str
    year: int


class PartialMovie(TypedDict, total=False):
    title: str
    year: int


UserId = NewType("UserId", int)


@dataclass
class Node:
    value: int
    children: list[Node]


SCHEMAS: list[tuple[Any, dict[str, Any]]] = [
    (str, {"type": "string"}),
    (int, {"type": "integer"}),
    (float, {"type": "number"}),
    (bool, {"type": "boolean"}),
    (None, {"type": "null"}),
    (type(None), {"type": "null"}),
    (Any, {}),
    (object, {}),
    (Optional[int], {"anyOf": [{"type": "integer"}, {"type": "null"}]}),
    (Union[int, str], {"anyOf": [{"type": "integer"}, {"type": "string"}]}),
    (
        Union[int, str, None],
        {"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}]},
    ),
    (Literal["a", "b"], {"type": "string", "enum": ["a", "b"]}),
    (Literal[1, 2], {"type": "integer", "enum": [1, 2]}),
    (Literal[True], {"type": "boolean", "enum": [True]}),
    (Literal["a", 1, None], {"enum": ["a", 1, None]}),
    (Literal[Color.RED], {"type": "string", "enum": ["red"]}),
    (list[int], {"type": "array", "items": {"type": "integer"}}),
    (List[str], {"type": "array", "items": {"type": "string"}}),
    (Sequence[float], {"type": "array", "items": {"type": "number"}}),
    (list, {"type": "array"}),
    (List, {"type": "array"}),
    (list[Any], {"type": "array"}),
    (set[str], {"type": "array", "items": {"type": "string"}, "uniqueItems": True}),
    (frozenset[int], {"type": "array", "items": {"type": "integer"}, "uniqueItems": True}),
    (tuple[int, ...], {"type": "array", "items": {"type": "integer"}}),
    (
        Tuple[int, str],
        {
            "type": "array",
            "prefixItems": [{"type": "integer"}, {"type": "string"}],
            "items": False,
            "minItems": 2,
            "maxItems": 2,
        },
    ),
    (dict[str, int], {"type": "object", "additionalProperties": {"type": "integer"}}),
    (Dict[str, Any], {"type": "object"}),
    (
        Mapping[str, list[str]],
        {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
    ),
    (dict, {"type": "object"}),
    (Color, {"type": "string", "enum": ["red", "green"]}),
    (Level, {"type": "integer", "enum": [1, 2]}),
    (Mixed, {"enum": ["a", 2]}),
    (UserId, {"type": "integer"}),
    (Annotated[str, "a name"], {"type": "string", "description": "a name"}),
    (Annotated[int, object(), "counted"], {"type": "integer", "description": "counted"}),
    (
        list[Annotated[str, "a tag"]],
        {"type": "array", "items": {"type": "string", "description": "a tag"}},
    ),
    (
        Point,
        {
            "type": "object",
            "properties": {
                "x": {"type": "integer", "description": "across."},
                "y": {"type": "integer", "description": "down.", "default": 0},
            },
            "required": ["x"],
            "additionalProperties": False,
        },
    ),
    (
        Movie,
        {
            "type": "object",
            "properties": {
                "title": {"type": "string", "description": "the title."},
                "year": {"type": "integer"},
            },
            "required": ["title", "year"],
        },
    ),
    (
        PartialMovie,
        {
            "type": "object",
            "properties": {"title": {"type": "string"}, "year": {"type": "integer"}},
        },
    ),
]


@pytest.mark.parametrize(("annotation", "expected"), SCHEMAS, ids=[repr(a) for a, _ in SCHEMAS])
def test_type_schema(annotation: Any, expected: dict[str, Any]) -> None:
    assert type_schema(annotation) == expected


@pytest.mark.skipif(sys.version_info < (3, 10), reason="X | Y needs Python 3.10")
def test_pep604_unions() -> None:
    hint = eval("int | None")
    assert type_schema(hint) == {"anyOf": [{"type": "integer"}, {"type": "null"}]}
    hint = eval("list[str] | dict[str, int]")
    assert type_schema(hint) == {
        "anyOf": [
            {"type": "array", "items": {"type": "string"}},
            {"type": "object", "additionalProperties": {"type": "integer"}},
        ]
    }


if hasattr(typing, "NotRequired"):

    class Opt(TypedDict):
        a: int
        b: typing.NotRequired[str]


@pytest.mark.skipif(not hasattr(typing, "NotRequired"), reason="NotRequired needs Python 3.11")
def test_typeddict_not_required() -> None:
    assert type_schema(Opt) == {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
        "required": ["a"],
    }


def test_nested_dataclass_input_and_output() -> None:
    point = type_schema(Point)
    assert type_schema(Shape) == {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "points": {"type": "array", "items": point},
            "color": {"type": "string", "enum": ["red", "green"], "default": "red"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["name", "points"],
        "additionalProperties": False,
    }
    output = type_schema(Shape, "output")
    assert list(output["properties"]) == ["name", "points", "color", "tags", "area"]
    assert output["required"] == ["name", "points", "color", "tags", "area"]
    assert "default" not in output["properties"]["color"]


@pytest.mark.parametrize(
    ("annotation", "words"),
    [
        (bytes, ["bytes", "supported"]),
        (list[bytes], ["bytes", "items"]),
        (dict[int, str], ["key type must be str", "int"]),
        (Node, ["Node refers to itself"]),
        (Literal[b"x"], ["not a JSON scalar"]),
        (typing.TypeVar("T"), ["type variables"]),
        (Optional[complex], ["complex", "union member 1"]),
    ],
)
def test_unsupported_types(annotation: Any, words: list[str]) -> None:
    with pytest.raises(UnsupportedType) as info:
        type_schema(annotation)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize(
    ("annotation", "shaped"),
    [
        (Point, True),
        (Movie, True),
        (dict[str, int], True),
        (dict, True),
        (Mapping[str, Any], True),
        (Annotated[Point, "x"], True),
        (Optional[Point], False),
        (list[Point], False),
        (str, False),
        (Any, False),
    ],
)
def test_object_shaped(annotation: Any, shaped: bool) -> None:
    assert is_object_shaped(annotation) is shaped


# -- whole tools ---------------------------------------------------------------


def test_tool_input_schema_with_defaults_descriptions_and_context() -> None:
    def search(
        query: str,
        limit: int = 10,
        mode: Literal["fast", "deep"] = "fast",
        since: Optional[str] = None,
        color: Color = Color.GREEN,
        weights: tuple[float, ...] = (1.0, 2.0),
        opaque: object = object(),
        ctx: Context = None,
    ) -> list[str]:
        """Search the index.

        More words about searching.

        Args:
            query: What to look for;
                may span lines.
            limit (int): At most this many.
            ctx: The context (not in the schema).

        Returns:
            The hits.
        """
        return []

    entry = Tool(search)
    assert entry.description == "Search the index.\n\nMore words about searching."
    assert entry.context_param == "ctx"
    assert entry.output_schema is None
    assert entry.input_schema == {
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "What to look for; may span lines."},
            "limit": {"type": "integer", "description": "At most this many.", "default": 10},
            "mode": {"type": "string", "enum": ["fast", "deep"], "default": "fast"},
            "since": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
            "color": {"type": "string", "enum": ["red", "green"], "default": "green"},
            "weights": {"type": "array", "items": {"type": "number"}, "default": [1.0, 2.0]},
            "opaque": {},
        },
        "required": ["query"],
        "additionalProperties": False,
    }


def test_annotated_description_wins_over_docstring() -> None:
    def f(name: Annotated[str, "from Annotated"]) -> None:
        """F.

        Args:
            name: from the docstring
        """

    assert Tool(f).input_schema["properties"]["name"] == {
        "type": "string",
        "description": "from Annotated",
    }


def test_missing_annotations_are_any() -> None:
    def f(a, b=3):  # type: ignore[no-untyped-def]
        return a

    schema = Tool(f).input_schema
    assert schema == {
        "type": "object",
        "properties": {"a": {}, "b": {"default": 3}},
        "required": ["a"],
        "additionalProperties": False,
    }


def test_empty_tool_schema_has_no_required() -> None:
    def now() -> str:
        return "now"

    assert Tool(now).input_schema == {
        "type": "object",
        "properties": {},
        "additionalProperties": False,
    }
    assert Tool(now).description == ""


@pytest.mark.parametrize(
    "annotation",
    [Context, Optional[Context], Annotated[Context, "the call"], Union[None, Context]],
)
def test_context_parameter_forms_are_left_out(annotation: Any) -> None:
    def f(x: int, ctx=None) -> None:  # type: ignore[no-untyped-def]
        pass

    f.__annotations__["ctx"] = annotation
    entry = Tool(f)
    assert entry.context_param == "ctx"
    assert list(entry.input_schema["properties"]) == ["x"]


def test_context_mixed_with_other_types_is_an_error() -> None:
    def f(ctx: Union[Context, int]) -> None:
        pass

    with pytest.raises(ToolDefinitionError, match="mixes Context"):
        Tool(f)


@pytest.mark.parametrize(
    ("returns", "expected"),
    [
        (Point, type_schema(Point, "output")),
        (Movie, type_schema(Movie, "output")),
        (dict[str, int], {"type": "object", "additionalProperties": {"type": "integer"}}),
        (dict, {"type": "object"}),
        (str, None),
        (list[Point], None),
        (Optional[Point], None),
        (None, None),
    ],
)
def test_output_schema_only_for_objects(returns: Any, expected: dict[str, Any] | None) -> None:
    def f() -> None:
        pass

    f.__annotations__["return"] = returns
    assert Tool(f).output_schema == expected
    manifest = Tool(f).manifest()
    assert ("output_schema" in manifest) is (expected is not None)
    assert list(manifest)[:3] == ["name", "description", "input_schema"]


def test_unsupported_parameter_type_names_tool_parameter_and_type() -> None:
    def upload(name: str, data: list[bytes]) -> None:
        pass

    with pytest.raises(ToolDefinitionError) as info:
        Tool(upload)
    message = str(info.value)
    assert "'upload'" in message
    assert "'data'" in message
    assert "list[bytes]" in message
    assert "bytes" in message


@dataclass
class Blob:
    data: bytes


def test_unsupported_type_inside_object_result_is_an_error() -> None:
    def fetch() -> Blob:
        return Blob(b"")

    with pytest.raises(ToolDefinitionError, match="return type"):
        Tool(fetch)


def test_star_parameters_are_rejected() -> None:
    def f(*args: int) -> None:
        pass

    def g(**kwargs: int) -> None:
        pass

    with pytest.raises(ToolDefinitionError, match=r"\*args"):
        Tool(f)
    with pytest.raises(ToolDefinitionError, match=r"\*\*kwargs"):
        Tool(g)


def test_forward_reference_resolved_later() -> None:
    namespace: dict[str, Any] = {}
    exec(
        "from __future__ import annotations\n"
        "from dataclasses import dataclass\n"
        "from flw import Tool\n"
        "def f(p: Later) -> Later:\n"
        "    return p\n"
        "entry = Tool(f)\n"
        "@dataclass\n"
        "class Later:\n"
        "    a: int\n",
        namespace,
    )
    entry = namespace["entry"]
    assert entry.input_schema["properties"]["p"]["properties"] == {"a": {"type": "integer"}}
    assert entry.output_schema is not None


def test_forward_reference_never_defined_is_a_clear_error() -> None:
    def f(p: Missing) -> None:  # type: ignore[name-defined]  # noqa: F821
        pass

    entry = Tool(f)
    with pytest.raises(ToolDefinitionError, match="not defined"):
        _ = entry.input_schema


@pytest.mark.skipif(sys.version_info < (3, 10), reason="X | Y needs Python 3.10")
def test_runtime_pep604_annotations_in_a_tool() -> None:
    """Annotations evaluated at definition time (no __future__ import) are real UnionTypes."""
    namespace: dict[str, Any] = {}
    code = compile(
        "from flw import Context\n"
        "def f(a: int | None, b: str | int = 1, ctx: Context | None = None) -> dict[str, int]:\n"
        "    return {}\n",
        "<runtime>",
        "exec",
        dont_inherit=True,
    )
    exec(code, namespace)
    entry = Tool(namespace["f"])
    assert entry.context_param == "ctx"
    assert entry.input_schema["properties"] == {
        "a": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        "b": {"anyOf": [{"type": "string"}, {"type": "integer"}], "default": 1},
    }
    assert entry.output_schema == {"type": "object", "additionalProperties": {"type": "integer"}}
