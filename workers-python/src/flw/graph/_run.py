"""In-process runs: ``Flow.run`` / ``run_async`` and ``node.run``, without a supervisor.

They follow the supervisor's runner (``supervisor/src/graph/run.rs``,
GRAPHS.md "How a run proceeds") step for step, and the graph-run vectors
(``protocol/vectors/graph_runs.json``) hold both to it: a visit counts a
step against ``max_steps``; each attempt of a node is bounded by its
``timeout``; a failed attempt is retried ``retries`` times with doubling
backoff and its changes are dropped, then the node's fallback runs; a batch
node's items run at once (``limit`` in flight); ``Parallel`` branches run at
once, each on a copy of the store, merged in listed order; a batch flow runs
its graph once per parameter set (overlapping for
``AsyncParallelBatchFlow``); the top flow's ``deadline`` stops the node in
flight. The run goes on an asyncio loop (see ``run``). ``on_event`` gets the
supervisor's node events (GRAPHS.md "Events"), with its paths where the
nodes are named as ``flw run`` names them; a hook that raises is dropped.

Each phase works on a copy of the store; what it changed (by top-level key)
goes into the caller's store when it returns, which is changed in place
(a node that changes the caller's dict itself, through a closure, changes
it at once). A
sync phase runs on the loop's thread, or in a thread of its own when it has
to be stopped or overlapped (a timeout, a deadline, things at once); a
stopped sync phase cannot be interrupted: its thread runs on, and its
changes are dropped.
"""

from __future__ import annotations

import asyncio
import copy
import sys
import threading
import time
import warnings
from collections.abc import Awaitable, Coroutine
from typing import Any, Callable, NamedTuple, TypeVar

from .._context import _CURRENT, Context
from ._base import (
    DEFAULT_MAX_STEPS,
    BaseNode,
    Flow,
    NodeDefinitionError,
    NodeError,
    NodeResultError,
    Options,
    Parallel,
    PhaseInput,
    WorkerNode,
    check_action,
    reachable,
)
from ._batch_flow import BatchFlowBase

T = TypeVar("T")

_STORE_PHASES = ("run", "prep", "post", "fallback")

OnEvent = Callable[[dict[str, Any]], None]
"""Gets each event of a run (GRAPHS.md "Events") as a dict."""


def run(root: BaseNode, shared: dict[str, Any], on_event: OnEvent | None = None) -> str | None:
    """Run ``root`` on ``shared`` in this process; the last action.

    The run goes on a new event loop (in a thread of its own if this thread
    already runs a loop, as in a notebook).
    """
    _check(root, shared)
    return _run_coroutine(lambda: _Runner(root, on_event).top(shared))


async def run_async(
    root: BaseNode, shared: dict[str, Any], on_event: OnEvent | None = None
) -> str | None:
    """``run`` on the running loop: async nodes are awaited, sync ones called."""
    _check(root, shared)
    return await _Runner(root, on_event).top(shared)


def _check(root: BaseNode, shared: Any) -> None:
    if not isinstance(shared, dict):
        raise TypeError(f"the shared store must be a dict, not {type(shared).__name__}")
    if root.successors and not isinstance(root, Flow):
        warnings.warn("Node won't run successors. Use Flow.", stacklevel=4)
    for obj in reachable(root):
        if isinstance(obj, Flow) and obj.start_node is None:
            raise NodeDefinitionError(f"{obj._flw_label()} has no start node (Flow(start=...))")
        if isinstance(obj, Parallel):
            obj._flw_check_branches()


# ---------------------------------------------------------------------------
# Changes to the store, by top-level key (supervisor: flw_protocol::outcome)


class _Changes(NamedTuple):
    set: dict[str, Any]
    delete: list[str]


def _between(before: dict[str, Any], after: dict[str, Any]) -> _Changes:
    return _Changes(
        {k: v for k, v in after.items() if k not in before or _differs(before[k], v)},
        [k for k in before if k not in after],
    )


def _apply(changes: _Changes, store: dict[str, Any]) -> None:
    store.update(changes.set)
    for key in changes.delete:
        store.pop(key, None)


