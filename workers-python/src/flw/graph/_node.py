"""Function nodes: the ``@node`` decorator, ``FunctionNode`` and their registry.

``@node`` turns ``def f(shared)`` (or ``async def``, optionally taking the
call's ``Context`` second) into a ``FunctionNode``: still callable as the
function, linkable with ``>>``, registered under its name like a tool. It
implements the ``run`` and ``fallback`` phases of ``WorkerNode`` that the
worker and ``Flow.run`` call.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, overload

from .._context import Context
from .._docstring import parse_docstring
from ._base import NodeDefinitionError, NodeError, PhaseInput, WorkerNode, check_name, make_options

_P = inspect.Parameter


class FunctionNode(WorkerNode):
    """A node made by ``@node``: the function plus its name, options and fallback.

    Calling it calls the function (``decide({"notes": []})``); ``>>``,
    ``- "action" >>`` and ``next`` link it into flows.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        retries: int = 0,
        backoff: float | None = None,
        timeout: float | None = None,
        limit: int | None = None,
        fallback: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__()
        if not callable(fn) or isinstance(fn, (type, WorkerNode)):
            raise NodeDefinitionError(f"@node expects a function, got {fn!r}")
        qualname = _qualname(fn)
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            raise NodeDefinitionError(
                f"@node: {qualname} is a generator; a node returns an action (or None)"
            )
        self.fn = fn
        self.name: str = check_name(
            f"@node ({qualname})", name if name is not None else getattr(fn, "__name__", "")
        )
        self._flw_name = self.name
        where = f"node {self.name!r} ({qualname})"
        self.description: str = (
            inspect.cleandoc(description).strip()
            if description is not None
            else parse_docstring(inspect.getdoc(fn)).description
        )
        self.is_async: bool = inspect.iscoroutinefunction(fn)
        self._flw_options = make_options(where, retries, backoff, timeout, limit)
        self._takes_ctx = _takes_context(fn, ("shared",), where)
        if fallback is not None:
            if not callable(fallback):
                raise NodeDefinitionError(f"{where}: fallback must be a function, not {fallback!r}")
            self._fallback_takes_ctx = _takes_context(
                fallback, ("shared", "error"), f"{where}: fallback {_qualname(fallback)}"
            )
        self.fallback = fallback
        functools.update_wrapper(self, fn, updated=())

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<flw.FunctionNode {self.name!r} ({self.qualname})>"

    @property
    def qualname(self) -> str:
        """``module.function`` of the decorated function, for messages."""
        return _qualname(self.fn)

    # -- WorkerNode ---------------------------------------------------------

    def _flw_kind(self) -> str:
        return "node"

    def _flw_has_fallback(self) -> bool:
        return self.fallback is not None

    def _flw_description(self) -> str:
        return self.description

    def _flw_is_async(self, phase: str) -> bool:
        if phase == "fallback":
            return self.fallback is not None and inspect.iscoroutinefunction(self.fallback)
        return self.is_async

    def _target(
        self, phase: str, given: PhaseInput, ctx: Context
    ) -> tuple[Callable[..., Any], list[Any]]:
        if phase == "run":
            return self.fn, [given.shared, ctx] if self._takes_ctx else [given.shared]
        if phase == "fallback" and self.fallback is not None:
            error = given.error or NodeError("internal", "no error was given to the fallback")
            args = [given.shared, error, ctx] if self._fallback_takes_ctx else [given.shared, error]
            return self.fallback, args
        raise NodeDefinitionError(f"node {self.name!r} has no {phase!r} phase")

    def _flw_call(self, phase: str, given: PhaseInput, ctx: Context) -> tuple[Any, Any]:
        fn, args = self._target(phase, given, ctx)
        return fn(*args), None

    async def _flw_call_async(self, phase: str, given: PhaseInput, ctx: Context) -> tuple[Any, Any]:
        fn, args = self._target(phase, given, ctx)
        return await fn(*args), None


def _takes_context(fn: Callable[..., Any], fixed: tuple[str, ...], where: str) -> bool:
    """Whether ``fn`` takes a ``Context`` after its ``fixed`` leading parameters."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise NodeDefinitionError(f"{where}: no signature: {exc}") from None
    params = list(signature.parameters.values())
    positional = [p for p in params if p.kind in (_P.POSITIONAL_ONLY, _P.POSITIONAL_OR_KEYWORD)]
    spread = any(p.kind is _P.VAR_POSITIONAL for p in params)
    shape = f"({', '.join(fixed)}) or ({', '.join(fixed)}, ctx)"
    if len(positional) < len(fixed) and not spread:
        raise NodeDefinitionError(
            f"{where}: takes {len(positional)} parameter(s); it must take {shape}"
        )
    extra = [p for p in positional[len(fixed) + 1 :] if p.default is _P.empty]
    extra += [p for p in params if p.kind is _P.KEYWORD_ONLY and p.default is _P.empty]
    if extra:
        names = ", ".join(repr(p.name) for p in extra)
        raise NodeDefinitionError(
            f"{where}: parameter(s) {names} need a default; it must take {shape}"
        )
    return len(positional) > len(fixed)


def _qualname(fn: Any) -> str:
    module = getattr(fn, "__module__", None)
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    return f"{module}.{name}" if module else str(name)


# ---------------------------------------------------------------------------
# The registry of function nodes

_registry: dict[str, FunctionNode] = {}


def register(entry: FunctionNode) -> None:
    """Add ``entry``; another function of the same name is an error, the same
    definition run again (a notebook cell) replaces the old one."""
    existing = _registry.get(entry.name)
    if existing is not None and existing.qualname != entry.qualname:
        raise NodeDefinitionError(
            f"two nodes are named {entry.name!r}: {existing.qualname} and {entry.qualname}; "
            "give one of them another name with @node(name=...)"
        )
    _registry[entry.name] = entry


def registered_nodes() -> list[FunctionNode]:
    """The ``@node`` functions registered so far, in registration order."""
    return list(_registry.values())


@overload
def node(fn: Callable[..., Any], /) -> FunctionNode: ...


@overload
def node(
    *,
    name: str | None = None,
    description: str | None = None,
    retries: int = 0,
    backoff: float | None = None,
    timeout: float | None = None,
    limit: int | None = None,
    fallback: Callable[..., Any] | None = None,
) -> Callable[[Callable[..., Any]], FunctionNode]: ...


def node(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    retries: int = 0,
    backoff: float | None = None,
    timeout: float | None = None,
    limit: int | None = None,
    fallback: Callable[..., Any] | None = None,
) -> FunctionNode | Callable[[Callable[..., Any]], FunctionNode]:
    """Make ``def f(shared)`` (or ``async def``) a graph node and register it.

    The function gets the shared store (a dict it may change) and, when it
    has a second parameter, the call's ``Context``; it returns the action
    that picks the next node, or ``None`` for ``"default"``. ``retries``,
    ``backoff`` and ``timeout`` (seconds) and ``limit`` are the
    supervisor's options for every flow entry of the node; ``fallback`` is
    ``fn(shared, error)`` run when the attempts are used up (``error`` is a
    ``NodeError``), returning an action too.
    """

    def decorate(func: Callable[..., Any]) -> FunctionNode:
        entry = FunctionNode(
            func,
            name=name,
            description=description,
            retries=retries,
            backoff=backoff,
            timeout=timeout,
            limit=limit,
            fallback=fallback,
        )
        register(entry)
        return entry

    if fn is not None:
        return decorate(fn)
    return decorate
