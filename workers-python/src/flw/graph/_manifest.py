"""What a worker announces of its graphs: ``hello.nodes`` and ``hello.flows``.

After the script is imported, ``build_graph`` looks at its module globals
and the ``@node`` registry and works out:

- **names**: a function node's is ``name=`` or the function's name; a class
  node's, a flow's and a ``Parallel``'s is ``name=``, else the first module
  global bound to it, else (class nodes) the class name. Two different
  objects with one name are an error naming both.
- **nodes**: every node reachable from an announced flow (nested flows and
  branches included), every ``@node`` function, every class node bound to a
  global.
- **flows**: every ``Flow`` bound to a global, and every named flow nested
  in one; each as a graph document (GRAPHS.md). An entry's id is the node's
  or flow's name; an unnamed nested flow is written inline (id ``flow_1``,
  ...), an unnamed ``Parallel`` gets ``parallel_1``, ... Edges are the
  successors of every entry reachable from ``start``; a nested flow is one
  entry, its insides are its own document.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from ._base import BaseNode, Flow, NodeDefinitionError, Parallel, WorkerNode, check_name
from ._batch_flow import BatchFlowBase
from ._node import FunctionNode


class Graph:
    """The nodes a worker serves and what its ``hello`` says about them."""

    def __init__(
        self,
        nodes: dict[str, WorkerNode],
        manifest: list[dict[str, Any]],
        flows: list[dict[str, Any]],
    ) -> None:
        self.nodes = nodes
        self.manifest = manifest
        self.flows = flows

    @property
    def needs_async(self) -> bool:
        """Whether some phase of some node is a coroutine."""
        return any(
            n._flw_is_async(phase)
            for n in self.nodes.values()
            for phase in ("run", "fallback", "prep", "post")
        )


def build_graph(namespace: Mapping[str, Any], registered: Iterable[FunctionNode] = ()) -> Graph:
    """The graph of a script whose module globals are ``namespace``.

    Raises ``NodeDefinitionError`` for bad or clashing names, flows without
    a start node, branches with successors, inline flows nesting each other.
    """
    builder = _Builder(namespace)
    for entry in registered:
        builder.add_node(entry)
    builder.announce_globals()
    flows = builder.documents()  # first: documenting finds the nodes of the flows
    manifest = [_node_object(obj, name) for name, obj in builder.nodes.items()]
    return Graph(builder.nodes, manifest, flows)


def _node_object(obj: WorkerNode, name: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name,
        "kind": obj._flw_kind(),
        "description": obj._flw_description(),
    }
    if obj._flw_has_fallback():
        entry["fallback"] = True
    return entry


class _Builder:
    def __init__(self, namespace: Mapping[str, Any]) -> None:
        self.globals: dict[int, str] = {}  # id(object) -> the first global bound to it
        self.bound: list[BaseNode] = []
        for var, value in list(namespace.items()):
            named = isinstance(value, BaseNode) and not isinstance(value, FunctionNode)
            if named and id(value) not in self.globals:
                self.globals[id(value)] = var
                self.bound.append(value)
        self.nodes: dict[str, WorkerNode] = {}
        self.flows: dict[str, Flow] = {}
        self._queue: deque[Flow] = deque()

    # -- names ------------------------------------------------------------------

    def name_of(self, obj: BaseNode) -> str | None:
        """The announced name, or ``None`` (an inline flow, an auto-id parallel)."""
        if isinstance(obj, FunctionNode):
            return obj.name
        name = obj._flw_name or self.globals.get(id(obj))
        if name is None and isinstance(obj, WorkerNode):
            name = type(obj).__name__
        if name is None:
            return None
        return check_name(self.describe(obj), name)

    def describe(self, obj: BaseNode) -> str:
        if isinstance(obj, FunctionNode):
            return f"function {obj.qualname}"
        cls = type(obj)
        text = f"{cls.__module__}.{cls.__qualname__} object"
        var = self.globals.get(id(obj))
        if obj._flw_name is not None:
            return f"{text} named {obj._flw_name!r}"
        if var is not None:
            return f"{text} bound to {var!r}"
        if isinstance(obj, WorkerNode):
            return f"an unnamed {text} (named after its class)"
        return f"an unnamed {text}"

    def add_node(self, obj: WorkerNode) -> str:
        name = self.name_of(obj)
        assert name is not None
        held = self.nodes.setdefault(name, obj)
        if held is not obj:
            raise NodeDefinitionError(
                f"two nodes are named {name!r}: {self.describe(held)} and {self.describe(obj)}; "
                "give one of them another name with name=... (or bind it to a module global)"
            )
        return name

    def add_flow(self, flow: Flow) -> str:
        name = self.name_of(flow)
        assert name is not None
        held = self.flows.get(name)
        if held is None:
            self.flows[name] = flow
            self._queue.append(flow)
        elif held is not flow:
            raise NodeDefinitionError(
                f"two flows are named {name!r}: {self.describe(held)} and {self.describe(flow)}; "
                "give one of them another name with name=..."
            )
        return name

    # -- documents --------------------------------------------------------------

    def announce_globals(self) -> None:
        for obj in self.bound:
            if isinstance(obj, Flow):
                self.add_flow(obj)
            elif isinstance(obj, WorkerNode):
                self.add_node(obj)

    def documents(self) -> list[dict[str, Any]]:
        docs: list[dict[str, Any]] = []
        while self._queue:  # documenting a flow may announce the named flows it nests
            flow = self._queue.popleft()
            name = self.name_of(flow)
            assert name is not None
            docs.append(self.document(flow, name, [flow]))
        return docs

    def document(self, flow: Flow, name: str, stack: list[Flow]) -> dict[str, Any]:
        where = f"flow {name!r}"
        if flow.start_node is None:
            raise NodeDefinitionError(f"{where} has no start node (Flow(start=...))")
        order = _entries(flow.start_node)
        for obj in order:  # first: a name clash is between nodes, not only entries
            if isinstance(obj, WorkerNode):
                self.add_node(obj)
        ids = self.ids(where, order)
        nodes: dict[str, Any] = {}
        edges: list[dict[str, str]] = []
        for obj in order:
            here = ids[id(obj)]
            if isinstance(obj, WorkerNode):
                nodes[here] = {"node": here, **obj._flw_options.entry()}
            elif isinstance(obj, Flow):
                if self.name_of(obj) is not None:
                    nodes[here] = {"flow": self.add_flow(obj)}
                elif any(outer is obj for outer in stack):
                    raise NodeDefinitionError(
                        f"{where}: unnamed flows nest each other in a cycle; "
                        "bind them to module globals or give them name=..."
                    )
                else:
                    nodes[here] = {"flow": self.document(obj, here, [*stack, obj])}
            elif isinstance(obj, Parallel):
                obj._flw_check_branches()
                nodes[here] = {"parallel": [ids[id(b)] for b in obj.branches]}
                if obj.limit is not None:
                    nodes[here]["limit"] = obj.limit
            for action, target in obj.successors.items():
                edges.append({"from": here, "to": ids[id(target)], "action": action})
        doc: dict[str, Any] = {"name": name}
        if flow.description:
            doc["description"] = flow.description
        if isinstance(flow, BatchFlowBase):  # its prep and post: a node of kind batch_flow
            held = self.nodes.setdefault(name, flow)  # type: ignore[arg-type]
            if held is not flow:
                raise NodeDefinitionError(
                    f"batch flow {name!r} needs a node of its name for its prep and post, "
                    f"but {self.describe(held)} has it; rename one of them"
                )
            batch: dict[str, Any] = {"node": name, "concurrent": flow._flw_concurrent}
            if flow.limit is not None:
                batch["limit"] = flow.limit
            doc["batch"] = batch
        doc["start"] = ids[id(flow.start_node)]
        doc["nodes"] = nodes
        doc["edges"] = edges
        if flow.max_steps is not None:
            doc["max_steps"] = flow.max_steps
        if flow.deadline is not None:
            doc["deadline_ms"] = max(1, round(flow.deadline * 1000))
        return doc

    def ids(self, where: str, order: list[BaseNode]) -> dict[int, str]:
        """Entry ids: names where there are names, then ``flow_1``/``parallel_1``-style ones."""
        ids: dict[int, str] = {}
        owner: dict[str, BaseNode] = {}
        for obj in order:
            name = self.name_of(obj)
            if name is None:
                continue
            held = owner.setdefault(name, obj)
            if held is not obj:
                raise NodeDefinitionError(
                    f"{where}: two entries would have the id {name!r}: {self.describe(held)} "
                    f"and {self.describe(obj)}; rename one of them"
                )
            ids[id(obj)] = name
        counters = {"flow": 0, "parallel": 0}
        for obj in order:
            if id(obj) in ids:
                continue
            prefix = "flow" if isinstance(obj, Flow) else "parallel"
            while True:
                counters[prefix] += 1
                candidate = f"{prefix}_{counters[prefix]}"
                if candidate not in owner:
                    break
            owner[candidate] = obj
            ids[id(obj)] = candidate
        return ids


def _entries(start: BaseNode) -> list[BaseNode]:
    """The entries of a flow's document, from ``start`` through successors and
    branches, breadth first (nested flows are entries; their insides are not)."""
    order: list[BaseNode] = []
    seen: set[int] = set()
    queue: deque[BaseNode] = deque([start])
    while queue:
        obj = queue.popleft()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        order.append(obj)
        if isinstance(obj, Parallel):
            queue.extend(obj.branches)
        queue.extend(obj.successors.values())
    return order