def _apply_since(changes: _Changes, base: dict[str, Any], store: dict[str, Any]) -> None:
    """``changes`` made on ``base`` into ``store``, which others changed since:
    objects both sides changed are merged member by member."""
    for key, value in changes.set.items():
        if key in store and (key not in base or _differs(base[key], store[key])):
            value = _merge3(base.get(key), store[key], value, key in base)
        store[key] = value
    for key in changes.delete:
        store.pop(key, None)


def _merge3(base: Any, now: Any, theirs: Any, had_base: bool) -> Any:
    if had_base and not isinstance(base, dict):
        return theirs
    if not isinstance(now, dict) or not isinstance(theirs, dict):
        return theirs
    base_obj = base if isinstance(base, dict) else {}
    out = dict(now)
    for key, value in theirs.items():
        if key in base_obj and not _differs(base_obj[key], value):
            continue  # this side left it as it was
        if key in out and (key not in base_obj or _differs(base_obj[key], out[key])):
            value = _merge3(base_obj.get(key), out[key], value, key in base_obj)
        out[key] = value
    for key in base_obj:
        if key not in theirs and key in out and not _differs(base_obj[key], out[key]):
            del out[key]  # this side deleted it, and the other left it
    return out


def _differs(old: Any, new: Any) -> bool:
    try:
        return bool(old != new)
    except Exception:  # values whose == does not give a bool (arrays): count as changed
        return True


def _copy(shared: dict[str, Any]) -> dict[str, Any]:
    try:
        return copy.deepcopy(shared)
    except Exception:  # something that cannot be copied: the phase works in place
        return shared


# ---------------------------------------------------------------------------
# The walk (supervisor: graph/run.rs)


class _Scope(NamedTuple):
    """What a walk runs under (supervisor: ``Scope``)."""

    params: dict[str, Any]
    shared_with: dict[str, Any] | None = None
    """Set in the runs of a concurrent batch flow: the store they share."""
    concurrent: bool = False
    """Whether other phases may run meanwhile (sync phases then get a thread)."""

    def alone(self, concurrent: bool = False) -> _Scope:
        return _Scope(self.params, None, self.concurrent or concurrent)

    def refresh(self, shared: dict[str, Any]) -> None:
        if self.shared_with is not None:
            shared.clear()
            shared.update(self.shared_with)

    def commit(self, shared: dict[str, Any], *changes: _Changes) -> None:
        if self.shared_with is None:
            for c in changes:
                _apply(c, shared)
            return
        after = dict(shared)
        for c in changes:
            _apply(c, after)
        _apply_since(_between(shared, after), shared, self.shared_with)
        self.refresh(shared)


class _Outcome(NamedTuple):
    action: str | None
    value: Any
    changes: _Changes


