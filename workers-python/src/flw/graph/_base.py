"""The graph DSL's building blocks: linking, flows, parallel fan-out, options, errors.

PocketFlow's model: a node's *successors* map an action to the next node
(``a >> b``, ``a - "action" >> b``, ``a.next(b, action)``), a ``Flow`` runs
from its start node following the actions nodes return, and a flow is itself
a node. ``BaseNode`` holds the linking; ``WorkerNode`` is what a worker
implements (``@node`` functions and the class nodes of ``_class_node``);
``Flow`` and ``Parallel`` are run by the supervisor (or in-process by
``Flow.run``). Names, options and the errors of the DSL live here too.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from ..worker._protocol import is_valid_tool_name

if TYPE_CHECKING:
    from .._context import Context

N = TypeVar("N", bound="BaseNode")

DEFAULT_MAX_STEPS = 10_000
"""The most node visits a run makes when its flow sets no ``max_steps`` (GRAPHS.md)."""

DEFAULT_BACKOFF_SECONDS = 0.1
"""The wait before the first retry when ``retries`` is set without ``backoff``."""

MAX_BACKOFF_SECONDS = 30.0
"""Retry waits double up to this."""


class NodeError(Exception):
    """A failed node attempt as a fallback sees it: ``kind`` and ``message``.

    ``kind`` is an error kind of PROTOCOL.md (``tool_error``, ``timeout``,
    ``worker_crashed``, ...) or ``max_steps``. In-process runs also raise it
    when a run goes past ``max_steps`` or its deadline.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message

    def __repr__(self) -> str:
        return f"NodeError(kind={self.kind!r}, message={self.message!r})"


class NodeDefinitionError(TypeError):
    """A graph that cannot be announced or run: a bad name or option, two
    nodes with one name, a flow without a start node."""


class NodeResultError(TypeError):
    """What a node returned or left in the shared store cannot be used: an
    action that is not a string, batch items that are not a list, a value
    that is not JSON. The worker answers it as a ``tool_error`` without a
    traceback (the node's code is fine; its result is not)."""


class PhaseInput(NamedTuple):
    """What one phase of a node gets from a ``node`` message (or a flow run)."""

    shared: dict[str, Any]
    item: Any = None
    prep: Any = None
    results: list[Any] | None = None
    error: NodeError | None = None
    params: dict[str, Any] | None = None


# ---------------------------------------------------------------------------
# Options


