"""flw worker SDK: turn typed Python functions into tools an flw supervisor runs.

Decorate functions with ``@tool``; take a ``Context`` parameter to report
progress, logs and streamed chunks; the supervisor starts the script with
``python -m flw SCRIPT``. ``run()`` serves the tools of a script started by
hand. Graphs: ``@node`` functions and PocketFlow-style class nodes
(``Node``, ``BatchNode``, ``AsyncNode``, ...) linked with ``>>`` into a
``Flow``, which the supervisor runs (or ``flow.run(shared)`` in-process).
"""

from ._class_node import AsyncBatchNode, AsyncNode, AsyncParallelBatchNode, BatchNode, Node
from ._context import Context, Sent, current_context
from ._entry import run
from ._graph import (
    AsyncFlow,
    BaseNode,
    Flow,
    NodeDefinitionError,
    NodeError,
    NodeResultError,
    Parallel,
)
from ._node import FunctionNode, node, registered_nodes
from ._tool import InvalidArguments, Tool, ToolDefinitionError, registered_tools, tool
from ._version import __version__

__all__ = [
    "AsyncBatchNode",
    "AsyncFlow",
    "AsyncNode",
    "AsyncParallelBatchNode",
    "BaseNode",
    "BatchNode",
    "Context",
    "Flow",
    "FunctionNode",
    "InvalidArguments",
    "Node",
    "NodeDefinitionError",
    "NodeError",
    "NodeResultError",
    "Parallel",
    "Sent",
    "Tool",
    "ToolDefinitionError",
    "__version__",
    "current_context",
    "node",
    "registered_nodes",
    "registered_tools",
    "run",
    "tool",
]
