"""PocketFlow's batch flows: ``BatchFlow``, ``AsyncBatchFlow``, ``AsyncParallelBatchFlow``.

A batch flow is a ``Flow`` whose ``prep(shared)`` returns a list of
parameter dicts; its graph runs once per dict, with the dict merged into
``params`` (class nodes read ``self.params``), then ``post(shared,
prep_res, None)`` returns the flow's action. ``AsyncParallelBatchFlow``'s
runs overlap on the one store (``limit`` in flight). The supervisor runs it
too: its ``prep`` and ``post`` are a node of kind ``batch_flow`` and its
document a flow with ``"batch"`` (GRAPHS.md, "Batch flows").
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from .._docstring import class_description
from ._base import AsyncFlow, BaseNode, Flow, NodeError, Options, PhaseInput, count_option

if TYPE_CHECKING:
    from .._context import Context

_PHASES = ("prep", "post")


class BatchFlowBase(Flow):
    """What the three batch flows share; use one of them."""

    _flw_concurrent = False
    _flw_options = Options()

    def __init__(
        self,
        start: BaseNode | None = None,
        *,
        name: str | None = None,
        max_steps: int | None = None,
        deadline: float | None = None,
        description: str | None = None,
        limit: int | None = None,
    ) -> None:
        super().__init__(
            start, name=name, max_steps=max_steps, deadline=deadline, description=description
        )
        where = f"{type(self).__qualname__}({name!r})" if name is not None else "batch flow"
        self.limit = None if limit is None else count_option(where, "limit", limit, 1)

    # -- what the supervisor sees as a node of kind batch_flow ------------------

    def _flw_kind(self) -> str:
        return "batch_flow"

    def _flw_has_fallback(self) -> bool:
        return False

    def _flw_has_phase(self, phase: str) -> bool:
        return phase in _PHASES

    def _flw_description(self) -> str:
        return class_description(type(self), self.description)

    def _flw_is_async(self, phase: str) -> bool:
        return False

    def _flw_own(self, given: PhaseInput) -> Any:
        own = copy.copy(self)
        own.params = {**self.params, **(given.params or {})}
        return own

    def _flw_call(self, phase: str, given: PhaseInput, ctx: Context) -> tuple[Any, Any]:
        own = self._flw_own(given)
        if phase == "prep":
            return None, own.prep(given.shared)
        if phase == "post":
            return own.post(given.shared, given.prep, None), None
        raise NodeError("internal", f"a batch flow has no {phase!r} phase")

    async def _flw_call_async(self, phase: str, given: PhaseInput, ctx: Context) -> tuple[Any, Any]:
        return self._flw_call(phase, given, ctx)


class BatchFlow(BatchFlowBase):
    """PocketFlow's ``BatchFlow``: ``prep(shared)`` gives parameter dicts, the
    graph runs once per dict in turn, ``post(shared, prep_res, None)`` gives the action."""

    def prep(self, shared: dict[str, Any]) -> Any:
        """The parameter dicts, one per run of the graph (``None``: no run)."""
        return None

    def post(self, shared: dict[str, Any], prep_res: Any, exec_res: Any) -> Any:
        """The flow's action (by default ``None``: ``"default"``)."""
        return exec_res


class AsyncBatchFlow(BatchFlow, AsyncFlow):
    """``BatchFlow`` with coroutines: ``prep_async`` and ``post_async``; runs in turn."""

    async def prep_async(self, shared: dict[str, Any]) -> Any:
        """The parameter dicts, one per run of the graph."""
        return None

    async def post_async(self, shared: dict[str, Any], prep_res: Any, exec_res: Any) -> Any:
        """The flow's action."""
        return exec_res

    def _flw_is_async(self, phase: str) -> bool:
        return True

    async def _flw_call_async(self, phase: str, given: PhaseInput, ctx: Context) -> tuple[Any, Any]:
        own = self._flw_own(given)
        if phase == "prep":
            return None, await own.prep_async(given.shared)
        if phase == "post":
            return await own.post_async(given.shared, given.prep, None), None
        raise NodeError("internal", f"a batch flow has no {phase!r} phase")


class AsyncParallelBatchFlow(AsyncBatchFlow):
    """``AsyncBatchFlow`` whose runs overlap on the one store (``limit`` in flight)."""

    _flw_concurrent = True
