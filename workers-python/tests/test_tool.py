"""The @tool decorator: registration, plain callables, names, docstrings, binding."""

from __future__ import annotations

import asyncio
import enum
import warnings
from dataclasses import dataclass
from typing import Annotated, Optional

import pytest

import flw
from flw import Context, InvalidArguments, Tool, ToolDefinitionError, registered_tools, tool


def test_bare_decorator_registers_and_returns_the_function() -> None:
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    decorated = tool(echo)
    assert decorated is echo
    assert echo("x") == "x"
    [entry] = registered_tools()
    assert entry.name == "echo"
    assert entry.fn is echo
    assert entry.description == "Return the text unchanged."
    assert entry.is_async is False


def test_decorator_with_arguments() -> None:
    @tool(name="stats.count", description="  Count things.  ")
    def count(items: list[str]) -> int:
        """Ignored docstring."""
        return len(items)

    assert count(["a", "b"]) == 2
    [entry] = registered_tools()
    assert entry.name == "stats.count"
    assert entry.description == "Count things."


def test_empty_parentheses_work() -> None:
    @tool()
    def ping() -> str:
        return "pong"

    assert ping() == "pong"
    assert [t.name for t in registered_tools()] == ["ping"]


def test_public_api() -> None:
    assert set(flw.__all__) == {
        "AsyncBatchFlow",
        "AsyncBatchNode",
        "AsyncFlow",
        "AsyncNode",
        "AsyncParallelBatchFlow",
        "AsyncParallelBatchNode",
        "BaseNode",
        "BatchFlow",
        "BatchNode",
        "Context",
        "Flow",
        "FunctionNode",
        "InvalidArguments",
        "Node",
        "NodeDefinitionError",
        "NodeError",
        "NodeResultError",
        "Parallel",
        "Sent",
        "Tool",
        "ToolDefinitionError",
        "__version__",
        "current_context",
        "llm",
        "node",
        "registered_nodes",
        "registered_tools",
        "run",
        "tool",
    }
    for name in flw.__all__:
        assert getattr(flw, name) is not None, name
    assert flw.__version__ == "0.1.0"


def test_async_tool_stays_a_coroutine_function_and_runs_without_a_worker() -> None:
    @tool
    async def slow(seconds: float, steps: int = 10, ctx: Context = None) -> str:
        """Sleep in steps, reporting progress."""
        for i in range(steps):
            if ctx is not None:
                await ctx.progress(i + 1, steps, f"step {i + 1}")
            await asyncio.sleep(seconds / steps)
        return "done"

    assert asyncio.iscoroutinefunction(slow)
    assert asyncio.run(slow(0.01)) == "done"
    assert asyncio.run(slow(0.01, 2, Context())) == "done"
    [entry] = registered_tools()
    assert entry.is_async
    assert entry.context_param == "ctx"


def test_context_default_instance_for_direct_calls() -> None:
    @tool
    def work(n: int, ctx: Context = Context()) -> int:  # noqa: B008
        ctx.progress(1, n)
        ctx.info("working")
        return n * 2

    assert work(3) == 6


def test_duplicate_names_raise_naming_both_functions() -> None:
    @tool(name="dup")
    def first() -> None:
        pass

    def second() -> None:
        pass

    with pytest.raises(ToolDefinitionError) as info:
        tool(name="dup")(second)
    message = str(info.value)
    assert "'dup'" in message
    assert "first" in message
    assert "second" in message
    assert [t.fn for t in registered_tools()] == [first]


def test_redefining_the_same_function_replaces_it() -> None:
    """Running a notebook cell again must not fail."""
    for version in (1, 2):
        namespace: dict[str, object] = {"tool": tool}
        exec(f"@tool\ndef cell() -> int:\n    return {version}\n", namespace)
    [entry] = registered_tools()
    assert entry.fn() == 2


@pytest.mark.parametrize("name", ["café", "a b", "", "x" * 129])
def test_invalid_names_are_rejected(name: str) -> None:
    def f() -> None:
        pass

    with pytest.raises(ToolDefinitionError, match="not a valid tool name"):
        tool(name=name)(f)


def test_lambda_needs_a_name() -> None:
    with pytest.raises(ToolDefinitionError, match="<lambda>"):
        tool(lambda: 1)
    assert tool(name="one")(lambda: 1)() == 1


def test_non_functions_are_rejected() -> None:
    with pytest.raises(ToolDefinitionError):
        tool(3)  # type: ignore[call-overload]
    with pytest.raises(ToolDefinitionError):
        tool(int)


def test_generators_are_rejected() -> None:
    def gen() -> object:
        yield 1

    with pytest.raises(ToolDefinitionError, match=r"ctx\.chunk"):
        tool(gen)


