"""In-process runs: ``Flow.run`` / ``run_async`` and ``node.run``, without a supervisor.

They follow the supervisor's semantics (GRAPHS.md "How a run proceeds") in
one process, one node at a time: a visit counts a step against
``max_steps``; a failed attempt is retried ``retries`` times with doubling
backoff on the store as it was before the attempt, then the node's fallback
runs; batch items run in order; ``Parallel`` branches run one after the
other, each on a copy of the store, and their changes are merged in listed
order. The store is changed in place and the last action is returned.

The walk is written once, as a generator that yields what to do (call a
node's phase, sleep) and gets the result back, so that ``run`` drives it
with plain calls and ``run_async`` with awaits.
"""

from __future__ import annotations

import copy
import threading
import time
import warnings
from collections.abc import Coroutine, Generator
from typing import Any, Callable, NamedTuple, TypeVar, Union

from ._context import _CURRENT, Context
from ._graph import (
    DEFAULT_MAX_STEPS,
    BaseNode,
    Flow,
    NodeDefinitionError,
    NodeError,
    Parallel,
    PhaseInput,
    WorkerNode,
    check_action,
    reachable,
)

T = TypeVar("T")


class _Call(NamedTuple):
    node: WorkerNode
    phase: str  # "run" or "fallback"
    shared: dict[str, Any]
    error: NodeError | None


class _Sleep(NamedTuple):
    seconds: float


_Request = Union[_Call, _Sleep]
_Walk = Generator[_Request, Any, Union[str, None]]


def run(root: BaseNode, shared: dict[str, Any]) -> str | None:
    """Run ``root`` on ``shared`` in this process; the last action.

    When an async node can be reached, the whole run goes on one new event
    loop (in a thread of its own if this thread already runs a loop).
    """
    walk = _start(root, shared)
    if any(_is_async(obj) for obj in reachable(root)):
        return _run_coroutine(lambda: _drive_async(walk))
    return _drive(walk)


async def run_async(root: BaseNode, shared: dict[str, Any]) -> str | None:
    """``run`` on the running loop: async nodes are awaited, sync ones called."""
    return await _drive_async(_start(root, shared))


def _start(root: BaseNode, shared: dict[str, Any]) -> _Walk:
    if not isinstance(shared, dict):
        raise TypeError(f"the shared store must be a dict, not {type(shared).__name__}")
    if root.successors and not isinstance(root, Flow):
        warnings.warn("Node won't run successors. Use Flow.", stacklevel=3)
    if isinstance(root, Flow):  # the run itself, not a visit (a nested flow's entry is one)
        return _flow(_Run(root), root, shared)
    return _visit(_Run(root), root, shared)


class _Run:
    """The budget of one run: steps and the deadline of the top flow."""

    def __init__(self, root: BaseNode) -> None:
        self.label = root._flw_label()
        flow = root if isinstance(root, Flow) else None
        self.max_steps = DEFAULT_MAX_STEPS
        if flow is not None and flow.max_steps is not None:
            self.max_steps = flow.max_steps
        self.deadline: float | None = None
        if flow is not None and flow.deadline is not None:
            self.deadline = time.monotonic() + flow.deadline
        self.steps = 0

    def step(self, obj: BaseNode) -> None:
        self.steps += 1
        if self.steps > self.max_steps:
            raise NodeError(
                "max_steps",
                f"{self.label}: visiting {obj._flw_label()} would be step {self.steps}, "
                f"past max_steps ({self.max_steps})",
            )
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise NodeError("timeout", f"{self.label}: the run passed its deadline")


def _visit(run: _Run, obj: BaseNode, shared: dict[str, Any]) -> _Walk:
    run.step(obj)
    if isinstance(obj, Flow):
        return (yield from _flow(run, obj, shared))
    if isinstance(obj, Parallel):
        yield from _parallel(run, obj, shared)
        return None
    if isinstance(obj, WorkerNode):
        return (yield from _attempts(obj, shared))
    raise NodeDefinitionError(f"{obj!r} is neither a node, a Flow nor a Parallel")


def _flow(run: _Run, flow: Flow, shared: dict[str, Any]) -> _Walk:
    current = flow.start_node
    if current is None:
        raise NodeDefinitionError(f"{flow._flw_label()} has no start node (Flow(start=...))")
    action = None
    while current is not None:
        action = yield from _visit(run, current, shared)
        current = _successor(current, action)
    return action


