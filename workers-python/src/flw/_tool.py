"""The ``@tool`` decorator, the ``Tool`` description it builds, and the registry.

``@tool`` reads the function's signature, type hints and docstring, builds
the input (and, for object results, output) JSON Schema, registers the tool
under its name and returns the function unchanged. ``Tool.bind`` turns a
call's arguments into the positional and keyword arguments of the function.
"""

from __future__ import annotations

import contextlib
import inspect
import typing
from collections.abc import Mapping
from typing import Any, Callable, NamedTuple, TypeVar, overload

from ._context import Context
from ._convert import InvalidArgument, from_json
from ._docstring import parse_docstring
from ._schema import UnsupportedType, is_object_shaped, json_default, type_schema
from ._typing import NoneType, is_union, type_name, unwrap
from .worker._protocol import is_valid_tool_name

F = TypeVar("F", bound=Callable[..., Any])

_EMPTY = inspect.Parameter.empty


class ToolDefinitionError(TypeError):
    """A function that cannot become a tool (bad annotation, name, signature)."""


class InvalidArguments(ValueError):
    """Call arguments that do not fit the tool's parameters."""


class _Param(NamedTuple):
    name: str
    annotation: Any
    kind: Any
    default: Any
    is_context: bool


class _Plan(NamedTuple):
    """How to bind arguments without conversions, for tools whose every
    parameter takes JSON values as they are (``str``, ``bool``, ``int``,
    ``float``, ``Any``)."""

    names: frozenset[str]
    required: tuple[str, ...]
    exact: dict[str, type | None]  # the type a value must have exactly; None: any
    context: str | None


_EXACT_TYPES: dict[Any, type | None] = {
    str: str,
    bool: bool,
    int: int,
    float: float,
    Any: None,
    object: None,
    _EMPTY: None,
}


class _Analysis(NamedTuple):
    params: tuple[_Param, ...]
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None


