"""Running one phase of a graph node for a ``node`` message, and its outcome.

``prepare`` turns a ``node`` message into a ``NodeTask``: what the worker's
call machinery runs in place of a tool function (on a pump thread, or as a
task when the phase is a coroutine), with the same ids, cancel, context and
terminal reply. The task returns the outcome object of PROTOCOL.md
("Graph nodes"): ``action``, ``value`` (``prep``, ``exec``) and
``changes``, each left out when empty. Changes are found by top-level key:
each value's JSON text before the phase against its JSON text after it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Callable

from .._context import Context
from .._convert import NotJSONSerializable, to_json
from ._base import NodeError, NodeResultError, PhaseInput, WorkerNode, check_action
from ._class_node import items_of

_STORE_PHASES = ("run", "prep", "post", "fallback")


class NodeTask:
    """A ``node`` message ready to run; the worker holds it where a call holds its tool."""

    __slots__ = ("fn", "is_async", "name")

    def __init__(self, name: str, is_async: bool, fn: Callable[[], Any]) -> None:
        self.name = name
        self.is_async = is_async
        self.fn = fn

    def __repr__(self) -> str:
        return f"<flw.NodeTask {self.name!r}>"


class PhaseRefused(ValueError):
    """A phase the node does not have (a batch phase of a plain node, a missing fallback)."""


def prepare(node: WorkerNode, name: str, message: Mapping[str, Any], ctx: Context) -> NodeTask:
    """The task that runs the phase ``message`` asks for, on the store it carries."""
    phase: str = message["phase"]
    if not node._flw_has_phase(phase):
        kind = node._flw_kind()
        why = "it has no fallback" if phase == "fallback" else f"it is of kind {kind!r}"
        raise PhaseRefused(f"node {name!r} has no {phase!r} phase ({why})")
    error = None
    if phase == "fallback":
        given_error = message.get("error")
        if given_error is None:
            error = NodeError("internal", "the supervisor sent no error")
        else:
            error = NodeError(given_error["kind"], given_error["message"])
    given = PhaseInput(
        shared=message.get("shared", {}) if phase in _STORE_PHASES else {},
        item=message.get("item"),
        prep=message.get("prep"),
        results=message.get("results", []),
        error=error,
        params=message.get("params"),
    )
    if node._flw_is_async(phase):

        async def run_async() -> dict[str, Any]:
            before = _snapshot(given.shared) if phase in _STORE_PHASES else None
            action, value = await node._flw_call_async(phase, given, ctx)
            return outcome(name, phase, action, value, given.shared, before)

        return NodeTask(name, True, run_async)

    def run() -> dict[str, Any]:
        before = _snapshot(given.shared) if phase in _STORE_PHASES else None
        action, value = node._flw_call(phase, given, ctx)
        return outcome(name, phase, action, value, given.shared, before)

    return NodeTask(name, False, run)


def outcome(
    name: str,
    phase: str,
    action: Any,
    value: Any,
    shared: dict[str, Any],
    before: dict[str, str] | None,
) -> dict[str, Any]:
    """The outcome object of a phase; ``NodeResultError`` when it cannot be sent."""
    out: dict[str, Any] = {}
    checked = check_action(name, action)
    if checked is not None:
        out["action"] = checked
    if phase == "prep":
        value = items_of(name, value)
    if phase in ("prep", "exec"):
        try:
            data = to_json(value)
        except (NotJSONSerializable, RecursionError) as exc:
            raise NodeResultError(
                f"node {name!r}: {phase} returned a value that is not JSON-serializable: {exc}"
            ) from None
        if data is not None:
            out["value"] = data
    if before is not None:
        changes = _changes(name, before, shared)
        if changes:
            out["changes"] = changes
    return out


def _dumps(value: Any) -> str:
    return json.dumps(
        value, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=to_json
    )


def _snapshot(shared: dict[str, Any]) -> dict[str, str]:
    return {key: _dumps(value) for key, value in shared.items()}


def _changes(name: str, before: dict[str, str], shared: dict[str, Any]) -> dict[str, Any]:
    changed: dict[str, Any] = {}
    for key, value in shared.items():
        if not isinstance(key, str):
            raise NodeResultError(
                f"node {name!r} set shared[{key!r}]: the store's top-level keys must be strings"
            )
        try:
            text = _dumps(value)
        except (TypeError, ValueError, RecursionError) as exc:
            raise NodeResultError(
                f"node {name!r} set shared[{key!r}] to a value that is not JSON-serializable: {exc}"
            ) from None
        if before.get(key) != text:
            changed[key] = json.loads(text)
    deleted = [key for key in before if key not in shared]
    changes: dict[str, Any] = {}
    if changed:
        changes["set"] = changed
    if deleted:
        changes["delete"] = deleted
    return changes
