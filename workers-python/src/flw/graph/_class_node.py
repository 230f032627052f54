"""Class nodes: PocketFlow's ``Node``, ``BatchNode`` and their async variants.

``Node``, ``BatchNode``, ``AsyncNode``, ``AsyncBatchNode`` and
``AsyncParallelBatchNode`` keep PocketFlow's ``prep`` → ``exec`` → ``post``
with in-process retries of ``exec`` (``max_retries``, ``wait``,
``cur_retry``) and ``exec_fallback``. Each call works on a shallow copy of
the instance (as PocketFlow's flows do), so ``cur_retry`` is per call even
when a worker runs many at once. They implement the phases of
``WorkerNode`` that the worker and ``Flow.run`` call.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from .._context import Context, current_context
from .._docstring import class_description
from ._base import (
    NodeError,
    NodeResultError,
    PhaseInput,
    WorkerNode,
    check_name,
    count_option,
    make_options,
    seconds_option,
)


class Node(WorkerNode):
    """PocketFlow's node: ``prep(shared)``, ``exec(prep_res)``, then ``post``.

    ``exec`` is tried ``max_retries`` times in the process, ``wait`` seconds
    apart (``self.cur_retry`` counts from 0); then ``exec_fallback(prep_res,
    exc)`` gives its result (by default it raises). ``post`` returns the
    action. ``retries``, ``backoff``, ``timeout`` (seconds) and ``limit``
    are the supervisor's options, as for ``@node``. A class that overrides
    ``exec_fallback`` also has the supervisor's ``fallback`` phase: ``prep``,
    ``exec_fallback(prep_res, NodeError)``, ``post``. The name is ``name=``,
    else the module global the instance is bound to, else the class name.
    """

    def __init__(
        self,
        max_retries: int = 1,
        wait: float = 0,
        *,
        name: str | None = None,
        retries: int = 0,
        backoff: float | None = None,
        timeout: float | None = None,
        limit: int | None = None,
        description: str | None = None,
    ) -> None:
        super().__init__()
        where = type(self).__qualname__ + (f"({name!r})" if name is not None else "")
        self.max_retries = count_option(where, "max_retries", max_retries, 1)
        self.wait = seconds_option(where, "wait", wait, 0.0)
        self.cur_retry = 0
        self._flw_name = None if name is None else check_name(where, name)
        self._flw_options = make_options(where, retries, backoff, timeout, limit)
        self._flw_text = description

    def prep(self, shared: dict[str, Any]) -> Any:
        """Read what ``exec`` needs from the store."""
        return None

    def exec(self, prep_res: Any) -> Any:
        """The work (retried); for a batch node, one item."""
        return None

    def post(self, shared: dict[str, Any], prep_res: Any, exec_res: Any) -> Any:
        """Write results to the store; return the action (``None``: ``"default"``)."""
        return None

    def exec_fallback(self, prep_res: Any, exc: Exception) -> Any:
        """``exec``'s result once its tries are used up; by default re-raises ``exc``."""
        raise exc

    def __repr__(self) -> str:
        return f"<flw.{type(self).__qualname__} {self._flw_label()!r}>"

    # -- WorkerNode ---------------------------------------------------------

    def _flw_kind(self) -> str:
        return "batch" if isinstance(self, BatchNode) else "node"

    def _flw_has_fallback(self) -> bool:
        return type(self).exec_fallback is not Node.exec_fallback

    def _flw_description(self) -> str:
        return class_description(type(self), self._flw_text)

    def _flw_is_async(self, phase: str) -> bool:
        return False

    def _flw_exec_one(self, prep_res: Any) -> Any:
        for attempt in range(self.max_retries):
            self.cur_retry = attempt
            try:
                return self.exec(prep_res)
            except Exception as exc:
                if self.cur_retry == self.max_retries - 1:
                    return self.exec_fallback(prep_res, exc)
                if self.wait > 0 and not _pause(self.wait):
                    raise  # the call was cancelled meanwhile
        return None

    def _flw_call(self, phase: str, given: PhaseInput, ctx: Context) -> tuple[Any, Any]:
        own = copy.copy(self)  # cur_retry is per call, as in PocketFlow's flows
        own.params = dict(given.params or {})  # what the flow sets, as PocketFlow's set_params
        if phase == "exec":
            return None, own._flw_exec_one(given.item)
        if phase == "post":
            return own.post(given.shared, given.prep, list(given.results or ())), None
        prep = own.prep(given.shared)
        if phase == "prep":
            return None, prep
        batch = self._flw_kind() == "batch"
        if phase == "run":
            if batch:
                result: Any = [
                    own._flw_exec_one(item) for item in items_of(self._flw_label(), prep)
                ]
            else:
                result = own._flw_exec_one(prep)
        else:
            error = given.error or NodeError("internal", "no error was given to the fallback")
            if batch:
                result = [
                    own.exec_fallback(item, error) for item in items_of(self._flw_label(), prep)
                ]
            else:
                result = own.exec_fallback(prep, error)
        return own.post(given.shared, prep, result), None