class Tool:
    """A registered tool: the function and what the worker announces for it.

    Made by ``@tool``; ``Tool(fn)`` builds one without registering it.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
    ) -> None:
        if not callable(fn) or isinstance(fn, type):
            raise ToolDefinitionError(f"@tool expects a function, got {fn!r}")
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            raise ToolDefinitionError(
                f"@tool: {_qualname(fn)} is a generator; tools return one value "
                "(stream pieces with ctx.chunk())"
            )
        self.fn = fn
        self.name: str = name if name is not None else getattr(fn, "__name__", "")
        if not isinstance(self.name, str) or not is_valid_tool_name(self.name):
            raise ToolDefinitionError(
                f"@tool: {self.name!r} ({_qualname(fn)}) is not a valid tool name: use 1-128 "
                "characters of A-Z a-z 0-9 _ - . (pass @tool(name=...))"
            )
        self._doc = parse_docstring(inspect.getdoc(fn))
        self.description: str = (
            inspect.cleandoc(description).strip()
            if description is not None
            else self._doc.description
        )
        self.is_async: bool = inspect.iscoroutinefunction(fn)
        self._analysis: _Analysis | None = None
        self._plan: _Plan | None = None
        self._planned = False  # _plan was worked out (None then: bind the long way)
        # A NameError is a forward reference to a type defined later in the
        # module: the analysis runs again when the schema is needed.
        with contextlib.suppress(NameError):
            self._analysis = self._analyze()

    def __repr__(self) -> str:
        return f"<flw.Tool {self.name!r} ({_qualname(self.fn)})>"

    @property
    def qualname(self) -> str:
        """``module.function`` of the decorated function, for messages."""
        return _qualname(self.fn)

    @property
    def input_schema(self) -> dict[str, Any]:
        """The JSON Schema of the arguments object."""
        return self._analyzed().input_schema

    @property
    def output_schema(self) -> dict[str, Any] | None:
        """The JSON Schema of the result, when the result is an object."""
        return self._analyzed().output_schema

    @property
    def context_param(self) -> str | None:
        """The name of the parameter that receives the ``Context``, if any."""
        for param in self._analyzed().params:
            if param.is_context:
                return param.name
        return None

    def manifest(self) -> dict[str, Any]:
        """The tool object of the ``hello`` message."""
        entry: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_schema,
        }
        if self.output_schema is not None:
            entry["output_schema"] = self.output_schema
        return entry

    def bind(
        self, args: Mapping[str, Any], ctx: Context | None = None
    ) -> tuple[list[Any], dict[str, Any]]:
        """Positional and keyword arguments for calling the function.

        Converts each argument to its parameter's annotation and passes
        ``ctx`` to the context parameter. Raises :class:`InvalidArguments`
        for missing, unknown or ill-typed arguments.
        """
        plan = self._plan if self._planned else self.plan_binding()
        if plan is not None:
            keywords = _plain_bind(plan, args, ctx)
            if keywords is not None:
                return [], keywords
        return self._bind(args, ctx)

    def plan_binding(self) -> _Plan | None:
        """Work out once how arguments bind (the first ``bind`` does it otherwise).

        A fork server does it before it forks, so workers share the result.
        """
        if not self._planned:
            self._plan = self._make_plan()
            self._planned = True
        return self._plan

    def _make_plan(self) -> _Plan | None:
        params = self._analyzed().params
        exact: dict[str, type | None] = {}
        context = None
        for param in params:
            if param.kind is inspect.Parameter.POSITIONAL_ONLY:
                return None
            if param.is_context:
                context = param.name
                continue
            try:
                if param.annotation not in _EXACT_TYPES:
                    return None
            except TypeError:  # an unhashable annotation
                return None
            exact[param.name] = _EXACT_TYPES[param.annotation]
        required = tuple(p.name for p in params if not p.is_context and p.default is _EMPTY)
        return _Plan(frozenset(exact), required, exact, context)

    def _bind(
        self, args: Mapping[str, Any], ctx: Context | None
    ) -> tuple[list[Any], dict[str, Any]]:
        params = self._analyzed().params
        names = [p.name for p in params if not p.is_context]
        unknown = [key for key in args if key not in names]
        missing = [
            p.name
            for p in params
            if not p.is_context and p.default is _EMPTY and p.name not in args
        ]
        problems = []
        if missing:
            problems.append(f"missing required argument(s) {_names(missing)}")
        if unknown:
            problems.append(f"unknown argument(s) {_names(unknown)}")
        if problems:
            accepted = ", ".join(names) if names else "none"
            raise InvalidArguments(
                f"tool {self.name!r}: {'; '.join(problems)} (parameters: {accepted})"
            )
        positional: list[Any] = []
        keywords: dict[str, Any] = {}
        for param in params:
            if param.is_context:
                if ctx is None and param.kind is not inspect.Parameter.POSITIONAL_ONLY:
                    continue
                value: Any = ctx
            elif param.name in args:
                try:
                    value = from_json(args[param.name], param.annotation, param.name)
                except InvalidArgument as exc:
                    raise InvalidArguments(f"tool {self.name!r}: {exc}") from None
            elif param.kind is inspect.Parameter.POSITIONAL_ONLY:
                value = param.default
            else:
                continue
            if param.kind is inspect.Parameter.POSITIONAL_ONLY:
                positional.append(value)
            else:
                keywords[param.name] = value
        return positional, keywords

    # -- analysis -------------------------------------------------------

    def _analyzed(self) -> _Analysis:
        if self._analysis is None:
            try:
                self._analysis = self._analyze()
            except NameError as exc:
                raise ToolDefinitionError(
                    f"tool {self.name!r} ({self.qualname}): a type hint names something "
                    f"that is not defined: {exc}"
                ) from None
        return self._analysis

    def _where(self) -> str:
        return f"tool {self.name!r} ({self.qualname})"

    def _analyze(self) -> _Analysis:
        try:
            signature = inspect.signature(self.fn)
        except (TypeError, ValueError) as exc:
            raise ToolDefinitionError(f"{self._where()}: no signature: {exc}") from None
        try:
            hints = typing.get_type_hints(self.fn, include_extras=True)
        except NameError:
            raise
        except Exception as exc:
            raise ToolDefinitionError(
                f"{self._where()}: the type hints cannot be read: {exc}"
            ) from None
        params: list[_Param] = []
        properties: dict[str, Any] = {}
        required: list[str] = []
        for param in signature.parameters.values():
            if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                stars = "*" if param.kind is inspect.Parameter.VAR_POSITIONAL else "**"
                raise ToolDefinitionError(
                    f"{self._where()}: parameter {stars}{param.name} is not supported; "
                    "tools take named parameters only"
                )
            annotation = hints.get(param.name, _EMPTY)
            if self._is_context(param.name, annotation):
                params.append(_Param(param.name, annotation, param.kind, param.default, True))
                continue
            try:
                prop = type_schema(annotation, "input")
            except UnsupportedType as exc:
                raise ToolDefinitionError(
                    f"{self._where()}: parameter {param.name!r} has an unsupported type "
                    f"{type_name(annotation)}: {exc.describe()}"
                ) from None
            if "description" not in prop and param.name in self._doc.params:
                prop["description"] = self._doc.params[param.name]
            if param.default is _EMPTY:
                required.append(param.name)
            else:
                ok, value = json_default(param.default)
                if ok:
                    prop["default"] = value
            properties[param.name] = prop
            params.append(_Param(param.name, annotation, param.kind, param.default, False))
        input_schema: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            input_schema["required"] = required
        input_schema["additionalProperties"] = False
        output_schema = None
        returns = hints.get("return", _EMPTY)
        if returns is not _EMPTY and is_object_shaped(returns):
            try:
                output_schema = type_schema(returns, "output")
            except UnsupportedType as exc:
                raise ToolDefinitionError(
                    f"{self._where()}: the return type {type_name(returns)} is unsupported: "
                    f"{exc.describe()}"
                ) from None
        return _Analysis(tuple(params), input_schema, output_schema)

    def _is_context(self, name: str, annotation: Any) -> bool:
        bare, _ = unwrap(annotation)
        arms = [bare]
        if is_union(bare):
            arms = [unwrap(arm)[0] for arm in typing.get_args(bare)]
            arms = [arm for arm in arms if arm is not NoneType]
        contexts = [arm for arm in arms if isinstance(arm, type) and issubclass(arm, Context)]
        if contexts and len(arms) > 1:
            raise ToolDefinitionError(
                f"{self._where()}: parameter {name!r} mixes Context with other types "
                f"({type_name(annotation)}); annotate it Context or Optional[Context]"
            )
        return bool(contexts)


def _plain_bind(plan: _Plan, args: Mapping[str, Any], ctx: Context | None) -> dict[str, Any] | None:
    """Keyword arguments when ``args`` fit ``plan`` as they are; else ``None``
    (the long way then converts them or says what is wrong)."""
    exact = plan.exact
    keywords: dict[str, Any] = {}
    for key, value in args.items():
        if key not in exact:
            return None
        want = exact[key]
        if want is not None and type(value) is not want:
            return None
        keywords[key] = value
    for name in plan.required:
        if name not in keywords:
            return None
    if plan.context is not None and ctx is not None:
        keywords[plan.context] = ctx
    return keywords


def _qualname(fn: Any) -> str:
    module = getattr(fn, "__module__", None)
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    return f"{module}.{name}" if module else str(name)


def _names(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names)


# ---------------------------------------------------------------------------
# The registry

_registry: dict[str, Tool] = {}


def register(entry: Tool) -> None:
    """Add ``entry`` to the registry.

    Raises ``ToolDefinitionError`` when another function already holds the
    name. Running the same definition again (a re-executed notebook cell)
    replaces the old entry.
    """
    existing = _registry.get(entry.name)
    if existing is not None and existing.qualname != entry.qualname:
        raise ToolDefinitionError(
            f"two tools are named {entry.name!r}: {existing.qualname} and {entry.qualname}; "
            "give one of them another name with @tool(name=...)"
        )
    _registry[entry.name] = entry


def registered_tools() -> list[Tool]:
    """The tools registered so far, in registration order."""
    return list(_registry.values())


@overload
def tool(fn: F, /) -> F: ...


@overload
def tool(*, name: str | None = None, description: str | None = None) -> Callable[[F], F]: ...


def tool(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
) -> F | Callable[[F], F]:
    """Register a function as a tool and return it unchanged.

    Use as ``@tool`` or ``@tool(name=..., description=...)``. The name
    defaults to the function's name, the description to its docstring (up
    to the first section such as ``Args:``); the input schema comes from
    the type hints, with parameter descriptions from the ``Args:`` section
    or ``Annotated[T, "text"]``. A parameter annotated ``Context`` receives
    the call's context and is left out of the schema.
    """

    def decorate(func: F) -> F:
        register(Tool(func, name=name, description=description))
        return func

    if fn is not None:
        return decorate(fn)
    return decorate
