"""The graph-run vectors (protocol/vectors/graph_runs.json) against ``Flow.run``.

Each case's flow is built from flw's own classes, with nodes that play the
case's script (sleeping for real), and the run must give what the
supervisor's runner gives: the same calls in the same order, the same final
store, status and error kind, the same 'Flow ends' warnings, and the same
node events (``on_event``), written as the Rust harness writes them.
"""

from __future__ import annotations

import asyncio
import json
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

import flw
from flw import AsyncBatchFlow, AsyncBatchNode, AsyncNode, AsyncParallelBatchFlow, Flow, Parallel

VECTORS = Path(__file__).resolve().parents[2] / "protocol" / "vectors" / "graph_runs.json"
CASES = json.loads(VECTORS.read_text())["cases"]
EARLY_MS = 5
"""How much earlier than the vector's time a real clock may see an entry."""


class ScriptedFailure(Exception):
    """The failure a script step asks for: the only error that counts as ``tool_error``."""


class Script:
    """Hands out each call key's steps and records what the calls did."""

    def __init__(self, steps: dict[str, list[dict[str, Any]]]) -> None:
        self.steps = steps
        self.used: dict[str, set[int]] = {}
        self.trace: list[tuple[float, str]] = []
        self.began = time.monotonic()

    def now(self) -> float:
        return (time.monotonic() - self.began) * 1000

    def pick(self, key: str, params: dict[str, Any]) -> dict[str, Any]:
        steps = self.steps[key]
        used = self.used.setdefault(key, set())

        def fits(step: dict[str, Any]) -> bool:
            return all(params.get(k) == v for k, v in step.get("params", {}).items())

        fitting = [i for i, s in enumerate(steps) if fits(s)]
        pick = next((i for i in fitting if i not in used), fitting[-1])
        used.add(pick)
        return steps[pick]

    async def play(
        self, key: str, params: dict[str, Any], store: dict[str, Any] | None
    ) -> dict[str, Any]:
        step = self.pick(key, params)
        shown = f" {json.dumps(params, sort_keys=True, separators=(',', ':'))}" if params else ""
        self.trace.append((self.now(), f"start {key}{shown}"))
        await asyncio.sleep(step.get("ms", 0) / 1000)
        self.trace.append((self.now(), f"end {key}"))
        if store is not None:
            store.update(step.get("set", {}))
            for k in step.get("delete", []):
                store.pop(k, None)
        if step.get("fail"):
            raise ScriptedFailure(f"{key} failed")
        return step


def options(entry: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"retries": entry.get("retries", 0)}
    if "backoff_ms" in entry:
        out["backoff"] = entry["backoff_ms"] / 1000
    if "timeout_ms" in entry:
        out["timeout"] = entry["timeout_ms"] / 1000
    if "limit" in entry:
        out["limit"] = entry["limit"]
    return out


def worker_node(name: str, spec: dict[str, Any], entry: dict[str, Any], script: Script) -> Any:
    opts = options(entry)
    if spec["kind"] == "batch":

        class Batch(AsyncBatchNode):
            async def prep_async(self, shared: dict[str, Any]) -> Any:
                return (await script.play(f"{name}.prep", self.params, shared)).get("value")

            async def exec_async(self, item: Any) -> Any:
                return (await script.play(f"{name}.exec", self.params, None)).get("value")

            async def post_async(self, shared: dict[str, Any], prep: Any, results: Any) -> Any:
                return (await script.play(f"{name}.post", self.params, shared)).get("action")

        return Batch(name=name, **opts)
    if spec.get("fallback"):  # the supervisor's fallback phase: a function node's fallback=

        async def fallback(shared: dict[str, Any], error: Any) -> Any:
            return (await script.play(f"{name}.fallback", {}, shared)).get("action")

        async def run(shared: dict[str, Any]) -> Any:
            return (await script.play(name, {}, shared)).get("action")

        return flw.node(name=name, fallback=fallback, **opts)(run)

    class One(AsyncNode):
        async def prep_async(self, shared: dict[str, Any]) -> Any:
            return shared

        async def exec_async(self, shared: dict[str, Any]) -> Any:
            return await script.play(name, self.params, shared)

        async def post_async(self, shared: dict[str, Any], prep: Any, step: Any) -> Any:
            return step.get("action")

    return One(name=name, **opts)


