"""The README's graph examples run as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from flw import registered_nodes
from flw.graph._manifest import build_graph

README = Path(__file__).resolve().parent.parent / "README.md"


def graph_examples() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Graphs\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


def run_example(*blocks: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "readme"}
    exec(compile("\n".join(blocks), str(README), "exec"), namespace)
    return namespace


def test_the_agent_example_runs_in_a_notebook_and_announces_its_flow() -> None:
    agent, notebook, _ = graph_examples()
    namespace = run_example(agent, notebook)  # the notebook block asserts the answer
    graph = build_graph(namespace, registered_nodes())
    assert [n["name"] for n in graph.manifest] == ["decide", "search", "answer"]
    [flow] = graph.flows
    assert flow["name"] == "agent"
    assert flow["start"] == "decide"


def test_the_class_node_example() -> None:
    *_, classes = graph_examples()
    namespace = run_example(classes)
    shared: dict[str, Any] = {"files": ["a.md", "bb.md"]}
    assert namespace["pipeline"].run(shared) is None
    assert shared == {
        "files": ["a.md", "bb.md"],
        "summaries": ["a.md: 4 chars", "bb.md: 5 chars"],
        "review": "ok",
        "a": "page a",
        "b": "page b",
    }
    graph = build_graph(namespace, registered_nodes())
    assert {n["name"]: (n["kind"], n.get("fallback", False)) for n in graph.manifest} == {
        "fetch_a": ("node", True),
        "fetch_b": ("node", False),
        "summarize": ("batch", False),
        "Review": ("node", True),
    }
    [pipeline] = graph.flows
    assert pipeline["nodes"] == {
        "summarize": {"node": "summarize", "limit": 8},
        "Review": {"node": "Review", "timeout_ms": 30000},
        "parallel_1": {"parallel": ["fetch_a", "fetch_b"]},
        "fetch_a": {"node": "fetch_a", "retries": 2, "backoff_ms": 500},
        "fetch_b": {"node": "fetch_b"},
    }
    assert (pipeline["max_steps"], pipeline["deadline_ms"]) == (100, 600000)