class BatchNode(Node):
    """A node whose ``prep`` returns a list of items; ``exec`` runs once per item
    (with its retries), and ``post`` gets the list of results. The supervisor
    spreads the items across the pool's processes (``limit`` in flight)."""


class AsyncNode(Node):
    """A node written with coroutines: ``prep_async``, ``exec_async``,
    ``post_async``, ``exec_fallback_async``. It runs on the worker's event
    loop; ``run(shared)`` works in a notebook too."""

    async def prep_async(self, shared: dict[str, Any]) -> Any:
        """Read what ``exec_async`` needs from the store."""
        return None

    async def exec_async(self, prep_res: Any) -> Any:
        """The work (retried); for a batch node, one item."""
        return None

    async def post_async(self, shared: dict[str, Any], prep_res: Any, exec_res: Any) -> Any:
        """Write results to the store; return the action."""
        return None

    async def exec_fallback_async(self, prep_res: Any, exc: Exception) -> Any:
        """``exec_async``'s result once its tries are used up; by default re-raises."""
        raise exc

    def _flw_has_fallback(self) -> bool:
        return type(self).exec_fallback_async is not AsyncNode.exec_fallback_async

    def _flw_is_async(self, phase: str) -> bool:
        return True

    async def _flw_exec_one_async(self, prep_res: Any) -> Any:
        for attempt in range(self.max_retries):
            self.cur_retry = attempt
            try:
                return await self.exec_async(prep_res)
            except Exception as exc:
                if self.cur_retry == self.max_retries - 1:
                    return await self.exec_fallback_async(prep_res, exc)
                if self.wait > 0:
                    import asyncio  # here: a worker start never imports asyncio for nothing

                    await asyncio.sleep(self.wait)
        return None

    async def _flw_call_async(self, phase: str, given: PhaseInput, ctx: Context) -> tuple[Any, Any]:
        own = copy.copy(self)
        own.params = dict(given.params or {})
        if phase == "exec":
            return None, await own._flw_exec_one_async(given.item)
        if phase == "post":
            return await own.post_async(given.shared, given.prep, list(given.results or ())), None
        prep = await own.prep_async(given.shared)
        if phase == "prep":
            return None, prep
        batch = self._flw_kind() == "batch"
        if phase == "run":
            if batch:
                items = items_of(self._flw_label(), prep)
                result: Any = [await own._flw_exec_one_async(item) for item in items]
            else:
                result = await own._flw_exec_one_async(prep)
        else:
            error = given.error or NodeError("internal", "no error was given to the fallback")
            if batch:
                items = items_of(self._flw_label(), prep)
                result = [await own.exec_fallback_async(item, error) for item in items]
            else:
                result = await own.exec_fallback_async(prep, error)
        return await own.post_async(given.shared, prep, result), None


class AsyncBatchNode(AsyncNode, BatchNode):
    """``BatchNode`` with coroutines (``exec_async`` per item)."""


class AsyncParallelBatchNode(AsyncBatchNode):
    """``AsyncBatchNode``: the supervisor runs items in parallel across processes
    anyway (``limit`` in flight); ``Flow.run`` runs them in order."""


def items_of(label: str, prep: Any) -> list[Any]:
    """A batch node's items: ``prep``'s list (``None``: no items)."""
    if prep is None:
        return []
    if isinstance(prep, (list, tuple)):
        return list(prep)
    raise NodeResultError(
        f"batch node {label!r}: prep returned a {type(prep).__name__}; "
        "it must return a list of items"
    )


def _pause(seconds: float) -> bool:
    """Sleep between tries; ``False`` when the worker call got cancelled meanwhile."""
    ctx = current_context()
    if ctx is None or not ctx._attached:
        time.sleep(seconds)
        return True
    deadline = time.monotonic() + seconds
    while not ctx.cancelled:
        left = deadline - time.monotonic()
        if left <= 0:
            return True
        time.sleep(min(left, 0.01))
    return False