class _Runner:
    def __init__(self, root: BaseNode, on_event: OnEvent | None = None) -> None:
        if on_event is not None and not callable(on_event):
            what = type(on_event).__name__
            raise TypeError(f"on_event must be a function of one event, not {what}")
        self.on_event = on_event
        self.began = time.monotonic()
        self.label = root._flw_label()
        flow = root if isinstance(root, Flow) else None
        self.root = root
        self.max_steps = DEFAULT_MAX_STEPS
        if flow is not None and flow.max_steps is not None:
            self.max_steps = flow.max_steps
        self.deadline = flow.deadline if flow is not None else None
        self.steps = 0

    def emit(self, event: str, **members: Any) -> None:
        """Tell ``on_event``; a hook that raises never changes the run, and
        gets no more events (its error is noted once on stderr)."""
        hook = self.on_event
        if hook is None:
            return
        t_ms = int((time.monotonic() - self.began) * 1000)
        try:
            hook({"event": event, "t_ms": t_ms, **members})
        except Exception as exc:
            self.on_event = None
            name = type(exc).__name__
            print(f"flw: on_event raised {name}: {exc}; it gets no more events", file=sys.stderr)

    async def top(self, shared: dict[str, Any]) -> str | None:
        scope = _Scope(dict(self.root.params))
        self.began = time.monotonic()
        if isinstance(self.root, Flow):  # the run itself, not a visit
            walk = self.run_flow(self.root, shared, scope, self.label)
        else:
            walk = self.visit(self.root, shared, scope, None)
        if self.deadline is None:
            return await walk
        try:
            return await asyncio.wait_for(walk, self.deadline)
        except asyncio.TimeoutError:
            raise NodeError(
                "timeout",
                f"flow {self.label} passed its deadline of {self.deadline:g} s; "
                "the node in flight was stopped",
            ) from None

    async def run_flow(
        self, flow: Flow, shared: dict[str, Any], scope: _Scope, path: str
    ) -> str | None:
        if isinstance(flow, BatchFlowBase):
            return await self.batch_flow(flow, shared, scope, path)
        return await self.walk(flow, shared, scope, path)

    async def walk(
        self, flow: Flow, shared: dict[str, Any], scope: _Scope, path: str
    ) -> str | None:
        current = flow.start_node
        action = None
        while current is not None:
            action = await self.visit(current, shared, scope, path)
            current = _successor(current, action)
        return action

    async def visit(
        self, obj: BaseNode, shared: dict[str, Any], scope: _Scope, flow_path: str | None
    ) -> str | None:
        """One visit of ``obj`` in the flow at ``flow_path`` (``None``: the run's root)."""
        label = obj._flw_label()
        path = label if flow_path is None else f"{flow_path}/{label}"
        self.steps += 1
        if self.steps > self.max_steps:
            self.steps -= 1
            raise NodeError(
                "max_steps",
                f"the run made max_steps = {self.max_steps} node visits and would go on with "
                f"{path}; it looks like a loop that does not end",
            )
        self.emit("node_started", path=path, kind=_kind(obj), step=self.steps)
        began = time.monotonic()
        try:
            action = await self.dispatch(obj, shared, scope, flow_path, path)
        except Exception as exc:  # not a cancel: a stopped visit has no event, as in the supervisor
            self.emit("node_failed", path=path, error=_error(exc), ms=_ms_since(began))
            raise
        self.emit("node_finished", path=path, action=action or "default", ms=_ms_since(began))
        return action

    async def dispatch(
        self, obj: BaseNode, shared: dict[str, Any], scope: _Scope, flow_path: str | None, path: str
    ) -> str | None:
        if isinstance(obj, Flow):
            return await self.run_flow(obj, shared, scope, path)
        if isinstance(obj, Parallel):
            await self.parallel(obj, shared, scope, flow_path, path)
            return None
        if isinstance(obj, WorkerNode):
            if obj._flw_kind() == "batch":
                return await self.batch_node(obj, shared, scope, path)
            return await self.worker_node(obj, shared, scope, path)
        raise NodeDefinitionError(f"{obj!r} is neither a node, a Flow nor a Parallel")

    async def retrying(self, options: Options, path: str, attempt: Callable[[], Awaitable[T]]) -> T:
        n = 1
        while True:
            try:
                return await attempt()
            except Exception as exc:
                if n > options.retries:
                    raise
                wait = options.backoff_before(n)
                self.emit(
                    "node_retry",
                    path=path,
                    attempt=n,
                    error=_error(exc),
                    wait_ms=round(wait * 1000),
                )
            await asyncio.sleep(wait)
            n += 1

    async def worker_node(
        self, node: WorkerNode, shared: dict[str, Any], scope: _Scope, path: str
    ) -> str | None:
        options = node._flw_options
        scope.refresh(shared)
        try:
            given = PhaseInput(shared, params=scope.params)
            outcome = await self.retrying(
                options, path, lambda: self.call(node, "run", given, scope)
            )
        except Exception as exc:
            if not node._flw_has_fallback():
                raise
            error = exc if isinstance(exc, NodeError) else NodeError("tool_error", _exc_text(exc))
            if error is not exc:
                error.__cause__ = exc
            self.emit("node_fallback", path=path, error=_error(error))
            given = PhaseInput(shared, error=error, params=scope.params)
            outcome = await self.call(node, "fallback", given, scope)
        scope.commit(shared, outcome.changes)
        return outcome.action

    async def batch_node(
        self, node: WorkerNode, shared: dict[str, Any], scope: _Scope, path: str
    ) -> str | None:
        options = node._flw_options
        label = node._flw_label()
        scope.refresh(shared)
        prep = await self.retrying(
            options,
            path,
            lambda: self.call(node, "prep", PhaseInput(shared, params=scope.params), scope),
        )
        items = prep.value
        if items is None:
            items = []
        if not isinstance(items, (list, tuple)):
            raise NodeResultError(
                f"batch node {label!r}: prep returned a {type(items).__name__}; "
                "it must return a list of items"
            )
        concurrent = len(items) > 1 and options.limit != 1
        item_scope = scope.alone(concurrent)
        items_done = self.items(path, len(items))

        async def one(i: int) -> Any:
            given = PhaseInput({}, item=items[i], params=scope.params)
            began = time.monotonic()
            done = await self.retrying(
                options, f"{path}[{i}]", lambda: self.call(node, "exec", given, item_scope)
            )
            items_done(i, began)
            return done.value

        results = await _all_or_first_failure(len(items), options.limit, one)
        post_store = dict(shared)
        _apply(prep.changes, post_store)
        given = PhaseInput(post_store, prep=prep.value, results=results, params=scope.params)
        post = await self.retrying(options, path, lambda: self.call(node, "post", given, scope))
        scope.commit(shared, prep.changes, post.changes)
        return post.action

    def items(self, path: str, total: int) -> Callable[[int, float], None]:
        """Emits ``batch_items``; the returned function, ``item_finished`` for each."""
        self.emit("batch_items", path=path, total=total)
        done = 0

        def finished(i: int, began: float) -> None:
            nonlocal done
            done += 1
            ms = _ms_since(began)
            self.emit("item_finished", path=f"{path}[{i}]", done=done, total=total, ms=ms)

        return finished

    async def parallel(
        self,
        fan: Parallel,
        shared: dict[str, Any],
        scope: _Scope,
        flow_path: str | None,
        path: str,
    ) -> None:
        scope.refresh(shared)
        before = dict(shared)
        branches = fan.branches
        inner = scope.alone(len(branches) > 1 and fan.limit != 1)

        async def one(k: int) -> dict[str, Any]:
            store = _copy(before)
            await self.visit(
                branches[k], store, inner, flow_path
            )  # branches are the flow's entries
            return store

        stores = await _all_or_first_failure(len(branches), fan.limit, one)
        merged = dict(before)
        touched: set[str] = set()
        clashes: list[str] = []
        for store in stores:  # in listed order: the later branch wins a key
            changes = _between(before, store)
            for key in [*changes.set, *changes.delete]:
                if key in touched and key not in clashes:
                    clashes.append(key)
                touched.add(key)
            _apply(changes, merged)
        if clashes:
            self.emit("merge_conflict", path=path, keys=clashes)
        scope.commit(shared, _between(before, merged))

    async def batch_flow(
        self, flow: BatchFlowBase, shared: dict[str, Any], scope: _Scope, path: str
    ) -> str | None:
        label = flow._flw_label()
        scope.refresh(shared)
        prep = await self.call(flow, "prep", PhaseInput(shared, params=scope.params), scope)
        sets = prep.value
        if sets is None:
            sets = []
        if not isinstance(sets, (list, tuple)) or not all(isinstance(s, dict) for s in sets):
            raise NodeResultError(
                f"batch flow {label!r}: prep returned {sets!r}; "
                "it must return a list of parameter dicts"
            )
        scope.commit(shared, prep.changes)
        runs_done = self.items(path, len(sets))

        def params(k: int) -> dict[str, Any]:
            return {**scope.params, **sets[k]}

        if flow._flw_concurrent and len(sets) > 0:
            before = dict(shared)
            store = dict(shared)
            concurrent = len(sets) > 1 and flow.limit != 1

            async def one(k: int) -> None:
                inner = _Scope(params(k), store, scope.concurrent or concurrent)
                began = time.monotonic()
                await self.walk(flow, {}, inner, f"{path}[{k}]")
                runs_done(k, began)

            try:
                await _all_or_first_failure(len(sets), flow.limit, one)
            finally:
                net = _between(before, store)
                scope.commit(shared, net)
        else:
            for k in range(len(sets)):
                inner = _Scope(params(k), scope.shared_with, scope.concurrent)
                began = time.monotonic()
                await self.walk(flow, shared, inner, f"{path}[{k}]")
                runs_done(k, began)
        scope.refresh(shared)
        given = PhaseInput(shared, prep=prep.value, params=scope.params)
        post = await self.call(flow, "post", given, scope)
        scope.commit(shared, post.changes)
        return post.action

    async def call(self, node: Any, phase: str, given: PhaseInput, scope: _Scope) -> _Outcome:
        """One phase on a copy of its store, bounded by the node's timeout."""
        # Two copies: what the phase got, and the one it works on. The store
        # itself may change meanwhile (a node that closes over it).
        store = _copy(given.shared) if phase in _STORE_PHASES else given.shared
        work = _copy(store) if phase in _STORE_PHASES else store
        given = given._replace(shared=work)
        label = node._flw_label()
        timeout = node._flw_options.timeout if isinstance(node, WorkerNode) else None
        ctx = Context(None, label)
        if node._flw_is_async(phase):

            async def call_async() -> tuple[Any, Any]:
                token = _CURRENT.set(ctx)
                try:
                    return await node._flw_call_async(phase, given, ctx)  # type: ignore[no-any-return]
                finally:
                    _CURRENT.reset(token)

            pending: Awaitable[tuple[Any, Any]] = call_async()
        else:

            def call_sync() -> tuple[Any, Any]:
                token = _CURRENT.set(ctx)
                try:
                    return node._flw_call(phase, given, ctx)  # type: ignore[no-any-return]
                finally:
                    _CURRENT.reset(token)

            if timeout is None and self.deadline is None and not scope.concurrent:
                action, value = call_sync()
                return self.outcome(label, phase, action, value, store, work)
            pending = asyncio.to_thread(call_sync)
        if timeout is None:
            action, value = await pending
        else:
            try:
                action, value = await asyncio.wait_for(pending, timeout)
            except asyncio.TimeoutError:
                raise NodeError(
                    "timeout",
                    f"node {label} ({phase}) took longer than its timeout of {timeout:g} s",
                ) from None
        return self.outcome(label, phase, action, value, store, work)

    @staticmethod
    def outcome(
        label: str, phase: str, action: Any, value: Any, store: dict[str, Any], work: dict[str, Any]
    ) -> _Outcome:
        checked = check_action(label, action) if phase in ("run", "post", "fallback") else None
        if phase not in _STORE_PHASES:
            return _Outcome(checked, value, _Changes({}, []))
        if work is store:  # could not be copied: it changed in place
            return _Outcome(checked, value, _Changes({}, []))
        return _Outcome(checked, value, _between(store, work))