class Options(NamedTuple):
    """The supervisor-level options of a node (GRAPHS.md "options"), in seconds."""

    retries: int = 0
    backoff: float | None = None
    timeout: float | None = None
    limit: int | None = None

    def entry(self) -> dict[str, Any]:
        """The members of a graph entry: ``retries``, ``backoff_ms``, ``timeout_ms``, ``limit``."""
        out: dict[str, Any] = {}
        if self.retries:
            out["retries"] = self.retries
        if self.backoff is not None:
            out["backoff_ms"] = round(self.backoff * 1000)
        if self.timeout is not None:
            out["timeout_ms"] = max(1, round(self.timeout * 1000))
        if self.limit is not None:
            out["limit"] = self.limit
        return out

    def backoff_before(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (from 1)."""
        base = DEFAULT_BACKOFF_SECONDS if self.backoff is None else self.backoff
        return float(min(base * 2 ** (retry - 1), MAX_BACKOFF_SECONDS))


def make_options(
    where: str,
    retries: Any = 0,
    backoff: Any = None,
    timeout: Any = None,
    limit: Any = None,
) -> Options:
    """Check the options given to ``@node`` or a class node; ``where`` names it."""
    return Options(
        retries=count_option(where, "retries", retries, 0),
        backoff=None if backoff is None else seconds_option(where, "backoff", backoff, 0.0),
        timeout=None if timeout is None else seconds_option(where, "timeout", timeout, None),
        limit=None if limit is None else count_option(where, "limit", limit, 1),
    )


def count_option(where: str, option: str, value: Any, low: int) -> int:
    """An integer option of at least ``low``."""
    if type(value) is not int or value < low:
        raise NodeDefinitionError(f"{where}: {option} must be an integer >= {low}, not {value!r}")
    return value


def seconds_option(where: str, option: str, value: Any, low: float | None) -> float:
    """A number of seconds: ``>= low``, or ``> 0`` when ``low`` is ``None``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and (value > 0 if low is None else value >= low):
        return float(value)
    bound = "> 0" if low is None else f">= {low:g}"
    raise NodeDefinitionError(
        f"{where}: {option} must be a number of seconds {bound}, not {value!r}"
    )


def check_name(where: str, name: Any) -> str:
    """A node or flow name: 1-128 characters of ``A-Z a-z 0-9 _ - .``."""
    if not isinstance(name, str) or not is_valid_tool_name(name):
        raise NodeDefinitionError(
            f"{where}: {name!r} is not a valid name: use 1-128 characters of "
            "A-Z a-z 0-9 _ - . (pass name=...)"
        )
    return name


def check_action(label: str, value: Any) -> str | None:
    """A node's return value as an action: a string, or ``None`` for ``"default"``.

    An empty string counts as ``None`` (PocketFlow follows ``"default"`` for
    it too).
    """
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    raise NodeResultError(
        f"node {label!r} returned {text} ({type(value).__name__}); "
        "a node returns an action string or None"
    )


# ---------------------------------------------------------------------------
# Linking


class BaseNode:
    """Anything a flow can visit: a node, a flow, a parallel fan-out.

    ``successors`` maps an action to the node that follows it. ``a >> b``
    is ``a.next(b)``; ``a - "action" >> b`` is ``a.next(b, "action")``; both
    return ``b``, so chains read left to right.
    """

    def __init__(self) -> None:
        self.successors: dict[str, BaseNode] = {}
        self.params: dict[str, Any] = {}
        self._flw_name: str | None = None

    def set_params(self, params: dict[str, Any]) -> None:
        """Set ``self.params`` (PocketFlow compatibility; flw passes none itself)."""
        self.params = params

    def next(self, node: N, action: str = "default") -> N:
        """Follow this node with ``node`` when it returns ``action``; returns ``node``."""
        if not isinstance(node, BaseNode):
            raise TypeError(
                f"{self._flw_label()} can only be followed by a node, a Flow or a Parallel, "
                f"not {node!r} (decorate functions with @node)"
            )
        if not isinstance(action, str):
            raise TypeError(f"an action must be a string, not {action!r}")
        old = self.successors.get(action)
        if old is not None and old is not node:
            warnings.warn(
                f"Overwriting successor for action '{action}' of {self._flw_label()}",
                stacklevel=2,
            )
        self.successors[action] = node
        return node

    def __rshift__(self, other: N) -> N:
        return self.next(other)

    def __sub__(self, action: str) -> _Transition:
        if isinstance(action, str):
            return _Transition(self, action)
        raise TypeError(f"an action must be a string, not {action!r}")

    def run(
        self, shared: dict[str, Any], *, on_event: Callable[[dict[str, Any]], None] | None = None
    ) -> str | None:
        """Run in this process on ``shared`` (changed in place); return the last action.

        Async nodes run on an asyncio loop (a new one; in a thread when this
        thread already runs a loop, as in a notebook). ``on_event`` gets the
        run's node events as ``flw run --events jsonl`` writes them
        (GRAPHS.md "Events": ``node_started``, ``node_retry``, ``node_fallback``,
        ``node_finished``, ``node_failed``, ``batch_items``, ``item_finished``,
        ``merge_conflict``), each a dict with ``event`` and ``t_ms``.
        """
        from ._run import run

        return run(self, shared, on_event)

    async def run_async(
        self, shared: dict[str, Any], *, on_event: Callable[[dict[str, Any]], None] | None = None
    ) -> str | None:
        """``run`` on the running event loop: async nodes are awaited on it."""
        from ._run import run_async

        return await run_async(self, shared, on_event)

    def _flw_label(self) -> str:
        """How messages name this object before names are worked out."""
        return self._flw_name or type(self).__name__


class _Transition:
    """``node - "action"``: waits for ``>> target``."""

    def __init__(self, source: BaseNode, action: str) -> None:
        self.source = source
        self.action = action

    def __rshift__(self, target: N) -> N:
        return self.source.next(target, self.action)


class WorkerNode(BaseNode):
    """A node a worker implements: what ``hello.nodes`` lists and ``node`` messages run."""

    _flw_options: Options = Options()

    def _flw_kind(self) -> str:
        """``node`` (one ``run``) or ``batch`` (``prep``, ``exec`` per item, ``post``)."""
        raise NotImplementedError

    def _flw_has_fallback(self) -> bool:
        raise NotImplementedError

    def _flw_description(self) -> str:
        raise NotImplementedError

    def _flw_is_async(self, phase: str) -> bool:
        """Whether ``phase`` runs as a coroutine (``_flw_call_async``)."""
        raise NotImplementedError

    def _flw_call(self, phase: str, given: PhaseInput, ctx: Context) -> tuple[Any, Any]:
        """Run a sync phase: ``(action, value)`` as the node returned them."""
        raise NotImplementedError

    async def _flw_call_async(self, phase: str, given: PhaseInput, ctx: Context) -> tuple[Any, Any]:
        """Run an async phase: ``(action, value)`` as the node returned them."""
        raise NotImplementedError

    def _flw_has_phase(self, phase: str) -> bool:
        """Whether a ``node`` message may ask for ``phase``."""
        if phase == "run":
            return True
        if phase == "fallback":
            return self._flw_has_fallback()
        return self._flw_kind() == "batch" and phase in ("prep", "exec", "post")


# ---------------------------------------------------------------------------
# Flows and fan-out


class Flow(BaseNode):
    """A graph of nodes run from ``start``, following the actions they return.

    A flow is a node too: ``a >> review_flow >> b``, ``Flow(start=inner)``;
    its action is the last action its nodes returned. The supervisor runs a
    flow the worker announces (a module global of the script, named after
    the variable unless ``name=`` says otherwise); ``run(shared)`` runs it
    in this process. ``max_steps`` bounds node visits, ``deadline`` (seconds)
    the whole run.
    """

    def __init__(
        self,
        start: BaseNode | None = None,
        *,
        name: str | None = None,
        max_steps: int | None = None,
        deadline: float | None = None,
        description: str | None = None,
    ) -> None:
        super().__init__()
        where = f"Flow({name!r})" if name is not None else "Flow"
        if start is not None and not isinstance(start, BaseNode):
            raise TypeError(f"{where}: start must be a node, a Flow or a Parallel, not {start!r}")
        self.start_node = start
        self._flw_name = None if name is None else check_name(where, name)
        self.max_steps = (
            None if max_steps is None else count_option(where, "max_steps", max_steps, 1)
        )
        self.deadline = (
            None if deadline is None else seconds_option(where, "deadline", deadline, None)
        )
        if description is not None and not isinstance(description, str):
            raise TypeError(f"{where}: description must be a string, not {description!r}")
        self.description = description

    def start(self, start: N) -> N:
        """Set the start node (PocketFlow's spelling); returns it for chaining."""
        if not isinstance(start, BaseNode):
            raise TypeError(f"a flow starts with a node, a Flow or a Parallel, not {start!r}")
        self.start_node = start
        return start

    def __repr__(self) -> str:
        return f"<flw.Flow {self._flw_label()!r}>"

    def _flw_label(self) -> str:
        return self._flw_name or "flow"


class AsyncFlow(Flow):
    """``Flow`` under PocketFlow's async name: every flw flow runs async nodes."""


class Parallel(BaseNode):
    """Branches run at the same time on copies of the store, merged in listed order.

    Each branch is one node or a ``Flow`` (put a chain of nodes in a flow);
    ``limit`` caps branches in flight. Its action is ``"default"``. In a
    graph document it is a ``{"parallel": [...]}`` entry whose id is
    ``name=``, the module global it is bound to, or ``parallel_1``, ...
    """

    def __init__(
        self, *branches: BaseNode, limit: int | None = None, name: str | None = None
    ) -> None:
        super().__init__()
        where = f"Parallel({name!r})" if name is not None else "Parallel"
        if not branches:
            raise NodeDefinitionError(f"{where}: give it at least one branch")
        for branch in branches:
            if not isinstance(branch, BaseNode):
                raise TypeError(f"{where}: a branch must be a node or a Flow, not {branch!r}")
            if branch is self:
                raise NodeDefinitionError(f"{where}: a Parallel cannot be its own branch")
        self.branches: tuple[BaseNode, ...] = branches
        self.limit = None if limit is None else count_option(where, "limit", limit, 1)
        self._flw_name = None if name is None else check_name(where, name)

    def __repr__(self) -> str:
        return f"<flw.Parallel {self._flw_label()!r} of {len(self.branches)} branches>"

    def _flw_label(self) -> str:
        return self._flw_name or "parallel"

    def _flw_check_branches(self) -> None:
        """A branch runs alone: one with successors would be ambiguous."""
        for branch in self.branches:
            if branch.successors:
                follow = ", ".join(f"{a} -> {n._flw_label()}" for a, n in branch.successors.items())
                raise NodeDefinitionError(
                    f"{self._flw_label()}: branch {branch._flw_label()} has successors "
                    f"({follow}); a branch runs alone, so put a chain of nodes in a Flow "
                    "and make the Flow the branch"
                )


def reachable(root: BaseNode) -> Iterator[BaseNode]:
    """``root`` and everything a run of it can visit, nested flows and branches included."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        yield obj
        stack.extend(reversed(list(obj.successors.values())))
        if isinstance(obj, Flow) and obj.start_node is not None:
            stack.append(obj.start_node)
        elif isinstance(obj, Parallel):
            stack.extend(reversed(obj.branches))