def build_flow(doc: dict[str, Any], case: dict[str, Any], script: Script) -> Flow:
    objs: dict[str, Any] = {}
    for eid, entry in doc["nodes"].items():
        if "node" in entry:
            objs[eid] = worker_node(entry["node"], case["nodes"][entry["node"]], entry, script)
        elif "flow" in entry:  # named by its entry id, as the manifest names a nested flow
            objs[eid] = build_flow({**entry["flow"], "name": eid}, case, script)
    for eid, entry in doc["nodes"].items():
        if "parallel" in entry:
            branches = [objs[b] for b in entry["parallel"]]
            objs[eid] = Parallel(*branches, limit=entry.get("limit"), name=eid)
    for edge in doc.get("edges", []):
        objs[edge["from"]].next(objs[edge["to"]], edge.get("action", "default"))
    kwargs: dict[str, Any] = {"name": doc["name"], "max_steps": doc.get("max_steps")}
    if "deadline_ms" in doc:
        kwargs["deadline"] = doc["deadline_ms"] / 1000
    batch = doc.get("batch")
    if batch is None:
        return Flow(objs[doc["start"]], **kwargs)
    key = batch["node"]
    base = AsyncParallelBatchFlow if batch.get("concurrent") else AsyncBatchFlow

    class Each(base):  # type: ignore[misc, valid-type]
        async def prep_async(self, shared: dict[str, Any]) -> Any:
            return (await script.play(f"{key}.prep", self.params, shared)).get("value")

        async def post_async(self, shared: dict[str, Any], prep: Any, _: Any) -> Any:
            return (await script.play(f"{key}.post", self.params, shared)).get("action")

    return Each(objs[doc["start"]], limit=batch.get("limit"), **kwargs)


def event_text(e: dict[str, Any]) -> str | None:
    """An event as the vectors write it (as ``event_text`` in vectors.rs), or None."""
    kind, path = e["event"], e.get("path")
    if kind in ("node_started", "node_fallback", "item_finished"):
        return f"{kind} {path}"
    if kind == "node_retry":
        return f"{kind} {path} {e['attempt']}"
    if kind == "node_finished":
        return f"{kind} {path} {e['action']}"
    if kind == "node_failed":
        return f"{kind} {path} {e['error']['kind']}"
    if kind == "batch_items":
        return f"{kind} {path} {e['total']}"
    if kind == "merge_conflict":
        return f"{kind} {path} {','.join(e['keys'])}"
    return None


def check_trace(actual: list[tuple[float, str]], expected: list[str]) -> None:
    """Same entries in the same order (any order within one time), none too early."""
    want = [(int(e.split(" ", 1)[0]), e.split(" ", 1)[1]) for e in expected]
    assert len(actual) == len(want), f"trace {actual}\nexpected {expected}"
    i = 0
    while i < len(want):
        j = i
        while j < len(want) and want[j][0] == want[i][0]:
            j += 1
        got = sorted(s for _, s in actual[i:j])
        assert got == sorted(s for _, s in want[i:j]), f"trace {actual}\nexpected {expected}"
        for t, s in actual[i:j]:
            assert t >= want[i][0] - EARLY_MS, f"{s} at {t:.0f} ms, expected {want[i][0]} ms"
        i = j


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_the_python_runner_passes_the_graph_run_vector(case: dict[str, Any]) -> None:
    script = Script(case["script"])
    flow = build_flow(case["flow"], case, script)
    shared = json.loads(json.dumps(case["shared"]))
    expect = case["expect"]
    error = None
    events: list[dict[str, Any]] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        script.began = time.monotonic()
        try:
            flow.run(shared, on_event=events.append)
        except flw.NodeError as exc:
            error = exc.kind
        except ScriptedFailure:
            error = "tool_error"
    status = "failed" if error else "succeeded"
    assert (status, error) == (expect["status"], expect.get("error"))
    check_trace(script.trace, expect["trace"])
    assert shared == expect["shared"]
    ends = [w for w in caught if str(w.message).startswith("Flow ends: '")]
    assert len(ends) == expect["flow_ends"], [str(w.message) for w in caught]
    texts = [t for t in map(event_text, events) if t is not None]
    assert texts == expect["events"]