async def _all_or_first_failure(
    total: int, limit: int | None, one: Callable[[int], Coroutine[Any, Any, T]]
) -> list[T]:
    """``one(i)`` for each ``i``, at most ``limit`` at once; the values in order.
    The first failure cancels the others and is raised once they have ended."""
    if total == 0:
        return []
    gate = asyncio.Semaphore(limit or total)

    async def gated(i: int) -> T:
        async with gate:
            return await one(i)

    tasks = [asyncio.ensure_future(gated(i)) for i in range(total)]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    failed = next((t for t in tasks if t.done() and not t.cancelled() and t.exception()), None)
    if failed is not None:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise failed.exception()  # type: ignore[misc]
    return [t.result() for t in tasks]


def _kind(obj: BaseNode) -> str:
    """A visit's ``kind`` in ``node_started``."""
    if isinstance(obj, BatchFlowBase):
        return "batch_flow"
    if isinstance(obj, Flow):
        return "flow"
    if isinstance(obj, Parallel):
        return "parallel"
    return obj._flw_kind() if isinstance(obj, WorkerNode) else "node"


def _error(exc: BaseException) -> dict[str, str]:
    """An event's ``error`` member: a NodeError's kind, else ``tool_error``."""
    if isinstance(exc, NodeError):
        return {"kind": exc.kind, "message": exc.message}
    return {"kind": "tool_error", "message": _exc_text(exc)}


def _ms_since(began: float) -> int:
    return int((time.monotonic() - began) * 1000)


def _successor(obj: BaseNode, action: str | None) -> BaseNode | None:
    found = obj.successors.get(action or "default")
    if found is None and obj.successors:
        warnings.warn(  # PocketFlow's wording, then where
            f"Flow ends: '{action}' not found in {list(obj.successors)} "
            f"(the successors of {obj._flw_label()})",
            stacklevel=2,
        )
    return found


def _run_coroutine(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to the end from sync code, even under a running loop."""
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