def test_docstring_sections_are_not_in_the_description() -> None:
    @tool
    def fetch(url: str, timeout: float = 5.0) -> str:
        """Fetch a URL.

        Follows redirects.

        Args:
            url: The address.
            timeout: Seconds to wait.

        Raises:
            ValueError: when the URL is bad.
        """
        return url

    [entry] = registered_tools()
    assert entry.description == "Fetch a URL.\n\nFollows redirects."
    props = entry.input_schema["properties"]
    assert props["url"]["description"] == "The address."
    assert props["timeout"]["description"] == "Seconds to wait."


# -- binding --------------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


@dataclass
class Point:
    x: int
    y: int = 0


@dataclass
class Path:
    name: str
    points: list[Point]
    start: Optional[Point] = None


def test_bind_converts_arguments() -> None:
    def draw(
        path: Path,
        color: Color,
        corners: tuple[Point, ...],
        tags: set[str],
        pair: tuple[int, str],
        scale: float,
        label: Annotated[str, "shown"] = "",
        ctx: Optional[Context] = None,
    ) -> None:
        pass

    ctx = Context(1, "draw")
    positional, keywords = Tool(draw).bind(
        {
            "path": {"name": "p", "points": [{"x": 1}, {"x": 2, "y": 3}], "start": {"x": 0}},
            "color": "green",
            "corners": [{"x": 9}],
            "tags": ["a", "a", "b"],
            "pair": [1, "one"],
            "scale": 2,
        },
        ctx,
    )
    assert positional == []
    assert keywords == {
        "path": Path("p", [Point(1), Point(2, 3)], Point(0)),
        "color": Color.GREEN,
        "corners": (Point(9),),
        "tags": {"a", "b"},
        "pair": (1, "one"),
        "scale": 2.0,
        "ctx": ctx,
    }
    assert isinstance(keywords["scale"], float)


def test_bind_positional_only_parameters() -> None:
    def f(a: int, b: int = 5, /, c: int = 7, ctx: Context = None) -> None:
        pass

    ctx = Context(1, "f")
    assert Tool(f).bind({"a": 1, "c": 2}, ctx) == ([1, 5], {"c": 2, "ctx": ctx})


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ({}, ["missing required argument(s) 'path', 'color'"]),
        ({"path": {"name": "p", "points": []}, "color": "red", "extra": 1}, ["unknown", "'extra'"]),
        ({"path": {"name": "p", "points": []}, "color": "blue"}, ["'color'", "'red', 'green'"]),
        ({"path": {"name": "p"}, "color": "red"}, ["'path'", "missing member(s) 'points'"]),
        (
            {"path": {"name": "p", "points": [{"x": "1"}]}, "color": "red"},
            ["path.points[0].x", "expected an integer, got string"],
        ),
        ({"path": {"name": 1, "points": [], "z": 0}, "color": "red"}, ["unknown member(s) 'z'"]),
        ({"path": [], "color": "red"}, ["expected an object (Path), got array"]),
        ({"path": {"name": "p", "points": []}, "color": "red", "ctx": 1}, ["unknown", "'ctx'"]),
    ],
)
def test_bind_rejects_bad_arguments_clearly(args: dict, words: list[str]) -> None:
    def draw(path: Path, color: Color, ctx: Context = None) -> None:
        pass

    with pytest.raises(InvalidArguments) as info:
        Tool(draw).bind(args, Context(1, "draw"))
    message = str(info.value)
    assert message.startswith("tool 'draw': ")
    for word in words:
        assert word in message


def test_context_methods_do_not_warn_when_not_awaited() -> None:
    ctx = Context()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ctx.progress(1)
        ctx.log("x")
        ctx.chunk("y")


def _plain(text: str, n: int, x: float = 1.5, flag: bool = False, ctx: Context = None) -> str:
    return text


@pytest.mark.parametrize(
    "args",
    [
        {"text": "a", "n": 1},
        {"text": "a", "n": 1, "x": 2.5, "flag": True},
        {"text": "a", "n": 3.0},  # converted to 3 on the long way
        {"text": "a", "n": 2, "x": 2},  # an int for a float: converted
        {"text": "a", "n": True},  # a bool is not an int
        {"text": 1, "n": 1},
        {"n": 1},
        {"text": "a", "n": 1, "extra": 0},
    ],
)
def test_the_plain_bind_agrees_with_the_long_way(args: dict) -> None:
    entry = Tool(_plain)
    ctx = Context(1, "_plain")

    def outcome(fn: object) -> object:
        try:
            positional, keywords = fn(args, ctx)  # type: ignore[operator]
        except InvalidArguments as exc:
            return ("error", str(exc))
        return (
            positional,
            {k: (v, type(v)) for k, v in keywords.items()},
        )

    assert outcome(entry.bind) == outcome(entry._bind)
    assert entry._plan is not None  # the plain way was tried