def _successor(obj: BaseNode, action: str | None) -> BaseNode | None:
    found = obj.successors.get(action or "default")
    if found is None and obj.successors:
        warnings.warn(
            f"Flow ends: {action!r} not found in {list(obj.successors)} "
            f"(the successors of {obj._flw_label()})",
            stacklevel=2,
        )
    return found


def _attempts(node: WorkerNode, shared: dict[str, Any]) -> _Walk:
    options = node._flw_options
    has_fallback = node._flw_has_fallback()
    tries = options.retries + 1
    failure: Exception | None = None
    for attempt in range(1, tries + 1):
        before = _copy(shared) if tries > 1 or has_fallback else None
        try:
            action: str | None = yield _Call(node, "run", shared, None)
        except Exception as exc:
            failure = exc
            if before is not None:  # a failed attempt's changes are never kept
                shared.clear()
                shared.update(before)
        else:
            return action
        if attempt < tries:
            yield _Sleep(options.backoff_before(attempt))
    assert failure is not None
    if not has_fallback:
        raise failure
    error = NodeError("tool_error", _exc_text(failure))
    error.__cause__ = failure
    recovered: str | None = yield _Call(node, "fallback", shared, error)
    return recovered


def _parallel(run: _Run, fan: Parallel, shared: dict[str, Any]) -> Generator[_Request, Any, None]:
    fan._flw_check_branches()
    start = copy.deepcopy(shared)
    stores = []
    for branch in fan.branches:
        store = copy.deepcopy(start)
        yield from _visit(run, branch, store)
        stores.append(store)
    for store in stores:  # in listed order: the later branch wins a key
        for key, value in store.items():
            if key not in start or _differs(start[key], value):
                shared[key] = value
        for key in start:
            if key not in store:
                shared.pop(key, None)


def _differs(old: Any, new: Any) -> bool:
    try:
        return bool(old != new)
    except Exception:  # values whose == does not give a bool (arrays): count as changed
        return True


def _copy(shared: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return copy.deepcopy(shared)
    except Exception:  # something that cannot be copied: no rollback then
        return None


def _is_async(obj: BaseNode) -> bool:
    if not isinstance(obj, WorkerNode):
        return False
    return obj._flw_is_async("run") or (obj._flw_has_fallback() and obj._flw_is_async("fallback"))


# ---------------------------------------------------------------------------
# Drivers


def _drive(walk: _Walk) -> str | None:
    value: Any = None
    error: Exception | None = None
    while True:
        try:
            request = walk.throw(error) if error is not None else walk.send(value)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        value, error = None, None
        try:
            value = _perform(request)
        except Exception as exc:
            error = exc


async def _drive_async(walk: _Walk) -> str | None:
    value: Any = None
    error: Exception | None = None
    while True:
        try:
            request = walk.throw(error) if error is not None else walk.send(value)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        value, error = None, None
        try:
            value = await _perform_async(request)
        except Exception as exc:
            error = exc


def _perform(request: _Request) -> str | None:
    if isinstance(request, _Sleep):
        time.sleep(request.seconds)
        return None
    node = request.node
    if node._flw_is_async(request.phase):
        return _run_coroutine(lambda: _perform_async(request))
    ctx = Context(None, node._flw_label())
    token = _CURRENT.set(ctx)
    try:
        action, _ = node._flw_call(
            request.phase, PhaseInput(request.shared, error=request.error), ctx
        )
    finally:
        _CURRENT.reset(token)
    return check_action(node._flw_label(), action)


async def _perform_async(request: _Request) -> str | None:
    import asyncio

    if isinstance(request, _Sleep):
        await asyncio.sleep(request.seconds)
        return None
    node = request.node
    if not node._flw_is_async(request.phase):
        return _perform(request)
    ctx = Context(None, node._flw_label())
    token = _CURRENT.set(ctx)
    try:
        given = PhaseInput(request.shared, error=request.error)
        action, _ = await node._flw_call_async(request.phase, given, ctx)
    finally:
        _CURRENT.reset(token)
    return check_action(node._flw_label(), action)


def _run_coroutine(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to the end from sync code, even under a running loop."""
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    # This thread runs a loop (a notebook): give the coroutine a loop of its own.
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = asyncio.run(make())
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="flw-run")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]


def _exc_text(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
